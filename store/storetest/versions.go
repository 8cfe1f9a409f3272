package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/idprov/idprov/provision"
)

func testVersions(t *testing.T, s *suite) {
	t.Run("User", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		if u.Version != 1 {
			t.Fatalf("CreateUser: Version = %d, want 1", u.Version)
		}
		cur := u
		for want := int64(2); want <= 4; want++ {
			next := cur
			next.Title = fmt.Sprintf("title %d", want)
			got, err := st.UpdateUser(t.Context(), next, cur.Version)
			must(t, err, "UpdateUser(expected %d)", cur.Version)
			if got.Version != want {
				t.Fatalf("UpdateUser(expected %d): Version = %d, want %d", cur.Version, got.Version, want)
			}
			cur = got
		}
		// cur is version 4. A stale writer sends its own copy (whose Version
		// field a careless store might trust) with the version it read.
		for _, expected := range []int64{1, 3, 5, 0, -1} {
			stale := cur
			stale.Title = "lost update"
			_, err := st.UpdateUser(t.Context(), stale, expected)
			wantErr(t, err, provision.ErrVersionConflict, "UpdateUser(expected %d) of a user at version %d", expected, cur.Version)
		}
		read, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if d := diff(cur, read); d != "" {
			t.Errorf("a refused UpdateUser changed the user (-want +got):\n%s", d)
		}
		// The Version field of the value passed in is not what counts.
		next := cur
		next.Version = 99
		got, err := st.UpdateUser(t.Context(), next, cur.Version)
		must(t, err, "UpdateUser(expected %d) with Version field 99", cur.Version)
		if got.Version != cur.Version+1 {
			t.Errorf("UpdateUser(expected %d): Version = %d, want %d (expected+1)", cur.Version, got.Version, cur.Version+1)
		}
	})

	t.Run("Group", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		if g.Version != 1 {
			t.Fatalf("CreateGroup: Version = %d, want 1", g.Version)
		}
		next := g
		next.DisplayName = "R&D"
		cur, err := st.UpdateGroup(t.Context(), next, 1)
		must(t, err, "UpdateGroup")
		if cur.Version != 2 {
			t.Fatalf("UpdateGroup: Version = %d, want 2", cur.Version)
		}
		for _, expected := range []int64{1, 3, 0} {
			stale := cur
			stale.DisplayName = "lost update"
			_, err := st.UpdateGroup(t.Context(), stale, expected)
			wantErr(t, err, provision.ErrVersionConflict, "UpdateGroup(expected %d) of a group at version 2", expected)
		}
		read, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if d := diff(cur, read); d != "" {
			t.Errorf("a refused UpdateGroup changed the group (-want +got):\n%s", d)
		}
	})

	t.Run("DeleteGroup", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		u := createUser(t, st, user(tenantA, "ada"))
		addMembers(t, st, tenantA, g.ID, u.ID)
		createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-eng", g.ID))
		next := g
		next.DisplayName = "R&D"
		_, err := st.UpdateGroup(t.Context(), next, 1)
		must(t, err, "UpdateGroup")
		for _, expected := range []int64{1, 3} {
			err := st.DeleteGroup(t.Context(), tenantA, g.ID, expected)
			wantErr(t, err, provision.ErrVersionConflict, "DeleteGroup(expected %d) of a group at version 2", expected)
		}
		if _, err := st.GetGroup(t.Context(), tenantA, g.ID); err != nil {
			t.Fatalf("GetGroup after a refused DeleteGroup: %v", err)
		}
		if got, _, err := st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 10}); err != nil || !slices.Equal(got, []string{u.ID}) {
			t.Errorf("ListMembers after a refused DeleteGroup = %v, %v; want [%s]", got, err, u.ID)
		}
		if _, err := st.GetLink(t.Context(), tenantA, provision.ResourceGroup, "scim-okta", "ext-eng"); err != nil {
			t.Errorf("GetLink after a refused DeleteGroup: %v", err)
		}
		must(t, st.DeleteGroup(t.Context(), tenantA, g.ID, 2), "DeleteGroup(expected 2)")
	})
}
