package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// scimFeature serves SCIM 2.0 at /scim/v2 for one SCIM connection of the
// tenant, authenticated by a bearer token.
type scimFeature struct {
	token  string
	connID string
	tokens *scim.TokenSet
	// handler serves /scim/v2; its RequestLog and Health are for the
	// admin page.
	handler *scim.Handler
}

func (f *scimFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "scim-token", "", "bearer token of the SCIM connection (default: a random one, printed)")
	fs.StringVar(&f.connID, "scim-connection", "scim", "id of the SCIM connection")
}

func (f *scimFeature) setup(a *app) error {
	a.Tenant.Connections = append(a.Tenant.Connections, provision.Connection{ID: f.connID, Kind: provision.KindSCIM, Name: "SCIM directory"})
	return nil
}

func (f *scimFeature) start(_ context.Context, a *app) error {
	if f.token == "" {
		t, err := scim.GenerateToken()
		if err != nil {
			return err
		}
		f.token = t
	}
	var err error
	f.tokens, err = scim.NewTokenSet(scim.Directory{
		TenantID:     a.Tenant.ID,
		ConnectionID: f.connID,
		TokenHashes:  []scim.TokenHash{scim.HashToken(f.token)},
	})
	if err != nil {
		return err
	}
	base := a.BaseURL + "/scim/v2"
	h, err := scim.New(scim.Config{
		Engine:        a.Engine,
		Authenticator: f.tokens,
		BaseURL:       base,
		Logger:        a.Log,
	})
	if err != nil {
		return err
	}
	f.handler = h
	a.Mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	fmt.Fprintf(a.Stdout, "scim: %s\n", base)
	fmt.Fprintf(a.Stdout, "scim-token: %s\n", f.token)
	return nil
}
