package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/internal/testenv"
	"github.com/idprov/idprov/provision"
)

// sqliteDSN is the DSN the package documentation recommends: WAL, and
// synchronous=FULL (every commit fsyncs the WAL).
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
}

// fastSQLiteDSN is sqliteDSN with synchronous=NORMAL: in WAL mode a commit
// does not wait for fsync (still atomic and consistent, and durable
// across a process crash; the last commits may be lost on power loss).
// The tests other than TestDurability use it to run faster.
func fastSQLiteDSN(path string) string {
	return strings.Replace(sqliteDSN(path), "synchronous(FULL)", "synchronous(NORMAL)", 1)
}

// openSQLiteDB opens a SQLite database in a new temporary directory.
func openSQLiteDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "idprov.db")
	db, err := sql.Open("sqlite", fastSQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// newSQLite returns a migrated store on a new SQLite file.
func newSQLite(t testing.TB, cfg Config) *Store {
	t.Helper()
	db, _ := openSQLiteDB(t)
	cfg.Dialect = SQLite
	return migrated(t, db, cfg)
}

func migrated(t testing.TB, db *sql.DB, cfg Config) *Store {
	t.Helper()
	s, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// postgresDSN returns IDPROV_TEST_POSTGRES_DSN; without it the test is
// skipped, or fails when CI=true.
func postgresDSN(t testing.TB) string {
	t.Helper()
	return testenv.PostgresDSN(t)
}

// openPostgresDB opens a pool on the test database, with
// synchronous_commit off for speed (commits do not wait for the WAL
// flush; consistency is unchanged). TestDurability opens its own pool
// with the server's setting.
func openPostgresDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", withParam(postgresDSN(t), "synchronous_commit", "off"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		db.Close()
		t.Fatalf("PostgreSQL at IDPROV_TEST_POSTGRES_DSN: %v", err)
	}
	db.SetMaxOpenConns(8) // the test server is shared: stay well under max_connections
	// Keep them all: database/sql keeps 2 idle connections by default, and
	// under load the rest are closed and opened again (a new PostgreSQL
	// backend each time).
	db.SetMaxIdleConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

// withParam adds a run-time parameter to a PostgreSQL URL or key=value
// DSN (pgx passes unknown parameters to the server).
func withParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

// randomPrefix isolates a test's tables in a shared database.
func randomPrefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + "_"
}

// newPostgres returns a migrated store with tables of a random prefix,
// dropped when the test ends.
func newPostgres(t testing.TB, cfg Config) *Store {
	t.Helper()
	db := openPostgresDB(t)
	cfg.Dialect = Postgres
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = randomPrefix()
	}
	s := migrated(t, db, cfg)
	t.Cleanup(func() {
		if err := s.dropTables(context.Background()); err != nil {
			t.Errorf("drop tables: %v", err)
		}
	})
	return s
}

// dialects runs fn once per dialect, as subtests "sqlite" and "postgres".
func dialects(t *testing.T, fn func(t *testing.T, newStore func(t testing.TB) *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t testing.TB) *Store { return newSQLite(t, Config{}) })
	})
	t.Run("postgres", func(t *testing.T) {
		postgresDSN(t)
		fn(t, func(t testing.TB) *Store { return newPostgres(t, Config{}) })
	})
}

var _ provision.Store = (*Store)(nil)

func TestIDsIncrease(t *testing.T) {
	var g idGen
	prev := ""
	for range 10000 {
		id := g.newID()
		if id <= prev || len(id) != 36 || id[14] != '7' {
			t.Fatalf("%q after %q", id, prev)
		}
		prev = id
	}
}

func dsnSet() bool { return os.Getenv("IDPROV_TEST_POSTGRES_DSN") != "" }
