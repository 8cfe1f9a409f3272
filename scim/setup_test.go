package scim_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

var tokenFieldRe = regexp.MustCompile(`id="token" readonly value="([^"]+)"`)

func TestSetupSCIMFlow(t *testing.T) {
	ctx := context.Background()
	e, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := scim.New(scim.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	setup, err := scim.NewSetup(scim.SetupConfig{Handler: h, BaseURL: srv.URL + "/scim/v2"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	mux.HandleFunc("/setup/{secret}/scim/", func(w http.ResponseWriter, r *http.Request) {
		l, err := e.SetupLinkBySecret(r.Context(), r.PathValue("secret"))
		if err != nil {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		http.StripPrefix("/setup/"+r.PathValue("secret")+"/scim", setup).ServeHTTP(w, r.WithContext(provision.WithSetupLink(r.Context(), l)))
	})
	if _, err := e.PutTenant(ctx, provision.Tenant{ID: "globex"}, "test"); err != nil {
		t.Fatal(err)
	}
	link, secret, err := e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindSCIM}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	at := func(p string) string { return srv.URL + "/setup/" + secret + "/scim/" + p }
	read := func(resp *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	scimGet := func(token string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/scim/v2/Users", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("User-Agent", "Okta SCIM Client 1.0.0")
		st, _ := read(c.Do(req))
		return st
	}
	newToken := func(action string) string {
		t.Helper()
		st, body := read(c.PostForm(at("token"), url.Values{"idp": {"okta"}, "action": {action}}))
		m := tokenFieldRe.FindStringSubmatch(body)
		if st != 200 || m == nil || !strings.Contains(body, "cannot be shown again") {
			t.Fatalf("%s token: %d %s", action, st, body)
		}
		return m[1]
	}

	if st, body := read(c.Get(at("idp?name=okta"))); st != 200 || !strings.Contains(body, `value="`+srv.URL+`/scim/v2"`) || !strings.Contains(body, `id="create-token"`) {
		t.Fatalf("okta page: %d %s", st, body)
	}
	if st, body := read(c.Get(at("requests"))); st != 200 || !strings.Contains(body, `id="no-requests"`) || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("requests before any: %d %s", st, body)
	}
	t1 := newToken("create")
	if st := scimGet(t1); st != 200 {
		t.Fatalf("GET /Users with the shown token: %d", st)
	}
	// The token is shown once: the page no longer holds it.
	if _, body := read(c.Get(at("idp?name=okta"))); strings.Contains(body, t1) || !strings.Contains(body, `id="rotate-token"`) {
		t.Fatal("the token is shown again")
	}
	st, body := read(c.Get(at("requests")))
	if st != 200 || !strings.Contains(body, "GET /Users") || !strings.Contains(body, "<td>200</td>") || !strings.Contains(body, "okta") {
		t.Fatalf("requests: %d %s", st, body)
	}
	// Rotation keeps the previous token until the next rotation.
	t2 := newToken("rotate")
	if scimGet(t1) != 200 || scimGet(t2) != 200 {
		t.Fatal("a token of the overlap is refused")
	}
	t3 := newToken("rotate")
	if scimGet(t1) != 401 || scimGet(t2) != 200 || scimGet(t3) != 200 {
		t.Fatal("the rotation did not retire the oldest token")
	}
	// Cross-site posts are refused.
	req, _ := http.NewRequest("POST", at("token"), strings.NewReader("action=revoke"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if st, _ := read(c.Do(req)); st != 403 || scimGet(t3) != 200 {
		t.Fatalf("cross-site revoke: %d", st)
	}
	if st, body := read(c.PostForm(at("token"), url.Values{"action": {"revoke"}})); st != 200 || !strings.Contains(body, "Every token is revoked") {
		t.Fatalf("revoke: %d %s", st, body)
	}
	if scimGet(t2) != 401 || scimGet(t3) != 401 {
		t.Fatal("a revoked token still works")
	}
	evs, _ := e.Events(ctx, "globex", 0, 20)
	for _, ev := range evs {
		if ev.Actor != link.Actor() {
			t.Fatalf("event %s by %q", ev.Kind, ev.Actor)
		}
	}
	if len(evs) != 4 { // activated, updated x3
		t.Fatalf("%d events", len(evs))
	}
}
