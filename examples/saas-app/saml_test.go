package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/saml/samltest"
)

func me(t *testing.T, c *http.Client, base string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Get(base + "/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestSAMLSingleSignOn(t *testing.T) {
	idp, err := samltest.New("https://idp.acme.test/metadata")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(idp.Handler())
	defer srv.Close()
	idp.SSOURL = srv.URL + "/sso"
	idp.SetUser(&samltest.User{NameID: "00u1", Attributes: []samltest.Attribute{
		{Name: "email", Values: []string{"ada@acme.test"}},
		{Name: "firstName", Values: []string{"Ada"}},
		{Name: "lastName", Values: []string{"Lovelace"}},
	}})

	lines := startAppLines(t, []string{"scim", "scim-token", "saml-metadata", "saml-login"},
		"-tenant", "acme", "-scim-token", "SECRET", "-saml-idp-metadata", srv.URL+"/metadata", "-saml-email-domain", "acme.test")
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	if lines["saml-metadata"] != base+"/saml/acme/metadata" || lines["saml-login"] != base+"/saml/acme/login" {
		t.Fatalf("printed %v", lines)
	}
	resp, err := http.Get(lines["saml-metadata"])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), base+"/saml/acme/acs") {
		t.Fatalf("SP metadata without the ACS: %s", body)
	}

	// The SCIM directory provisions Ada first; her first SSO finds her
	// through the pairing (the IdP's NameID is her SCIM externalId).
	status, created := do(t, "POST", lines["scim"]+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada","emails":[{"value":"ada@acme.test","primary":true}],"externalId":"00u1","active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM create: %d %v", status, created)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me without a session: %d", status)
	}
	resp, err = idp.Login(browser, lines["saml-login"])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	status, got := me(t, browser, base)
	if status != http.StatusOK || got["id"] != created["id"] || got["userName"] != "ada" {
		t.Fatalf("/me after SSO: %d %v, want the SCIM user %v", status, got, created["id"])
	}

	// IdP-initiated logins are off by default.
	form, err := idp.InitiatedForm(samltest.User{NameID: "00u1"}, base+"/saml/acme/acs", base+"/saml/acme/metadata", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(base+"/saml/acme/acs", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Single sign-on failed.") || strings.Contains(string(body), "administrator") && strings.Contains(string(body), "deactivated") {
		t.Fatalf("IdP-initiated login: %d %q", resp.StatusCode, body)
	}

	// The directory deactivates Ada: her session stops working, and she
	// cannot sign in again.
	status, _ = do(t, "PATCH", lines["scim"]+"/Users/"+created["id"].(string), "SECRET", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`)
	if status != http.StatusOK {
		t.Fatalf("SCIM deactivate: %d", status)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me of a deactivated user: %d", status)
	}
	resp, err = idp.Login(browser, lines["saml-login"])
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Your account is deactivated") {
		t.Fatalf("SSO of a deactivated user: %d %q", resp.StatusCode, body)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me after a refused SSO: %d", status)
	}
}

func TestSAMLIdPInitiatedFlag(t *testing.T) {
	idp, err := samltest.New("https://idp.acme.test/metadata")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(idp.Handler())
	defer srv.Close()
	idp.SSOURL = srv.URL + "/sso"
	lines := startAppLines(t, []string{"scim", "saml-login"}, "-saml-idp-metadata", srv.URL+"/metadata", "-saml-idp-initiated")
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	form, err := idp.InitiatedForm(samltest.User{NameID: "00u7", Attributes: []samltest.Attribute{{Name: "email", Values: []string{"bob@acme.test"}}}},
		base+"/saml/acme/acs", base+"/saml/acme/metadata", "/me")
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.PostForm(base+"/saml/acme/acs", form)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || got["userName"] != "bob@acme.test" {
		t.Fatalf("IdP-initiated login to /me: %d %v", resp.StatusCode, got)
	}
}
