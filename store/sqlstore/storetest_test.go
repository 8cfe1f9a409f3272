package sqlstore

import (
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/storetest"
)

// TestStoretest runs the conformance suite on both dialects: SQLite on a
// new file per subtest, PostgreSQL on new tables (a random prefix) per
// subtest, dropped after it.
func TestStoretest(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) provision.Store { return newSQLite(t, Config{}) })
	})
	t.Run("postgres", func(t *testing.T) {
		postgresDSN(t)
		storetest.Run(t, func(t *testing.T) provision.Store { return newPostgres(t, Config{}) })
	})
}
