package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRefusedSignInPages: a sign-in from outside the tenant's e-mail
// domain is told to use the work account; a forged response gets only the
// plain failure, whatever it claims; the admin page names the refused
// person.
func TestRefusedSignInPages(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "saml-login", "admin"}, "-saml-email-domain", "corp.example")
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	jar, _ := cookiejar.New(nil)
	resp := demoLogin(t, &http.Client{Jar: jar, Timeout: 10 * time.Second}, lines["saml-login"], "grace")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "sign in with your work account") || strings.Contains(string(body), "corp.example") {
		t.Fatalf("a sign-in from another domain: %d\n%s", resp.StatusCode, body)
	}
	page := adminGet(t, lines["admin"], "/admin/t/acme")
	if !strings.Contains(page, "<td><b>grace@acme.example</b></td>") {
		t.Fatalf("the refusal does not name grace:\n%s", page[strings.Index(page, `id="refusals"`):])
	}

	// A response the app did not ask for and nobody signed: the plain failure.
	resp, err := http.PostForm(base+"/saml/acme/acs", url.Values{"SAMLResponse": {"PHNhbWxwOlJlc3BvbnNlLz4="}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Single sign-on failed.") || strings.Contains(string(body), "administrator to give") || strings.Contains(string(body), "deactivated") {
		t.Fatalf("a forged response: %d\n%s", resp.StatusCode, body)
	}
}
