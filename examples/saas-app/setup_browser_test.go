package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSetupInChromium: an IT admin opens a setup link in a real browser,
// follows the SAML steps against the demo IdP (a bad metadata file
// first), passes the test sign-in, signs in for real, then sets up SCIM
// and sees the directory's first request arrive; a revoked link is
// refused. Screenshots of every step, the time from opening the link to
// the working sign-in, and each page's weight are reported.
func TestSetupInChromium(t *testing.T) {
	bin := chromium(t)
	dir := screenshotDir(t)
	base, tok, lines := setupApp(t)
	idLink, link := newLink(t, base, tok, "globex", `{"kinds": ["saml", "scim"], "expiresIn": "24h"}`)
	secret := strings.TrimSuffix(strings.TrimPrefix(link, base+"/setup/"), "/")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.WindowSize(1280, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()
	step := 0
	var report strings.Builder
	// shot saves a screenshot of the step and notes the page's weight:
	// the bytes of its HTML, and that it loaded no other resource.
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			step++
			buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("setup-%02d-%s.png", step, name)), buf, 0o644); err != nil {
				return err
			}
			path, err := chromedp.Run(ctx, chromedp.Evaluate[string]("location.pathname"))
			if err != nil {
				return err
			}
			size, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByType("navigation")[0].encodedBodySize`))
			if err != nil {
				return err
			}
			res, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByType("resource").length`))
			if err != nil {
				return err
			}
			if strings.HasPrefix(path, "/setup/") && res != 0 {
				t.Errorf("step %s loaded %v resources besides its HTML", name, res)
			}
			fmt.Fprintf(&report, "  %2d %-20s %6.0f bytes  %s\n", step, name, size, strings.Replace(path, secret, "{secret}", 1))
			return nil
		})
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v\n%.1500s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	value := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	badXML := filepath.Join(t.TempDir(), "okta-metadata.xml")
	if err := os.WriteFile(badXML, []byte(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="http://www.okta.com/x"></EntityDescriptor>`), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	run("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#start-saml")), shot("landing"))
	run("SAML", chromedp.Click(chromedp.CSS("#start-saml")), chromedp.WaitVisible(chromedp.CSS("#idp-demo")), shot("saml-pick-idp"))
	run("demo IdP steps", chromedp.Click(chromedp.CSS("#idp-demo")), chromedp.WaitVisible(chromedp.CSS("#entity-id")), shot("saml-steps"))
	entityID, acs := value("#entity-id"), value("#acs-url")
	if entityID != base+"/saml/globex/sso/metadata" || acs != base+"/saml/globex/sso/acs" {
		t.Fatalf("values to paste: %q %q", entityID, acs)
	}
	// A bad metadata file first: a clear message, nothing saved.
	run("bad file", chromedp.SetUploadFiles(chromedp.CSS("#metadataFile"), []string{badXML}),
		chromedp.Click(chromedp.CSS("#save-metadata")), chromedp.WaitVisible(chromedp.CSS("#error")), shot("saml-bad-metadata"))
	if msg := text("#error"); !strings.Contains(msg, "no entity ID or no IDPSSODescriptor") || !strings.Contains(msg, "Nothing was changed") {
		t.Fatalf("bad file message: %q", msg)
	}
	if _, out := do(t, "GET", base+"/admin/api/tenants/globex", tok, ""); len(out["connections"].([]any)) != 0 {
		t.Fatalf("a bad file made a connection: %v", out)
	}
	// The demo IdP's metadata URL (filled in): saved, then test sign-in.
	run("save metadata", chromedp.Click(chromedp.CSS("#save-metadata")),
		chromedp.WaitVisible(chromedp.CSS("#test-signin")), shot("saml-saved"))
	run("test sign-in", chromedp.Click(chromedp.CSS("#test-signin")), chromedp.WaitVisible(chromedp.CSS("#as-ada")), shot("saml-demo-idp"))
	run("sign in as ada", chromedp.Click(chromedp.CSS("#as-ada")), chromedp.WaitVisible(chromedp.CSS("#test-ok")), shot("saml-test-result"))
	if email, match := text("#r-email"), text("#r-match"); email != "ada@acme.example" || !strings.Contains(match, "a new user is created") {
		t.Fatalf("test result: %q %q", email, match)
	}
	if status, out := do(t, "GET", lines["scim"]+"/Users", "nope", ""); status != http.StatusUnauthorized {
		t.Fatalf("SCIM without a token: %d %v", status, out)
	}
	// A real sign-in now works.
	run("real sign-in", chromedp.Navigate(base+"/saml/globex/sso/login"), chromedp.WaitVisible(chromedp.CSS("#as-ada")),
		chromedp.Click(chromedp.CSS("#as-ada")), chromedp.WaitVisible(chromedp.CSS("#signed-in")), shot("saml-signed-in"))
	toSignIn := time.Since(start)

	// SCIM: token shown once, a request arrives in the live view.
	run("SCIM", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#start-scim")), chromedp.Click(chromedp.CSS("#start-scim")),
		chromedp.WaitVisible(chromedp.CSS("#scim-idp-okta")), chromedp.Click(chromedp.CSS("#scim-idp-okta")),
		chromedp.WaitVisible(chromedp.CSS("#create-token")), shot("scim-steps"),
		chromedp.Click(chromedp.CSS("#create-token")), chromedp.WaitVisible(chromedp.CSS("#token")), shot("scim-token"))
	token, scimBase := value("#token"), value("#base-url")
	req, _ := http.NewRequest("POST", scimBase+"/Users", strings.NewReader(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"grace@acme.example","externalId":"00u-grace","name":{"givenName":"Grace","familyName":"Hopper"},"emails":[{"value":"grace@acme.example","primary":true}],"active":true}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/scim+json")
	req.Header.Set("User-Agent", "Okta SCIM Client 1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("SCIM POST with the shown token: %v %v", resp, err)
	}
	resp.Body.Close()
	run("requests", chromedp.Click(chromedp.CSS("#see-requests")), chromedp.WaitVisible(chromedp.CSS("#requests")), shot("scim-requests"))
	if rows := text("#requests"); !strings.Contains(rows, "POST /Users") || !strings.Contains(rows, "201") {
		t.Fatalf("live view: %q", rows)
	}

	// Readable on a phone: no horizontal scrolling at 390 px.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(link+"saml/idp?name=okta"),
		chromedp.WaitVisible(chromedp.CSS("#entity-id")), shot("phone-okta-steps"))
	if fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.documentElement.scrollWidth <= window.innerWidth")); err != nil || !fits {
		t.Errorf("the Okta steps scroll sideways on a phone (%v)", err)
	}
	run("desktop", chromedp.ResetViewport())

	// The host's admin sees the states; a revoked link is refused.
	run("admin", chromedp.Navigate(adminURL(t, lines["admin"], "/admin/t/globex/setup")), chromedp.WaitVisible(chromedp.CSS("#states")), shot("admin-setup-links"))
	if states := text("#states"); !strings.Contains(states, "receiving") {
		t.Fatalf("admin states: %q", states)
	}
	if status, _ := do(t, "DELETE", base+"/admin/api/tenants/globex/setup-links/"+idLink, tok, ""); status != http.StatusNoContent {
		t.Fatalf("revoke: %d", status)
	}
	run("revoked", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#refused")), shot("revoked"))
	if h := text("#refused"); !strings.Contains(h, "revoked") {
		t.Fatalf("revoked page: %q", h)
	}

	// Figures.
	out := fmt.Sprintf("time from opening the link to a working SAML sign-in (demo IdP, test clock): %s\npage weight of each step (HTML body bytes; the setup pages load nothing else):\n%s",
		toSignIn.Round(time.Millisecond), report.String())
	t.Log(out)
	if err := os.WriteFile(filepath.Join(dir, "setup-figures.txt"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}
