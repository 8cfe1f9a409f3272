package saml_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
)

// TestRefusalOf: ErrorPage learns what the person can do about a refused
// sign-in only once the response was verified: a deactivated account and
// an e-mail outside the allowed domains name their kind and the userName;
// a forged response names nothing.
func TestRefusalOf(t *testing.T) {
	jane := okta("00u1", "jane@acme.example")
	var got []saml.Refused
	page := func(w http.ResponseWriter, r *http.Request, status int) {
		rf, ok := saml.RefusalOf(r)
		if status == http.StatusForbidden && !ok {
			t.Error("a 403 without a refusal")
		}
		got = append(got, rf)
		w.WriteHeader(status)
	}
	cases := []struct {
		name     string
		opts     options
		setup    func(f *fixture)
		response func() []byte
		kind     error
		userName string
	}{
		{name: "deactivated", setup: func(f *fixture) {
			if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: jane}), ""); w.Code != 200 {
				t.Fatalf("first login: %d", w.Code)
			}
			if _, err := f.engine.DeactivateUser(context.Background(), provision.Origin{TenantID: "acme"}, f.logins[0].User.ID); err != nil {
				t.Fatal(err)
			}
		}, response: func() []byte { return respond(t, idpA, samltest.Response{User: jane}) }, kind: jit.ErrDeprovisioned, userName: "jane@acme.example"},
		{name: "other domain", opts: options{settings: &provision.JITSettings{Create: true, AllowedEmailDomains: []string{"acme.example"}}},
			response: func() []byte { return respond(t, idpA, samltest.Response{User: okta("00u9", "jane@gmail.example")}) }, kind: jit.ErrEmailDomain, userName: "jane@gmail.example"},
		{name: "forged", response: func() []byte { return respond(t, idpA, samltest.Response{User: jane, SignWith: &otherKey}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got = nil
			o := c.opts
			o.idpInitiated, o.errorPage = true, page
			f := newFixture(t, o)
			if c.setup != nil {
				c.setup(f)
			}
			if w := f.post(t, acmeACS, c.response(), ""); w.Code != http.StatusForbidden {
				t.Fatalf("ACS: %d", w.Code)
			}
			if len(got) != 1 {
				t.Fatalf("ErrorPage called %d times", len(got))
			}
			rf := got[0]
			if !errors.Is(rf.Kind, c.kind) || (c.kind == nil) != (rf.Kind == nil) || rf.UserName != c.userName || rf.TenantID != "acme" || rf.ConnectionID != "okta-saml" || rf.Reason == "" {
				t.Fatalf("RefusalOf = %+v, want kind %v and userName %q", rf, c.kind, c.userName)
			}
		})
	}
}
