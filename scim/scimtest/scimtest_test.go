package scimtest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/scim/scimtest"
	"github.com/idprov/idprov/store/memstore"
)

func newServer(t *testing.T) (*httptest.Server, string) {
	engine, err := provision.NewEngine(provision.Config{
		Store:   memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{{ID: "idp", Kind: provision.KindSCIM}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const token = "test-token"
	tokens, _ := scim.NewTokenSet(scim.Directory{TenantID: "acme", ConnectionID: "idp", TokenHashes: []scim.TokenHash{scim.HashToken(token)}})
	h, err := scim.New(scim.Config{Engine: engine, Authenticator: tokens})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, token
}

func TestRun(t *testing.T) {
	srv, token := newServer(t)
	scimtest.Run(t, srv.URL+"/scim/v2", token)
	// Twice on the same store: runs do not collide.
	scimtest.Run(t, srv.URL+"/scim/v2", token)
}

func TestReplayReportsFailures(t *testing.T) {
	srv, _ := newServer(t)
	results, err := scimtest.Replay(context.Background(), srv.Client(), srv.URL+"/scim/v2", "wrong-token")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 || results[0].OK() || results[0].Status != 401 || !results[1].Skipped {
		t.Fatalf("results = %v", results)
	}
	if err := scimtest.Check(context.Background(), nil, srv.URL+"/scim/v2", "wrong-token"); err == nil {
		t.Fatal("Check passed with a wrong token")
	}
	if _, err := scimtest.Replay(context.Background(), nil, "http://127.0.0.1:1", "x"); err == nil {
		t.Fatal("no error for an unreachable server")
	}
}

func TestLifecyclesAndBodies(t *testing.T) {
	lcs := scimtest.Lifecycles()
	if len(lcs) != 4 || lcs[0].Name != "okta-users" || lcs[3].Name != "entra-groups" {
		t.Fatalf("lifecycles = %v", lcs)
	}
	for _, lc := range lcs {
		for _, s := range lc.Steps {
			if s.BodyRef != "" {
				_ = scimtest.Body(s.BodyRef, nil) // panics when missing
			}
		}
	}
	if b := scimtest.Body("okta-create-user", nil); !contains(b, `"userName":"test.user@okta.local"`) {
		t.Fatalf("literal body = %s", b)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
