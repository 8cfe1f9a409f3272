package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminToken reads the token out of the printed admin URL.
func adminToken(t *testing.T, lines map[string]string) (base, token string) {
	t.Helper()
	u, err := url.Parse(lines["admin"])
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("admin line %q", lines["admin"])
	}
	return u.Scheme + "://" + u.Host, u.Query().Get("token")
}

const scimUserBody = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@globex.example","externalId":"00u1","active":true}`

func TestAdminAPIConnectionsAreData(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin"})
	base, tok := adminToken(t, lines)
	api := base + "/admin/api/tenants/"

	status, body := do(t, "PUT", api+"globex", tok, `{"name": "Globex", "verifiedDomains": ["globex.example"]}`)
	if status != http.StatusOK || body["id"] != "globex" || body["name"] != "Globex" {
		t.Fatalf("PUT tenant = %d %v", status, body)
	}
	status, body = do(t, "PUT", api+"globex/connections/okta", tok, `{"kind": "scim"}`)
	scimToken, _ := body["token"].(string)
	if status != http.StatusOK || body["kind"] != "scim" || body["scimURL"] != lines["scim"] || len(scimToken) < 32 {
		t.Fatalf("PUT scim connection = %d %v", status, body)
	}
	if status, got := do(t, "POST", lines["scim"]+"/Users", scimToken, scimUserBody); status != http.StatusCreated {
		t.Fatalf("POST /Users with the new token = %d %v", status, got)
	}
	// The token is shown once: a second PUT keeps it and shows none.
	status, body = do(t, "PUT", api+"globex/connections/okta", tok, `{"kind": "scim", "name": "Okta"}`)
	if status != http.StatusOK || body["token"] != nil || body["name"] != "Okta" {
		t.Fatalf("second PUT = %d %v", status, body)
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", scimToken, ""); status != http.StatusOK {
		t.Fatalf("the token after a second PUT = %d", status)
	}

	status, body = do(t, "PUT", api+"globex/connections/okta-sso", tok, `{"kind": "saml", "idpMetadataURL": "demo", "domains": ["globex.example"], "mapping": "okta"}`)
	if status != http.StatusOK || body["kind"] != "saml" || body["metadataURL"] != base+"/saml/globex/okta-sso/metadata" ||
		body["acsURL"] != base+"/saml/globex/okta-sso/acs" || body["loginURL"] != base+"/saml/globex/okta-sso/login" {
		t.Fatalf("PUT saml connection = %d %v", status, body)
	}

	status, body = do(t, "GET", api+"globex", tok, "")
	conns, _ := body["connections"].([]any)
	if status != http.StatusOK || len(conns) != 2 {
		t.Fatalf("GET tenant = %d %v", status, body)
	}
	if sso, _ := conns[1].(map[string]any); sso["pairedWith"] != "okta" {
		t.Fatalf("the SAML connection is not paired with the tenant's directory: %v", sso)
	}

	// Bad input names the field and changes nothing.
	for _, c := range []struct {
		path, body, field string
		status            int
	}{
		{"globex", `{"name": "Globex", "verifiedDomains": ["not a domain"]}`, "verifiedDomains", 400},
		{"globex", `{"nmae": "Globex"}`, "nmae", 400},
		{"globex", `{"name": 7}`, "name", 400},
		{"globex/connections/x", `{"kind": "carrier-pigeon"}`, "kind", 400},
		{"globex/connections/x", `{"kind": "saml", "domains": ["globex.example"]}`, "idpMetadataURL", 400},
		{"globex/connections/x", `{"kind": "saml", "idpMetadataURL": "demo", "mapping": "nope"}`, "mapping", 400},
		{"globex/connections/x", `{"kind": "saml", "idpMetadataURL": "demo", "domains": ["initech.example"]}`, "connection.domains", 400},
		{"globex/connections/x", `{"kind": "ldap", "url": "ldap://127.0.0.1:1"}`, "connection.ldap.baseDN", 400},
		{"globex/connections/bad%2Fid", `{"kind": "scim"}`, "connection.id", 400},
		{"globex/connections/okta", `{"kind": "saml", "idpMetadataURL": "demo"}`, "kind", 400},
		{"nosuch/connections/x", `{"kind": "scim"}`, "", 404},
		{"acme/connections/x", `{"kind": "scim"}`, "", 409},
	} {
		status, body := do(t, "PUT", api+c.path, tok, c.body)
		if status != c.status || (c.field != "" && body["field"] != c.field) || body["error"] == nil {
			t.Errorf("PUT %s %s = %d %v, want %d naming %q", c.path, c.body, status, body, c.status, c.field)
		}
	}
	if status, body := do(t, "GET", api+"nosuch", tok, ""); status != http.StatusNotFound {
		t.Errorf("GET unknown tenant = %d %v", status, body)
	}
	// A domain another tenant verified.
	if status, body := do(t, "PUT", api+"initech", tok, `{"name": "Initech", "verifiedDomains": ["initech.example", "GLOBEX.example"]}`); status != http.StatusConflict || body["field"] != "verifiedDomains" {
		t.Errorf("second claim of a domain = %d %v", status, body)
	}
	if status, _ := do(t, "GET", api+"initech", tok, ""); status != http.StatusNotFound {
		t.Errorf("the refused tenant exists: %d", status)
	}
	// Without the admin token: 401.
	if status, _ := do(t, "GET", api+"globex", "wrong", ""); status != http.StatusUnauthorized {
		t.Errorf("wrong admin token = %d", status)
	}

	// Deleting the directory refuses its token; its user stays.
	if status, body := do(t, "DELETE", api+"globex/connections/okta", tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %v", status, body)
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", scimToken, ""); status != http.StatusUnauthorized {
		t.Fatalf("the deleted directory's token = %d, want 401", status)
	}
	if status, _ := do(t, "DELETE", api+"globex/connections/okta", tok, ""); status != http.StatusNotFound {
		t.Fatalf("DELETE twice = %d", status)
	}
}

// TestAdminAPITenantSurvivesRestart: a tenant made through the API is
// served after a restart on the same SQLite file, and its LDAP bind
// password is not in the file in clear.
func TestAdminAPITenantSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	args := []string{"-db", db, "-secret-key-file", filepath.Join(dir, "app.key")}
	lines, stop := launch(t, []string{"scim", "admin"}, args...)
	base, tok := adminToken(t, lines)
	api := base + "/admin/api/tenants/"
	if status, body := do(t, "PUT", api+"globex", tok, `{"name": "Globex", "verifiedDomains": ["globex.example"]}`); status != http.StatusOK {
		t.Fatalf("PUT tenant = %d %v", status, body)
	}
	_, body := do(t, "PUT", api+"globex/connections/okta", tok, `{"kind": "scim"}`)
	scimToken, _ := body["token"].(string)
	if status, body := do(t, "PUT", api+"globex/connections/corp", tok, `{"kind": "ldap", "url": "ldap://127.0.0.1:1", "bindDN": "cn=sync", "bindPassword": "bind-pw-in-clear-nowhere", "baseDN": "dc=globex,dc=example", "interval": "1h"}`); status != http.StatusOK {
		t.Fatalf("PUT ldap = %d %v", status, body)
	} else if ldap, _ := body["ldap"].(map[string]any); ldap["bindPassword"] != "[redacted]" {
		t.Fatalf("the API shows the bind password: %v", body)
	}
	stop()

	lines = startAppLines(t, []string{"scim", "admin"}, args...)
	if status, got := do(t, "POST", lines["scim"]+"/Users", scimToken, scimUserBody); status != http.StatusCreated {
		t.Fatalf("POST /Users after a restart = %d %v", status, got)
	}
	base, tok = adminToken(t, lines)
	if status, body := do(t, "GET", base+"/admin/api/tenants/globex", tok, ""); status != http.StatusOK || !strings.Contains(strings.Join(connIDs(body), ","), "corp") {
		t.Fatalf("GET tenant after a restart = %d %v", status, body)
	}
	assertNotInFile(t, db, "bind-pw-in-clear-nowhere", scimToken)
}

func connIDs(body map[string]any) []string {
	var out []string
	conns, _ := body["connections"].([]any)
	for _, c := range conns {
		m, _ := c.(map[string]any)
		id, _ := m["id"].(string)
		out = append(out, id)
	}
	return out
}

// assertNotInFile fails if a SQLite database (with its WAL) holds any of
// the secrets, or does not hold the registered LDAP base DN (so that the
// check cannot pass on the wrong file).
func assertNotInFile(t *testing.T, db string, secrets ...string) {
	t.Helper()
	control := false
	defer func() {
		if !control {
			t.Errorf("%s holds no registered tenant: the check read the wrong file", db)
		}
	}()
	for _, f := range []string{db, db + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		control = control || bytes.Contains(b, []byte("dc=globex,dc=example"))
		for _, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in clear", filepath.Base(f), s)
			}
		}
	}
}

// form posts a form to the admin page with the admin token and returns
// the status (redirects not followed) and the body.
func form(t *testing.T, target, token string, v url.Values) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("POST", target, strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func getPage(t *testing.T, target, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestAdminPageRegistersTenants: the admin page registers a tenant and its
// connections, shows a new SCIM token once, and deletes a connection.
func TestAdminPageRegistersTenants(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin"})
	base, tok := adminToken(t, lines)
	if !strings.Contains(getPage(t, base+"/admin", tok), `id="register-tenant"`) {
		t.Fatal("the overview has no form to register a tenant")
	}
	status, loc, _ := form(t, base+"/admin/tenants", tok, url.Values{"id": {"globex"}, "name": {"Globex"}, "domains": {"globex.example, globex.co.uk"}})
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/admin/t/globex") {
		t.Fatalf("register = %d %s", status, loc)
	}
	// A second tenant claiming a domain is told why.
	_, loc, _ = form(t, base+"/admin/tenants", tok, url.Values{"id": {"initech"}, "domains": {"globex.example"}})
	if !strings.Contains(loc, "verified+by+another+tenant") {
		t.Fatalf("second claim: redirected to %s", loc)
	}
	page := getPage(t, base+"/admin/t/globex", tok)
	if !strings.Contains(page, "Globex") || !strings.Contains(page, `id="add-connection"`) {
		t.Fatalf("tenant page: %s", page)
	}
	status, _, body := form(t, base+"/admin/t/globex/connections", tok, url.Values{"kind": {"scim"}, "id": {"okta"}})
	i := strings.Index(body, `id="new-token">`)
	if status != http.StatusOK || i < 0 {
		t.Fatalf("add SCIM = %d %s", status, body)
	}
	scimToken := body[i+len(`id="new-token">`):]
	scimToken = scimToken[:strings.Index(scimToken, "<")]
	if status, got := do(t, "POST", lines["scim"]+"/Users", scimToken, scimUserBody); status != http.StatusCreated {
		t.Fatalf("POST /Users with the page's token = %d %v", status, got)
	}
	_, loc, _ = form(t, base+"/admin/t/globex/connections", tok, url.Values{"kind": {"saml"}, "id": {"sso"}, "idpMetadataURL": {"demo"}, "domains": {"initech.example"}})
	if !strings.Contains(loc, "err=") || !strings.Contains(loc, "verified+domains") {
		t.Fatalf("SAML with a foreign domain: redirected to %s", loc)
	}
	_, loc, _ = form(t, base+"/admin/t/globex/connections", tok, url.Values{"kind": {"saml"}, "id": {"sso"}, "idpMetadataURL": {"demo"}, "domains": {"globex.example"}, "mapping": {"okta"}})
	if !strings.Contains(loc, "msg=") {
		t.Fatalf("SAML: redirected to %s", loc)
	}
	page = getPage(t, base+"/admin/t/globex", tok)
	if !strings.Contains(page, "/saml/globex/sso/login") {
		t.Fatalf("the tenant page shows no sign-in link for the new SAML connection")
	}
	form(t, base+"/admin/t/globex/connections/okta/delete", tok, nil)
	if status, _ := do(t, "GET", lines["scim"]+"/Users", scimToken, ""); status != http.StatusUnauthorized {
		t.Fatalf("the deleted directory's token = %d", status)
	}
}

// TestRegisteredSSOThroughDemoIdP: a tenant registered through the API
// with a SCIM directory and a SAML connection to the demo IdP; the person
// types their e-mail at the tenant's sign-in and lands at the demo IdP;
// the login links to the directory's user (paired by default).
func TestRegisteredSSOThroughDemoIdP(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin", "demo-idp"})
	base, tok := adminToken(t, lines)
	api := base + "/admin/api/tenants/"
	if status, body := do(t, "PUT", api+"initech", tok, `{"name": "Initech", "verifiedDomains": ["acme.example"]}`); status != http.StatusOK {
		t.Fatalf("PUT tenant = %d %v", status, body)
	}
	_, body := do(t, "PUT", api+"initech/connections/dir", tok, `{"kind": "scim"}`)
	scimToken, _ := body["token"].(string)
	status, created := do(t, "POST", lines["scim"]+"/Users", scimToken, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada","externalId":"demo-ada","emails":[{"value":"ada@acme.example","primary":true}],"active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM create = %d %v", status, created)
	}
	if status, body := do(t, "PUT", api+"initech/connections/sso", tok, `{"kind": "saml", "idpMetadataURL": "demo", "domains": ["acme.example"]}`); status != http.StatusOK {
		t.Fatalf("PUT saml = %d %v", status, body)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp := demoLogin(t, browser, base+"/saml/initech/login?email=ada%40acme.example", "ada")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `id="signed-in"`) {
		t.Fatalf("after SSO: %d at %s\n%.800s", resp.StatusCode, resp.Request.URL, page)
	}
	if status, got := me(t, browser, base); status != http.StatusOK || got["id"] != created["id"] || got["tenantId"] != "initech" {
		t.Fatalf("/me = %d %v, want the directory's user %v", status, got, created["id"])
	}
	// Deleted, the connection signs nobody in.
	if status, _ := do(t, "DELETE", api+"initech/connections/sso", tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE = %d", status)
	}
	resp, err := http.Get(base + "/saml/initech/sso/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("login at a deleted connection = %d", resp.StatusCode)
	}
}
