package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium returns the headless Chromium binary: skipped without one,
// except in CI (CI=true), where its absence fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI=true requires it")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// screenshotDir is where the browser tests put their screenshots:
// $SAAS_APP_SCREENSHOTS, or a temporary directory of the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SAAS_APP_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// browse runs headless Chromium on url as a process: it returns the DOM
// after load, and with shot set also writes a 1280x1000 screenshot there.
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(args, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	if shot != "" {
		cmd := exec.CommandContext(ctx, bin, append(args, "--screenshot="+shot, "--window-size=1280,1000", url)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chromium --screenshot: %v\n%s", err, b)
		}
		if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
			t.Fatalf("no screenshot at %s: %v", shot, err)
		}
	}
	return string(out)
}

// adminURL returns the URL of an admin path carrying the printed admin
// token.
func adminURL(t *testing.T, printed, path string) string {
	t.Helper()
	u, err := url.Parse(printed)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("admin line %q has no token", printed)
	}
	return u.Scheme + "://" + u.Host + path + "?token=" + url.QueryEscape(u.Query().Get("token"))
}

// TestAdminPageInChromium: a user an identity provider creates over SCIM
// shows on the admin page, and the event log shows their offboarding, in a
// real browser.
func TestAdminPageInChromium(t *testing.T) {
	bin := chromium(t)
	dir := screenshotDir(t)
	lines := startAppLines(t, []string{"scim", "scim-token", "admin"}, "-scim-token", "SECRET")
	scimBase := lines["scim"]

	status, created := do(t, "POST", scimBase+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"grace@acme.example","externalId":"00u-grace","name":{"givenName":"Grace","familyName":"Hopper"},"emails":[{"value":"grace@acme.example","primary":true}],"active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM create: %d %v", status, created)
	}
	id := created["id"].(string)
	if status, _ := do(t, "POST", scimBase+"/Groups", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"engineering","members":[{"value":"`+id+`"}]}`); status != http.StatusCreated {
		t.Fatalf("SCIM group create: %d", status)
	}

	dom := browse(t, bin, adminURL(t, lines["admin"], "/admin/t/acme"), filepath.Join(dir, "1-provisioned.png"))
	if !strings.Contains(dom, `id="user-`+id+`"`) || !strings.Contains(dom, "grace@acme.example") || !strings.Contains(dom, "Grace Hopper") {
		t.Fatalf("the SCIM user is not on the admin page:\n%.3000s", dom)
	}
	if !strings.Contains(dom, "engineering") || !strings.Contains(dom, "user.created") {
		t.Fatalf("group or event missing:\n%.3000s", dom)
	}

	// The directory offboards Grace: deactivated, then deleted.
	if status, _ := do(t, "PATCH", scimBase+"/Users/"+id, "SECRET", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`); status != http.StatusOK {
		t.Fatalf("SCIM deactivate: %d", status)
	}
	dom = browse(t, bin, adminURL(t, lines["admin"], "/admin/t/acme"), filepath.Join(dir, "2-deactivated.png"))
	row := dom[strings.Index(dom, `id="user-`+id+`"`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, "deactivated") {
		t.Fatalf("the user row does not say deactivated: %s", row)
	}
	if status, _ := do(t, "DELETE", scimBase+"/Users/"+id, "SECRET", ""); status != http.StatusNoContent {
		t.Fatalf("SCIM delete: %d", status)
	}
	u := adminURL(t, lines["admin"], "/admin/t/acme") + "&user=grace@acme.example"
	dom = browse(t, bin, u, filepath.Join(dir, "3-offboarding-events.png"))
	events := dom[strings.Index(dom, `id="event-table"`):]
	events = events[:strings.Index(events, "</table>")]
	for _, kind := range []string{"user.created", "user.deactivated", "user.deleted", "group.members_removed"} {
		if !strings.Contains(events, kind) {
			t.Errorf("the event log filtered on grace lacks %s", kind)
		}
	}
	if t.Failed() {
		t.Fatalf("events:\n%s", events)
	}
	if strings.Contains(dom, `id="user-`+id+`"`) {
		t.Fatal("a deleted user is still listed")
	}
}

// TestAdminAuth: the admin page wants the printed token; the token in the
// URL becomes a cookie; a cross-origin form post is refused.
func TestAdminAuth(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin"})
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	for _, u := range []string{base + "/admin", base + "/admin/t/acme", base + "/admin?token=wrong"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token = %d", u, resp.StatusCode)
		}
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(lines["admin"])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RawQuery != "" || !strings.Contains(string(body), "Tenants") {
		t.Fatalf("GET the printed admin URL = %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, err = c.Get(base + "/admin/t/acme")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET with the cookie = %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", base+"/admin/t/acme/scim/scim/rotate", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST = %d, want 403", resp.StatusCode)
	}
}
