package scim_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/idprov/idprov/provision"
)

// roles returns a user resource's roles as "value/type".
func roles(r resp) []string {
	var out []string
	list, _ := r.get("roles").([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		v, _ := m["value"].(string)
		typ, _ := m["type"].(string)
		out = append(out, v+"/"+typ)
	}
	slices.Sort(out)
	return out
}

// The promotion scenario over SCIM: a group membership and an attribute
// change grant roles through the tenant's access rules, the User resource
// shows the effective roles, an Okta-style GET then PUT echoing them does
// not make them direct, and removal revokes.
func TestAccessMappingOverSCIM(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName":"ada@acme.test","externalId":"00u-ada","active":true,
		"roles":[{"value":"viewer"}]}`), 201, "create user")
	uid := u.str("id")
	g := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Admins","members":[]}`), 201, "create group")
	gid := g.str("id")

	plan, err := e.engine.PlanAccessRules(ctx, "acme", []provision.AccessRule{
		{ID: "admins", GroupID: gid, Roles: []string{"admin"}},
		{ID: "finance", Filter: `department eq "Finance"`, Roles: []string{"finance"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.ConfirmPlan(ctx, provision.Origin{TenantID: "acme"}, plan.ID); err != nil {
		t.Fatal(err)
	}

	// Promotion: membership of Admins, then a move to Finance.
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]}`), 204, "add member")
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Finance"}]}`), 200, "move to Finance")
	got := e.must(e.do(acmeOkta, "GET", "/Users/"+uid, ""), 200, "get")
	want := []string{"admin/rule:admins", "finance/rule:finance", "viewer/"}
	if !slices.Equal(roles(got), want) {
		t.Fatalf("roles = %v, want %v", roles(got), want)
	}

	// Okta's update: GET, then PUT the whole resource back.
	e.must(e.do(acmeOkta, "PUT", "/Users/"+uid, got.raw), 200, "put echo")

	// Removal from the group and leaving Finance revoke what they granted.
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"remove","path":"members[value eq \"`+uid+`\"]"}]}`), 204, "remove member")
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+uid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Sales"}]}`), 200, "leave Finance")
	got = e.must(e.do(acmeOkta, "GET", "/Users/"+uid, ""), 200, "get")
	if !slices.Equal(roles(got), []string{"viewer/"}) {
		t.Fatalf("roles after removal = %v, want only the direct viewer", roles(got))
	}
}

// Entra ID sends app roles as JSON inside the role's value string; the
// role is the inner value, in POST and in PATCH.
func TestEntraAppRoles(t *testing.T) {
	e := newEnv(t)
	u := e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName":"grace@acme.test","externalId":"e-grace","active":true,
		"roles":[{"primary":false,"type":"WindowsAzureActiveDirectoryRole","display":"Admin",
		"value":"{\"id\":\"5c1f3b6e-0000-4000-8000-000000000001\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"}]}`), 201, "create")
	if got := roles(u); !slices.Equal(got, []string{"Admin/WindowsAzureActiveDirectoryRole"}) {
		t.Fatalf("roles after POST = %v", got)
	}
	e.must(e.do(acmeEntra, "PATCH", "/Users/"+u.str("id"), `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Add","path":"roles","value":[{"value":"{\"id\":\"5c1f3b6e-0000-4000-8000-000000000002\",\"value\":\"Auditor\",\"displayName\":\"Auditor\"}"}]}]}`), 200, "patch")
	got := e.must(e.do(acmeEntra, "GET", "/Users/"+u.str("id"), ""), 200, "get")
	if r := roles(got); !slices.Equal(r, []string{"Admin/WindowsAzureActiveDirectoryRole", "Auditor/"}) {
		t.Fatalf("roles after PATCH = %v", r)
	}
}

// A full member push that would empty a large group is held: 409 with the
// plan's id, nothing applied; after the administrator confirms, the
// identity provider's retry succeeds.
func TestHeldMemberReplace(t *testing.T) {
	e := newEnv(t)
	var members []string
	for i := range 120 {
		u := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u`+itoa(i)+`@acme.test","active":true}`), 201, "create")
		members = append(members, `{"value":"`+u.str("id")+`"}`)
	}
	g := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Everyone","members":[`+strings.Join(members, ",")+`]}`), 201, "create group")
	gid := g.str("id")
	replace := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[` + members[0] + `]}]}`
	r := e.do(acmeOkta, "PATCH", "/Groups/"+gid, replace)
	if r.status != 409 || !strings.Contains(r.str("detail"), "held for confirmation") {
		t.Fatalf("held replace = %d %s", r.status, r.raw)
	}
	if n, _, _ := e.engine.ListMembers(context.Background(), provision.Origin{TenantID: "acme"}, gid, provision.Page{Limit: 1000}); len(n) != 120 {
		t.Fatalf("members after a held replace = %d", len(n))
	}
	id := r.str("detail")
	id = id[strings.Index(id, "(plan ")+6:]
	id = id[:strings.Index(id, ")")]
	if _, err := e.engine.ConfirmPlan(context.Background(), provision.Origin{TenantID: "acme", Actor: "admin"}, id); err != nil {
		t.Fatal(err)
	}
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, replace), 204, "retry after confirmation")
	if n, _, _ := e.engine.ListMembers(context.Background(), provision.Origin{TenantID: "acme"}, gid, provision.Page{Limit: 1000}); len(n) != 1 {
		t.Fatalf("members after confirmation = %d", len(n))
	}
}
