package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestMain ends the run with one line that names what was skipped for a
// missing server or tool (shown with go test -v, or when a test fails).
func TestMain(m *testing.M) {
	code := m.Run()
	if line := skipSummary(); line != "" {
		fmt.Fprintln(os.Stderr, line)
	}
	os.Exit(code)
}

// skipSummary is "saas-app: skipped without ..." or "" when every
// server the tests use is there.
func skipSummary() string {
	var missing []string
	has := func(names ...string) bool {
		for _, n := range names {
			if _, err := exec.LookPath(n); err == nil {
				return true
			}
		}
		return false
	}
	if !has("chromium", "chromium-browser", "google-chrome") {
		missing = append(missing, "chromium (the browser tests)")
	}
	if !ldaptest.Available() {
		missing = append(missing, "slapd (the LDAP tests)")
	}
	if os.Getenv("IDPROV_TEST_POSTGRES_DSN") == "" {
		missing = append(missing, "IDPROV_TEST_POSTGRES_DSN (the PostgreSQL replica tests)")
	}
	if !has("curl") || !has("bash") {
		missing = append(missing, "curl and bash (the README walkthrough)")
	}
	if len(missing) == 0 {
		return ""
	}
	return "saas-app: skipped without " + strings.Join(missing, ", ")
}
