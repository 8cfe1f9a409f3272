package provision_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// The engine applies a directory's lifecycle intents and records them as
// events: here an onboarding, a promotion and an offboarding.
func Example() {
	ctx := context.Background()
	engine, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{
			ID:          "acme",
			Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}},
		}},
	})
	if err != nil {
		panic(err)
	}
	okta := provision.Origin{TenantID: "acme", ConnectionID: "okta"}

	ada, err := engine.CreateUser(ctx, okta, provision.User{
		UserName:   "ada@acme.example",
		ExternalID: "00u1ada",
		Name:       provision.Name{GivenName: "Ada", FamilyName: "Lovelace"},
		Active:     true,
	})
	if err != nil {
		panic(err)
	}
	admins, _ := engine.CreateGroup(ctx, okta, provision.Group{DisplayName: "Admins"}, nil)
	if _, _, err := engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{ada.ID}}); err != nil {
		panic(err)
	}
	if _, err := engine.DeactivateUser(ctx, okta, ada.ID); err != nil {
		panic(err)
	}

	events, _ := engine.Events(ctx, "acme", 0, 100)
	for _, ev := range events {
		fmt.Println(ev.Seq, ev.Kind, ev.Fields)
	}
	// Output:
	// 1 user.created []
	// 2 group.created []
	// 3 group.members_added []
	// 4 user.deactivated [active]
}

// A SAML login resolves to the user a SCIM directory created, through the
// pairing of the two connections: the directory's externalId is the IdP's
// user id, which the login asserts as its subject.
func ExampleEngine_ProvisionIdentity() {
	ctx := context.Background()
	engine, _ := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{
			ID: "acme",
			Connections: []provision.Connection{
				{ID: "entra", Kind: provision.KindSCIM},
				{ID: "sso", Kind: provision.KindSAML, Match: []provision.MatchRule{provision.MatchPairedExternalID}, PairedWith: "entra"},
			},
		}},
	})
	created, _ := engine.CreateUser(ctx, provision.Origin{TenantID: "acme", ConnectionID: "entra"},
		provision.User{UserName: "grace@acme.example", ExternalID: "5b50c1d2", Active: true})

	login := provision.Identity{ExternalID: "5b50c1d2", User: provision.User{UserName: "grace@acme.example", Active: true}}
	u, result, err := engine.ProvisionIdentity(ctx, provision.Origin{TenantID: "acme", ConnectionID: "sso"}, login,
		provision.ProvisionOptions{Create: true})
	fmt.Println(u.ID == created.ID, result, err)
	// Output: true linked <nil>
}

// A tenant onboarded at run time: registered in the store's Registry with
// a SCIM directory, served by every engine sharing the store.
func ExampleEngine_PutConnection() {
	ctx := context.Background()
	key := make([]byte, 32) // in production: 32 random bytes from your secret manager
	engine, err := provision.NewEngine(provision.Config{Store: memstore.New(), SecretKeys: []provision.SecretKey{{ID: "k1", Key: key}}})
	if err != nil {
		panic(err)
	}
	if _, err := engine.PutTenant(ctx, provision.Tenant{ID: "globex", Name: "Globex", VerifiedDomains: []string{"globex.example"}}, "onboarding"); err != nil {
		panic(err)
	}
	token := "a-token-made-by-scim.GenerateToken"
	_, err = engine.PutConnection(ctx, "globex", provision.Connection{ID: "okta", Kind: provision.KindSCIM,
		SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken(token)}}}, "onboarding")
	if err != nil {
		panic(err)
	}
	tenant, conn, _ := engine.ConnectionByToken(ctx, provision.HashToken(token))
	fmt.Println("token of", tenant, conn)

	// A second tenant cannot claim Globex's domain.
	_, err = engine.PutTenant(ctx, provision.Tenant{ID: "initech", VerifiedDomains: []string{"globex.example"}}, "onboarding")
	fmt.Println(errors.Is(err, provision.ErrAlreadyExists), err)

	evs, _ := engine.Events(ctx, "globex", 0, 10)
	for _, ev := range evs {
		fmt.Println(ev.Seq, ev.Kind, ev.ConnectionID)
	}
	// Output:
	// token of globex okta
	// true provision: domain "globex.example" is verified by another tenant
	// 1 connection.activated okta
}
