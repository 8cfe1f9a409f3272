package jit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func ExampleProvisioner_Provision() {
	ctx := context.Background()
	engine, _ := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{
			{ID: "okta-saml", Kind: provision.KindSAML, JIT: &provision.JITSettings{
				Create: true, Update: true, AllowedEmailDomains: []string{"acme.example"},
			}},
		}}},
	})
	p, _ := jit.New(jit.Config{Engine: engine})
	tenant, conn := "acme", "okta-saml"
	login := provision.Identity{
		ExternalID: "00u1", // the IdP's stable subject
		User: provision.User{
			UserName: "ada@acme.example",
			Emails:   []provision.Email{{Value: "ada@acme.example", Primary: true}},
		},
	}

	u, err := p.Provision(ctx, tenant, conn, login) // first login: creates Ada
	fmt.Println(u.UserName, u.Active, err)

	again, _ := p.Provision(ctx, tenant, conn, login) // next login: the same user
	fmt.Println(again.ID == u.ID)

	_, _ = engine.DeactivateUser(ctx, provision.Origin{TenantID: "acme"}, u.ID)
	_, err = p.Provision(ctx, tenant, conn, login) // offboarded: refused, not reactivated
	fmt.Println(errors.Is(err, jit.ErrDeprovisioned))

	login.User.Emails[0].Value = "mallory@evil.example"
	login.ExternalID = "00u2"
	_, err = p.Provision(ctx, tenant, conn, login)
	fmt.Println(errors.Is(err, jit.ErrEmailDomain))
	// Output:
	// ada@acme.example true <nil>
	// true
	// true
	// true
}
