package saml_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
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

// IdPs of the registered-connection tests, made once (RSA keys are slow
// to generate). idpE1 and idpE2 are one IdP before and after it rotated
// its signing key.
var (
	multiOnce                 sync.Once
	idpC, idpD, idpE1, idpE2  *samltest.IdP
	idpCUser, idpDUser, eUser samltest.User
	errMultiIdPs              error
	formInputRe               = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	formActionRe              = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	chooserLinkRe             = regexp.MustCompile(`<a href="([^"]*)">Sign in with ([^<]*)</a>`)
)

func multiIdPs(t testing.TB) {
	t.Helper()
	keys(t)
	multiOnce.Do(func() {
		mk := func(id string) *samltest.IdP {
			idp, err := samltest.New(id)
			if err != nil {
				errMultiIdPs = err
			}
			return idp
		}
		idpC, idpD = mk("https://okta.globex.test/metadata"), mk("https://entra.initech.test/metadata")
		idpE1 = mk("https://idp.rotating.test/metadata")
		idpE2 = mk("https://idp.rotating.test/metadata")
	})
	if errMultiIdPs != nil {
		t.Fatal(errMultiIdPs)
	}
	idpCUser = okta("00u-ada", "ada@globex.example")
	idpDUser = samltest.User{NameID: "oid-bob", Attributes: []samltest.Attribute{{Name: "email", Values: []string{"bob@initech.example"}}}}
	eUser = samltest.User{NameID: "e-carol", Attributes: []samltest.Attribute{{Name: "email", Values: []string{"carol@rotating.example"}}}}
}

// idpServer serves an IdP's metadata and SSO endpoint over HTTP; cur is
// the IdP it serves now (a rotation swaps it), fail makes /metadata
// answer 500.
type idpServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	cur  *samltest.IdP
	fail bool
	hits int
}

func serveIdP(t testing.TB, u samltest.User, idps ...*samltest.IdP) *idpServer {
	t.Helper()
	s := &idpServer{cur: idps[0]}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		cur, fail := s.cur, s.fail
		if r.URL.Path == "/metadata" {
			s.hits++
		}
		s.mu.Unlock()
		if r.URL.Path == "/metadata" && fail {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		cur.Handler().ServeHTTP(w, r)
	}))
	for _, idp := range idps {
		idp.SSOURL = "http://" + s.srv.Listener.Addr().String() + "/sso"
		idp.SetUser(&u)
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *idpServer) host() string           { return s.srv.Listener.Addr().String() }
func (s *idpServer) metadataURL() string    { return s.srv.URL + "/metadata" }
func (s *idpServer) set(f func(*idpServer)) { s.mu.Lock(); f(s); s.mu.Unlock() }
func (s *idpServer) metadataHits() int      { s.mu.Lock(); defer s.mu.Unlock(); return s.hits }

// clock is a settable time source for the Handler's metadata refreshes.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

// reg is a Handler serving connections registered in the engine (memstore
// has the Registry), over HTTP, with IdPs C and D over HTTP too.
type reg struct {
	engine *provision.Engine
	h      *saml.Handler
	sp     *httptest.Server
	c, d   *idpServer
	clock  *clock
	mu     sync.Mutex
	logins []saml.Login
	audits []provision.Refusal
}

func newReg(t testing.TB) *reg {
	t.Helper()
	multiIdPs(t)
	r := &reg{clock: &clock{}}
	r.c = serveIdP(t, idpCUser, idpC)
	r.d = serveIdP(t, idpDUser, idpD)
	e, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Audit: func(_ context.Context, a provision.Refusal) {
			r.mu.Lock()
			r.audits = append(r.audits, a)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e}) // settings come from the connections
	if err != nil {
		t.Fatal(err)
	}
	var h *saml.Handler
	r.sp = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h.ServeHTTP(w, req) }))
	h, err = saml.New(saml.Config{
		Engine: e, JIT: p, BaseURL: "http://" + r.sp.Listener.Addr().String(),
		Key: spKeys.Key, Certificate: spKeys.Certificate, Now: r.clock.Now,
		OnLogin: func(w http.ResponseWriter, _ *http.Request, l saml.Login) {
			r.mu.Lock()
			r.logins = append(r.logins, l)
			r.mu.Unlock()
			fmt.Fprintf(w, "welcome %s via %s", l.User.UserName, l.ConnectionID)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.sp.Start()
	t.Cleanup(r.sp.Close)
	r.engine, r.h = e, h
	ctx := context.Background()
	if _, err := e.PutTenant(ctx, provision.Tenant{ID: "globex", Name: "Globex", VerifiedDomains: []string{"globex.example", "initech.example"}}, "test"); err != nil {
		t.Fatal(err)
	}
	r.put(t, "globex", provision.Connection{ID: "okta", Kind: provision.KindSAML, Name: "Globex Okta", Domains: []string{"globex.example"},
		SAML: &provision.SAMLSettings{IDPMetadataURL: r.c.metadataURL(), Mapping: "okta"}, JIT: &provision.JITSettings{Create: true, Update: true}})
	xml, err := idpD.MetadataXML()
	if err != nil {
		t.Fatal(err)
	}
	r.put(t, "globex", provision.Connection{ID: "entra", Kind: provision.KindSAML, Name: "Initech Entra", Domains: []string{"initech.example"},
		SAML: &provision.SAMLSettings{IDPMetadataXML: string(xml)}, JIT: &provision.JITSettings{Create: true}})
	return r
}

func (r *reg) put(t testing.TB, tenant string, c provision.Connection) {
	t.Helper()
	if c.SAML != nil {
		if err := saml.ValidateSettings(*c.SAML); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.engine.PutConnection(context.Background(), tenant, c, "test"); err != nil {
		t.Fatal(err)
	}
}

func (r *reg) lastLogin(t *testing.T) saml.Login {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.logins) == 0 {
		t.Fatal("no login")
	}
	return r.logins[len(r.logins)-1]
}

func (r *reg) auditCount() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.audits) }

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// loginAt starts a login at the SP's path with a fresh browser, checks
// that it lands at the IdP served by want, and returns the browser and the
// IdP's answer (the form that posts the response).
func (r *reg) loginAt(t *testing.T, path string, want *idpServer) (*http.Client, *http.Response) {
	t.Helper()
	c := browser()
	resp, err := c.Get(r.sp.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != want.host() || resp.Request.URL.Path != "/sso" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s ended with %d at %s, want the IdP at %s: %.300s", path, resp.StatusCode, resp.Request.URL, want.host(), b)
	}
	return c, resp
}

// fullLogin logs in through path and checks the login landed at conn.
func (r *reg) fullLogin(t *testing.T, path string, want *idpServer, conn, userName string) {
	t.Helper()
	c, resp := r.loginAt(t, path, want)
	resp, err := samltest.SubmitForm(c, resp)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "welcome "+userName+" via "+conn {
		t.Fatalf("login through %s: %d %s", path, resp.StatusCode, b)
	}
	if l := r.lastLogin(t); l.TenantID != "globex" || l.ConnectionID != conn || l.User.UserName != userName || !l.User.Active {
		t.Fatalf("login %+v", l)
	}
}

func TestConnectionsLoginByDomain(t *testing.T) {
	r := newReg(t)
	okta, entra := r.h.ConnectionURLs("globex", "okta"), r.h.ConnectionURLs("globex", "entra")
	if okta.MetadataURL != r.sp.URL+"/saml/globex/okta/metadata" || okta.ACSURL != r.sp.URL+"/saml/globex/okta/acs" || okta.LoginURL != r.sp.URL+"/saml/globex/okta/login" {
		t.Fatalf("ConnectionURLs %+v", okta)
	}
	// Each connection has its own entity ID and ACS URL.
	for _, u := range []saml.URLs{okta, entra} {
		resp, body := get(t, browser(), u.MetadataURL)
		if resp.StatusCode != 200 || !strings.Contains(body, `entityID="`+u.MetadataURL+`"`) || !strings.Contains(body, `Location="`+u.ACSURL+`"`) {
			t.Fatalf("metadata %s: %d %s", u.MetadataURL, resp.StatusCode, body)
		}
	}

	r.fullLogin(t, "/saml/globex/login?email=ada@globex.example", r.c, "okta", "ada@globex.example")
	r.fullLogin(t, "/saml/globex/login?login_hint=bob%40initech.example", r.d, "entra", "bob@initech.example")
	r.fullLogin(t, "/saml/globex/login?email=Ada@EU.Globex.Example", r.c, "okta", "ada@globex.example") // a subdomain, any case
	r.fullLogin(t, "/saml/globex/entra/login", r.d, "entra", "bob@initech.example")
	// The engine-wide entry point finds the tenant by the domain.
	r.fullLogin(t, "/saml/login?email=bob@initech.example", r.d, "entra", "bob@initech.example")
	r.fullLogin(t, "/saml/login?login_hint=ada@globex.example&return_to=/x", r.c, "okta", "ada@globex.example")
	if got := r.lastLogin(t).ReturnTo; got != "/x" {
		t.Errorf("ReturnTo %q", got)
	}
	// JIT ran with each connection's settings: two users, linked to their
	// connection.
	ctx := context.Background()
	if _, n, err := provision.AdapterOf(r.engine).Store().ListUsers(ctx, "globex", provision.Page{}); err != nil || n != 2 {
		t.Fatalf("%d users, %v", n, err)
	}
	if _, err := provision.AdapterOf(r.engine).Store().GetLink(ctx, "globex", provision.ResourceUser, "entra", "oid-bob"); err != nil {
		t.Fatalf("no link for the entra login: %v", err)
	}
}

// formOf reads the IdP's auto-posting form.
func formOf(t *testing.T, resp *http.Response) (action string, v url.Values) {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formActionRe.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no form: %.300s", b)
	}
	v = url.Values{}
	for _, in := range formInputRe.FindAllStringSubmatch(string(b), -1) {
		v.Set(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	return html.UnescapeString(m[1]), v
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestConnectionsAssertionRefusedAtAnotherConnection(t *testing.T) {
	r := newReg(t)
	okta, entra := r.h.ConnectionURLs("globex", "okta"), r.h.ConnectionURLs("globex", "entra")

	// An SP-initiated login at okta whose response is posted, with the
	// browser's cookies, to entra's ACS (or to the tenant's own ACS).
	c, resp := r.loginAt(t, "/saml/globex/okta/login", r.c)
	action, v := formOf(t, resp)
	if action != okta.ACSURL {
		t.Fatalf("the IdP posts to %s, want %s", action, okta.ACSURL)
	}
	audits := r.auditCount()
	if code, body := postForm(t, c, entra.ACSURL, v); code != http.StatusForbidden || body != generic {
		t.Fatalf("okta's response at entra's ACS: %d %q", code, body)
	}
	if r.auditCount() <= audits {
		t.Error("the refusal was not audited")
	}
	if code, _ := postForm(t, c, r.sp.URL+"/saml/globex/acs", v); code != http.StatusNotFound {
		t.Fatalf("at the tenant's ACS (no connection set with SetConnection): %d", code)
	}
	// The same response at its own ACS is accepted: the refusals above
	// were for the place, not the response.
	if code, body := postForm(t, c, okta.ACSURL, v); code != 200 {
		t.Fatalf("okta's response at okta's ACS: %d %s", code, body)
	}

	// With IdP-initiated logins on, so that only the connection decides.
	for _, id := range []string{"okta", "entra"} {
		pc, err := r.engine.Connection(context.Background(), "globex", id)
		if err != nil {
			t.Fatal(err)
		}
		pc.SAML.AllowIDPInitiated = true
		r.put(t, "globex", pc)
	}
	users := func() int {
		_, n, _ := provision.AdapterOf(r.engine).Store().ListUsers(context.Background(), "globex", provision.Page{})
		return n
	}
	before := users()
	cases := []struct {
		name string
		idp  *samltest.IdP
		u    samltest.User
		to   saml.URLs // the response's ACS URL and audience
		at   string    // where it is posted
		want int
	}{
		{"okta's IdP, for okta, at entra", idpC, idpCUser, okta, entra.ACSURL, 403},
		{"entra's IdP, for entra, at okta", idpD, idpDUser, entra, okta.ACSURL, 403},
		{"okta's IdP, addressed to entra", idpC, idpDUser, entra, entra.ACSURL, 403},
		{"entra's IdP, addressed to okta", idpD, idpCUser, okta, okta.ACSURL, 403},
		{"entra's IdP at the tenant's ACS", idpD, idpDUser, entra, r.sp.URL + "/saml/globex/acs", 404},
		{"at an unknown connection", idpD, idpDUser, entra, r.sp.URL + "/saml/globex/nope/acs", 404},
	}
	for _, tc := range cases {
		f, err := tc.idp.InitiatedForm(tc.u, tc.to.ACSURL, tc.to.MetadataURL, "")
		if err != nil {
			t.Fatal(err)
		}
		if code, body := postForm(t, browser(), tc.at, f); code != tc.want {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
	if n := users(); n != before {
		t.Fatalf("refused responses changed the users: %d -> %d", before, n)
	}
	// Control: each IdP's response at its own connection is accepted.
	f, _ := idpD.InitiatedForm(idpDUser, entra.ACSURL, entra.MetadataURL, "")
	if code, body := postForm(t, browser(), entra.ACSURL, f); code != 200 {
		t.Fatalf("entra's own response: %d %s", code, body)
	}
}

func TestConnectionsChooser(t *testing.T) {
	r := newReg(t)
	xml, err := idpD.MetadataXML()
	if err != nil {
		t.Fatal(err)
	}
	// A second connection for globex.example: two candidates.
	r.put(t, "globex", provision.Connection{ID: "contractors", Kind: provision.KindSAML, Name: "Contractors <IdP>", Domains: []string{"globex.example"},
		SAML: &provision.SAMLSettings{IDPMetadataXML: string(xml)}, JIT: &provision.JITSettings{Create: true}})
	// Another tenant, which no page of globex's may show.
	if _, err := r.engine.PutTenant(context.Background(), provision.Tenant{ID: "hooli", VerifiedDomains: []string{"hooli.example"}}, "test"); err != nil {
		t.Fatal(err)
	}
	r.put(t, "hooli", provision.Connection{ID: "hooli-sso", Kind: provision.KindSAML, Name: "Hooli SSO", Domains: []string{"hooli.example"},
		SAML: &provision.SAMLSettings{IDPMetadataXML: string(xml)}})

	chooser := func(path string) []string {
		t.Helper()
		resp, body := get(t, browser(), r.sp.URL+path)
		if resp.StatusCode != 200 || resp.Request.URL.Host != r.sp.Listener.Addr().String() {
			t.Fatalf("%s: %d at %s, want the chooser", path, resp.StatusCode, resp.Request.URL)
		}
		for _, want := range []string{`<html lang="en">`, "<title>", "<h1>", `<nav aria-label="Sign-in options">`} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %s in %s", path, want, body)
			}
		}
		for _, bad := range []string{"<script", "src=", "Hooli", "<IdP>"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the page holds %q: %s", path, bad, body)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP %q", csp)
		}
		var got []string
		for _, m := range chooserLinkRe.FindAllStringSubmatch(body, -1) {
			got = append(got, html.UnescapeString(m[2])+" "+html.UnescapeString(m[1]))
		}
		return got
	}
	okta, contractors := r.h.ConnectionURLs("globex", "okta"), r.h.ConnectionURLs("globex", "contractors")
	got := chooser("/saml/globex/login?email=ada@globex.example&return_to=/reports")
	want := []string{"Globex Okta " + okta.LoginURL + "?return_to=%2Freports", "Contractors <IdP> " + contractors.LoginURL + "?return_to=%2Freports"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("chooser links\n got %q\nwant %q", got, want)
	}
	if got := chooser("/saml/login?email=ada@globex.example"); len(got) != 2 {
		t.Fatalf("engine-wide chooser: %q", got)
	}
	// Each link starts the login at its IdP.
	r.fullLogin(t, strings.TrimPrefix(contractors.LoginURL, r.sp.URL), r.d, "contractors", "bob@initech.example")

	// No address, or one no connection covers: every SAML connection.
	for _, path := range []string{"/saml/globex/login", "/saml/globex/login?email=mallory@evil.example", "/saml/globex/login?email=not-an-address"} {
		if got := chooser(path); len(got) != 3 {
			t.Errorf("%s: %q", path, got)
		}
	}
	// The tenant's metadata URL is ambiguous with several connections.
	if resp, _ := get(t, browser(), r.sp.URL+"/saml/globex/metadata"); resp.StatusCode != 404 {
		t.Errorf("/saml/globex/metadata with three connections: %d", resp.StatusCode)
	}
	// hooli has one: its tenant URLs serve it.
	hooli := r.h.ConnectionURLs("hooli", "hooli-sso")
	if resp, body := get(t, browser(), r.sp.URL+"/saml/hooli/metadata"); resp.StatusCode != 200 || !strings.Contains(body, `entityID="`+hooli.MetadataURL+`"`) {
		t.Errorf("/saml/hooli/metadata: %d %s", resp.StatusCode, body)
	}
	r.loginAt(t, "/saml/hooli/login", r.d)
}

func TestConnectionsEngineWideDiscovery(t *testing.T) {
	r := newReg(t)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/saml/login", 200, `<label for="email">`},
		{"/saml/login?email=nobody@unknown.example", 404, "not set up"},
		{"/saml/login?email=globex.example", 400, "Enter your e-mail address"},
		// A parent of a verified domain is not verified.
		{"/saml/login?email=x@example", 404, "not set up"},
	} {
		resp, body := get(t, browser(), r.sp.URL+tc.path)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) || strings.Contains(body, "Globex") || strings.Contains(body, "okta") {
			t.Errorf("%s: %d %s", tc.path, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, browser(), r.sp.URL+"/saml/nobody/login?email=ada@globex.example"); resp.StatusCode != 404 {
		t.Errorf("unknown tenant: %d", resp.StatusCode)
	}
}

func TestConnectionsDeletedDisabledChanged(t *testing.T) {
	r := newReg(t)
	ctx := context.Background()
	okta, entra := r.h.ConnectionURLs("globex", "okta"), r.h.ConnectionURLs("globex", "entra")
	r.fullLogin(t, "/saml/globex/okta/login", r.c, "okta", "ada@globex.example")

	// A settings change rebuilds the ServiceProvider: IdP-initiated
	// logins go from refused to accepted.
	f, _ := idpC.InitiatedForm(idpCUser, okta.ACSURL, okta.MetadataURL, "")
	if code, _ := postForm(t, browser(), okta.ACSURL, f); code != 403 {
		t.Fatalf("IdP-initiated with it off: %d", code)
	}
	pc, err := r.engine.Connection(ctx, "globex", "okta")
	if err != nil {
		t.Fatal(err)
	}
	pc.SAML.AllowIDPInitiated = true
	r.put(t, "globex", pc)
	f, _ = idpC.InitiatedForm(idpCUser, okta.ACSURL, okta.MetadataURL, "")
	if code, body := postForm(t, browser(), okta.ACSURL, f); code != 200 {
		t.Fatalf("IdP-initiated after it was switched on: %d %s", code, body)
	}

	// Deleted: 404 at once, at every endpoint; a response made before is
	// refused.
	c, resp := r.loginAt(t, "/saml/globex/okta/login", r.c)
	_, pending := formOf(t, resp)
	if err := r.engine.DeleteConnection(ctx, "globex", "okta", "test"); err != nil {
		t.Fatal(err)
	}
	f, _ = idpC.InitiatedForm(idpCUser, okta.ACSURL, okta.MetadataURL, "")
	for _, u := range []string{okta.MetadataURL, okta.LoginURL} {
		if resp, _ := get(t, browser(), u); resp.StatusCode != 404 {
			t.Errorf("GET %s after the delete: %d", u, resp.StatusCode)
		}
	}
	for _, v := range []url.Values{f, pending} {
		if code, _ := postForm(t, c, okta.ACSURL, v); code != 404 {
			t.Errorf("ACS after the delete: %d", code)
		}
	}
	if _, err := r.h.MetadataStatus(ctx, "globex", "okta"); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("MetadataStatus of a deleted connection: %v", err)
	}
	// globex has one SAML connection left: every address goes to it.
	r.loginAt(t, "/saml/globex/login?email=ada@globex.example", r.d)

	// Disabled: 404 too.
	pc, err = r.engine.Connection(ctx, "globex", "entra")
	if err != nil {
		t.Fatal(err)
	}
	pc.Disabled = true
	r.put(t, "globex", pc)
	for _, u := range []string{entra.MetadataURL, entra.LoginURL, r.sp.URL + "/saml/globex/login?email=bob@initech.example", r.sp.URL + "/saml/login?email=bob@initech.example"} {
		if resp, _ := get(t, browser(), u); resp.StatusCode != 404 {
			t.Errorf("GET %s with the connection disabled: %d", u, resp.StatusCode)
		}
	}
}

func TestConnectionsMetadataRefresh(t *testing.T) {
	r := newReg(t)
	ctx := context.Background()
	e := serveIdP(t, eUser, idpE1, idpE2)
	e.set(func(s *idpServer) { s.fail = true })
	if _, err := r.engine.PutTenant(ctx, provision.Tenant{ID: "rot", VerifiedDomains: []string{"rotating.example"}}, "test"); err != nil {
		t.Fatal(err)
	}
	r.put(t, "rot", provision.Connection{ID: "idp", Kind: provision.KindSAML, Domains: []string{"rotating.example"},
		SAML: &provision.SAMLSettings{IDPMetadataURL: e.metadataURL()}, JIT: &provision.JITSettings{Create: true}})
	urls := r.h.ConnectionURLs("rot", "idp")
	login := func(want int) {
		t.Helper()
		c := browser()
		resp, err := c.Get(urls.LoginURL)
		if err != nil {
			t.Fatal(err)
		}
		if want != 200 {
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("login: %d, want %d", resp.StatusCode, want)
			}
			return
		}
		if resp, err = samltest.SubmitForm(c, resp); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "welcome carol@rotating.example") {
			t.Fatalf("login: %d %s", resp.StatusCode, b)
		}
	}
	status := func() saml.MetadataStatus {
		t.Helper()
		st, err := r.h.MetadataStatus(ctx, "rot", "idp")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// The first fetch fails: 503, logged and audited, and shown.
	audits := r.auditCount()
	login(http.StatusServiceUnavailable)
	if r.auditCount() != audits+1 || r.audits[audits].Action != "saml.metadata" {
		t.Fatalf("audits: %+v", r.audits[audits:])
	}
	if st := status(); st.LastError == "" || !st.Loaded.IsZero() || st.URL != e.metadataURL() {
		t.Fatalf("status after a failed first fetch: %+v", st)
	}
	// The SP metadata, for the admin setting the IdP up, does not wait.
	if resp, body := get(t, browser(), urls.MetadataURL); resp.StatusCode != 200 || !strings.Contains(body, `entityID="`+urls.MetadataURL+`"`) {
		t.Fatalf("SP metadata while the IdP's is missing: %d %s", resp.StatusCode, body)
	}
	// Not fetched again at once (every login would hit the IdP).
	hits := e.metadataHits()
	login(http.StatusServiceUnavailable)
	if e.metadataHits() != hits {
		t.Fatal("the metadata was fetched again at once")
	}

	e.set(func(s *idpServer) { s.fail = false })
	r.clock.advance(time.Minute)
	login(200)
	st := status()
	if st.LastError != "" || st.Loaded.IsZero() || st.EntityID != idpE1.EntityID || !st.CertificateExpiry.Equal(idpE1.Certificate.NotAfter) {
		t.Fatalf("status after the first fetch: %+v", st)
	}

	// The IdP rotates its key. Within refreshGap of the last fetch, a
	// response signed with the new key is refused and fetches nothing.
	e.set(func(s *idpServer) { s.cur = idpE2 })
	hits = e.metadataHits()
	f, _ := idpE2.InitiatedForm(eUser, urls.ACSURL, urls.MetadataURL, "")
	if code, _ := postForm(t, browser(), urls.ACSURL, f); code != 403 {
		t.Fatalf("new key before the refresh: %d", code)
	}
	c, resp := r.loginAt(t, "/saml/rot/idp/login", e)
	if resp, err := samltest.SubmitForm(c, resp); err != nil || resp.StatusCode != 403 {
		t.Fatalf("login signed with the new key within the refresh gap: %v %v", resp.StatusCode, err)
	}
	if e.metadataHits() != hits {
		t.Fatal("signature failures within the refresh gap fetched the metadata")
	}
	// Later, the signature failure fetches the metadata, and the login
	// signed with the new key succeeds.
	r.clock.advance(6 * time.Minute)
	login(200)
	if e.metadataHits() != hits+1 {
		t.Fatalf("%d fetches for the refresh", e.metadataHits()-hits)
	}
	if st := status(); !st.CertificateExpiry.Equal(idpE2.Certificate.NotAfter) || st.LastError != "" {
		t.Fatalf("status after the rotation: %+v", st)
	}
	// A response signed with the old key is refused now.
	r.clock.advance(6 * time.Minute)
	f, _ = idpE1.InitiatedForm(eUser, urls.ACSURL, urls.MetadataURL, "")
	if code, _ := postForm(t, browser(), urls.ACSURL, f); code != 403 {
		t.Fatalf("the old key after the rotation: %d", code)
	}

	// A day later the metadata is refreshed in the background; that fetch
	// fails: the last good metadata stays in use, and the failure shows.
	e.set(func(s *idpServer) { s.fail = true })
	r.clock.advance(25 * time.Hour)
	hits = e.metadataHits()
	login(200) // starts the refresh; the login goes on meanwhile
	deadline := time.Now().Add(5 * time.Second)
	for status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no daily refresh: %+v, %d fetches", status(), e.metadataHits()-hits)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st = status()
	if e.metadataHits() != hits+1 || st.Loaded.IsZero() || !st.CertificateExpiry.Equal(idpE2.Certificate.NotAfter) || !strings.Contains(st.LastError, "500") {
		t.Fatalf("status after a failed refresh: %+v (%d fetches)", st, e.metadataHits()-hits)
	}
	login(200)
	// A signature failure's refresh fails the same way: still the last
	// good metadata.
	r.clock.advance(6 * time.Minute)
	f, _ = idpE1.InitiatedForm(eUser, urls.ACSURL, urls.MetadataURL, "")
	if code, _ := postForm(t, browser(), urls.ACSURL, f); code != 403 {
		t.Fatalf("a bad signature: %d", code)
	}
	login(200)
}

func TestConnectionsDeclared(t *testing.T) {
	multiIdPs(t)
	d := serveIdP(t, idpDUser, idpD)
	xml, err := idpD.MetadataXML()
	if err != nil {
		t.Fatal(err)
	}
	// A declared tenant carrying SAML settings is served the same way;
	// contractor.example is named by a connection but not verified by the
	// tenant: it never routes.
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{{
		ID: "initech", VerifiedDomains: []string{"initech.example"},
		Connections: []provision.Connection{
			{ID: "entra", Kind: provision.KindSAML, Name: "Entra", Domains: []string{"initech.example"}, SAML: &provision.SAMLSettings{IDPMetadataXML: string(xml)}, JIT: &provision.JITSettings{Create: true}},
			{ID: "contractors", Kind: provision.KindSAML, Name: "Contractors", Domains: []string{"contractor.example"}, SAML: &provision.SAMLSettings{IDPMetadataXML: string(xml)}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := saml.New(saml.Config{Engine: e, JIT: p, BaseURL: base, OnLogin: func(w http.ResponseWriter, _ *http.Request, l saml.Login) {
		fmt.Fprintf(w, "welcome %s via %s", l.User.UserName, l.ConnectionID)
	}})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, base+path, nil))
		return w
	}
	w := serve("/saml/initech/login?email=bob@initech.example")
	if loc, _ := url.Parse(w.Header().Get("Location")); w.Code != 302 || loc.Host != d.host() {
		t.Fatalf("login: %d %s", w.Code, w.Header().Get("Location"))
	}
	for _, path := range []string{"/saml/initech/login?email=eve@contractor.example", "/saml/login?email=eve@contractor.example"} {
		if w := serve(path); w.Code == 302 {
			t.Errorf("%s routed by an unverified domain to %s", path, w.Header().Get("Location"))
		}
	}
	if w := serve("/saml/login?email=eve@contractor.example"); w.Code != 404 {
		t.Errorf("engine-wide, unverified domain: %d", w.Code)
	}
	// The IdP's response, posted at the ACS: JIT creates the user with the
	// connection's settings.
	u := h.ConnectionURLs("initech", "entra")
	loc, _ := url.Parse(w.Header().Get("Location"))
	req, err := samltest.DecodeRedirectRequest(loc.Query().Get("SAMLRequest"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := idpD.Response(samltest.Response{User: idpDUser, ACSURL: u.ACSURL, Audience: u.MetadataURL, InResponseTo: req.ID})
	if err != nil {
		t.Fatal(err)
	}
	pr := httptest.NewRequest(http.MethodPost, u.ACSURL, strings.NewReader(samltest.Form(b, loc.Query().Get("RelayState")).Encode()))
	pr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range w.Result().Cookies() {
		pr.AddCookie(c)
	}
	pw := httptest.NewRecorder()
	h.ServeHTTP(pw, pr)
	if pw.Code != 200 || pw.Body.String() != "welcome bob@initech.example via entra" {
		t.Fatalf("ACS: %d %s", pw.Code, pw.Body)
	}
}

func TestValidateSettings(t *testing.T) {
	multiIdPs(t)
	xml, err := idpD.MetadataXML()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s     provision.SAMLSettings
		field string
	}{
		{provision.SAMLSettings{IDPMetadataURL: "https://idp.example/metadata", Mapping: "okta"}, ""},
		{provision.SAMLSettings{IDPMetadataXML: string(xml), Mapping: "entra"}, ""},
		{provision.SAMLSettings{IDPMetadataURL: "https://idp.example/metadata", Mapping: "Okta"}, ""},
		{provision.SAMLSettings{}, "saml.idpMetadataURL"},
		{provision.SAMLSettings{IDPMetadataURL: "ftp://idp.example/m"}, "saml.idpMetadataURL"},
		{provision.SAMLSettings{IDPMetadataURL: "/metadata"}, "saml.idpMetadataURL"},
		{provision.SAMLSettings{IDPMetadataURL: "https://idp.example/metadata", IDPMetadataXML: string(xml)}, "saml.idpMetadataXML"},
		{provision.SAMLSettings{IDPMetadataXML: "<EntityDescriptor/>"}, "saml.idpMetadataXML"},
		{provision.SAMLSettings{IDPMetadataXML: "not xml"}, "saml.idpMetadataXML"},
		{provision.SAMLSettings{IDPMetadataURL: "https://idp.example/metadata", Mapping: "pingfederate"}, "saml.mapping"},
	} {
		err := saml.ValidateSettings(tc.s)
		var ve *provision.ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: %v", tc.s.Mapping, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field || !errors.Is(err, provision.ErrInvalid)):
			t.Errorf("%.60s / %q: %v, want a ValidationError on %s", tc.s.IDPMetadataURL+tc.s.IDPMetadataXML, tc.s.Mapping, err, tc.field)
		}
	}
}

func TestConnectionsConcurrentChanges(t *testing.T) {
	r := newReg(t)
	ctx := context.Background()
	u := r.h.ConnectionURLs("globex", "okta")
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				w := httptest.NewRecorder()
				r.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, u.LoginURL, nil))
				if w.Code != http.StatusFound {
					errs <- fmt.Sprintf("login: %d", w.Code)
					return
				}
				if _, err := r.h.MetadataStatus(ctx, "globex", "okta"); err != nil {
					errs <- err.Error()
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ { // settings change meanwhile: rebuilds
		pc, err := r.engine.Connection(ctx, "globex", "okta")
		if err != nil {
			t.Fatal(err)
		}
		pc.SAML.AllowIDPInitiated = !pc.SAML.AllowIDPInitiated
		pc.SAML.Mapping = []string{"okta", "default"}[i%2]
		r.put(t, "globex", pc)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDiscoveryFindsSetConnection(t *testing.T) {
	// A tenant whose SAML connection was set with SetConnection is found
	// by the engine-wide entry point too, and its login is the tenant's.
	f := newFixture(t, options{})
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, base+"/saml/login?email=jane@acme.example&return_to=/r", nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || !strings.HasPrefix(loc.String(), idpA.SSOURL) {
		t.Fatalf("discovery: %d %s", w.Code, loc)
	}
	req, err := samltest.DecodeRedirectRequest(loc.Query().Get("SAMLRequest"))
	if err != nil {
		t.Fatal(err)
	}
	if req.AssertionConsumerServiceURL != acmeACS {
		t.Fatalf("ACS %s", req.AssertionConsumerServiceURL)
	}
	xml := respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example"), InResponseTo: req.ID})
	if w := f.post(t, acmeACS, xml, loc.Query().Get("RelayState"), w.Result().Cookies()...); w.Code != 200 || f.logins[0].ReturnTo != "/r" {
		t.Fatalf("ACS: %d %s", w.Code, w.Body)
	}
}
