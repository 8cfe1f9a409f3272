package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func testMembers(t *testing.T, s *suite) {
	t.Run("AddListRemove", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		us := idsOf(createUsers(t, st, tenantA, "m", 5))

		added := addMembers(t, st, tenantA, g.ID, us[2], us[0], us[1])
		if want := []string{us[2], us[0], us[1]}; !slices.Equal(added, want) {
			t.Errorf("AddMembers returned %v, want the new members in the order given %v", added, want)
		}
		added = addMembers(t, st, tenantA, g.ID, us[1], us[3], us[0])
		if want := []string{us[3]}; !slices.Equal(added, want) {
			t.Errorf("AddMembers with two existing members returned %v, want only the new one %v", added, want)
		}
		added = addMembers(t, st, tenantA, g.ID, us[0])
		if len(added) != 0 {
			t.Errorf("AddMembers of an existing member returned %v, want none", added)
		}
		got, total, err := st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 100})
		must(t, err, "ListMembers")
		if want := sorted(us[:4]); total != 4 || !slices.Equal(sorted(got), want) {
			t.Errorf("ListMembers = %v (total %d), want %v (total 4)", got, total, want)
		}
		for i, id := range us {
			ok, err := st.IsMember(t.Context(), tenantA, g.ID, id)
			must(t, err, "IsMember")
			if ok != (i < 4) {
				t.Errorf("IsMember(user %d) = %v, want %v", i, ok, i < 4)
			}
		}

		removed, err := st.RemoveMembers(t.Context(), tenantA, g.ID, []string{us[4], us[3], us[0]})
		must(t, err, "RemoveMembers")
		if want := []string{us[3], us[0]}; !slices.Equal(removed, want) {
			t.Errorf("RemoveMembers returned %v, want the former members in the order given %v", removed, want)
		}
		removed, err = st.RemoveMembers(t.Context(), tenantA, g.ID, []string{us[3]})
		if err != nil || len(removed) != 0 {
			t.Errorf("RemoveMembers of a non-member = %v, %v; want none and no error", removed, err)
		}
		got, total, err = st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 100})
		must(t, err, "ListMembers")
		if want := sorted([]string{us[1], us[2]}); total != 2 || !slices.Equal(sorted(got), want) {
			t.Errorf("ListMembers after RemoveMembers = %v (total %d), want %v", got, total, want)
		}
		if ok, err := st.IsMember(t.Context(), tenantA, g.ID, us[0]); err != nil || ok {
			t.Errorf("IsMember(removed) = %v, %v; want false", ok, err)
		}
	})

	t.Run("GroupsOfUser", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		loner := createUser(t, st, user(tenantA, "loner"))
		var gs []string
		for _, name := range []string{"c", "a", "b", "d"} {
			gs = append(gs, createGroup(t, st, group(tenantA, "scim-okta", name)).ID)
		}
		for _, g := range gs[:3] {
			addMembers(t, st, tenantA, g, u.ID)
		}
		got, err := st.GroupsOfUser(t.Context(), tenantA, u.ID)
		must(t, err, "GroupsOfUser")
		if want := sorted(gs[:3]); !slices.Equal(got, want) {
			t.Errorf("GroupsOfUser = %v, want %v (in ID order)", got, want)
		}
		got, err = st.GroupsOfUser(t.Context(), tenantA, loner.ID)
		if err != nil || len(got) != 0 {
			t.Errorf("GroupsOfUser(user in no group) = %v, %v; want none and no error", got, err)
		}
		_, err = st.GroupsOfUser(t.Context(), tenantA, "no-such-user")
		wantErr(t, err, provision.ErrNotFound, "GroupsOfUser(unknown user)")
	})

	t.Run("Unknown", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		us := idsOf(createUsers(t, st, tenantA, "m", 3))
		addMembers(t, st, tenantA, g.ID, us[0])

		_, err := st.AddMembers(t.Context(), tenantA, "no-such-group", us)
		wantErr(t, err, provision.ErrNotFound, "AddMembers to an unknown group")
		_, err = st.AddMembers(t.Context(), tenantA, g.ID, []string{us[1], "no-such-user", us[2]})
		wantErr(t, err, provision.ErrNotFound, "AddMembers with one unknown user")
		got, total, err := st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 10})
		must(t, err, "ListMembers")
		if total != 1 || !slices.Equal(got, []string{us[0]}) {
			t.Errorf("after AddMembers with one unknown user, members = %v (total %d), want only %v: nothing may be added", got, total, us[:1])
		}
		_, err = st.RemoveMembers(t.Context(), tenantA, "no-such-group", us)
		wantErr(t, err, provision.ErrNotFound, "RemoveMembers from an unknown group")
		_, _, err = st.ListMembers(t.Context(), tenantA, "no-such-group", provision.Page{Limit: 10})
		wantErr(t, err, provision.ErrNotFound, "ListMembers of an unknown group")
		_, err = st.IsMember(t.Context(), tenantA, "no-such-group", us[0])
		wantErr(t, err, provision.ErrNotFound, "IsMember of an unknown group")
		if ok, err := st.IsMember(t.Context(), tenantA, g.ID, "no-such-user"); ok {
			t.Errorf("IsMember(unknown user) = true, %v", err)
		}
	})

	t.Run("NoVersionBump", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		u := createUser(t, st, user(tenantA, "ada"))
		addMembers(t, st, tenantA, g.ID, u.ID)
		_, err := st.RemoveMembers(t.Context(), tenantA, g.ID, []string{u.ID})
		must(t, err, "RemoveMembers")
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if d := diff(g, read); d != "" {
			t.Errorf("membership changes must not change the group (-want +got):\n%s", d)
		}
		ru, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if d := diff(u, ru); d != "" {
			t.Errorf("membership changes must not change the user (-want +got):\n%s", d)
		}
	})

	t.Run("TenThousand", func(t *testing.T) {
		const n, batch = 10000, 500
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Everyone"))
		small := createGroup(t, st, group(tenantA, "scim-okta", "Few"))
		want := make([]string, 0, n)
		for b := 0; b < n; b += batch {
			var created []string
			err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
				created = created[:0]
				for i := b; i < b+batch; i++ {
					u, err := tx.CreateUser(ctx, user(tenantA, fmt.Sprintf("big-%05d", i)))
					if err != nil {
						return err
					}
					created = append(created, u.ID)
				}
				return nil
			})
			must(t, err, "creating users %d..%d", b, b+batch)
			added := addMembers(t, st, tenantA, g.ID, created...)
			if len(added) != len(created) {
				t.Fatalf("AddMembers of %d new members returned %d", len(created), len(added))
			}
			want = append(want, created...)
		}
		addMembers(t, st, tenantA, small.ID, want[0], want[n-1])

		_, total, err := st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{})
		must(t, err, "ListMembers(limit 0)")
		if total != n {
			t.Errorf("ListMembers total = %d, want %d", total, n)
		}
		got := allMembers(t, st, tenantA, g.ID)
		if !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("ListMembers of the %d-member group returned %d ids, not the members added", n, len(got))
		}
		for _, id := range []string{want[0], want[n/2], want[n-1]} {
			if ok, err := st.IsMember(t.Context(), tenantA, g.ID, id); err != nil || !ok {
				t.Errorf("IsMember(%s) = %v, %v; want true", id, ok, err)
			}
		}
		removed, err := st.RemoveMembers(t.Context(), tenantA, g.ID, want[:100])
		must(t, err, "RemoveMembers")
		if len(removed) != 100 {
			t.Errorf("RemoveMembers of 100 members returned %d", len(removed))
		}
		if _, total, err := st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 1}); err != nil || total != n-100 {
			t.Errorf("ListMembers total after removing 100 = %d, %v; want %d", total, err, n-100)
		}
		if got, err := st.GroupsOfUser(t.Context(), tenantA, want[n-1]); err != nil || !slices.Equal(got, sorted([]string{g.ID, small.ID})) {
			t.Errorf("GroupsOfUser(a member of both) = %v, %v", got, err)
		}
		if got, total, err := st.ListMembers(t.Context(), tenantA, small.ID, provision.Page{Limit: 10}); err != nil || total != 2 || len(got) != 2 {
			t.Errorf("ListMembers of the small group = %v (total %d), %v; want 2", got, total, err)
		}
	})
}

// testMembershipVersion checks what the engine relies on to make a
// group's version follow its membership at O(1) cost: AddMembers and
// RemoveMembers leave Version alone, and an UpdateGroup of the group
// alone (only Modified changed) in the same transaction bumps it, keeps
// every member, and commits or rolls back together with the membership.
func testMembershipVersion(t *testing.T, s *suite) {
	t.Run("BumpWithMembership", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		us := idsOf(createUsers(t, st, tenantA, "v", 3))
		addMembers(t, st, tenantA, g.ID, us[0])
		if cur, err := st.GetGroup(t.Context(), tenantA, g.ID); err != nil || cur.Version != g.Version {
			t.Fatalf("after AddMembers alone: GetGroup = version %d, %v; want version %d (members do not bump Version by themselves)", cur.Version, err, g.Version)
		}
		var bumped provision.Group
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			if _, err := tx.AddMembers(ctx, tenantA, g.ID, []string{us[1]}); err != nil {
				return err
			}
			next := g
			next.Modified = g.Modified.Add(time.Second)
			var err error
			bumped, err = tx.UpdateGroup(ctx, next, g.Version)
			return err
		})
		must(t, err, "Atomically(AddMembers, UpdateGroup)")
		if bumped.Version != g.Version+1 {
			t.Errorf("UpdateGroup after AddMembers: Version = %d, want %d", bumped.Version, g.Version+1)
		}
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if read.Version != g.Version+1 || !read.Modified.Equal(g.Modified.Add(time.Second)) {
			t.Errorf("GetGroup = version %d, modified %v; want version %d, modified %v", read.Version, read.Modified, g.Version+1, g.Modified.Add(time.Second))
		}
		if got, want := sorted(allMembers(t, st, tenantA, g.ID)), sorted(us[:2]); !slices.Equal(got, want) {
			t.Errorf("members after UpdateGroup = %v, want %v (UpdateGroup must not touch members)", got, want)
		}

		// A stale expected version (a concurrent membership change
		// committed first) refuses the whole transaction.
		err = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			if _, err := tx.AddMembers(ctx, tenantA, g.ID, []string{us[2]}); err != nil {
				return err
			}
			_, err := tx.UpdateGroup(ctx, g, g.Version)
			return err
		})
		wantErr(t, err, provision.ErrVersionConflict, "Atomically(AddMembers, UpdateGroup at a stale version)")
		if got, want := sorted(allMembers(t, st, tenantA, g.ID)), sorted(us[:2]); !slices.Equal(got, want) {
			t.Errorf("members after a refused transaction = %v, want %v (rolled back)", got, want)
		}
		if read, err := st.GetGroup(t.Context(), tenantA, g.ID); err != nil || read.Version != g.Version+1 {
			t.Errorf("GetGroup after a refused transaction = version %d, %v; want %d", read.Version, err, g.Version+1)
		}
	})
}
