package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestUserPage: an account explains itself: its link to each connection
// (the SCIM directory that owns it, the SSO that signed it in), its groups,
// its roles with the rule that gave each, its attributes, and its events
// with the values before and after; Deactivate asks first. In Chromium too,
// with screenshots.
func TestUserPage(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "scim-token", "saml-login", "admin"}, "-scim-token", "SECRET")
	scimBase := lines["scim"]

	status, ada := do(t, "POST", scimBase+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.example","externalId":"demo-ada","title":"Engineer","name":{"givenName":"Ada","familyName":"Lovelace"},"emails":[{"value":"ada@acme.example","primary":true}],"active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("SCIM create: %d %v", status, ada)
	}
	id := ada["id"].(string)
	if status, _ := do(t, "PATCH", scimBase+"/Users/"+id, "SECRET", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"Lead Engineer"}]}`); status != http.StatusOK {
		t.Fatalf("SCIM patch: %d", status)
	}
	if status, _ := do(t, "POST", scimBase+"/Groups", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"engineering","members":[{"value":"`+id+`"}]}`); status != http.StatusCreated {
		t.Fatalf("SCIM group: %d", status)
	}
	_, preview := adminPost(t, lines["admin"], "/admin/t/acme/access/preview", url.Values{"rules": {`[{"id":"leads","filter":"title eq \"Lead Engineer\"","roles":["builder"]}]`}})
	plan := regexp.MustCompile(`name="plan" value="([^"]+)"`).FindStringSubmatch(preview)
	if plan == nil {
		t.Fatalf("no access plan:\n%s", preview)
	}
	if status, _ := adminPost(t, lines["admin"], "/admin/t/acme/access/apply", url.Values{"plan": {plan[1]}}); status != http.StatusSeeOther {
		t.Fatalf("apply: %d", status)
	}
	jar, _ := cookiejar.New(nil)
	demoLogin(t, &http.Client{Jar: jar, Timeout: 10 * time.Second}, lines["saml-login"], "ada").Body.Close()

	p := adminGet(t, lines["admin"], "/admin/t/acme/users/"+id)
	section := func(id string) string {
		i := strings.Index(p, `id="`+id+`"`)
		if i < 0 {
			t.Fatalf("no %s on the user page:\n%s", id, p[strings.Index(p, "<main>"):])
		}
		s := p[i:]
		return s[:strings.Index(s, "</table>")+len("</table>")]
	}
	links := section("user-links")
	if !regexp.MustCompile(`scim</a> .*<b>\(owner\)</b>.*<code>demo-ada</code>`).MatchString(links) || !regexp.MustCompile(`saml</a>.*<code>demo-ada</code>`).MatchString(links) {
		t.Errorf("links:\n%s", links)
	}
	if !strings.Contains(p, `>engineering</a>`) {
		t.Error("the group is not on the user page")
	}
	if roles := section("user-roles"); !strings.Contains(roles, "<b>builder</b>") || !strings.Contains(roles, "access rule leads (users where title eq &#34;Lead Engineer&#34;)") {
		t.Errorf("roles:\n%s", roles)
	}
	if attrs := section("user-attrs"); !strings.Contains(attrs, "<th>title</th><td><code>Lead Engineer</code>") || !strings.Contains(attrs, "<th>name.givenName</th><td><code>Ada</code>") {
		t.Errorf("attributes:\n%s", attrs)
	}
	i := strings.Index(p, `id="user-events"`)
	events := p[i : strings.Index(p[i:], "events read")+i]
	if !strings.Contains(events, `<tr class="change"><td>title</td><td><del>Engineer</del></td><td>→ Lead Engineer</td></tr>`) {
		t.Errorf("the title change is not shown before and after:\n%s", events)
	}
	for _, kind := range []string{"user.created", "group.members_added", "user.updated"} {
		if !strings.Contains(events, "<code>"+kind+"</code>") {
			t.Errorf("no %s event on the user page", kind)
		}
	}

	// Deactivate asks first: the GET changes nothing, the POST of its
	// form deactivates.
	confirm := adminGet(t, lines["admin"], "/admin/t/acme/users/"+id+"/deactivate")
	if !strings.Contains(confirm, `action="/admin/t/acme/users/`+id+`/deactivate"`) || !strings.Contains(confirm, "signed out of the app at once") {
		t.Fatalf("the confirmation page:\n%s", confirm[strings.Index(confirm, "<main>"):])
	}
	if _, u := do(t, "GET", scimBase+"/Users/"+id, "SECRET", ""); u["active"] != true {
		t.Fatal("showing the confirmation deactivated the user")
	}
	if dash := adminGet(t, lines["admin"], "/admin/t/acme"); strings.Contains(dash, `method="post" action="/admin/t/acme/users/`+id+`/deactivate"`) {
		t.Fatal("the user list still deactivates in one click")
	}

	bin := chromium(t)
	dir := screenshotDir(t)
	dom := browse(t, bin, adminURL(t, lines["admin"], "/admin/t/acme/users/"+id), filepath.Join(dir, "user-page.png"))
	if !strings.Contains(dom, "Where it comes from") || !strings.Contains(dom, "Lead Engineer") {
		t.Fatalf("the user page in Chromium:\n%.3000s", dom)
	}
	dom = browse(t, bin, adminURL(t, lines["admin"], "/admin/t/acme/users/"+id+"/deactivate"), filepath.Join(dir, "user-deactivate-confirm.png"))
	if !strings.Contains(dom, "Yes, deactivate") {
		t.Fatalf("the confirmation in Chromium:\n%.3000s", dom)
	}
	if status, _ := adminPost(t, lines["admin"], "/admin/t/acme/users/"+id+"/deactivate", nil); status != http.StatusSeeOther {
		t.Fatalf("confirmed deactivation: %d", status)
	}
	if _, u := do(t, "GET", scimBase+"/Users/"+id, "SECRET", ""); u["active"] != false {
		t.Fatal("the confirmed deactivation did not deactivate")
	}
}
