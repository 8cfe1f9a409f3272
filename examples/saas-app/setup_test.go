package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// setupApp starts the app with two registered tenants, globex (verified
// domain acme.example, the demo IdP's people) and initech.
func setupApp(t *testing.T) (base, tok string, lines map[string]string) {
	t.Helper()
	lines = startAppLines(t, []string{"scim", "admin", "demo-idp"})
	base, tok = adminToken(t, lines)
	for _, body := range []struct{ id, json string }{
		{"globex", `{"name": "Globex", "verifiedDomains": ["acme.example"]}`},
		{"initech", `{"name": "Initech", "verifiedDomains": ["initech.example"]}`},
	} {
		if status, out := do(t, "PUT", base+"/admin/api/tenants/"+body.id, tok, body.json); status != http.StatusOK {
			t.Fatalf("PUT tenant %s = %d %v", body.id, status, out)
		}
	}
	return base, tok, lines
}

func newLink(t *testing.T, base, tok, tenant, body string) (id, link string) {
	t.Helper()
	status, out := do(t, "POST", base+"/admin/api/tenants/"+tenant+"/setup-links", tok, body)
	link, _ = out["url"].(string)
	id, _ = out["id"].(string)
	if status != http.StatusCreated || !strings.HasPrefix(link, base+"/setup/") || id == "" || out["expires"] == nil {
		t.Fatalf("POST setup-links = %d %v", status, out)
	}
	return id, link
}

func fetch(t *testing.T, c *http.Client, method, u, ctype string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func metadataForm(t *testing.T, fields map[string]string, file []byte) (string, *bytes.Buffer) {
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

// TestSetupLinksOverHTTP: the API contract; refused links; a link of one
// tenant reaches nothing of another on any route; a bad metadata file
// changes nothing.
func TestSetupLinksOverHTTP(t *testing.T) {
	base, tok, lines := setupApp(t)
	c := &http.Client{Timeout: 10 * time.Second}

	// Bad input: clear 400s.
	for _, body := range []string{`{"kinds": []}`, `{"kinds": ["oidc"]}`, `{"kinds": ["saml"], "expiresIn": "soon"}`, `{"kinds": ["saml"], "expiresIn": "9000h"}`} {
		if status, out := do(t, "POST", base+"/admin/api/tenants/globex/setup-links", tok, body); status != http.StatusBadRequest {
			t.Errorf("POST %s = %d %v", body, status, out)
		}
	}
	if status, _ := do(t, "POST", base+"/admin/api/tenants/globex/setup-links", "wrong", `{"kinds": ["saml"]}`); status != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", status)
	}

	// Tenant initech gets a SAML connection through its own link.
	_, linkB := newLink(t, base, tok, "initech", `{"kinds": ["saml", "scim", "ldap"], "expiresIn": "1h"}`)
	ct, body := metadataForm(t, map[string]string{"idp": "okta", "metadataURL": base + "/demo-idp/metadata"}, nil)
	if status, page := fetch(t, c, "POST", linkB+"saml/metadata", ct, body); status != http.StatusOK || !strings.Contains(page, "The IdP metadata is saved") {
		t.Fatalf("initech metadata: %d %.500s", status, page)
	}
	_, before := do(t, "GET", base+"/admin/api/tenants/initech", tok, "")

	idA, linkA := newLink(t, base, tok, "globex", `{"kinds": ["saml", "scim", "ldap"], "expiresIn": "24h"}`)
	// Every route of globex's link, with initech named every way a URL or
	// a form can: the pages show globex only and change nothing of initech.
	evil := url.Values{"tenant": {"initech"}, "tenantId": {"initech"}, "idp": {"okta"}, "action": {"create"},
		"url": {"ldap://127.0.0.1:1"}, "baseDN": {"dc=initech,dc=example"}, "metadataURL": {base + "/demo-idp/metadata"}}
	routes := []struct{ method, path string }{
		{"GET", ""}, {"GET", "saml/"}, {"GET", "saml/idp"}, {"GET", "saml/result"}, {"POST", "saml/metadata"},
		{"GET", "scim/"}, {"GET", "scim/idp"}, {"GET", "scim/requests"}, {"POST", "scim/token"},
		{"GET", "ldap/"}, {"POST", "ldap/test"}, {"POST", "ldap/approve"},
	}
	for _, rt := range routes {
		var status int
		var page string
		if rt.method == "GET" {
			status, page = fetch(t, c, "GET", linkA+rt.path+"?"+evil.Encode(), "", nil)
		} else {
			status, page = fetch(t, c, "POST", linkA+rt.path+"?"+evil.Encode(), "application/x-www-form-urlencoded", strings.NewReader(evil.Encode()))
		}
		if status >= 500 || strings.Contains(page, "/saml/initech/") || strings.Contains(page, "Initech") {
			t.Errorf("%s %s: %d, shows initech: %.300s", rt.method, rt.path, status, page)
		}
	}
	_, after := do(t, "GET", base+"/admin/api/tenants/initech", tok, "")
	if before["version"] != after["version"] {
		t.Fatalf("initech changed through globex's link: %v -> %v", before, after)
	}
	// Globex's link cannot revoke or reach initech's admin API.
	if status, _ := do(t, "DELETE", base+"/admin/api/tenants/initech/setup-links/"+idA, tok, ""); status != http.StatusNotFound {
		t.Errorf("revoking globex's link as initech: %d", status)
	}
	if status, _ := fetch(t, c, "GET", base+"/admin/api/tenants/initech", "", nil); status != http.StatusUnauthorized {
		t.Errorf("the admin API without the token: %d", status)
	}

	// A bad metadata file: the page says what is wrong; nothing changes.
	_, beforeA := do(t, "GET", base+"/admin/api/tenants/globex", tok, "")
	ct, body = metadataForm(t, map[string]string{"idp": "okta"}, []byte(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>`))
	status, page := fetch(t, c, "POST", linkA+"saml/metadata", ct, body)
	if status != http.StatusBadRequest || !strings.Contains(page, "The metadata was refused") || !strings.Contains(page, "Nothing was changed") {
		t.Fatalf("bad file: %d %.800s", status, page)
	}
	if _, afterA := do(t, "GET", base+"/admin/api/tenants/globex", tok, ""); afterA["version"] != beforeA["version"] {
		t.Fatal("a bad metadata file changed the tenant")
	}

	// Revoked, expired and unknown links are refused with a page that
	// says so, on every route.
	if status, _ := do(t, "DELETE", base+"/admin/api/tenants/globex/setup-links/"+idA, tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE = %d", status)
	}
	_, linkE := newLink(t, base, tok, "globex", `{"kinds": ["scim"], "expiresIn": "1s"}`)
	time.Sleep(1100 * time.Millisecond)
	for _, tc := range []struct{ link, want string }{{linkA, "was revoked"}, {linkE, "has expired"}} {
		for _, rt := range routes {
			status, page := fetch(t, c, rt.method, tc.link+rt.path, "application/x-www-form-urlencoded", strings.NewReader(evil.Encode()))
			if status != http.StatusForbidden || !strings.Contains(page, tc.want) {
				t.Fatalf("%s %s of a link that %s: %d %.300s", rt.method, rt.path, tc.want, status, page)
			}
		}
	}
	if status, page := fetch(t, c, "GET", base+"/setup/"+strings.Repeat("x", 43)+"/", "", nil); status != http.StatusNotFound || !strings.Contains(page, "not valid") {
		t.Fatalf("unknown link: %d %s", status, page)
	}
	_ = lines
}

// TestSetupSCIMThroughLink: the token a link shows works at the app's
// SCIM endpoint, and the request shows on the link's live view.
func TestSetupSCIMThroughLink(t *testing.T) {
	base, tok, lines := setupApp(t)
	_, link := newLink(t, base, tok, "globex", `{"kinds": ["scim"]}`)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	status, page := fetch(t, c, "POST", link+"scim/token", "application/x-www-form-urlencoded", strings.NewReader("idp=okta&action=create"))
	m := tokenRe.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		t.Fatalf("token: %d %.500s", status, page)
	}
	if status, out := do(t, "GET", lines["scim"]+"/Users", m[1], ""); status != http.StatusOK {
		t.Fatalf("SCIM with the link's token: %d %v", status, out)
	}
	if _, page := fetch(t, c, "GET", link+"scim/requests", "", nil); !strings.Contains(page, "GET /Users") {
		t.Fatalf("the request is not in the live view: %.800s", page)
	}
	_, out := do(t, "GET", base+"/admin/api/tenants/globex", tok, "")
	if conns, _ := out["connections"].([]any); len(conns) != 1 {
		t.Fatalf("globex connections %v", out)
	}
	// The host's admin page shows the link and the directory receiving.
	admin := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", base+"/admin/t/globex/setup", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "receiving") || !strings.Contains(string(b), "valid until") {
		t.Fatalf("admin setup page: %d %s", resp.StatusCode, b)
	}
}

var tokenRe = regexp.MustCompile(`id="token" readonly value="([^"]+)"`)
