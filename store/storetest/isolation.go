package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// tenantAFixture is tenant A's data that tenant B must never reach.
type tenantAFixture struct {
	user, member, dead provision.User
	group              provision.Group
}

func seedTenantA(t *testing.T, st provision.Store) tenantAFixture {
	t.Helper()
	var f tenantAFixture
	f.user = createUser(t, st, user(tenantA, "alice"))
	f.member = createUser(t, st, user(tenantA, "amber"))
	f.dead = tombstone(t, st, createUser(t, st, user(tenantA, "arthur")), baseTime.Add(time.Hour))
	f.group = createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
	addMembers(t, st, tenantA, f.group.ID, f.member.ID)
	createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-alice", f.user.ID))
	createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-eng", f.group.ID))
	return f
}

// tenantAState is everything the suite can read of tenant A, to check that
// a write in tenant B changed none of it.
func tenantAState(t *testing.T, st provision.Store, f tenantAFixture) any {
	t.Helper()
	type state struct {
		Users      []provision.User
		Dead       provision.User
		Tombstones []provision.User
		Groups     []provision.Group
		Members    []string
		Groupsof   []string
		UserLinks  []provision.Link
		GroupLinks []provision.Link
	}
	var s state
	var err error
	s.Users = allUsers(t, st, tenantA)
	s.Dead, err = st.GetUser(t.Context(), tenantA, f.dead.ID)
	must(t, err, "GetUser(tenant A's tombstone)")
	s.Tombstones, err = st.DeletedUsers(t.Context(), tenantA, baseTime.Add(1000*time.Hour), 100)
	must(t, err, "DeletedUsers(tenant A)")
	s.Groups = allGroups(t, st, tenantA)
	s.Members = allMembers(t, st, tenantA, f.group.ID)
	s.Groupsof, err = st.GroupsOfUser(t.Context(), tenantA, f.member.ID)
	must(t, err, "GroupsOfUser(tenant A)")
	s.UserLinks, err = st.LinksOf(t.Context(), tenantA, provision.ResourceUser, f.user.ID)
	must(t, err, "LinksOf(tenant A user)")
	s.GroupLinks, err = st.LinksOf(t.Context(), tenantA, provision.ResourceGroup, f.group.ID)
	must(t, err, "LinksOf(tenant A group)")
	return s
}

func testIsolation(t *testing.T, s *suite) {
	t.Run("Reads", func(t *testing.T) {
		st := s.store(t)
		f := seedTenantA(t, st)
		bob := createUser(t, st, user(tenantB, "bob"))
		ctx := t.Context()

		for _, id := range []string{f.user.ID, f.member.ID, f.dead.ID} {
			_, err := st.GetUser(ctx, tenantB, id)
			wantErr(t, err, provision.ErrNotFound, "GetUser(tenant B, tenant A's user %s)", id)
		}
		_, err := st.UserByUserName(ctx, tenantB, "alice")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName(tenant B, tenant A's userName)")
		if got, err := st.UsersByEmail(ctx, tenantB, "alice@example.com"); err != nil || len(got) != 0 {
			t.Errorf("UsersByEmail(tenant B, tenant A's address) = %v, %v; want none", idsOf(got), err)
		}
		if got, total, err := st.ListUsers(ctx, tenantB, provision.Page{Limit: 100}); err != nil || total != 1 || !slices.Equal(idsOf(got), []string{bob.ID}) {
			t.Errorf("ListUsers(tenant B) = %v (total %d), %v; want only bob", idsOf(got), total, err)
		}
		if got, err := st.DeletedUsers(ctx, tenantB, baseTime.Add(1000*time.Hour), 100); err != nil || len(got) != 0 {
			t.Errorf("DeletedUsers(tenant B) = %v, %v; want none", idsOf(got), err)
		}
		_, err = st.GetGroup(ctx, tenantB, f.group.ID)
		wantErr(t, err, provision.ErrNotFound, "GetGroup(tenant B, tenant A's group)")
		if got, err := st.GroupsByDisplayName(ctx, tenantB, "Engineering"); err != nil || len(got) != 0 {
			t.Errorf("GroupsByDisplayName(tenant B, tenant A's name) = %v, %v; want none", idsOf(got), err)
		}
		if got, total, err := st.ListGroups(ctx, tenantB, provision.Page{Limit: 100}); err != nil || total != 0 || len(got) != 0 {
			t.Errorf("ListGroups(tenant B) = %v (total %d), %v; want none", idsOf(got), total, err)
		}
		_, _, err = st.ListMembers(ctx, tenantB, f.group.ID, provision.Page{Limit: 100})
		wantErr(t, err, provision.ErrNotFound, "ListMembers(tenant B, tenant A's group)")
		ok, err := st.IsMember(ctx, tenantB, f.group.ID, f.member.ID)
		wantErr(t, err, provision.ErrNotFound, "IsMember(tenant B, tenant A's group and member)")
		if ok {
			t.Errorf("IsMember(tenant B, tenant A's group and member) = true")
		}
		_, err = st.GroupsOfUser(ctx, tenantB, f.member.ID)
		wantErr(t, err, provision.ErrNotFound, "GroupsOfUser(tenant B, tenant A's user)")
		_, err = st.GetLink(ctx, tenantB, provision.ResourceUser, "scim-okta", "ext-alice")
		wantErr(t, err, provision.ErrNotFound, "GetLink(tenant B, tenant A's user link)")
		_, err = st.GetLink(ctx, tenantB, provision.ResourceGroup, "scim-okta", "ext-eng")
		wantErr(t, err, provision.ErrNotFound, "GetLink(tenant B, tenant A's group link)")
		if got, err := st.LinksOf(ctx, tenantB, provision.ResourceUser, f.user.ID); len(got) != 0 || (err != nil && !errors.Is(err, provision.ErrNotFound)) {
			t.Errorf("LinksOf(tenant B, tenant A's user) = %+v, %v; want none", got, err)
		}
		if got, err := st.LinksOf(ctx, tenantB, provision.ResourceGroup, f.group.ID); len(got) != 0 || (err != nil && !errors.Is(err, provision.ErrNotFound)) {
			t.Errorf("LinksOf(tenant B, tenant A's group) = %+v, %v; want none", got, err)
		}
		// And the other way round: A sees none of B.
		_, err = st.GetUser(ctx, tenantA, bob.ID)
		wantErr(t, err, provision.ErrNotFound, "GetUser(tenant A, tenant B's user)")
		_, err = st.UserByUserName(ctx, tenantA, "bob")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName(tenant A, tenant B's userName)")
	})

	t.Run("Writes", func(t *testing.T) {
		st := s.store(t)
		f := seedTenantA(t, st)
		bob := createUser(t, st, user(tenantB, "bob"))
		gb := createGroup(t, st, group(tenantB, "scim-okta", "B team"))
		before := tenantAState(t, st, f)
		ctx := t.Context()

		hijack := f.user
		hijack.TenantID = tenantB
		hijack.Title = "hijacked"
		_, err := st.UpdateUser(ctx, hijack, f.user.Version)
		wantErr(t, err, provision.ErrNotFound, "UpdateUser(tenant B, tenant A's user id)")
		hijackG := f.group
		hijackG.TenantID = tenantB
		hijackG.DisplayName = "hijacked"
		_, err = st.UpdateGroup(ctx, hijackG, f.group.Version)
		wantErr(t, err, provision.ErrNotFound, "UpdateGroup(tenant B, tenant A's group id)")
		err = st.DeleteGroup(ctx, tenantB, f.group.ID, f.group.Version)
		wantErr(t, err, provision.ErrNotFound, "DeleteGroup(tenant B, tenant A's group id)")
		_, err = st.AddMembers(ctx, tenantB, f.group.ID, []string{bob.ID})
		wantErr(t, err, provision.ErrNotFound, "AddMembers(tenant B, tenant A's group, tenant B's user)")
		_, err = st.AddMembers(ctx, tenantB, gb.ID, []string{f.user.ID})
		wantErr(t, err, provision.ErrNotFound, "AddMembers(tenant B, tenant B's group, tenant A's user)")
		_, err = st.AddMembers(ctx, tenantA, f.group.ID, []string{f.user.ID, bob.ID})
		wantErr(t, err, provision.ErrNotFound, "AddMembers(tenant A, tenant A's group, [tenant A's user, tenant B's user])")
		_, err = st.RemoveMembers(ctx, tenantB, f.group.ID, []string{f.member.ID})
		wantErr(t, err, provision.ErrNotFound, "RemoveMembers(tenant B, tenant A's group)")
		err = st.CreateLink(ctx, link(tenantB, provision.ResourceUser, "scim-okta", "ext-steal", f.user.ID))
		wantErr(t, err, provision.ErrNotFound, "CreateLink(tenant B, to tenant A's user)")
		err = st.CreateLink(ctx, link(tenantB, provision.ResourceGroup, "scim-okta", "ext-steal", f.group.ID))
		wantErr(t, err, provision.ErrNotFound, "CreateLink(tenant B, to tenant A's group)")
		_ = st.DeleteLink(ctx, tenantB, provision.ResourceUser, "scim-okta", "ext-alice")
		_ = st.DeleteLink(ctx, tenantB, provision.ResourceGroup, "scim-okta", "ext-eng")
		if err := st.PurgeUser(ctx, tenantB, f.dead.ID); err != nil && !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("PurgeUser(tenant B, tenant A's tombstone) = %v, want ErrNotFound or nil", err)
		}

		if d := diff(before, tenantAState(t, st, f)); d != "" {
			t.Errorf("writes in tenant B changed tenant A (-before +after):\n%s", d)
		}
		if got := allMembers(t, st, tenantB, gb.ID); len(got) != 0 {
			t.Errorf("tenant B's group has members %v after refused AddMembers", got)
		}
		if _, err := st.GetLink(ctx, tenantB, provision.ResourceUser, "scim-okta", "ext-steal"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("GetLink(tenant B) of a refused cross-tenant link: %v, want ErrNotFound", err)
		}
	})

	t.Run("SameNames", func(t *testing.T) {
		st := s.store(t)
		ua := createUser(t, st, user(tenantA, "alice"))
		ub := createUser(t, st, user(tenantB, "ALICE"))
		ga := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		gb := createGroup(t, st, group(tenantB, "scim-okta", "Engineering"))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", ua.ID))
		if err := st.CreateLink(t.Context(), link(tenantB, provision.ResourceUser, "scim-okta", "ext-1", ub.ID)); err != nil {
			t.Errorf("CreateLink of the same (kind, connection, externalId) in another tenant: %v", err)
		}
		for _, c := range []struct {
			tenant    string
			user      provision.User
			group     provision.Group
			otherUser string
		}{{tenantA, ua, ga, ub.ID}, {tenantB, ub, gb, ua.ID}} {
			got, err := st.UserByUserName(t.Context(), c.tenant, "alice")
			if err != nil || got.ID != c.user.ID {
				t.Errorf("UserByUserName(%s, alice) = %q, %v; want %q", c.tenant, got.ID, err, c.user.ID)
			}
			gs, err := st.GroupsByDisplayName(t.Context(), c.tenant, "engineering")
			if err != nil || !slices.Equal(idsOf(gs), []string{c.group.ID}) {
				t.Errorf("GroupsByDisplayName(%s) = %v, %v; want [%s]", c.tenant, idsOf(gs), err, c.group.ID)
			}
			us, err := st.UsersByEmail(t.Context(), c.tenant, "alice@example.com")
			if err != nil || !slices.Equal(idsOf(us), []string{c.user.ID}) {
				t.Errorf("UsersByEmail(%s) = %v, %v; want [%s]", c.tenant, idsOf(us), err, c.user.ID)
			}
			l, err := st.GetLink(t.Context(), c.tenant, provision.ResourceUser, "scim-okta", "ext-1")
			if err != nil || l.ResourceID != c.user.ID {
				t.Errorf("GetLink(%s, ext-1) = %q, %v; want %q", c.tenant, l.ResourceID, err, c.user.ID)
			}
		}
	})

	t.Run("SameIDs", func(t *testing.T) {
		// A caller-chosen ID is unique within its tenant only: the same ID
		// in two tenants names two resources.
		st := s.store(t)
		ina, inb := user(tenantA, "alice"), user(tenantB, "bob")
		ina.ID, inb.ID = "user-1", "user-1"
		ua := createUser(t, st, ina)
		ub, err := st.CreateUser(t.Context(), inb)
		must(t, err, "CreateUser with an ID used in another tenant")
		gaIn, gbIn := group(tenantA, "scim-okta", "A"), group(tenantB, "scim-okta", "B")
		gaIn.ID, gbIn.ID = "group-1", "group-1"
		ga := createGroup(t, st, gaIn)
		gb, err := st.CreateGroup(t.Context(), gbIn)
		must(t, err, "CreateGroup with an ID used in another tenant")
		addMembers(t, st, tenantA, ga.ID, ua.ID)

		if got, err := st.GetUser(t.Context(), tenantB, "user-1"); err != nil || got.UserName != "bob" {
			t.Errorf("GetUser(tenant B, user-1) = %q, %v; want bob", got.UserName, err)
		}
		next := ub
		next.Title = "B's title"
		ub, err = st.UpdateUser(t.Context(), next, ub.Version)
		must(t, err, "UpdateUser(tenant B, user-1)")
		if got, err := st.GetUser(t.Context(), tenantA, "user-1"); err != nil || got.Title != "" || got.Version != 1 {
			t.Errorf("GetUser(tenant A, user-1) after updating tenant B's user-1 = %+v, %v; want it unchanged", got, err)
		}
		if got, _, err := st.ListMembers(t.Context(), tenantB, gb.ID, provision.Page{Limit: 10}); err != nil || len(got) != 0 {
			t.Errorf("ListMembers(tenant B, group-1) = %v, %v; want none (the member is in tenant A's group-1)", got, err)
		}
		if ok, err := st.IsMember(t.Context(), tenantB, "group-1", "user-1"); err != nil || ok {
			t.Errorf("IsMember(tenant B, group-1, user-1) = %v, %v; want false", ok, err)
		}
		must(t, st.DeleteGroup(t.Context(), tenantB, "group-1", 1), "DeleteGroup(tenant B, group-1)")
		if got, err := st.GetGroup(t.Context(), tenantA, "group-1"); err != nil || got.DisplayName != "A" {
			t.Errorf("GetGroup(tenant A, group-1) after deleting tenant B's group-1 = %+v, %v", got, err)
		}
		if got := allMembers(t, st, tenantA, "group-1"); !slices.Equal(got, []string{"user-1"}) {
			t.Errorf("members of tenant A's group-1 after deleting tenant B's = %v", got)
		}
		tombstone(t, st, ub, baseTime.Add(time.Hour))
		if err := st.PurgeUser(t.Context(), tenantB, "user-1"); err != nil {
			t.Errorf("PurgeUser(tenant B, user-1): %v", err)
		}
		if got, err := st.GetUser(t.Context(), tenantA, "user-1"); err != nil || got.UserName != "alice" {
			t.Errorf("GetUser(tenant A, user-1) after purging tenant B's user-1 = %q, %v; want alice", got.UserName, err)
		}
	})
}
