package saml_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
	"github.com/idprov/idprov/store/memstore"
)

const (
	base     = "https://app.test"
	acmeACS  = base + "/saml/acme/acs"
	acmeAud  = base + "/saml/acme/metadata"
	globxACS = base + "/saml/globex/acs"
	globxAud = base + "/saml/globex/metadata"
	generic  = "Single sign-on failed.\n"
)

// The IdPs and keys are made once: RSA key generation is slow.
var (
	keysOnce         sync.Once
	idpA, idpB       *samltest.IdP
	otherKey, spKeys samltest.KeyPair
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if idpA, err = samltest.New("https://idp-a.test/metadata"); err != nil {
			panic(err)
		}
		idpA.SSOURL = "https://idp-a.test/sso"
		if idpB, err = samltest.New("https://idp-b.test/metadata"); err != nil {
			panic(err)
		}
		idpB.SSOURL = "https://idp-b.test/sso"
		if otherKey, err = samltest.NewKeyPair("attacker"); err != nil {
			panic(err)
		}
		if spKeys, err = samltest.NewKeyPair("sp"); err != nil {
			panic(err)
		}
	})
}

type options struct {
	mapping      saml.Mapping
	idpInitiated bool
	settings     *provision.JITSettings
	allowSHA1    bool
	maxBytes     int64
	errorPage    func(http.ResponseWriter, *http.Request, int)
}

type fixture struct {
	engine *provision.Engine
	h      *saml.Handler
	mu     sync.Mutex
	logins []saml.Login
	audits []provision.Refusal
}

func newFixture(t testing.TB, o options) *fixture {
	t.Helper()
	keys(t)
	f := &fixture{}
	s := provision.JITSettings{Create: true, Update: true, Roles: true}
	if o.settings != nil {
		s = *o.settings
	}
	e, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{
			{ID: "acme", VerifiedDomains: []string{"acme.example"}, Connections: []provision.Connection{
				{ID: "okta-scim", Kind: provision.KindSCIM},
				{ID: "okta-saml", Kind: provision.KindSAML, Match: []provision.MatchRule{provision.MatchPairedExternalID, provision.MatchEmail}, PairedWith: "okta-scim", JIT: &s},
			}},
			{ID: "globex", Connections: []provision.Connection{{ID: "globex-saml", Kind: provision.KindSAML, JIT: &provision.JITSettings{Create: true}}}},
		},
		Audit: func(_ context.Context, r provision.Refusal) {
			f.mu.Lock()
			f.audits = append(f.audits, r)
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := saml.New(saml.Config{
		Engine: e, JIT: p, BaseURL: base, Key: spKeys.Key, Certificate: spKeys.Certificate, MaxResponseBytes: o.maxBytes, ErrorPage: o.errorPage,
		Connections: []saml.Connection{
			{TenantID: "acme", ConnectionID: "okta-saml", IDPMetadata: idpA.Metadata(), Mapping: o.mapping, AllowIDPInitiated: o.idpInitiated, InsecureAllowSHA1: o.allowSHA1},
			{TenantID: "globex", ConnectionID: "globex-saml", IDPMetadata: idpB.Metadata(), AllowIDPInitiated: true},
		},
		OnLogin: func(w http.ResponseWriter, r *http.Request, l saml.Login) {
			f.mu.Lock()
			f.logins = append(f.logins, l)
			f.mu.Unlock()
			fmt.Fprintf(w, "welcome %s", l.User.ID)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.engine, f.h = e, h
	return f
}

func (f *fixture) post(t testing.TB, acs string, xml []byte, relay string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, acs, strings.NewReader(samltest.Form(xml, relay).Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) counts(t testing.TB) (users, events int) {
	t.Helper()
	ctx := context.Background()
	_, n, err := provision.AdapterOf(f.engine).Store().ListUsers(ctx, "acme", provision.Page{})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := f.engine.Events(ctx, "acme", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return n, len(evs)
}

func respond(t testing.TB, idp *samltest.IdP, r samltest.Response) []byte {
	t.Helper()
	if r.ACSURL == "" {
		r.ACSURL = acmeACS
	}
	if r.Audience == "" {
		r.Audience = acmeAud
	}
	b, err := idp.Response(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func okta(nameID, email string) samltest.User {
	return samltest.User{NameID: nameID, Attributes: []samltest.Attribute{
		{Name: "email", Values: []string{email}},
		{Name: "firstName", Values: []string{"Jane"}},
		{Name: "lastName", Values: []string{"Doe"}},
		{Name: "groups", Values: []string{"Everyone", "Finance"}},
	}}
}

func TestMetadataAndLoginRedirect(t *testing.T) {
	f := newFixture(t, options{})
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, acmeAud, nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `entityID="`+acmeAud+`"`) || !strings.Contains(w.Body.String(), `Location="`+acmeACS+`"`) {
		t.Fatalf("metadata: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, base+"/saml/acme/login?return_to=/reports", nil))
	if w.Code != http.StatusFound {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	if !strings.HasPrefix(loc.String(), idpA.SSOURL) {
		t.Fatalf("login redirects to %s", loc)
	}
	req, err := samltest.DecodeRedirectRequest(loc.Query().Get("SAMLRequest"))
	if err != nil {
		t.Fatal(err)
	}
	if req.NameIDPolicy == nil || req.NameIDPolicy.Format == nil || *req.NameIDPolicy.Format != "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" {
		t.Errorf("the AuthnRequest does not ask for a persistent NameID: %+v", req.NameIDPolicy)
	}
	if req.AssertionConsumerServiceURL != acmeACS || req.Issuer.Value != acmeAud {
		t.Errorf("AuthnRequest ACS %q issuer %q", req.AssertionConsumerServiceURL, req.Issuer.Value)
	}
	for _, path := range []string{"/saml/nobody/metadata", "/saml/nobody/login"} {
		w = httptest.NewRecorder()
		f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, base+path, nil))
		if w.Code != http.StatusNotFound {
			t.Errorf("%s: %d", path, w.Code)
		}
	}
}

// spLogin starts a login and answers it with the IdP, as a browser would.
func spLogin(t *testing.T, f *fixture, u samltest.User, returnTo string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, base+"/saml/acme/login?return_to="+url.QueryEscape(returnTo), nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	req, err := samltest.DecodeRedirectRequest(loc.Query().Get("SAMLRequest"))
	if err != nil {
		t.Fatal(err)
	}
	xml := respond(t, idpA, samltest.Response{User: u, InResponseTo: req.ID})
	return f.post(t, acmeACS, xml, loc.Query().Get("RelayState"), w.Result().Cookies()...)
}

func TestSPInitiatedLogin(t *testing.T) {
	f := newFixture(t, options{})
	w := spLogin(t, f, okta("00u1", "jane@acme.example"), "/reports")
	if w.Code != 200 || len(f.logins) != 1 {
		t.Fatalf("ACS: %d %s", w.Code, w.Body)
	}
	l := f.logins[0]
	if l.ReturnTo != "/reports" || l.TenantID != "acme" || l.User.UserName != "jane@acme.example" || !l.User.Active {
		t.Fatalf("login %+v", l)
	}
	if got := l.Identity.Groups; len(got) != 2 || got[1] != "Finance" {
		t.Errorf("groups %v", got)
	}
	// The tracking cookie is cleared.
	for _, c := range w.Result().Cookies() {
		if strings.HasPrefix(c.Name, "idprov_saml_") && c.MaxAge >= 0 {
			t.Errorf("tracking cookie %s not cleared", c.Name)
		}
	}
	// A second login of the same person is the same user.
	if w := spLogin(t, f, okta("00u1", "jane@acme.example"), "/"); w.Code != 200 || f.logins[1].User.ID != l.User.ID {
		t.Fatalf("second login: %d, %s vs %s", w.Code, f.logins[len(f.logins)-1].User.ID, l.User.ID)
	}
	if users, _ := f.counts(t); users != 1 {
		t.Fatalf("%d users", users)
	}
}

func TestIdPInitiated(t *testing.T) {
	off := newFixture(t, options{})
	users, events := off.counts(t)
	if w := off.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example")}), "/x"); w.Code != 403 || w.Body.String() != generic {
		t.Fatalf("IdP-initiated login with it off: %d %q", w.Code, w.Body)
	}
	if u, e := off.counts(t); u != users || e != events {
		t.Fatal("a refused IdP-initiated login changed the store")
	}

	on := newFixture(t, options{idpInitiated: true})
	for relay, want := range map[string]string{"/reports?q=1": "/reports?q=1", "https://evil.example/": "/", "//evil.example": "/", "": "/"} {
		if w := on.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example")}), relay); w.Code != 200 {
			t.Fatalf("IdP-initiated login: %d %s", w.Code, w.Body)
		}
		if got := on.logins[len(on.logins)-1].ReturnTo; got != want {
			t.Errorf("RelayState %q: ReturnTo %q, want %q", relay, got, want)
		}
	}
}

func TestSCIMUserFoundOnFirstSSO(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{idpInitiated: true, settings: &provision.JITSettings{Update: true}})
	scim, err := f.engine.CreateUser(ctx, provision.Origin{TenantID: "acme", ConnectionID: "okta-scim"}, provision.User{
		ExternalID: "00u1abc", UserName: "jane.doe", Active: true,
		Emails: []provision.Email{{Value: "jane@acme.example", Primary: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1abc", "jane@acme.example")}), "")
	if w.Code != 200 {
		t.Fatalf("ACS: %d %s", w.Code, w.Body)
	}
	if got := f.logins[0].User; got.ID != scim.ID || got.UserName != "jane.doe" {
		t.Fatalf("first SSO signed in %+v, want the SCIM user %s", got, scim.ID)
	}
	if users, _ := f.counts(t); users != 1 {
		t.Fatalf("%d users", users)
	}
	if _, err := provision.AdapterOf(f.engine).Store().GetLink(ctx, "acme", provision.ResourceUser, "okta-saml", "00u1abc"); err != nil {
		t.Fatalf("no SAML link written: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	keys(t)
	jane := okta("00u1", "jane@acme.example")
	type tc struct {
		name     string
		opts     options
		setup    func(t *testing.T, f *fixture)
		response func(t *testing.T, f *fixture) []byte
		acs      string
	}
	resp := func(r samltest.Response) func(*testing.T, *fixture) []byte {
		return func(t *testing.T, _ *fixture) []byte {
			if r.User.NameID == "" {
				r.User = jane
			}
			return respond(t, idpA, r)
		}
	}
	loginFirst := func(then func(ctx context.Context, f *fixture, id string) error) func(*testing.T, *fixture) {
		return func(t *testing.T, f *fixture) {
			if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: jane}), ""); w.Code != 200 {
				t.Fatalf("first login: %d %s", w.Code, w.Body)
			}
			if err := then(context.Background(), f, f.logins[0].User.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	admin := provision.Origin{TenantID: "acme"}
	var replayed []byte
	cases := []tc{
		{name: "unsigned", response: resp(samltest.Response{Sign: samltest.Unsigned})},
		{name: "signed by another key", response: resp(samltest.Response{SignWith: &otherKey})},
		{name: "response signed by another key", response: resp(samltest.Response{Sign: samltest.SignResponse, SignWith: &otherKey})},
		{name: "another tenant's IdP at this ACS", response: func(t *testing.T, _ *fixture) []byte {
			return respond(t, idpB, samltest.Response{User: jane})
		}},
		{name: "another tenant's response at this ACS", response: func(t *testing.T, _ *fixture) []byte {
			return respond(t, idpB, samltest.Response{User: jane, ACSURL: globxACS, Audience: globxAud})
		}},
		{name: "issuer claims this tenant's IdP", response: func(t *testing.T, _ *fixture) []byte {
			return respond(t, idpB, samltest.Response{User: jane, Issuer: idpA.EntityID})
		}},
		{name: "wrong audience", response: resp(samltest.Response{Audience: globxAud})},
		{name: "wrong recipient", response: resp(samltest.Response{Recipient: globxACS})},
		{name: "wrong destination", response: resp(samltest.Response{Destination: globxACS, Sign: samltest.SignBoth})},
		{name: "expired", response: resp(samltest.Response{IssueInstant: time.Now().Add(-time.Hour)})},
		{name: "not yet valid", response: resp(samltest.Response{IssueInstant: time.Now().Add(time.Hour)})},
		{name: "unknown request id", response: resp(samltest.Response{InResponseTo: "id-never-issued"})},
		{name: "IdP-initiated while off", opts: options{idpInitiated: false, mapping: saml.OktaMapping()}, response: resp(samltest.Response{})},
		{name: "replayed", setup: func(t *testing.T, f *fixture) {
			replayed = respond(t, idpA, samltest.Response{User: jane})
			if w := f.post(t, acmeACS, replayed, ""); w.Code != 200 {
				t.Fatalf("first use: %d %s", w.Code, w.Body)
			}
		}, response: func(*testing.T, *fixture) []byte { return replayed }},
		{name: "replayed assertion id in a new response", setup: func(t *testing.T, f *fixture) {
			if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: jane, AssertionID: "id-once"}), ""); w.Code != 200 {
				t.Fatalf("first use: %d %s", w.Code, w.Body)
			}
		}, response: resp(samltest.Response{AssertionID: "id-once"})},
		{name: "transient subject only", response: resp(samltest.Response{User: samltest.User{NameID: "_tr4ns13nt", NameIDFormat: "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
			Attributes: []samltest.Attribute{{Name: "email", Values: []string{"jane@acme.example"}}}}})},
		{name: "deactivated user", setup: loginFirst(func(ctx context.Context, f *fixture, id string) error {
			_, err := f.engine.DeactivateUser(ctx, admin, id)
			return err
		}), response: resp(samltest.Response{})},
		{name: "deleted user", setup: loginFirst(func(ctx context.Context, f *fixture, id string) error {
			return f.engine.DeleteUser(ctx, admin, id, provision.Precondition{})
		}), response: resp(samltest.Response{})},
		{name: "email outside allowed domains", opts: options{idpInitiated: true, settings: &provision.JITSettings{Create: true, AllowedEmailDomains: []string{"acme.example"}}},
			response: resp(samltest.Response{User: okta("00u9", "mallory@evil.example")})},
		{name: "creation off", opts: options{idpInitiated: true, settings: &provision.JITSettings{Update: true}}, response: resp(samltest.Response{})},
		{name: "Entra tenant mismatch", opts: options{idpInitiated: true, mapping: func() saml.Mapping { m := saml.EntraIDMapping(); m.EntraTenantID = "tid-acme"; return m }()},
			response: resp(samltest.Response{User: samltest.User{NameID: "x", Attributes: []samltest.Attribute{
				{Name: saml.AttrEntraObjectID, Values: []string{"oid-1"}}, {Name: saml.AttrEntraTenantID, Values: []string{"tid-evil"}},
				{Name: saml.AttrClaimsName, Values: []string{"jane@acme.example"}}}}})},
		{name: "XSW prepended assertion", response: resp(samltest.Response{Wrap: samltest.WrapPrependAssertion})},
		{name: "XSW appended assertion", response: resp(samltest.Response{Wrap: samltest.WrapAppendAssertion})},
		{name: "XSW nested signed assertion", response: resp(samltest.Response{Wrap: samltest.WrapNestSigned})},
		{name: "XSW tampered signed assertion", response: resp(samltest.Response{Wrap: samltest.WrapTamper})},
		{name: "XSW wrapped response", response: resp(samltest.Response{Wrap: samltest.WrapResponse})},
		{name: "XSW wrapped response, both signed", response: resp(samltest.Response{Wrap: samltest.WrapResponse, Sign: samltest.SignBoth})},
		{name: "garbage", response: func(*testing.T, *fixture) []byte { return []byte("<notsaml/>") }},
		{name: "unknown tenant", acs: base + "/saml/nobody/acs", response: resp(samltest.Response{})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			if c.name != "IdP-initiated while off" && !o.idpInitiated {
				o.idpInitiated = true
			}
			f := newFixture(t, o)
			if c.setup != nil {
				c.setup(t, f)
			}
			users, events := f.counts(t)
			logins, audits := len(f.logins), len(f.audits)
			var before []provision.User
			before, _, _ = provision.AdapterOf(f.engine).Store().ListUsers(context.Background(), "acme", provision.Page{Limit: 10})
			acs := c.acs
			if acs == "" {
				acs = acmeACS
			}
			w := f.post(t, acs, c.response(t, f), "")
			if w.Code != http.StatusForbidden && w.Code != http.StatusNotFound {
				t.Fatalf("ACS answered %d %s", w.Code, w.Body)
			}
			if body, _ := io.ReadAll(w.Body); string(body) != generic {
				t.Errorf("the browser got %q, want the generic %q", body, generic)
			}
			if len(f.logins) != logins {
				t.Error("OnLogin was called")
			}
			if u, e := f.counts(t); u != users || e != events {
				t.Errorf("the refusal changed the store: users %d -> %d, events %d -> %d", users, u, events, e)
			}
			after, _, _ := provision.AdapterOf(f.engine).Store().ListUsers(context.Background(), "acme", provision.Page{Limit: 10})
			for i := range after {
				if after[i].Version != before[i].Version {
					t.Errorf("user %s changed", after[i].ID)
				}
			}
			if c.acs == "" && len(f.audits) <= audits {
				t.Error("no refusal reached the audit hook")
			} else if c.acs == "" {
				t.Logf("audited: %s: %s", f.audits[len(f.audits)-1].Action, f.audits[len(f.audits)-1].Reason)
			}
		})
	}
}
