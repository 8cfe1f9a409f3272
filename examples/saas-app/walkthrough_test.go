package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// readmeQuickStart returns the sh blocks of README.md's "SCIM quick start"
// section, in order: the command that starts the app (with the lines it
// prints as comments), Ada's creation, her deactivation.
func readmeQuickStart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## SCIM quick start\n")
	if i < 0 {
		t.Fatal("README.md has no SCIM quick start")
	}
	s = s[i+1:]
	if j := strings.Index(s, "\n### "); j >= 0 {
		s = s[:j]
	}
	var blocks []string
	for {
		i := strings.Index(s, "```sh\n")
		if i < 0 {
			break
		}
		s = s[i+len("```sh\n"):]
		j := strings.Index(s, "```\n")
		if j < 0 {
			t.Fatal("an unclosed sh block in the SCIM quick start")
		}
		blocks = append(blocks, s[:j])
		s = s[j:]
	}
	if len(blocks) != 3 {
		t.Fatalf("the SCIM quick start has %d sh blocks, want 3 (start, create, deactivate)", len(blocks))
	}
	return blocks
}

// TestREADMEWalkthrough runs the README's walkthrough as written: the
// quick start's command line (on a free port), its curl that creates Ada,
// Ada's sign-in at the demo IdP (the same account), the curl that
// deactivates her, and her refused second sign-in. The shell commands run
// in bash with curl; only the address is replaced by the test's.
func TestREADMEWalkthrough(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err == nil {
		_, err = exec.LookPath("bash")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: the walkthrough needs curl and bash: %v", err)
		}
		t.Skipf("SKIP walkthrough: %v", err)
	}
	blocks := readmeQuickStart(t)
	start := strings.Split(strings.TrimSpace(blocks[0]), "\n")
	args, ok := strings.CutPrefix(start[0], "go run ./examples/saas-app ")
	if !ok {
		t.Fatalf("the quick start does not start the demo: %q", start[0])
	}
	var flags []string
	fields := strings.Fields(args)
	for i := 0; i < len(fields); i++ {
		if fields[i] == "-addr" { // the test's free port instead
			i++
			continue
		}
		flags = append(flags, fields[i])
	}
	lines := startAppLines(t, []string{"scim", "scim-token", "saml-login", "admin"}, flags...)
	base := strings.TrimSuffix(lines["scim"], "/scim/v2")
	addr := strings.TrimPrefix(base, "http://")
	for _, l := range start[1:] {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "# "), ": ")
		if v = strings.ReplaceAll(v, "127.0.0.1:8080", addr); !ok || lines[k] != v {
			t.Errorf("the README says the app prints %q, it printed %s: %q", l, k, lines[k])
		}
	}
	sh := func(block string) string {
		t.Helper()
		cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", strings.ReplaceAll(block, "127.0.0.1:8080", addr))
		cmd.Env = append(os.Environ(), "PATH="+strings.TrimSuffix(curl, "/curl")+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v running\n%s\n%s", err, block, out)
		}
		return string(out)
	}

	// Create Ada: the create answers her, the search finds her.
	out := sh(blocks[1])
	dec := json.NewDecoder(strings.NewReader(out))
	var created, found map[string]any
	if err := dec.Decode(&created); err != nil || created["userName"] != "ada@acme.example" || created["externalId"] != "demo-ada" {
		t.Fatalf("the create curl answered %v (%v):\n%s", created, err, out)
	}
	if err := dec.Decode(&found); err != nil || found["totalResults"] != float64(1) {
		t.Fatalf("the search curl answered %v (%v)", found, err)
	}

	// Sign in as Ada at the demo IdP: the account the curl made, the only Ada.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp := demoLogin(t, browser, lines["saml-login"], "ada")
	resp.Body.Close()
	if status, got := me(t, browser, base); status != http.StatusOK || got["id"] != created["id"] {
		t.Fatalf("/me after Ada's sign-in: %d %v, want the SCIM user %v", status, got, created["id"])
	}
	if status, list := do(t, "GET", lines["scim"]+"/Users?filter="+`userName%20sw%20%22ada%22`, lines["scim-token"], ""); status != http.StatusOK || list["totalResults"] != float64(1) {
		t.Fatalf("Ada's accounts after the sign-in: %d %v, want one", status, list)
	}

	// Deactivate her with the README's commands: signed out, refused.
	out = sh(blocks[2])
	var patched map[string]any
	if err := json.Unmarshal([]byte(out), &patched); err != nil || patched["id"] != created["id"] || patched["active"] != false {
		t.Fatalf("the deactivation curl answered %v (%v):\n%s", patched, err, out)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me of the deactivated Ada: %d", status)
	}
	resp = demoLogin(t, browser, lines["saml-login"], "ada")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "ask your administrator") {
		t.Fatalf("Ada's second sign-in: %d\n%s", resp.StatusCode, body)
	}
	if status, _ := me(t, browser, base); status != http.StatusUnauthorized {
		t.Fatalf("/me after the refused sign-in: %d", status)
	}
}
