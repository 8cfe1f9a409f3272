package provision_test

import (
	"context"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// TestPairedSAMLMatchesByDefault: a SAML connection paired with a SCIM
// directory and no Match rules signs in the directory's users (SCIM and SSO
// from one IdP, out of the box); users of another directory of the tenant,
// of another tenant, or of a SAML connection with no pairing stay out of
// reach; Match: none opts out.
func TestPairedSAMLMatchesByDefault(t *testing.T) {
	ctx := context.Background()
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{
		{ID: "acme", Connections: []provision.Connection{
			{ID: "okta", Kind: provision.KindSCIM},
			{ID: "entra", Kind: provision.KindSCIM},
			{ID: "sso", Kind: provision.KindSAML, PairedWith: "okta"},
			{ID: "sso-unpaired", Kind: provision.KindSAML},
			{ID: "sso-none", Kind: provision.KindSAML, PairedWith: "okta", Match: []provision.MatchRule{provision.MatchNone}},
		}},
		{ID: "globex", Connections: []provision.Connection{
			{ID: "okta", Kind: provision.KindSCIM},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	create := func(o provision.Origin, userName, ext string) provision.User {
		t.Helper()
		u, err := e.CreateUser(ctx, o, provision.User{UserName: userName, ExternalID: ext, Active: true})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	ada := create(provision.Origin{TenantID: "acme", ConnectionID: "okta"}, "ada@acme.test", "00u1")
	eve := create(provision.Origin{TenantID: "acme", ConnectionID: "entra"}, "eve@acme.test", "e-eve")
	gil := create(provision.Origin{TenantID: "globex", ConnectionID: "okta"}, "gil@globex.test", "00u9")

	login := func(conn, ext, userName string) provision.User {
		t.Helper()
		u, _, err := e.ProvisionIdentity(ctx, provision.Origin{TenantID: "acme", ConnectionID: conn},
			provision.Identity{ExternalID: ext, User: provision.User{UserName: userName, Active: true}},
			provision.ProvisionOptions{Create: true})
		if err != nil {
			t.Fatalf("%s login of %s: %v", conn, ext, err)
		}
		return u
	}
	if got := login("sso", "00u1", "ada@acme.test"); got.ID != ada.ID {
		t.Errorf("paired SSO of the directory's externalId made user %s (%s), want the SCIM user %s", got.ID, got.UserName, ada.ID)
	}
	if got := login("sso", "e-eve", "eve.sso@acme.test"); got.ID == eve.ID {
		t.Error("paired SSO reached a user of another directory of the tenant")
	}
	if got := login("sso", "00u9", "gil.sso@acme.test"); got.ID == gil.ID || got.UserName != "gil.sso@acme.test" {
		t.Errorf("paired SSO reached another tenant's user: %+v", got)
	}
	if got := login("sso-unpaired", "00u1", "ada.unpaired@acme.test"); got.ID == ada.ID {
		t.Error("a SAML connection with no PairedWith matched the directory's user")
	}
	if got := login("sso-none", "00u1", "ada.none@acme.test"); got.ID == ada.ID {
		t.Error("Match: none still matched the paired directory's user")
	}
}
