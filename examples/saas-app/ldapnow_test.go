package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestLDAPSyncNowInBackground: "Sync now" on the admin page returns at
// once; while the sync of a 5000-user slapd runs, the connection's card
// says how many entries it read and at what rate, and the page refreshes
// itself; a second "Sync now" starts nothing. Once the sync ends, the page
// stops refreshing and shows its report.
func TestLDAPSyncNowInBackground(t *testing.T) {
	const n = 5000
	ldif := filepath.Join(t.TempDir(), "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldaptest.WriteDirectory(f, "dc=example,dc=com", n, 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := ldaptest.Start(t, ldaptest.Options{LDIFFile: ldif})
	lines := startAppLines(t, []string{"scim", "admin"}, "-scim-token", "SECRET",
		"-ldap-url", srv.URL, "-ldap-bind-dn", srv.SyncDN, "-ldap-bind-password", srv.SyncPassword,
		"-ldap-base-dn", srv.BaseDN, "-ldap-interval", "1h")
	admin := lines["admin"]
	within(t, 60*time.Second, "the first sync's report on the admin page", func() bool {
		p := adminGet(t, admin, "/admin/t/acme")
		return strings.Contains(p, "5000 entries, 5000 created") && !strings.Contains(p, "syncing: ")
	})
	if p := adminGet(t, admin, "/admin/t/acme"); strings.Contains(p, `http-equiv="refresh"`) {
		t.Fatal("the page refreshes itself while no sync runs")
	}

	start := time.Now()
	status, loc := adminPostRedirect(t, admin, "/admin/t/acme/ldap/ldap/sync")
	if status != http.StatusSeeOther || !strings.Contains(loc, "started") {
		t.Fatalf("sync now = %d, to %s", status, loc)
	}
	page := adminGet(t, admin, "/admin/t/acme")
	if !strings.Contains(page, `id="syncing-ldap"`) || !strings.Contains(page, `<meta http-equiv="refresh" content="2; url=/admin/t/acme">`) {
		t.Fatalf("the page right after sync now (%s) shows no running sync:\n%s", time.Since(start), page[:strings.Index(page, `id="users"`)])
	}
	if status, loc := adminPostRedirect(t, admin, "/admin/t/acme/ldap/ldap/sync"); status != http.StatusSeeOther || !strings.Contains(loc, "running+already") {
		t.Fatalf("a second sync now = %d, to %s", status, loc)
	}
	read := regexp.MustCompile(`syncing: ([1-9][0-9]*) entries read, ([0-9]+)/s \(full sync`)
	within(t, 60*time.Second, "the entries read on the admin page", func() bool {
		return read.MatchString(adminGet(t, admin, "/admin/t/acme"))
	})
	within(t, 60*time.Second, "the end of the sync on the admin page", func() bool {
		p := adminGet(t, admin, "/admin/t/acme")
		return strings.Contains(p, "5000 entries, 0 created, 0 updated, 0 linked, 5000 unchanged") && !strings.Contains(p, "syncing: ") && !strings.Contains(p, `http-equiv="refresh"`)
	})
}

// adminPostRedirect posts an empty form and returns the status and the
// redirect's Location, unescaped.
func adminPostRedirect(t *testing.T, printed, path string) (int, string) {
	t.Helper()
	u, _ := url.Parse(printed)
	req, _ := http.NewRequest("POST", printed[:strings.Index(printed, "/admin")]+path, nil)
	req.Header.Set("Authorization", "Bearer "+u.Query().Get("token"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}
