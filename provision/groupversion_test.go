package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// noBumper hides GroupVersionBumper, in its transactions too: the engine
// then bumps a group's version with UpdateGroup at the expected version.
type noBumper struct{ provision.Store }

func (s noBumper) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) error {
	return s.Store.Atomically(ctx, func(ctx context.Context, tx provision.Store) error { return fn(ctx, noBumper{tx}) })
}

// TestGroupVersionFollowsMembers: every membership change bumps the
// group's Version and Modified once, with the capability and without;
// a pinned change at a stale version is ErrVersionConflict and applies
// nothing; concurrent unpinned adds all succeed.
func TestGroupVersionFollowsMembers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store provision.Store
	}{
		{"GroupVersionBumper", memstore.New()},
		{"UpdateGroup", noBumper{memstore.New()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			e, err := provision.NewEngine(provision.Config{Store: tc.store, Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}},
				Now: func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Second); return clock }})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			o := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
			var ids []string
			for i := range 22 {
				u, err := e.CreateUser(ctx, o, provision.User{UserName: fmt.Sprintf("u%d@acme.test", i), Active: true})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			}
			g, err := e.CreateGroup(ctx, o, provision.Group{DisplayName: "G"}, ids[:1])
			if err != nil {
				t.Fatal(err)
			}
			get := func() provision.Group {
				t.Helper()
				cur, err := e.GetGroup(ctx, o, g.ID)
				if err != nil {
					t.Fatal(err)
				}
				return cur
			}
			if _, _, err := e.UpdateGroup(ctx, o, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids[1:2]}); err != nil {
				t.Fatal(err)
			}
			cur := get()
			if cur.Version != g.Version+1 || !cur.Modified.After(g.Modified) {
				t.Fatalf("after an add: version %d, modified %v; want %d, after %v", cur.Version, cur.Modified, g.Version+1, g.Modified)
			}
			// Adding an existing member changes nothing.
			if _, _, err := e.UpdateGroup(ctx, o, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids[1:2]}); err != nil || get().Version != cur.Version {
				t.Fatalf("adding a member again: %v, version %d, want %d", err, get().Version, cur.Version)
			}
			// Pinned at a stale version: refused, nothing applied.
			_, _, err = e.UpdateGroup(ctx, o, g.ID, provision.Precondition{Version: g.Version}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[:1]})
			if !errors.Is(err, provision.ErrVersionConflict) {
				t.Fatalf("a replace pinned at a stale version: %v, want ErrVersionConflict", err)
			}
			if _, n, _ := e.ListMembers(ctx, o, g.ID, provision.Page{Limit: 1}); n != 2 {
				t.Fatalf("%d members after a refused replace, want 2", n)
			}
			// Pinned at the current version, renaming and removing: one bump.
			out, mc, err := e.UpdateGroup(ctx, o, g.ID, provision.Precondition{Version: cur.Version}, provision.GroupUpdate{
				Mutate: func(g *provision.Group) error { g.DisplayName = "H"; return nil }, Remove: ids[1:2]})
			if err != nil || len(mc.Removed) != 1 {
				t.Fatalf("a pinned rename and remove: %v, %+v", err, mc)
			}
			if out.Version != cur.Version+1 || get().Version != cur.Version+1 {
				t.Fatalf("after a rename and remove: version %d (stored %d), want %d", out.Version, get().Version, cur.Version+1)
			}
			// Concurrent unpinned adds all succeed and all count.
			before := get().Version
			var wg sync.WaitGroup
			errs := make([]error, 20)
			for i := range 20 {
				wg.Go(func() {
					_, _, errs[i] = e.UpdateGroup(ctx, o, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids[2+i : 3+i]})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("add %d: %v", i, err)
				}
			}
			if v := get().Version; v != before+20 {
				t.Fatalf("after 20 concurrent adds: version %d, want %d", v, before+20)
			}
			// Deleting a member user bumps the group too.
			if err := e.DeleteUser(ctx, o, ids[5], provision.Precondition{}); err != nil {
				t.Fatal(err)
			}
			if v := get().Version; v != before+21 {
				t.Fatalf("after a member was deleted: version %d, want %d", v, before+21)
			}
		})
	}
}
