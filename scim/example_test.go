package scim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

// ExampleNew mounts the SCIM handler for one Okta directory of
// tenant acme and provisions a user the way Okta does.
func ExampleNew() {
	// The token is shown once to acme's administrator; only its hash is kept.
	const token = "paste-me-into-okta"
	engine, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{
			ID: "acme",
			Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM,
				SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{scim.HashToken(token)}}}},
		}},
	})
	if err != nil {
		panic(err)
	}
	h, err := scim.New(scim.Config{
		Engine: engine,
		SetPassword: func(ctx context.Context, o provision.Origin, userID, password string) error {
			return nil // hand it to the app's own credential store
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	send := func(method, path, body string) {
		req, _ := http.NewRequest(method, srv.URL+"/scim/v2"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		fmt.Println(method, path, resp.Status)
	}
	send("GET", `/Users?filter=userName%20eq%20%22ada%40acme.test%22`, "")
	send("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName":"ada@acme.test","externalId":"00u1","name":{"givenName":"Ada","familyName":"Lovelace"},
		"emails":[{"value":"ada@acme.test","type":"work","primary":true}],"active":true}`)

	users, _, _ := engine.ListUsers(context.Background(), provision.Origin{TenantID: "acme"}, provision.Query{Page: provision.Page{Limit: 10}})
	fmt.Println(users[0].UserName, users[0].Name.GivenName, users[0].Owner, users[0].Active)
	// Output:
	// GET /Users?filter=userName%20eq%20%22ada%40acme.test%22 200 OK
	// POST /Users 201 Created
	// ada@acme.test Ada okta true
}

// ExampleHandler_Health provisions through the handler, then reads the
// directory's request log and health as a host's support page would.
func ExampleHandler_Health() {
	engine, _ := provision.NewEngine(provision.Config{
		Store:   memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{{ID: "entra", Kind: provision.KindSCIM}}}},
	})
	tokens, _ := scim.NewTokenSet(scim.Directory{TenantID: "acme", ConnectionID: "entra", TokenHashes: []scim.TokenHash{scim.HashToken("t0ken")}})
	h, err := scim.New(scim.Config{Engine: engine, Authenticator: tokens})
	if err != nil {
		panic(err)
	}
	send := func(method, path, body string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0ken")
		req.Header.Set("X-Request-Id", "req-"+method)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	send("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","active":"True","password":"s3cret!"}`)
	send("GET", "/Users?filter=userName%20eq", "")

	for _, e := range h.RequestLog("acme", "entra") {
		fmt.Println(e.CorrelationID, e.Method, e.Path, e.Status, strings.Contains(e.RequestBody, "s3cret"))
	}
	health := h.Health("acme", "entra")
	fmt.Println(health.Dialect, health.Requests, health.Failures, health.LastFailureStatus)
	// Output:
	// req-POST POST /Users 201 false
	// req-GET GET /Users 400 false
	// entra 2 1 400
}
