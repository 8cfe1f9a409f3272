package jit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

// endedSessions is the "your code" of the README snippet: it records whose
// sessions ended.
type endedSessions struct {
	ended chan string
}

func (s *endedSessions) EndAll(ctx context.Context, tenantID, userID string) error {
	s.ended <- tenantID + "/" + userID
	return nil
}

// TestReadmeSnippet runs the README's "Add it to your app" block as written
// (between the readme markers below, which must equal it): filled in the
// obvious way, a SCIM create then the SSO login of the same person is one
// user, and after the SCIM deactivation the login is refused and the
// session consumer hears of it.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	want := section(t, string(readme), "## Add it to your app\n\n```go\n", "```\n")
	got := section(t, string(self), "\t// readme:begin\n", "\t// readme:end\n")
	if norm(got) != norm(want) {
		t.Fatalf("the snippet below differs from README.md's \"Add it to your app\":\n--- test\n%s\n--- README\n%s", norm(got), norm(want))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memstore.New()
	const token = "readme-token"
	hashes := []scim.TokenHash{scim.HashToken(token)}
	mux := http.NewServeMux()
	sessions := &endedSessions{ended: make(chan string, 10)}
	identity := provision.Identity{ExternalID: "00u1ada", User: provision.User{UserName: "ada@acme.test", Active: true}}

	// readme:begin
	// Your customers and their connections, from your own config (or registered at run time with
	// engine.PutTenant): here acme's Okta provisions with SCIM (hashes: its bearer token's SHA-256)
	// and signs in with SAML. PairedWith makes SSO sign in the users SCIM made.
	tenants := []provision.Tenant{{ID: "acme", Connections: []provision.Connection{
		{ID: "okta", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: hashes}},
		{ID: "sso", Kind: provision.KindSAML, PairedWith: "okta", JIT: &provision.JITSettings{Update: true}},
	}}}
	engine, err := provision.NewEngine(provision.Config{
		Store:   store, // sqlstore.New(db, ...), memstore.New(), or yours (storetest.Run checks it)
		Tenants: tenants,
		// Optional: write your own tables in the same transaction as every change.
		OnChange: func(ctx context.Context, tx provision.Store, c provision.Change) error { return nil },
	})
	// SCIM: the customer's Okta or Entra ID provisions into it; the token picks tenant and directory.
	scimHandler, err := scim.New(scim.Config{Engine: engine})
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", scimHandler))
	// SSO: from your SAML callback (saml.MapAssertion), or let saml.New serve the whole flow.
	jp, err := jit.New(jit.Config{Engine: engine})
	user, err := jp.Provision(ctx, "acme", "sso", identity)
	// errors.Is(err, jit.ErrDeprovisioned): offboarded; start no session.
	// Offboarding: end sessions, at least once and in order, resuming after a restart.
	go engine.Consume(ctx, "sessions", func(ctx context.Context, ev provision.Event) error {
		if ev.Kind == provision.UserDeactivated || ev.Kind == provision.UserDeleted {
			return sessions.EndAll(ctx, ev.TenantID, ev.User.ID) // your code
		}
		return nil
	})
	// readme:end

	// Before SCIM made Ada, the SSO login (no Create) finds nobody.
	if !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("SSO before SCIM: %+v, %v; want ErrNotFound", user, err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	scimDo := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/scim/v2"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := scimDo("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","externalId":"00u1ada","active":true}`); st != http.StatusCreated {
		t.Fatalf("SCIM create: %d", st)
	}
	scimUser, err := engine.UserByExternalID(ctx, provision.Origin{TenantID: "acme", ConnectionID: "okta"}, "00u1ada")
	if err != nil {
		t.Fatal(err)
	}
	user, err = jp.Provision(ctx, "acme", "sso", identity)
	if err != nil || user.ID != scimUser.ID {
		t.Fatalf("SSO after SCIM: %s, %v; want the SCIM user %s", user.ID, err, scimUser.ID)
	}
	if st := scimDo("PATCH", "/Users/"+scimUser.ID, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`); st != http.StatusOK {
		t.Fatalf("SCIM deactivate: %d", st)
	}
	select {
	case got := <-sessions.ended:
		if got != "acme/"+scimUser.ID {
			t.Fatalf("sessions ended for %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session consumer never heard of the deactivation")
	}
	if _, err := jp.Provision(ctx, "acme", "sso", identity); !errors.Is(err, jit.ErrDeprovisioned) {
		t.Fatalf("SSO after the deactivation: %v, want ErrDeprovisioned", err)
	}
}

// section returns the text of s between the first begin and the next end.
func section(t *testing.T, s, begin, end string) string {
	t.Helper()
	i := strings.Index(s, begin)
	if i < 0 {
		t.Fatalf("no %q", begin)
	}
	s = s[i+len(begin):]
	j := strings.Index(s, end)
	if j < 0 {
		t.Fatalf("no %q after %q", end, begin)
	}
	return s[:j]
}

// norm drops indentation and blank lines.
func norm(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, "\n")
}
