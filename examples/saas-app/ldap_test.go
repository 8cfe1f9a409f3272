package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestLDAPSync: users and groups of a real slapd, synced in the
// background, show through SCIM GET like any other, and the syncs and
// the Syncer's state show in /metrics.
func TestLDAPSync(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{})
	for _, uid := range []string{"ada", "bob"} {
		srv.Add(t, "uid="+uid+","+srv.PeopleDN, map[string][]string{
			"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {uid + "@acme.example"},
		})
	}
	srv.Add(t, "cn=eng,"+srv.GroupsDN, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"eng"}, "member": {"uid=ada," + srv.PeopleDN}})
	lines := startAppLines(t, []string{"scim", "metrics"}, "-scim-token", "SECRET",
		"-ldap-url", srv.URL, "-ldap-bind-dn", srv.SyncDN, "-ldap-bind-password", srv.SyncPassword,
		"-ldap-base-dn", srv.BaseDN, "-ldap-interval", "100ms")
	base := lines["scim"]
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, users := do(t, "GET", base+"/Users?filter="+`userName%20eq%20%22bob%22`, "SECRET", "")
		_, groups := do(t, "GET", base+"/Groups", "SECRET", "")
		if users["totalResults"] == float64(1) && strings.Contains(strings.ToLower(ldapTestJSON(groups)), `"eng"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("LDAP users not visible through SCIM: users %v groups %v", users, groups)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := []string{
		`idprov_ldap_sync_duration_seconds_count{connection="ldap",mode="full",outcome="ok",tenant="acme"}`,
		`idprov_ldap_state_size{connection="ldap",memory="heap",tenant="acme"}`,
		`idprov_ldap_state_size{connection="ldap",memory="mapped",tenant="acme"} 0`,
	}
	for {
		resp, err := http.Get(lines["metrics"])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s:\n%s", missing, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ldapTestJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestLDAPHeldPlanOnAdminPage: entries gone from the directory in a mass
// are held, not deactivated; the admin page shows the held plan, and
// confirming it there deactivates them. slapd pushes the deletes one by
// one (refreshAndPersist, which the page shows): the first is an
// offboarding, applied at once; with it the next two cross the share.
func TestLDAPHeldPlanOnAdminPage(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{})
	uids := []string{"u1", "u2", "u3", "u4", "u5"}
	for _, uid := range uids {
		srv.Add(t, "uid="+uid+","+srv.PeopleDN, map[string][]string{
			"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {uid + "@acme.example"},
		})
	}
	lines := startAppLines(t, []string{"scim", "admin"}, "-scim-token", "SECRET",
		"-ldap-url", srv.URL, "-ldap-bind-dn", srv.SyncDN, "-ldap-bind-password", srv.SyncPassword,
		"-ldap-base-dn", srv.BaseDN, "-ldap-interval", "1h")
	admin := lines["admin"]
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, users := do(t, "GET", lines["scim"]+"/Users", "SECRET", ""); users["totalResults"] == float64(len(uids)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first LDAP sync did not bring the users")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for !strings.Contains(adminGet(t, admin, "/admin/t/acme"), "push (refreshAndPersist) since") {
		if time.Now().After(deadline) {
			t.Fatal("the admin page does not say the connection is pushed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, uid := range uids[:3] {
		srv.Delete(t, "uid="+uid+","+srv.PeopleDN)
	}
	if status, body := adminPost(t, admin, "/admin/t/acme/ldap/ldap/sync", nil); status != http.StatusSeeOther {
		t.Fatalf("sync now = %d %s", status, body)
	}
	// "Sync now" runs in the background: wait for it to end.
	var page string
	within(t, 20*time.Second, "the sync's held plan on the admin page", func() bool {
		page = adminGet(t, admin, "/admin/t/acme")
		return strings.Contains(page, "Held plan ") && !strings.Contains(page, "syncing: ")
	})
	i := strings.Index(page, "Held plan ")
	if i < 0 || !strings.Contains(page, "2 deactivations wait for confirmation") {
		t.Fatalf("no held plan on the page:\n%s", page[strings.Index(page, `id="connections"`):strings.Index(page, `id="users"`)])
	}
	plan := page[i+len("Held plan "):]
	plan = plan[:strings.Index(plan, "<")]
	if _, users := do(t, "GET", lines["scim"]+"/Users?filter=active%20eq%20true", "SECRET", ""); users["totalResults"] != float64(4) {
		t.Fatalf("a held plan deactivated users: %v", users["totalResults"])
	}
	if status, body := adminPost(t, admin, "/admin/t/acme/ldap/ldap/confirm", url.Values{"plan": {plan}}); status != http.StatusSeeOther {
		t.Fatalf("confirm = %d %s", status, body)
	}
	if _, users := do(t, "GET", lines["scim"]+"/Users?filter=active%20eq%20true", "SECRET", ""); users["totalResults"] != float64(2) {
		t.Fatalf("after the confirmation, active users = %v, want 2", users["totalResults"])
	}
	if page := adminGet(t, admin, "/admin/t/acme?kind=user.deactivated"); strings.Count(page, `<code>user.deactivated</code>`) != 3 {
		t.Fatal("the event log does not show the 3 deactivations")
	}
}

// TestRegisteredLDAPConnection: an LDAP connection registered through the
// admin API starts syncing at once (no restart), and stops when deleted.
func TestRegisteredLDAPConnection(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{})
	srv.Add(t, "uid=ada,"+srv.PeopleDN, map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {"ada"}, "cn": {"ada"}, "sn": {"ada"}, "mail": {"ada@globex.example"},
	})
	lines := startAppLines(t, []string{"scim", "admin"})
	base, tok := adminToken(t, lines)
	api := base + "/admin/api/tenants/globex"
	if status, body := do(t, "PUT", api, tok, `{"name": "Globex", "verifiedDomains": ["globex.example"]}`); status != http.StatusOK {
		t.Fatalf("PUT tenant = %d %v", status, body)
	}
	_, body := do(t, "PUT", api+"/connections/reader", tok, `{"kind": "scim"}`)
	reader, _ := body["token"].(string)
	in, _ := json.Marshal(map[string]string{"kind": "ldap", "url": srv.URL, "bindDN": srv.SyncDN, "bindPassword": srv.SyncPassword, "baseDN": srv.BaseDN, "interval": "100ms"})
	if status, body := do(t, "PUT", api+"/connections/corp", tok, string(in)); status != http.StatusOK {
		t.Fatalf("PUT ldap = %d %v", status, body)
	}
	count := func(filter string) float64 {
		_, users := do(t, "GET", lines["scim"]+"/Users?filter="+url.QueryEscape(filter), reader, "")
		n, _ := users["totalResults"].(float64)
		return n
	}
	within(t, 20*time.Second, "the registered LDAP connection's first sync", func() bool { return count(`userName eq "ada"`) == 1 })
	// The report follows the sync's last write: wait for it.
	within(t, 10*time.Second, "the LDAP status on GET tenant", func() bool {
		status, body := do(t, "GET", api, tok, "")
		return status == http.StatusOK && strings.Contains(ldapTestJSON(body), "last sync")
	})

	if status, _ := do(t, "DELETE", api+"/connections/corp", tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE ldap = %d", status)
	}
	srv.Add(t, "uid=bob,"+srv.PeopleDN, map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {"bob"}, "cn": {"bob"}, "sn": {"bob"}, "mail": {"bob@globex.example"},
	})
	time.Sleep(1500 * time.Millisecond) // 15 intervals
	if n := count(`userName eq "bob"`); n != 0 {
		t.Fatalf("a deleted LDAP connection still syncs: bob is there")
	}
	if n := count(`userName eq "ada"`); n != 1 {
		t.Fatalf("the deleted connection's user is gone: %v", n)
	}
}
