package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/saml/samltest"
)

// demoLogin signs in at the demo IdP as person with the browser c: the
// app's sign-in link, the IdP's page of people, the choice, the signed
// form posted to the ACS. It returns the last response.
func demoLogin(t *testing.T, c *http.Client, loginURL, person string) *http.Response {
	t.Helper()
	resp, err := c.Get(loginURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="as-`+person+`"`) {
		t.Fatalf("demo IdP page: %d at %s\n%.1000s", resp.StatusCode, resp.Request.URL, body)
	}
	choose := *resp.Request.URL
	q := choose.Query()
	q.Set("user", person)
	choose.RawQuery = q.Encode()
	resp, err = c.Get(choose.String())
	if err != nil {
		t.Fatal(err)
	}
	resp, err = samltest.SubmitForm(c, resp)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestDemoIdPSignIn: with no flags SAML goes to the built-in demo IdP; a
// person signs in with SSO (linked to the SCIM user whose externalId is
// their NameID), and once the directory deactivates them, they are signed
// out and refused.
func TestDemoIdPSignIn(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "scim-token", "saml-login", "demo-idp", "admin"}, "-scim-token", "SECRET")
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	if !strings.HasPrefix(lines["demo-idp"], base+"/demo-idp/") {
		t.Fatalf("demo-idp: %q", lines["demo-idp"])
	}
	status, created := do(t, "POST", lines["scim"]+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada","externalId":"demo-ada","emails":[{"value":"ada@acme.example","primary":true}],"active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM create: %d %v", status, created)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp := demoLogin(t, browser, lines["saml-login"], "ada")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="signed-in"`) {
		t.Fatalf("after SSO: %d at %s\n%.1000s", resp.StatusCode, resp.Request.URL, body)
	}
	if status, got := me(t, browser, base); status != http.StatusOK || got["id"] != created["id"] {
		t.Fatalf("/me after SSO: %d %v, want the SCIM user %v", status, got, created["id"])
	}

	// A demo person no directory knows is created just in time.
	jar2, _ := cookiejar.New(nil)
	other := &http.Client{Jar: jar2, Timeout: 10 * time.Second}
	demoLogin(t, other, lines["saml-login"], "katherine").Body.Close()
	if status, got := me(t, other, base); status != http.StatusOK || got["userName"] != "katherine@acme.example" || got["owner"] != "saml" {
		t.Fatalf("/me of a just-in-time user: %d %v", status, got)
	}

	// The directory deactivates Ada: signed out, and refused at the next
	// sign-in; the admin page lists the refusal.
	if status, _ := do(t, "PATCH", lines["scim"]+"/Users/"+created["id"].(string), "SECRET", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`); status != http.StatusOK {
		t.Fatalf("SCIM deactivate: %d", status)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me of a deactivated user: %d", status)
	}
	resp = demoLogin(t, browser, lines["saml-login"], "ada")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Your account is deactivated") || !strings.Contains(string(body), "ask your administrator") {
		t.Fatalf("SSO of a deactivated user: %d %q", resp.StatusCode, body)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me after a refused SSO: %d", status)
	}
	page := adminGet(t, lines["admin"], "/admin/t/acme")
	if !strings.Contains(page, `id="refusals"`) || !strings.Contains(page, "jit") || !strings.Contains(page, "<td><b>ada@acme.example</b></td>") {
		t.Fatalf("the refusal is not on the admin page:\n%s", page[strings.Index(page, "<main>"):])
	}
}

// TestDemoIdPOnlyForThisApp: the demo IdP signs nothing for another SP.
func TestDemoIdPOnlyForThisApp(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "demo-idp"})
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	resp, err := http.Get(base + "/demo-idp/sso?SAMLRequest=garbage")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a garbage SAMLRequest: %d", resp.StatusCode)
	}
	resp, err = http.Get(lines["demo-idp"][:strings.Index(lines["demo-idp"], " ")])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "demo-ada") {
		t.Fatalf("demo IdP home: %d %.500s", resp.StatusCode, body)
	}
}

// TestNoDemoIdP: -demo-idp=false with no metadata leaves SAML off.
func TestNoDemoIdP(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin"}, "-demo-idp=false")
	if lines["saml-login"] != "" || lines["demo-idp"] != "" {
		t.Fatalf("SAML is on: %v", lines)
	}
}
