package saml_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
	"github.com/idprov/idprov/store/memstore"
)

// setupEnv is a host that serves the SAML handler at /saml/ and the
// guided setup at /setup/{secret}/saml/, resolving the link like a host's
// middleware does.
type setupEnv struct {
	engine *provision.Engine
	srv    *httptest.Server
	idp    *idpServer
	link   provision.SetupLink
	secret string
	logins int
}

func newSetupEnv(t *testing.T) *setupEnv {
	t.Helper()
	multiIdPs(t)
	env := &setupEnv{idp: serveIdP(t, idpCUser, idpC)}
	e, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	env.srv = httptest.NewUnstartedServer(mux)
	h, err := saml.New(saml.Config{
		Engine: e, JIT: p, BaseURL: "http://" + env.srv.Listener.Addr().String(),
		Key: spKeys.Key, Certificate: spKeys.Certificate,
		OnLogin: func(w http.ResponseWriter, _ *http.Request, l saml.Login) { env.logins++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := saml.NewSetup(saml.SetupConfig{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/saml/", h)
	mux.HandleFunc("/setup/{secret}/saml/", func(w http.ResponseWriter, r *http.Request) {
		l, err := e.SetupLinkBySecret(r.Context(), r.PathValue("secret"))
		if err != nil {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		http.StripPrefix("/setup/"+r.PathValue("secret")+"/saml", setup).ServeHTTP(w, r.WithContext(provision.WithSetupLink(r.Context(), l)))
	})
	env.srv.Start()
	t.Cleanup(env.srv.Close)
	ctx := context.Background()
	for _, id := range []string{"globex", "initech"} {
		if _, err := e.PutTenant(ctx, provision.Tenant{ID: id, VerifiedDomains: []string{id + ".example"}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	env.link, env.secret, err = e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindSAML}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	env.engine = e
	return env
}

func (env *setupEnv) url(p string) string { return env.srv.URL + "/setup/" + env.secret + "/saml/" + p }

func multipartBody(t *testing.T, fields map[string]string, file []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("metadataFile", "metadata.xml")
		_, _ = fw.Write(file)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), &buf
}

func TestSetupSAMLFlow(t *testing.T) {
	env := newSetupEnv(t)
	ctx := context.Background()
	c := browser()
	c.CheckRedirect = nil

	resp, body := get(t, c, env.url(""))
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="idp-okta"`) || !strings.HasPrefix(csp, "default-src 'none'") || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("home: %d %s %q", resp.StatusCode, body, csp)
	}
	if strings.Contains(body, "<script") || !strings.Contains(body, `name="viewport"`) {
		t.Fatal("the page has a script or no viewport")
	}
	urls := saml.URLs{MetadataURL: env.srv.URL + "/saml/globex/sso/metadata", ACSURL: env.srv.URL + "/saml/globex/sso/acs"}
	resp, body = get(t, c, env.url("idp?name=okta"))
	if resp.StatusCode != 200 || !strings.Contains(body, `value="`+urls.MetadataURL+`"`) || !strings.Contains(body, `value="`+urls.ACSURL+`"`) || !strings.Contains(body, "Audience URI") {
		t.Fatalf("okta steps: %d %s", resp.StatusCode, body)
	}

	// A bad metadata file: a clear message, nothing changed.
	ct, b := multipartBody(t, map[string]string{"idp": "okta"}, []byte("<html>not metadata</html>"))
	resp, err := c.Post(env.url("metadata"), ct, b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "The metadata was refused") || !strings.Contains(string(msg), "Nothing was changed") {
		t.Fatalf("bad file: %d %s", resp.StatusCode, msg)
	}
	if _, err := env.engine.Connection(ctx, "globex", "sso"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a connection after a bad file: %v", err)
	}
	// A cross-origin post is refused (CSRF).
	ct, b = multipartBody(t, map[string]string{"idp": "okta", "metadataURL": env.idp.metadataURL()}, nil)
	req, _ := http.NewRequest("POST", env.url("metadata"), b)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("cross-site post: %v %v", resp, err)
	}

	// The metadata URL: validated on the spot, saved, acted by the link.
	ct, b = multipartBody(t, map[string]string{"idp": "okta", "metadataURL": env.idp.metadataURL()}, nil)
	resp, err = c.Post(env.url("metadata"), ct, b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(msg), "Next: test a sign-in") || resp.Request.URL.Path != "/setup/"+env.secret+"/saml/" {
		t.Fatalf("save: %d at %s %s", resp.StatusCode, resp.Request.URL, msg)
	}
	conn, err := env.engine.Connection(ctx, "globex", "sso")
	if err != nil || conn.SAML.IDPMetadataURL != env.idp.metadataURL() || conn.SAML.Mapping != "okta" || conn.JIT == nil || conn.JIT.AllowedEmailDomains[0] != "globex.example" {
		t.Fatalf("connection %+v, %v", conn, err)
	}
	evs, _ := env.engine.Events(ctx, "globex", 0, 10)
	if len(evs) != 1 || evs[0].Kind != provision.ConnectionActivated || evs[0].Actor != env.link.Actor() {
		t.Fatalf("events %+v", evs)
	}

	// The test sign-in: through the IdP, back to the result, no user.
	resp, err = c.Get(env.url("test"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Request.URL.Host != env.idp.host() {
		t.Fatalf("test sign-in went to %s", resp.Request.URL)
	}
	resp, err = samltest.SubmitForm(c, resp)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/setup/"+env.secret+"/saml/result" || !strings.Contains(string(msg), `id="test-ok"`) ||
		!strings.Contains(string(msg), "ada@globex.example") || !strings.Contains(string(msg), "a new user is created") {
		t.Fatalf("result: %d at %s: %s", resp.StatusCode, resp.Request.URL, msg)
	}
	if _, n, err := provision.AdapterOf(env.engine).Store().ListUsers(ctx, "globex", provision.Page{}); err != nil || n != 0 || env.logins != 0 {
		t.Fatalf("the test sign-in made %d users, %d logins (%v)", n, env.logins, err)
	}
	res, err := saml.LastTestResult(ctx, env.engine, "globex", "sso")
	if err != nil || !res.OK || res.Subject != "00u-ada" {
		t.Fatalf("LastTestResult %+v, %v", res, err)
	}
	// A real login still works afterwards.
	resp, err = c.Get(env.srv.URL + "/saml/globex/sso/login")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := samltest.SubmitForm(c, resp); err != nil || env.logins != 1 {
		t.Fatalf("real login after the test: %d logins, %v", env.logins, err)
	}
}

func TestSetupSAMLRefusals(t *testing.T) {
	env := newSetupEnv(t)
	// Without a link in the context the handler refuses.
	setup, err := saml.NewSetup(saml.SetupConfig{Handler: mustHandler(t, env.engine)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	setup.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 403 {
		t.Fatalf("no link: %d", rec.Code)
	}
	// A link that does not allow SAML.
	l, _, err := env.engine.CreateSetupLink(context.Background(), "globex", []provision.ConnectionKind{provision.KindSCIM}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	setup.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(provision.WithSetupLink(context.Background(), l)))
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "does not allow") {
		t.Fatalf("scim-only link: %d %s", rec.Code, rec.Body)
	}
	// Test sign-in before any metadata: says what to do.
	resp, body := get(t, browser(), env.url("test"))
	if resp.StatusCode != 409 || !strings.Contains(body, "give the IdP metadata first") {
		t.Fatalf("test before metadata: %d %s", resp.StatusCode, body)
	}
	// An unreachable metadata URL: says so, nothing changed.
	ct, b := multipartBody(t, map[string]string{"idp": "generic", "metadataURL": "http://127.0.0.1:1/metadata"}, nil)
	r2, err := browser().Post(env.url("metadata"), ct, b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 400 || !strings.Contains(string(msg), "could not be used") {
		t.Fatalf("unreachable URL: %d %s", r2.StatusCode, msg)
	}
	if _, err := env.engine.Connection(context.Background(), "globex", "sso"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a connection after a refused URL: %v", err)
	}
}

func mustHandler(t *testing.T, e *provision.Engine) *saml.Handler {
	t.Helper()
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := saml.New(saml.Config{Engine: e, JIT: p, BaseURL: "http://sp.test", Key: spKeys.Key, Certificate: spKeys.Certificate,
		OnLogin: func(http.ResponseWriter, *http.Request, saml.Login) {}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSetupSAMLMetadataChecks: metadata whose signing certificate expired
// or that has none is refused with what to do, and nothing is stored.
func TestSetupSAMLMetadataChecks(t *testing.T) {
	multiIdPs(t)
	e, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.PutTenant(ctx, provision.Tenant{ID: "globex"}, "test"); err != nil {
		t.Fatal(err)
	}
	p, _ := jit.New(jit.Config{Engine: e})
	later := func() time.Time { return time.Now().AddDate(20, 0, 0) } // past the IdP certificate's NotAfter
	h, err := saml.New(saml.Config{Engine: e, JIT: p, BaseURL: "http://sp.test", Key: spKeys.Key, Certificate: spKeys.Certificate, Now: later,
		OnLogin: func(http.ResponseWriter, *http.Request, saml.Login) {}})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := saml.NewSetup(saml.SetupConfig{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindSAML}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	xml, err := idpC.MetadataXML()
	if err != nil {
		t.Fatal(err)
	}
	noKey := regexp.MustCompile(`(?s)<(md:)?KeyDescriptor.*?</(md:)?KeyDescriptor>`).ReplaceAll(xml, nil)
	if bytes.Equal(noKey, xml) {
		t.Fatal("the metadata has no KeyDescriptor to remove")
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"expired certificate", xml, "signing certificate is not valid now"},
		{"no certificate", noKey, "no signing certificate"},
	} {
		ct, b := multipartBody(t, map[string]string{"idp": "generic"}, tc.file)
		req := httptest.NewRequest("POST", "/metadata", b).WithContext(provision.WithSetupLink(ctx, l))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		setup.ServeHTTP(rec, req)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), tc.want) || !strings.Contains(rec.Body.String(), "Nothing was changed") {
			t.Errorf("%s: %d %s", tc.name, rec.Code, rec.Body)
		}
	}
	if _, err := e.Connection(ctx, "globex", "sso"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a connection after refused metadata: %v", err)
	}
}

// TestSetupSAMLTestRefusal: a test sign-in whose e-mail is outside the
// tenant's domains shows the refusal in words, and creates nothing.
func TestSetupSAMLTestRefusal(t *testing.T) {
	env := newSetupEnv(t)
	ctx := context.Background()
	l, secret, err := env.engine.CreateSetupLink(ctx, "initech", []provision.ConnectionKind{provision.KindSAML}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	env.link, env.secret = l, secret
	c := browser()
	ct, b := multipartBody(t, map[string]string{"idp": "okta", "metadataURL": env.idp.metadataURL()}, nil)
	resp, err := c.Post(env.url("metadata"), ct, b)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("save: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(env.url("test"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = samltest.SubmitForm(c, resp)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(msg), `id="test-refused"`) ||
		!strings.Contains(string(msg), "ada@globex.example is not in this account&#39;s domains (initech.example)") {
		t.Fatalf("refused test: %d %s", resp.StatusCode, msg)
	}
	if _, n, _ := provision.AdapterOf(env.engine).Store().ListUsers(ctx, "initech", provision.Page{}); n != 0 || env.logins != 0 {
		t.Fatalf("%d users, %d logins", n, env.logins)
	}
	// The other tenant saw nothing of it.
	if _, err := saml.LastTestResult(ctx, env.engine, "globex", "sso"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("globex has a test result: %v", err)
	}
}
