package storetest

import (
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func testLinks(t *testing.T, s *suite) {
	t.Run("CreateGet", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		lu := link(tenantA, provision.ResourceUser, "scim-okta", "00u1abcd", u.ID)
		lu.Created = baseTime.Add(time.Minute)
		lg := link(tenantA, provision.ResourceGroup, "scim-okta", "00g1abcd", g.ID)
		createLink(t, st, lu)
		createLink(t, st, lg)
		got, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "00u1abcd")
		must(t, err, "GetLink(user)")
		if d := diff(lu, got); d != "" {
			t.Errorf("GetLink(user) (-want +got):\n%s", d)
		}
		got, err = st.GetLink(t.Context(), tenantA, provision.ResourceGroup, "scim-okta", "00g1abcd")
		must(t, err, "GetLink(group)")
		if d := diff(lg, got); d != "" {
			t.Errorf("GetLink(group) (-want +got):\n%s", d)
		}
		_, err = st.GetLink(t.Context(), tenantA, provision.ResourceGroup, "scim-okta", "00u1abcd")
		wantErr(t, err, provision.ErrNotFound, "GetLink of a user's externalId as kind group")
		_, err = st.GetLink(t.Context(), tenantA, provision.ResourceUser, "saml-okta", "00u1abcd")
		wantErr(t, err, provision.ErrNotFound, "GetLink of another connection")
		_, err = st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "no-such-ext")
		wantErr(t, err, provision.ErrNotFound, "GetLink(unknown externalId)")
	})

	t.Run("LinksOf", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		other := createUser(t, st, user(tenantA, "other"))
		l1 := link(tenantA, provision.ResourceUser, "scim-okta", "okta-1", u.ID)
		l2 := link(tenantA, provision.ResourceUser, "ldap-corp", "8f2e-uuid", u.ID)
		l3 := link(tenantA, provision.ResourceUser, "saml-okta", "persistent-1", u.ID)
		createLink(t, st, l1)
		createLink(t, st, l2)
		createLink(t, st, l3)
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "okta-2", other.ID))
		got, err := st.LinksOf(t.Context(), tenantA, provision.ResourceUser, u.ID)
		must(t, err, "LinksOf")
		if d := diff([]provision.Link{l2, l3, l1}, got); d != "" {
			t.Errorf("LinksOf: every link, ordered by ConnectionID (-want +got):\n%s", d)
		}
		got, err = st.LinksOf(t.Context(), tenantA, provision.ResourceGroup, u.ID)
		if err != nil || len(got) != 0 {
			t.Errorf("LinksOf(kind group, a user's id) = %v, %v; want none", got, err)
		}
		lonely := createUser(t, st, user(tenantA, "lonely"))
		got, err = st.LinksOf(t.Context(), tenantA, provision.ResourceUser, lonely.ID)
		if err != nil || len(got) != 0 {
			t.Errorf("LinksOf(a user without links) = %v, %v; want none and no error", got, err)
		}
	})

	t.Run("Unique", func(t *testing.T) {
		st := s.store(t)
		a := createUser(t, st, user(tenantA, "a"))
		b := createUser(t, st, user(tenantA, "b"))
		ga := createGroup(t, st, group(tenantA, "scim-okta", "A"))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", a.ID))

		err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", b.ID))
		wantErr(t, err, provision.ErrAlreadyExists, "CreateLink of a taken (kind, connection, externalId)")
		err = st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", a.ID))
		wantErr(t, err, provision.ErrAlreadyExists, "CreateLink of an existing link again")
		err = st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-2", a.ID))
		wantErr(t, err, provision.ErrAlreadyExists, "CreateLink of a second externalId for the same (kind, connection, resource)")
		got, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-1")
		must(t, err, "GetLink")
		if got.ResourceID != a.ID {
			t.Errorf("a refused CreateLink changed the link: ResourceID = %q, want %q", got.ResourceID, a.ID)
		}
		_, err = st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-2")
		wantErr(t, err, provision.ErrNotFound, "GetLink of a refused link")

		// What is allowed: the same externalId in another connection or of
		// another kind, another connection for the same resource.
		for _, l := range []provision.Link{
			link(tenantA, provision.ResourceUser, "scim-entra", "ext-1", b.ID),
			link(tenantA, provision.ResourceUser, "saml-okta", "ext-9", a.ID),
			link(tenantA, provision.ResourceGroup, "scim-okta", "ext-1", ga.ID),
		} {
			if err := st.CreateLink(t.Context(), l); err != nil {
				t.Errorf("CreateLink(%+v): %v", l, err)
			}
		}
	})

	t.Run("ResourceMustExist", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", "no-such-user"))
		wantErr(t, err, provision.ErrNotFound, "CreateLink to an unknown user")
		err = st.CreateLink(t.Context(), link(tenantA, provision.ResourceGroup, "scim-okta", "ext-1", "no-such-group"))
		wantErr(t, err, provision.ErrNotFound, "CreateLink to an unknown group")
		err = st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-2", g.ID))
		wantErr(t, err, provision.ErrNotFound, "CreateLink of kind user to a group's id")
		err = st.CreateLink(t.Context(), link(tenantA, provision.ResourceGroup, "scim-okta", "ext-3", u.ID))
		wantErr(t, err, provision.ErrNotFound, "CreateLink of kind group to a user's id")
		for _, ext := range []string{"ext-1", "ext-2"} {
			_, err = st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", ext)
			wantErr(t, err, provision.ErrNotFound, "GetLink(%s) of a refused link", ext)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		v := createUser(t, st, user(tenantA, "vera"))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", u.ID))
		createLink(t, st, link(tenantA, provision.ResourceUser, "saml-okta", "ext-1", u.ID))
		must(t, st.DeleteLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-1"), "DeleteLink")
		_, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-1")
		wantErr(t, err, provision.ErrNotFound, "GetLink after DeleteLink")
		got, err := st.LinksOf(t.Context(), tenantA, provision.ResourceUser, u.ID)
		must(t, err, "LinksOf")
		if len(got) != 1 || got[0].ConnectionID != "saml-okta" {
			t.Errorf("LinksOf after DeleteLink = %+v, want only the saml-okta link", got)
		}
		if _, err := st.GetUser(t.Context(), tenantA, u.ID); err != nil {
			t.Errorf("GetUser after DeleteLink (the user stays): %v", err)
		}
		// Both keys are free again: relink the externalId to another user.
		if err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-1", v.ID)); err != nil {
			t.Errorf("CreateLink of a deleted link's externalId to another user: %v", err)
		}
		if err := st.CreateLink(t.Context(), link(tenantA, provision.ResourceUser, "scim-okta", "ext-2", u.ID)); err != nil {
			t.Errorf("CreateLink of a new externalId for the user whose link was deleted: %v", err)
		}
	})
}
