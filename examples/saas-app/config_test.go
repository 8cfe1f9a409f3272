package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idprov/idprov/scim"
)

// adminGet reads an admin page with the token of the printed admin line.
func adminGet(t *testing.T, printed, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", strings.TrimSuffix(printed[:strings.Index(printed, "/admin")], "/")+path, nil)
	u, _ := url.Parse(printed)
	req.Header.Set("Authorization", "Bearer "+u.Query().Get("token"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// adminPost posts a form of the admin page, as a same-origin browser.
func adminPost(t *testing.T, printed, path string, form url.Values) (int, string) {
	t.Helper()
	base := printed[:strings.Index(printed, "/admin")]
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
	u, _ := url.Parse(printed)
	req.Header.Set("Authorization", "Bearer "+u.Query().Get("token"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeConfig(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tenants.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigTenants: a -config file adds tenants with their own SCIM
// directories (by token or token hash), SAML connection and access rules,
// next to the flags' tenant acme; the token decides the tenant.
func TestConfigTenants(t *testing.T) {
	cfg := writeConfig(t, map[string]any{"tenants": []any{
		map[string]any{
			"id": "globex", "name": "Globex Corp",
			"scim":        []any{map[string]any{"id": "okta", "tokens": []string{"GLOBEX"}}},
			"saml":        map[string]any{"id": "sso", "idpMetadata": "demo", "mapping": "okta"},
			"accessRules": []any{map[string]any{"id": "all", "filter": `userName pr`, "roles": []string{"member"}}},
		},
		map[string]any{
			"id":   "initech",
			"scim": []any{map[string]any{"id": "entra", "tokenHashes": []string{scim.HashToken("INITECH").String()}}},
		},
	}})
	lines := startAppLines(t, []string{"scim", "scim-token", "saml-login", "saml-login globex", "admin"}, "-scim-token", "ACME", "-config", cfg)
	base := lines["scim"]
	for tok, user := range map[string]string{"ACME": "a@acme.test", "GLOBEX": "g@globex.test", "INITECH": "i@initech.test"} {
		if status, body := do(t, "POST", base+"/Users", tok, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+user+`","active":true}`); status != http.StatusCreated {
			t.Fatalf("create %s with %s: %d %v", user, tok, status, body)
		}
	}
	for tok, want := range map[string]string{"ACME": "a@acme.test", "GLOBEX": "g@globex.test", "INITECH": "i@initech.test"} {
		_, list := do(t, "GET", base+"/Users", tok, "")
		b, _ := json.Marshal(list)
		if list["totalResults"] != float64(1) || !strings.Contains(string(b), want) {
			t.Fatalf("users seen with %s: %s", tok, b)
		}
	}
	if !strings.HasSuffix(lines["saml-login globex"], "/saml/globex/login") {
		t.Fatalf("printed %v", lines)
	}
	// Mapped roles are the host's (SCIM shows only direct ones): the
	// admin page shows them.
	if page := adminGet(t, lines["admin"], "/admin/t/globex"); !strings.Contains(page, "<td>member</td>") {
		t.Fatalf("globex's access rule gave no role: %s", page)
	}
	if page := adminGet(t, lines["admin"], "/admin/t/acme"); strings.Contains(page, "<td>member</td>") {
		t.Fatal("acme has no access rule, yet a role")
	}
	page := adminGet(t, lines["admin"], "/admin")
	for _, s := range []string{"Globex Corp", "initech", "entra", "okta", "sso"} {
		if !strings.Contains(page, s) {
			t.Errorf("the overview lacks %q", s)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]any{
		"unknown field": map[string]any{"tenants": []any{map[string]any{"id": "x", "scimm": []any{}}}},
		"no id":         map[string]any{"tenants": []any{map[string]any{"name": "x"}}},
		"twice":         map[string]any{"tenants": []any{map[string]any{"id": "x"}, map[string]any{"id": "x"}}},
		"bad hash":      map[string]any{"tenants": []any{map[string]any{"id": "x", "scim": []any{map[string]any{"id": "s", "tokenHashes": []string{"nope"}}}}}},
		"bad mapping":   map[string]any{"tenants": []any{map[string]any{"id": "x", "saml": map[string]any{"id": "s", "idpMetadata": "demo", "mapping": "nope"}}}},
		"webhook":       map[string]any{"tenants": []any{map[string]any{"id": "x", "webhook": map[string]any{"url": "http://127.0.0.1:1/"}}}},
	} {
		err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-db", "memory", "-config", writeConfig(t, cfg)}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-config") {
			t.Errorf("%s: run = %v, want a -config error", name, err)
		}
	}
}

// TestSCIMTokenKeptAcrossRestarts: with no -scim-token the printed token
// is made once and kept in the store; a rotation on the admin page keeps
// the old and the new valid together until the old is revoked, and
// survives a restart.
func TestSCIMTokenKeptAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	lines, stop := launch(t, []string{"scim", "scim-token", "admin"}, "-db", path)
	first := lines["scim-token"]
	stop()
	lines, stop = launch(t, []string{"scim", "scim-token", "admin"}, "-db", path)
	if lines["scim-token"] != first {
		t.Fatalf("token after a restart = %q, want %q", lines["scim-token"], first)
	}
	admin := lines["admin"]
	status, body := adminPost(t, admin, "/admin/t/acme/scim/scim/rotate", nil)
	if status != http.StatusOK {
		t.Fatalf("rotate = %d %s", status, body)
	}
	i := strings.Index(body, `id="new-token">`)
	if i < 0 {
		t.Fatalf("no new token on the page: %s", body)
	}
	fresh := body[i+len(`id="new-token">`):]
	fresh = fresh[:strings.Index(fresh, "<")]
	for _, tok := range []string{first, fresh} {
		if status, _ := do(t, "GET", lines["scim"]+"/Users", tok, ""); status != http.StatusOK {
			t.Fatalf("during the rotation, %q = %d", tok, status)
		}
	}
	if status, _ := adminPost(t, admin, "/admin/t/acme/scim/scim/revoke-old", nil); status != http.StatusSeeOther {
		t.Fatalf("revoke-old = %d", status)
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", first, ""); status != http.StatusUnauthorized {
		t.Fatalf("the old token after its revocation = %d", status)
	}
	stop()
	lines, stop = launch(t, []string{"scim", "scim-token", "admin"}, "-db", path)
	defer stop()
	if lines["scim-token"] != fresh {
		t.Fatalf("token after the rotation and a restart = %q, want %q", lines["scim-token"], fresh)
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", fresh, ""); status != http.StatusOK {
		t.Fatalf("the new token after a restart = %d", status)
	}
}

// TestAdminActions: user search (words or a SCIM filter), group members,
// deactivation from the page, and the access-rule plan preview and apply.
func TestAdminActions(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "admin"}, "-scim-token", "S")
	admin := lines["admin"]
	var ids []string
	for _, u := range []string{"ada", "grace", "linus"} {
		dept := "Engineering"
		if u == "linus" {
			dept = "Finance"
		}
		status, body := do(t, "POST", lines["scim"]+"/Users", "S", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"`+u+`@acme.test","active":true,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"`+dept+`"}}`)
		if status != http.StatusCreated {
			t.Fatalf("create: %d %v", status, body)
		}
		ids = append(ids, body["id"].(string))
	}
	status, g := do(t, "POST", lines["scim"]+"/Groups", "S", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"eng","members":[{"value":"`+ids[0]+`"},{"value":"`+ids[1]+`"}]}`)
	if status != http.StatusCreated {
		t.Fatalf("group: %d %v", status, g)
	}

	users := func(page string) string {
		s := page[strings.Index(page, `id="user-table"`):]
		return s[:strings.Index(s, "</table>")]
	}
	if u := users(adminGet(t, admin, "/admin/t/acme?q=gra")); !strings.Contains(u, "grace@acme.test") || strings.Contains(u, "ada@") {
		t.Fatalf("search gra: %s", u)
	}
	if u := users(adminGet(t, admin, "/admin/t/acme?q="+url.QueryEscape(`department eq "Finance"`))); !strings.Contains(u, "linus@") || strings.Contains(u, "grace@") {
		t.Fatalf("search by filter: %s", u)
	}
	if p := adminGet(t, admin, "/admin/t/acme/groups/"+g["id"].(string)); !strings.Contains(p, "ada@acme.test") || !strings.Contains(p, "2 members") {
		t.Fatalf("group page: %s", p)
	}

	if status, _ := adminPost(t, admin, "/admin/t/acme/users/"+ids[2]+"/deactivate", nil); status != http.StatusSeeOther {
		t.Fatalf("deactivate = %d", status)
	}
	if status, u := do(t, "GET", lines["scim"]+"/Users/"+ids[2], "S", ""); status != http.StatusOK || u["active"] != false {
		t.Fatalf("after deactivation from the page: %d %v", status, u)
	}

	rules := `[{"id":"eng","groupId":"` + g["id"].(string) + `","roles":["developer"]}]`
	status, body := adminPost(t, admin, "/admin/t/acme/access/preview", url.Values{"rules": {rules}})
	if status != http.StatusOK || !strings.Contains(body, "developer") || !strings.Contains(body, "grace@acme.test") {
		t.Fatalf("preview = %d %s", status, body)
	}
	i := strings.Index(body, `name="plan" value="`)
	plan := body[i+len(`name="plan" value="`):]
	plan = plan[:strings.Index(plan, `"`)]
	if u := users(adminGet(t, admin, "/admin/t/acme")); strings.Contains(u, "developer") {
		t.Fatalf("a preview changed roles: %s", u)
	}
	if status, _ := adminPost(t, admin, "/admin/t/acme/access/apply", url.Values{"plan": {plan}}); status != http.StatusSeeOther {
		t.Fatalf("apply = %d", status)
	}
	if u := users(adminGet(t, admin, "/admin/t/acme?q=ada")); !strings.Contains(u, "<td>developer</td>") {
		t.Fatalf("roles after apply: %s", u)
	}
	p := adminGet(t, admin, "/admin/t/acme?kind=user.updated")
	if !strings.Contains(p, "roles were") {
		t.Fatalf("the event log does not show the role change")
	}
}
