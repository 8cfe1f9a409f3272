package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestConcurrentMemberAddsBumpVersion: 20 member adds at once, without a
// pinned version, all succeed (the engine retries the version conflicts
// that bumping the group's version makes them cause one another), and
// the group's version counts them, on SQLite and PostgreSQL.
func TestConcurrentMemberAddsBumpVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"sqlite", func(t *testing.T) *Store { return newSQLite(t, Config{}) }},
		{"postgres", func(t *testing.T) *Store { postgresDSN(t); return newPostgres(t, Config{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.open(t))
			o := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
			ctx := context.Background()
			g, err := e.CreateGroup(ctx, o, provision.Group{DisplayName: "Crowded"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			ids := make([]string, n)
			for i := range ids {
				u, err := e.CreateUser(ctx, o, provision.User{UserName: fmt.Sprintf("u%d@acme.test", i), Active: true})
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = u.ID
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range ids {
				wg.Go(func() {
					_, _, errs[i] = e.UpdateGroup(ctx, o, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{ids[i]}})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("add %d: %v", i, err)
				}
			}
			cur, err := e.GetGroup(ctx, o, g.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, total, err := e.ListMembers(ctx, o, g.ID, provision.Page{Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if cur.Version != g.Version+n || total != n {
				t.Fatalf("version %d with %d members, want version %d with %d", cur.Version, total, g.Version+n, n)
			}
		})
	}
}
