package storetest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func testGroups(t *testing.T, s *suite) {
	t.Run("CreateGet", func(t *testing.T) {
		st := s.store(t)
		in := group(tenantA, "scim-okta", "Engineering")
		in.Modified = baseTime.Add(time.Minute)
		got, err := st.CreateGroup(t.Context(), in)
		must(t, err, "CreateGroup")
		if got.ID == "" {
			t.Fatal("CreateGroup did not assign an ID")
		}
		want := in
		want.ID, want.Version = got.ID, 1
		if d := diff(want, got); d != "" {
			t.Errorf("CreateGroup returned (-want +got):\n%s", d)
		}
		read, err := st.GetGroup(t.Context(), tenantA, got.ID)
		must(t, err, "GetGroup")
		if d := diff(want, read); d != "" {
			t.Errorf("GetGroup after CreateGroup (-want +got):\n%s", d)
		}
		other := createGroup(t, st, group(tenantA, "scim-okta", "Sales"))
		if other.ID == got.ID {
			t.Errorf("two groups got the same ID %q", got.ID)
		}
	})

	t.Run("ExplicitID", func(t *testing.T) {
		st := s.store(t)
		in := group(tenantA, "scim-okta", "Engineering")
		in.ID = "group-explicit-1"
		got := createGroup(t, st, in)
		if got.ID != in.ID {
			t.Fatalf("CreateGroup with ID %q: got ID %q, want it kept", in.ID, got.ID)
		}
		again := group(tenantA, "scim-okta", "Sales")
		again.ID = in.ID
		_, err := st.CreateGroup(t.Context(), again)
		wantErr(t, err, provision.ErrAlreadyExists, "CreateGroup with an ID already used in the tenant")
		read, err := st.GetGroup(t.Context(), tenantA, in.ID)
		must(t, err, "GetGroup")
		if read.DisplayName != "Engineering" {
			t.Errorf("a refused CreateGroup changed the existing group: DisplayName = %q", read.DisplayName)
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		st := s.store(t)
		createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		_, err := st.GetGroup(t.Context(), tenantA, "no-such-id")
		wantErr(t, err, provision.ErrNotFound, "GetGroup(unknown id)")
		got, err := st.GroupsByDisplayName(t.Context(), tenantA, "Nobody")
		if err != nil || len(got) != 0 {
			t.Errorf("GroupsByDisplayName(unknown) = %v, %v; want no groups and no error", idsOf(got), err)
		}
	})

	t.Run("GroupsByDisplayName", func(t *testing.T) {
		st := s.store(t)
		okta := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		entra := createGroup(t, st, group(tenantA, "scim-entra", "ENGINEERING"))
		createGroup(t, st, group(tenantA, "scim-okta", "Engineering Managers"))
		want := []provision.Group{okta, entra}
		slices.SortFunc(want, func(x, y provision.Group) int { return compareStrings(x.ID, y.ID) })
		for _, q := range []string{"Engineering", "engineering", "ENGINEERING"} {
			got, err := st.GroupsByDisplayName(t.Context(), tenantA, q)
			must(t, err, "GroupsByDisplayName(%q)", q)
			if d := diff(want, got); d != "" {
				t.Errorf("GroupsByDisplayName(%q): one group per owner, in ID order (-want +got):\n%s", q, d)
			}
		}
	})

	t.Run("Update", func(t *testing.T) {
		st := s.store(t)
		orig := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		next := orig
		next.DisplayName = "R&D"
		next.Attributes = map[string]json.RawMessage{"costCenter": json.RawMessage(`"CC-7"`)}
		next.Modified = baseTime.Add(time.Hour)
		got, err := st.UpdateGroup(t.Context(), next, 1)
		must(t, err, "UpdateGroup")
		want := next
		want.Version = 2
		if d := diff(want, got); d != "" {
			t.Errorf("UpdateGroup returned (-want +got):\n%s", d)
		}
		read, err := st.GetGroup(t.Context(), tenantA, orig.ID)
		must(t, err, "GetGroup")
		if d := diff(want, read); d != "" {
			t.Errorf("GetGroup after UpdateGroup (-want +got):\n%s", d)
		}
		if got, err := st.GroupsByDisplayName(t.Context(), tenantA, "engineering"); err != nil || len(got) != 0 {
			t.Errorf("GroupsByDisplayName(old name) = %v, %v; want none", idsOf(got), err)
		}
		if got, err := st.GroupsByDisplayName(t.Context(), tenantA, "r&d"); err != nil || len(got) != 1 || got[0].ID != orig.ID {
			t.Errorf("GroupsByDisplayName(new name) = %v, %v; want [%s]", idsOf(got), err, orig.ID)
		}
		if got, err := st.UpdateGroup(t.Context(), next, 2); err != nil || got.Version != 3 {
			t.Errorf("second UpdateGroup: Version %d, %v; want 3", got.Version, err)
		}
	})

	t.Run("UpdateUnknown", func(t *testing.T) {
		st := s.store(t)
		g := group(tenantA, "scim-okta", "Ghosts")
		g.ID = "no-such-id"
		_, err := st.UpdateGroup(t.Context(), g, 1)
		wantErr(t, err, provision.ErrNotFound, "UpdateGroup(unknown id)")
		err = st.DeleteGroup(t.Context(), tenantA, "no-such-id", 1)
		wantErr(t, err, provision.ErrNotFound, "DeleteGroup(unknown id)")
	})

	t.Run("UniqueDisplayName", func(t *testing.T) {
		st := s.store(t)
		eng := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		sales := createGroup(t, st, group(tenantA, "scim-okta", "Sales"))
		for _, name := range []string{"Engineering", "engineering", "ENGINEERING"} {
			_, err := st.CreateGroup(t.Context(), group(tenantA, "scim-okta", name))
			wantErr(t, err, provision.ErrAlreadyExists, "CreateGroup(%q) of the same owner", name)
		}
		if _, err := st.CreateGroup(t.Context(), group(tenantA, "ldap-corp", "engineering")); err != nil {
			t.Errorf("CreateGroup(engineering) of another owner: %v", err)
		}
		if _, err := st.CreateGroup(t.Context(), group(tenantB, "scim-okta", "Engineering")); err != nil {
			t.Errorf("CreateGroup(Engineering) of the same owner in another tenant: %v", err)
		}
		renamed := sales
		renamed.DisplayName = "ENGINEERING"
		_, err := st.UpdateGroup(t.Context(), renamed, sales.Version)
		wantErr(t, err, provision.ErrAlreadyExists, "UpdateGroup renaming Sales to ENGINEERING (same owner)")
		read, err := st.GetGroup(t.Context(), tenantA, sales.ID)
		must(t, err, "GetGroup")
		if d := diff(sales, read); d != "" {
			t.Errorf("a refused rename changed the group (-want +got):\n%s", d)
		}
		self := eng
		self.DisplayName = "ENGINEERING"
		if _, err := st.UpdateGroup(t.Context(), self, eng.Version); err != nil {
			t.Errorf("UpdateGroup changing only the case of its own displayName: %v", err)
		}
		moved := sales
		moved.Owner = "ldap-corp"
		moved.DisplayName = "Engineering"
		_, err = st.UpdateGroup(t.Context(), moved, sales.Version)
		wantErr(t, err, provision.ErrAlreadyExists, "UpdateGroup moving Sales to owner ldap-corp as Engineering, which ldap-corp has")
	})

	t.Run("Delete", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		keep := createGroup(t, st, group(tenantA, "scim-okta", "Sales"))
		u := createUser(t, st, user(tenantA, "ada"))
		addMembers(t, st, tenantA, g.ID, u.ID)
		addMembers(t, st, tenantA, keep.ID, u.ID)
		createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-eng", g.ID))
		createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-sales", keep.ID))

		must(t, st.DeleteGroup(t.Context(), tenantA, g.ID, 1), "DeleteGroup")
		_, err := st.GetGroup(t.Context(), tenantA, g.ID)
		wantErr(t, err, provision.ErrNotFound, "GetGroup after DeleteGroup")
		if got, err := st.GroupsByDisplayName(t.Context(), tenantA, "Engineering"); err != nil || len(got) != 0 {
			t.Errorf("GroupsByDisplayName after DeleteGroup = %v, %v; want none", idsOf(got), err)
		}
		if got, total, err := st.ListGroups(t.Context(), tenantA, provision.Page{Limit: 10}); err != nil || total != 1 || len(got) != 1 || got[0].ID != keep.ID {
			t.Errorf("ListGroups after DeleteGroup = %v (total %d), %v; want [%s]", idsOf(got), total, err, keep.ID)
		}
		if got, err := st.GroupsOfUser(t.Context(), tenantA, u.ID); err != nil || !slices.Equal(got, []string{keep.ID}) {
			t.Errorf("GroupsOfUser after DeleteGroup = %v, %v; want [%s]: memberships go with the group", got, err, keep.ID)
		}
		_, _, err = st.ListMembers(t.Context(), tenantA, g.ID, provision.Page{Limit: 10})
		wantErr(t, err, provision.ErrNotFound, "ListMembers of a deleted group")
		_, err = st.GetLink(t.Context(), tenantA, provision.ResourceGroup, "scim-okta", "ext-eng")
		wantErr(t, err, provision.ErrNotFound, "GetLink of a deleted group: links go with the group")
		if got, err := st.LinksOf(t.Context(), tenantA, provision.ResourceGroup, g.ID); err == nil && len(got) != 0 {
			t.Errorf("LinksOf a deleted group = %v, want none", got)
		}
		if _, err := st.GetLink(t.Context(), tenantA, provision.ResourceGroup, "scim-okta", "ext-sales"); err != nil {
			t.Errorf("GetLink of another group after DeleteGroup: %v", err)
		}
		// The external id and the name are free again.
		g2 := createGroup(t, st, group(tenantA, "scim-okta", "engineering"))
		if err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceGroup, "scim-okta", "ext-eng", g2.ID)); err != nil {
			t.Errorf("CreateLink reusing a deleted group's externalId: %v", err)
		}
		if got, _, err := st.ListMembers(t.Context(), tenantA, g2.ID, provision.Page{Limit: 10}); err != nil || len(got) != 0 {
			t.Errorf("ListMembers of a new group = %v, %v; want none", got, err)
		}
		err = st.DeleteGroup(t.Context(), tenantA, g.ID, 1)
		wantErr(t, err, provision.ErrNotFound, "DeleteGroup twice")
	})

	t.Run("DeepCopy", func(t *testing.T) {
		st := s.store(t)
		in := group(tenantA, "scim-okta", "Engineering")
		created := createGroup(t, st, in)
		want := created
		want.Attributes = map[string]json.RawMessage{"description": json.RawMessage(`"the Engineering group"`)}
		scribble := func(g *provision.Group) {
			for k, v := range g.Attributes {
				for i := range v {
					v[i] = ' '
				}
				g.Attributes[k] = v
			}
			if g.Attributes != nil {
				g.Attributes["added"] = json.RawMessage(`1`)
			}
		}
		check := func(what string) {
			t.Helper()
			read, err := st.GetGroup(t.Context(), tenantA, created.ID)
			must(t, err, "GetGroup")
			if d := diff(want, read); d != "" {
				t.Errorf("changing %s changed the stored group (-want +got):\n%s", what, d)
			}
		}
		scribble(&in)
		check("the Group passed to CreateGroup")
		scribble(&created)
		check("the Group CreateGroup returned")
		got, err := st.GetGroup(t.Context(), tenantA, want.ID)
		must(t, err, "GetGroup")
		scribble(&got)
		check("the Group GetGroup returned")
		list, _, err := st.ListGroups(t.Context(), tenantA, provision.Page{Limit: 10})
		must(t, err, "ListGroups")
		for i := range list {
			scribble(&list[i])
		}
		check("the Groups ListGroups returned")
		list, err = st.GroupsByDisplayName(t.Context(), tenantA, "Engineering")
		must(t, err, "GroupsByDisplayName")
		for i := range list {
			scribble(&list[i])
		}
		check("the Groups GroupsByDisplayName returned")
	})
}
