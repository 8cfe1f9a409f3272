package storetest_test

import (
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/storetest"
)

// A Store implementation runs the suite from one test function in its own
// _test.go file. newStore returns a new, empty store for every subtest; a
// store on a database opens a fresh database (or schema) there and closes
// it with t.Cleanup. Run it with go test -race; pick one case with
// -run 'TestConformance/Isolation/Writes'.
func ExampleRun() {
	testConformance := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) provision.Store {
			return memstore.New()
		})
	}
	_ = testConformance // func TestConformance(t *testing.T) { ... }
}
