package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// testGroupVersionBumper tests provision.GroupVersionBumper: the counter
// the engine bumps on every membership change.
func testGroupVersionBumper(t *testing.T, s *suite) {
	bumper := func(t *testing.T) (provision.Store, provision.GroupVersionBumper) {
		t.Helper()
		return storeWith[provision.GroupVersionBumper](t, s, "GroupVersionBumper")
	}

	t.Run("Bump", func(t *testing.T) {
		st, b := bumper(t)
		g := group(tenantA, "scim-okta", "Engineering")
		g.Attributes = map[string]json.RawMessage{"description": json.RawMessage(`"builds things"`)}
		g = createGroup(t, st, g)
		us := idsOf(createUsers(t, st, tenantA, "b", 3))
		addMembers(t, st, tenantA, g.ID, us...)
		at := baseTime.Add(time.Hour)
		got, err := b.BumpGroupVersion(t.Context(), tenantA, g.ID, at)
		must(t, err, "BumpGroupVersion")
		want := g
		want.Version, want.Modified = g.Version+1, at
		if d := diff(want, got); d != "" {
			t.Errorf("BumpGroupVersion returned (-want +got):\n%s", d)
		}
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if d := diff(want, read); d != "" {
			t.Errorf("GetGroup after BumpGroupVersion (-want +got):\n%s", d)
		}
		if got := sorted(allMembers(t, st, tenantA, g.ID)); !slices.Equal(got, sorted(us)) {
			t.Errorf("members after BumpGroupVersion = %v, want %v", got, sorted(us))
		}
		// Whatever the version: no expected version to conflict with.
		again, err := b.BumpGroupVersion(t.Context(), tenantA, g.ID, at.Add(time.Second))
		must(t, err, "second BumpGroupVersion")
		if again.Version != g.Version+2 {
			t.Errorf("second BumpGroupVersion: Version = %d, want %d", again.Version, g.Version+2)
		}
		_, err = st.UpdateGroup(t.Context(), g, g.Version)
		wantErr(t, err, provision.ErrVersionConflict, "UpdateGroup at the version before the bumps")
	})

	t.Run("NotFound", func(t *testing.T) {
		st, b := bumper(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		_, err := b.BumpGroupVersion(t.Context(), tenantA, "no-such-group", baseTime)
		wantErr(t, err, provision.ErrNotFound, "BumpGroupVersion of an unknown group")
		_, err = b.BumpGroupVersion(t.Context(), tenantB, g.ID, baseTime)
		wantErr(t, err, provision.ErrNotFound, "BumpGroupVersion of another tenant's group")
		if read, err := st.GetGroup(t.Context(), tenantA, g.ID); err != nil || read.Version != g.Version {
			t.Errorf("the group after a bump from another tenant: version %d, %v; want %d", read.Version, err, g.Version)
		}
	})

	t.Run("InTransaction", func(t *testing.T) {
		st, _ := bumper(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		us := idsOf(createUsers(t, st, tenantA, "t", 1))
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			b, ok := tx.(provision.GroupVersionBumper)
			if !ok {
				t.Errorf("the Store inside Atomically (%T) is not a provision.GroupVersionBumper: the engine would not use it", tx)
				return errBoom
			}
			if _, err := tx.AddMembers(ctx, tenantA, g.ID, us); err != nil {
				return err
			}
			if _, err := b.BumpGroupVersion(ctx, tenantA, g.ID, baseTime.Add(time.Minute)); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Atomically = %v, want the rollback requested", err)
		}
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if read.Version != g.Version || len(allMembers(t, st, tenantA, g.ID)) != 0 {
			t.Errorf("after a rolled back add and bump: version %d, %d members; want version %d, none", read.Version, len(allMembers(t, st, tenantA, g.ID)), g.Version)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		st, _ := bumper(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Everyone"))
		const n = 20
		us := idsOf(createUsers(t, st, tenantA, "k", n))
		errs := make([]error, n)
		together(n, func(w int) {
			errs[w] = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
				if _, err := tx.AddMembers(ctx, tenantA, g.ID, us[w:w+1]); err != nil {
					return err
				}
				_, err := tx.(provision.GroupVersionBumper).BumpGroupVersion(ctx, tenantA, g.ID, baseTime.Add(time.Duration(w)*time.Second))
				return err
			})
		})
		for w, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v (concurrent bumps must queue, not fail)", w, err)
			}
		}
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if read.Version != g.Version+n {
			t.Errorf("after %d concurrent adds and bumps: version %d, want %d", n, read.Version, g.Version+n)
		}
		if got := allMembers(t, st, tenantA, g.ID); len(got) != n {
			t.Errorf("after %d concurrent adds: %d members", n, len(got))
		}
	})
}
