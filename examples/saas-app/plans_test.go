package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// scimUsers creates n users over SCIM Bulk and returns their ids.
func scimUsers(t *testing.T, base, token, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for start := 0; start < n; start += 1000 {
		var ops []string
		for i := start; i < min(start+1000, n); i++ {
			ops = append(ops, fmt.Sprintf(`{"method":"POST","path":"/Users","bulkId":"u%d","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s%04d@acme.example","externalId":"%s-%d","active":true}}`, i, prefix, i, prefix, i))
		}
		status, resp := do(t, "POST", base+"/Bulk", token, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[`+strings.Join(ops, ",")+`]}`)
		if status != http.StatusOK {
			t.Fatalf("SCIM bulk: %d %v", status, resp)
		}
		for _, op := range resp["Operations"].([]any) {
			m := op.(map[string]any)
			if m["status"] != "201" {
				t.Fatalf("bulk operation: %v", m)
			}
			loc := m["location"].(string)
			ids = append(ids, loc[strings.LastIndex(loc, "/")+1:])
		}
	}
	return ids
}

func membersJSON(ids []string) string {
	var ms []string
	for _, id := range ids {
		ms = append(ms, `{"value":"`+id+`"}`)
	}
	return "[" + strings.Join(ms, ",") + "]"
}

// TestHeldPlansOnAdminPage: a SCIM replace that would drop 1,090 of a
// group's 1,100 members is answered 409; the directory's card warns, the
// tenant page says a change waits, the list shows it in full, its page
// lists all 1,090 people page by page, and confirm applies it (the IdP's
// retry then succeeds); a second one is discarded and changes nothing.
func TestHeldPlansOnAdminPage(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "scim-token", "admin"}, "-scim-token", "SECRET")
	scimBase := lines["scim"]
	ids := scimUsers(t, scimBase, "SECRET", "p", 1100)
	status, g := do(t, "POST", scimBase+"/Groups", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"All staff","members":`+membersJSON(ids)+`}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM group: %d %v", status, g)
	}
	gid := g["id"].(string)
	replace := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"All staff","members":` + membersJSON(ids[:10]) + `}`
	if status, body := do(t, "PUT", scimBase+"/Groups/"+gid, "SECRET", replace); status != http.StatusConflict {
		t.Fatalf("a replace dropping 1,090 of 1,100: %d %v", status, body)
	}

	page := adminGet(t, lines["admin"], "/admin/t/acme")
	card := page[strings.Index(page, `id="conn-scim"`):]
	card = card[:strings.Index(card, "</h3>")]
	if !strings.Contains(card, `class="warn"`) {
		t.Errorf("the SCIM card after a held 409 is not a warning: %s", card)
	}
	if !strings.Contains(page, `id="held-banner"`) {
		t.Error("the tenant page does not say a change waits")
	}
	if log := adminGet(t, lines["admin"], "/admin/t/acme/scim/scim/log"); !strings.Contains(log, `<span class="warn">409</span>`) || strings.Contains(log, `<span class="ok">409</span>`) {
		t.Error("the request log gives the held 409 a green badge")
	}
	list := adminGet(t, lines["admin"], "/admin/t/acme/plans")
	if !strings.Contains(list, `Remove 1,090 of the 1,100 people in group &#34;All staff&#34;`) || strings.Contains(list, "MaxDeactivations") || strings.Contains(list, "HoldMemberDrops") {
		t.Fatalf("the list of held plans:\n%s", list[strings.Index(list, "<main>"):])
	}
	href := regexp.MustCompile(`href="(/admin/t/acme/plans/members/[0-9a-f]+)"`).FindStringSubmatch(list)
	if href == nil {
		t.Fatal("no link to the plan")
	}
	// Every one of the 1,090, page by page.
	seen := map[string]bool{}
	for off := 0; ; off += adminPage {
		p := adminGet(t, lines["admin"], fmt.Sprintf("%s?offset=%d", href[1], off))
		rows := regexp.MustCompile(`<tr class="item"><td>\d+</td><td><a href="/admin/t/acme/users/([^"]+)">`).FindAllStringSubmatch(p, -1)
		for _, r := range rows {
			seen[r[1]] = true
		}
		if !strings.Contains(p, `id="plan-next"`) {
			break
		}
		if len(rows) != adminPage {
			t.Fatalf("a middle page has %d rows", len(rows))
		}
	}
	if len(seen) != 1090 {
		t.Fatalf("the plan's pages list %d people, want 1,090", len(seen))
	}
	for _, id := range ids[:10] {
		if seen[id] {
			t.Fatalf("a member the replace keeps is listed as removed: %s", id)
		}
	}
	if status, _ := adminPost(t, lines["admin"], href[1]+"/confirm", nil); status != http.StatusSeeOther {
		t.Fatalf("confirm: %d", status)
	}
	if status, body := do(t, "GET", scimBase+"/Groups/"+gid, "SECRET", ""); status != http.StatusOK || len(body["members"].([]any)) != 10 {
		t.Fatalf("after confirm the group has %d members", len(body["members"].([]any)))
	}
	if status, _ := do(t, "PUT", scimBase+"/Groups/"+gid, "SECRET", replace); status != http.StatusOK {
		t.Fatalf("the IdP's retry after the confirmation: %d", status)
	}
	if page := adminGet(t, lines["admin"], "/admin/t/acme"); strings.Contains(page, `id="held-banner"`) {
		t.Fatal("a confirmed plan still waits")
	}

	// Hold another, discard it: nothing changes.
	if status, _ := do(t, "PUT", scimBase+"/Groups/"+gid, "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"All staff","members":`+membersJSON(ids)+`}`); status != http.StatusOK {
		t.Fatal("re-adding the members")
	}
	if status, _ := do(t, "PUT", scimBase+"/Groups/"+gid, "SECRET", replace); status != http.StatusConflict {
		t.Fatal("the second replace was not held")
	}
	list = adminGet(t, lines["admin"], "/admin/t/acme/plans")
	href = regexp.MustCompile(`href="(/admin/t/acme/plans/members/[0-9a-f]+)"`).FindStringSubmatch(list)
	if status, _ := adminPost(t, lines["admin"], href[1]+"/discard", nil); status != http.StatusSeeOther {
		t.Fatalf("discard: %d", status)
	}
	if _, body := do(t, "GET", scimBase+"/Groups/"+gid, "SECRET", ""); len(body["members"].([]any)) != 1100 {
		t.Fatalf("after discard the group has %d members", len(body["members"].([]any)))
	}
	if list := adminGet(t, lines["admin"], "/admin/t/acme/plans"); !strings.Contains(list, "Nothing waits for you.") {
		t.Fatal("a discarded plan is still listed")
	}
}

// TestHeldPlansInChromium: the held plan list and a plan's page, in a real
// browser, with screenshots.
func TestHeldPlansInChromium(t *testing.T) {
	bin := chromium(t)
	dir := screenshotDir(t)
	lines := startAppLines(t, []string{"scim", "scim-token", "admin"}, "-scim-token", "SECRET")
	ids := scimUsers(t, lines["scim"], "SECRET", "c", 150)
	_, g := do(t, "POST", lines["scim"]+"/Groups", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering","members":`+membersJSON(ids)+`}`)
	if status, _ := do(t, "PUT", lines["scim"]+"/Groups/"+g["id"].(string), "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering","members":[]}`); status != http.StatusConflict {
		t.Fatalf("replace: %d", status)
	}
	dom := browse(t, bin, adminURL(t, lines["admin"], "/admin/t/acme/plans"), filepath.Join(dir, "held-plans.png"))
	if !strings.Contains(dom, "Remove 150 of the 150 people in group") || !strings.Contains(dom, "1 change(s) waiting") {
		t.Fatalf("the held plans page:\n%.3000s", dom)
	}
	href := regexp.MustCompile(`href="(/admin/t/acme/plans/members/[0-9a-f]+)"`).FindStringSubmatch(dom)
	if href == nil {
		t.Fatal("no link to the plan")
	}
	dom = browse(t, bin, adminURL(t, lines["admin"], href[1]), filepath.Join(dir, "held-plan.png"))
	if n := strings.Count(dom, `<tr class="item">`); n != adminPage || !strings.Contains(dom, "Remove them from the group") || !strings.Contains(dom, "Keep the members") {
		t.Fatalf("the plan's page shows %d rows:\n%.3000s", n, dom)
	}
}

// TestLDAPHeldPlanInList: an LDAP sync's held deactivations are in the
// same list as the engine's plans, in full, and discarding them there
// keeps the people active. (However the directory delivers the deletes,
// by a sync or pushed, what is held is listed whole.)
func TestLDAPHeldPlanInList(t *testing.T) {
	uids := []string{"u1", "u2", "u3", "u4", "u5"}
	srv, lines := startLDAPApp(t, uids)
	for _, uid := range uids[:3] {
		srv.Delete(t, "uid="+uid+","+srv.PeopleDN)
	}
	if status, body := adminPost(t, lines["admin"], "/admin/t/acme/ldap/ldap/sync", nil); status != http.StatusSeeOther {
		t.Fatalf("sync now = %d %s", status, body)
	}
	// "Sync now" runs in the background: wait for it to end.
	within(t, 20*time.Second, "the end of the LDAP sync", func() bool {
		return !strings.Contains(adminGet(t, lines["admin"], "/admin/t/acme"), "syncing: ")
	})
	title := regexp.MustCompile(`Deactivate (\d+) of the (\d+) people the LDAP directory ldap manages`)
	link := regexp.MustCompile(`href="(/admin/t/acme/plans/ldap/[0-9a-f]+)"`)
	var list string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if list = adminGet(t, lines["admin"], "/admin/t/acme/plans"); link.MatchString(list) || time.Now().After(deadline) {
			break
		}
	}
	m, href := title.FindStringSubmatch(list), link.FindStringSubmatch(list)
	if m == nil || href == nil || strings.Contains(list, "Config.") {
		t.Fatalf("the held plans list:\n%s", list[strings.Index(list, "<main>"):])
	}
	p := adminGet(t, lines["admin"], href[1])
	if n := strings.Count(p, "<td>deactivated: "); fmt.Sprint(n) != m[1] || n == 0 || !strings.Contains(p, "in the directory") {
		t.Fatalf("the LDAP plan's page lists %d people, its title %s:\n%s", n, m[1], p[strings.Index(p, "<main>"):])
	}
	_, before := do(t, "GET", lines["scim"]+"/Users?filter=active%20eq%20true", "SECRET", "")
	if status, _ := adminPost(t, lines["admin"], href[1]+"/discard", nil); status != http.StatusSeeOther {
		t.Fatalf("discard: %d", status)
	}
	if _, after := do(t, "GET", lines["scim"]+"/Users?filter=active%20eq%20true", "SECRET", ""); after["totalResults"] != before["totalResults"] {
		t.Fatalf("discard changed the active users: %v -> %v", before["totalResults"], after["totalResults"])
	}
	if list := adminGet(t, lines["admin"], "/admin/t/acme/plans"); link.MatchString(list) {
		t.Fatal("a discarded LDAP plan is still listed")
	}
}

// startLDAPApp runs the app syncing from a slapd holding people uids (an
// hour apart: "Sync now" runs the next), once the first sync brought them.
func startLDAPApp(t *testing.T, uids []string) (*ldaptest.Server, map[string]string) {
	t.Helper()
	srv := ldaptest.Start(t, ldaptest.Options{})
	for _, uid := range uids {
		srv.Add(t, "uid="+uid+","+srv.PeopleDN, map[string][]string{
			"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {uid + "@acme.example"},
		})
	}
	lines := startAppLines(t, []string{"scim", "admin"}, "-scim-token", "SECRET",
		"-ldap-url", srv.URL, "-ldap-bind-dn", srv.SyncDN, "-ldap-bind-password", srv.SyncPassword,
		"-ldap-base-dn", srv.BaseDN, "-ldap-interval", "1h")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, users := do(t, "GET", lines["scim"]+"/Users", "SECRET", ""); users["totalResults"] == float64(len(uids)) {
			return srv, lines
		}
		if time.Now().After(deadline) {
			t.Fatal("the first LDAP sync did not bring the users")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHeldPlansOnSQLite: on the SQLite store (its KV and Locker) a held
// plan is listed, survives a restart, and is discarded.
func TestHeldPlansOnSQLite(t *testing.T) {
	args := []string{"-db", filepath.Join(t.TempDir(), "app.db"), "-scim-token", "SECRET"}
	want := []string{"scim", "scim-token", "admin"}
	lines, stop := launch(t, want, args...)
	ids := scimUsers(t, lines["scim"], "SECRET", "s", 120)
	_, g := do(t, "POST", lines["scim"]+"/Groups", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"All","members":`+membersJSON(ids)+`}`)
	if status, _ := do(t, "PUT", lines["scim"]+"/Groups/"+g["id"].(string), "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"All","members":[]}`); status != http.StatusConflict {
		t.Fatalf("replace: %d", status)
	}
	stop()
	lines, stop = launch(t, want, args...)
	defer stop()
	list := adminGet(t, lines["admin"], "/admin/t/acme/plans")
	href := regexp.MustCompile(`href="(/admin/t/acme/plans/members/[0-9a-f]+)"`).FindStringSubmatch(list)
	if href == nil || !strings.Contains(list, "Remove 120 of the 120 people") {
		t.Fatalf("after a restart the held plan is not listed:\n%s", list[strings.Index(list, "<main>"):])
	}
	if status, _ := adminPost(t, lines["admin"], href[1]+"/discard", nil); status != http.StatusSeeOther {
		t.Fatalf("discard: %d", status)
	}
	if list := adminGet(t, lines["admin"], "/admin/t/acme/plans"); !strings.Contains(list, "Nothing waits for you.") {
		t.Fatal("a discarded plan is still listed")
	}
}
