package scimtest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/scim/scimtest"
	"github.com/idprov/idprov/store/memstore"
)

// ExampleReplay replays the recorded Okta and Entra lifecycles against a
// mounted handler and prints a summary per lifecycle.
func ExampleReplay() {
	engine, _ := provision.NewEngine(provision.Config{
		Store:   memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{{ID: "ci", Kind: provision.KindSCIM}}}},
	})
	tokens, _ := scim.NewTokenSet(scim.Directory{TenantID: "acme", ConnectionID: "ci", TokenHashes: []scim.TokenHash{scim.HashToken("ci-token")}})
	h, _ := scim.New(scim.Config{Engine: engine, Authenticator: tokens})
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	results, err := scimtest.Replay(context.Background(), srv.Client(), srv.URL+"/scim/v2", "ci-token")
	if err != nil {
		panic(err)
	}
	passed := map[string]int{}
	var order []string
	for _, r := range results {
		if _, seen := passed[r.Lifecycle]; !seen {
			order = append(order, r.Lifecycle)
		}
		if r.OK() {
			passed[r.Lifecycle]++
		} else {
			fmt.Println(r)
		}
	}
	for _, lc := range order {
		fmt.Println(lc, passed[lc], "steps passed")
	}
	// Output:
	// okta-users 16 steps passed
	// okta-groups 17 steps passed
	// entra-users 20 steps passed
	// entra-groups 21 steps passed
}
