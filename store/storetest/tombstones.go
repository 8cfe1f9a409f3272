package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// tombstone marks u deleted at the given time through UpdateUser.
func tombstone(t *testing.T, st provision.Store, u provision.User, at time.Time) provision.User {
	t.Helper()
	d := u
	d.Active = false
	d.Deleted = at
	d.Modified = at
	got, err := st.UpdateUser(t.Context(), d, u.Version)
	must(t, err, "UpdateUser setting Deleted on %q", u.UserName)
	return got
}

func testTombstones(t *testing.T, s *suite) {
	t.Run("Delete", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, fullUser(tenantA, "ada"))
		live := createUser(t, st, user(tenantA, "live"))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-ada", u.ID))
		at := baseTime.Add(24 * time.Hour)
		dead := tombstone(t, st, u, at)
		if dead.Version != 2 || !dead.Deleted.Equal(at) {
			t.Errorf("UpdateUser setting Deleted returned Version %d, Deleted %v; want 2, %v", dead.Version, dead.Deleted, at)
		}
		got, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser of a tombstone (GetUser includes tombstones)")
		if d := diff(dead, got); d != "" {
			t.Errorf("GetUser of a tombstone (-want +got):\n%s", d)
		}
		if !got.IsDeleted() {
			t.Errorf("GetUser of a tombstone: IsDeleted() = false")
		}
		_, err = st.UserByUserName(t.Context(), tenantA, "ada")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName of a tombstone")
		if got, err := st.UsersByEmail(t.Context(), tenantA, "ada@example.com"); err != nil || len(got) != 0 {
			t.Errorf("UsersByEmail of a tombstone's address = %v, %v; want none", idsOf(got), err)
		}
		list, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10})
		must(t, err, "ListUsers")
		if total != 1 || !slices.Equal(idsOf(list), []string{live.ID}) {
			t.Errorf("ListUsers with a tombstone = %v (total %d), want only the live user (total 1)", idsOf(list), total)
		}
		dels, err := st.DeletedUsers(t.Context(), tenantA, at.Add(time.Second), 10)
		must(t, err, "DeletedUsers")
		if d := diff([]provision.User{dead}, dels); d != "" {
			t.Errorf("DeletedUsers (-want +got):\n%s", d)
		}
		if l, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-ada"); err != nil || l.ResourceID != u.ID {
			t.Errorf("GetLink of a tombstone's link = %+v, %v: links are kept", l, err)
		}
	})

	t.Run("ReuseUserName", func(t *testing.T) {
		st := s.store(t)
		first := createUser(t, st, user(tenantA, "ada"))
		firstDead := tombstone(t, st, first, baseTime.Add(time.Hour))
		second, err := st.CreateUser(t.Context(), user(tenantA, "ADA"))
		must(t, err, "CreateUser reusing a tombstone's userName")
		if second.ID == first.ID {
			t.Fatalf("the new user got the tombstone's ID %q", first.ID)
		}
		got, err := st.UserByUserName(t.Context(), tenantA, "ada")
		must(t, err, "UserByUserName")
		if got.ID != second.ID {
			t.Errorf("UserByUserName = %q, want the live user %q", got.ID, second.ID)
		}
		// Bringing the tombstone back while its name is taken is refused.
		revived := firstDead
		revived.Deleted = time.Time{}
		revived.Active = true
		_, err = st.UpdateUser(t.Context(), revived, firstDead.Version)
		wantErr(t, err, provision.ErrAlreadyExists, "UpdateUser clearing Deleted while another live user has the userName")
		// Two tombstones may share a userName.
		tombstone(t, st, second, baseTime.Add(2*time.Hour))
		third := createUser(t, st, user(tenantA, "Ada"))
		tombstone(t, st, third, baseTime.Add(3*time.Hour))
		// And with the name free, the first comes back.
		if _, err := st.UpdateUser(t.Context(), revived, firstDead.Version); err != nil {
			t.Errorf("UpdateUser clearing Deleted with the userName free: %v", err)
		}
		got, err = st.UserByUserName(t.Context(), tenantA, "ada")
		if err != nil || got.ID != first.ID || got.IsDeleted() {
			t.Errorf("UserByUserName after revival = %q (deleted %v), %v; want %q", got.ID, got.IsDeleted(), err, first.ID)
		}
	})

	t.Run("DeletedUsers", func(t *testing.T) {
		st := s.store(t)
		us := createUsers(t, st, tenantA, "d", 5)
		t1, t2, t3 := baseTime.Add(3*time.Hour), baseTime.Add(4*time.Hour), baseTime.Add(5*time.Hour)
		// Deleted out of creation order, to see the order is by Deleted.
		d3 := tombstone(t, st, us[0], t3)
		d1 := tombstone(t, st, us[3], t1)
		d2 := tombstone(t, st, us[1], t2)
		cases := []struct {
			before time.Time
			limit  int
			want   []provision.User
		}{
			{t3.Add(time.Second), 10, []provision.User{d1, d2, d3}},
			{t3, 10, []provision.User{d1, d2}},
			{t3.Add(time.Second), 2, []provision.User{d1, d2}},
			{t2.Add(time.Second), 1, []provision.User{d1}},
			{t1, 10, nil},
			{t3.Add(time.Second), 0, nil},
		}
		for _, c := range cases {
			got, err := st.DeletedUsers(t.Context(), tenantA, c.before, c.limit)
			must(t, err, "DeletedUsers")
			if d := diff(c.want, got); d != "" {
				t.Errorf("DeletedUsers(before %v, limit %d): deleted strictly before, oldest first (-want +got):\n%s", c.before.Format(time.TimeOnly), c.limit, d)
			}
		}
	})

	t.Run("Purge", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		keep := createUser(t, st, user(tenantA, "keep"))
		g1 := createGroup(t, st, group(tenantA, "scim-okta", "one"))
		g2 := createGroup(t, st, group(tenantA, "scim-okta", "two"))
		addMembers(t, st, tenantA, g1.ID, u.ID, keep.ID)
		addMembers(t, st, tenantA, g2.ID, u.ID)
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-ada", u.ID))
		createLink(t, st, link(tenantA, provision.ResourceUser, "ldap-corp", "uuid-ada", u.ID))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-keep", keep.ID))
		dead := tombstone(t, st, u, baseTime.Add(time.Hour))

		must(t, st.PurgeUser(t.Context(), tenantA, dead.ID), "PurgeUser")
		_, err := st.GetUser(t.Context(), tenantA, u.ID)
		wantErr(t, err, provision.ErrNotFound, "GetUser after PurgeUser")
		if got, err := st.DeletedUsers(t.Context(), tenantA, baseTime.Add(48*time.Hour), 10); err != nil || len(got) != 0 {
			t.Errorf("DeletedUsers after PurgeUser = %v, %v; want none", idsOf(got), err)
		}
		for _, l := range [][2]string{{"scim-okta", "ext-ada"}, {"ldap-corp", "uuid-ada"}} {
			_, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, l[0], l[1])
			wantErr(t, err, provision.ErrNotFound, "GetLink(%s, %s) after PurgeUser: links go with the user", l[0], l[1])
		}
		if got, err := st.LinksOf(t.Context(), tenantA, provision.ResourceUser, u.ID); err == nil && len(got) != 0 {
			t.Errorf("LinksOf a purged user = %+v, want none", got)
		}
		if got := allMembers(t, st, tenantA, g1.ID); !slices.Equal(got, []string{keep.ID}) {
			t.Errorf("members of group one after PurgeUser = %v, want [%s]", got, keep.ID)
		}
		if got := allMembers(t, st, tenantA, g2.ID); len(got) != 0 {
			t.Errorf("members of group two after PurgeUser = %v, want none", got)
		}
		if ok, _ := st.IsMember(t.Context(), tenantA, g1.ID, u.ID); ok {
			t.Errorf("IsMember(purged user) = true")
		}
		if _, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-keep"); err != nil {
			t.Errorf("GetLink of another user after PurgeUser: %v", err)
		}
		// The purged user's externalId can be linked again.
		again := createUser(t, st, user(tenantA, "ada"))
		if err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-ada", again.ID)); err != nil {
			t.Errorf("CreateLink of a purged user's externalId: %v", err)
		}
		if got, err := st.GroupsOfUser(t.Context(), tenantA, again.ID); err != nil || len(got) != 0 {
			t.Errorf("GroupsOfUser of a new user = %v, %v; want none", got, err)
		}
	})
}
