package scim_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/idprov/idprov/scim/scimtest"
)

func q(filter string) string { return url.QueryEscape(filter) }

// entraUser is the user Entra creates, as its SCIM tutorial shows it.
var entraUser = scimtest.Body("entra-create-user", nil)

func patch(ops string) string {
	return `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` + ops + `]}`
}

// TestEntraUserLifecycle replays Microsoft Entra ID's user provisioning
// (research section 2.1, learn.microsoft.com "Tutorial: Develop and plan
// provisioning for a SCIM endpoint" and the compatibility page), both
// PATCH dialects, with their literal bodies.
func TestEntraUserLifecycle(t *testing.T) {
	e := newEnv(t)
	e.t = t

	// Test Connection: a random GUID as the matching value.
	r := e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(`userName eq "7c3e4d2a-91b5-4f7e-8a2c-6d1f0e9b3a57"`), ""), 200, "test connection")
	if r.get("totalResults") != 0.0 || !strings.Contains(r.raw, `"Resources":[]`) {
		t.Fatalf("test connection = %s", r.raw)
	}

	r = e.must(e.do(acmeEntra, "POST", "/Users", entraUser), 201, "create")
	id := r.str("id")
	if r.str("emails", "0", "value") != "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com" || r.str("name", "formatted") != "givenName familyName" {
		t.Fatalf("created = %s", r.raw)
	}
	e.wantEvents("acme", "user.created")

	// Update: value-path email and family name.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},{"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}`)), 200, "update")
	if r.str("emails", "0", "value") != "updatedEmail@microsoft.com" || r.get("emails", "0", "primary") != true || r.str("name", "familyName") != "updatedFamilyName" || r.str("name", "givenName") != "givenName" {
		t.Fatalf("updated = %s", r.raw)
	}
	evs := e.wantEvents("acme", "user.updated")
	if f := strings.Join(sorted(evs[0].Fields), ","); f != "emails,name.familyName" {
		t.Fatalf("fields = %s", f)
	}

	// Entra's uniqueness filter on the work email finds the user.
	r = e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(`emails[type eq "work"].value eq "updatedemail@microsoft.com"`), ""), 200, "email filter")
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != id {
		t.Fatalf("email filter = %s", r.raw)
	}

	// Rename the login.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"userName","value":"5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}`)), 200, "rename")
	if r.str("userName") != "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com" {
		t.Fatalf("renamed = %s", r.raw)
	}
	e.wantEvents("acme", "user.updated")

	// aadOptscim062020: a path-less replace of several attributes, keys
	// dotted and URN-qualified.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}`)), 200, "flagged update")
	if r.str("displayName") != "Bjfe" || r.str("name", "givenName") != "Kkom" || r.str("name", "familyName") != "Unua" || r.str("name", "formatted") != "givenName familyName" ||
		r.str("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "employeeNumber") != "Aklq" || r.str("emails", "0", "value") != "updatedEmail@microsoft.com" {
		t.Fatalf("flagged update = %s", r.raw)
	}
	e.wantEvents("acme", "user.updated")

	// Disable, the default dialect: a "False" string.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"active","value":"False"}`)), 200, "disable")
	if r.get("active") != false {
		t.Fatalf("disabled = %s", r.raw)
	}
	e.wantEvents("acme", "user.deactivated")
	// Soft-deleted users are still returned.
	e.must(e.do(acmeEntra, "GET", "/Users/"+id, ""), 200, "get disabled")
	// Reactivate with "True", disable and reactivate with the flag's booleans.
	e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"active","value":"True"}`)), 200, "enable")
	e.wantEvents("acme", "user.reactivated")
	e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"active","value":false}`)), 200, "disable (flag)")
	e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"active","value":true}`)), 200, "enable (flag)")
	e.wantEvents("acme", "user.deactivated", "user.reactivated")

	// Manager as a bare id, then removed without a value.
	mgr := e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"manager@testuser.com","externalId":"45619541-95de-4a5b-8b8c-0d5c5a3e8e1f","active":"True"}`), 201, "manager").str("id")
	e.events("acme")
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"`+mgr+`"}`)), 200, "add manager")
	if r.str("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "manager", "value") != mgr {
		t.Fatalf("manager = %s", r.raw)
	}
	// Entra checks the manager with a filter mixing core and extension.
	r = e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(`id eq "`+id+`" and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "`+mgr+`"`), ""), 200, "manager filter")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("manager filter = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(`id eq "`+id+`" and manager eq "`+mgr+`"`), ""), 200, "manager filter, short")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("manager filter (short) = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}`)), 200, "remove manager")
	if r.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "manager") != nil {
		t.Fatalf("manager not removed: %s", r.raw)
	}
	e.wantEvents("acme", "user.updated", "user.updated")

	// A custom extension attribute: kept, returned in its block, filterable.
	custom := "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Add","path":"`+custom+`:tag","value":"blue"}`)), 200, "custom attribute")
	if r.str(custom, "tag") != "blue" {
		t.Fatalf("custom attribute = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(custom+`:tag eq "blue"`), ""), 200, "custom filter")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("custom filter = %s", r.raw)
	}
	e.wantEvents("acme", "user.updated")

	// Roles as Entra's app-role mapping sends them: JSON inside strings;
	// the role is the inner value.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Add","path":"roles","value":[{"value":"{\"id\":\"27ffc4da\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"}]}`)), 200, "roles")
	if r.str("roles", "0", "value") != "Admin" || r.str("roles", "0", "display") != "Admin" {
		t.Fatalf("roles = %s", r.raw)
	}
	e.wantEvents("acme", "user.updated")

	// Hard delete: 204, then 404; the deletion emits its events in order.
	e.must(e.do(acmeEntra, "DELETE", "/Users/"+id, ""), 204, "delete")
	e.wantEvents("acme", "user.deactivated", "user.deleted")
	e.mustError(e.do(acmeEntra, "GET", "/Users/"+id, ""), 404, "", "get deleted")
	e.mustError(e.do(acmeEntra, "DELETE", "/Users/"+id, ""), 404, "", "delete again")
}

// TestEntraCreateOnAbsent: a value-path replace of a work email the user
// lacks creates it and leaves the other emails alone.
func TestEntraCreateOnAbsent(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","emails":[{"type":"home","value":"ada@home.test","primary":true}],"active":true}`), 201, "create").str("id")
	r := e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"emails[type eq \"work\"].value","value":"ada@acme.test"}`)), 200, "create work email")
	emails, _ := r.get("emails").([]any)
	if len(emails) != 2 || r.str("emails", "0", "value") != "ada@home.test" || r.str("emails", "1", "value") != "ada@acme.test" || r.str("emails", "1", "type") != "work" {
		t.Fatalf("emails = %s", r.raw)
	}
	// Making the work email primary demotes the home one.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"emails[type eq \"work\"].primary","value":"True"}`)), 200, "primary")
	if r.get("emails", "1", "primary") != true || r.get("emails", "0", "primary") != nil {
		t.Fatalf("primary = %s", r.raw)
	}
	// Phone numbers and addresses too.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"},{"op":"Replace","path":"addresses[type eq \"work\"].locality","value":"Seattle"}`)), 200, "phone and address")
	if r.str("phoneNumbers", "0", "value") != "+1 555 0100" || r.str("phoneNumbers", "0", "type") != "mobile" || r.str("addresses", "0", "locality") != "Seattle" {
		t.Fatalf("phone and address = %s", r.raw)
	}
	// Removing the home email by value path.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Remove","path":"emails[type eq \"home\"]"}`)), 200, "remove home")
	if emails, _ := r.get("emails").([]any); len(emails) != 1 || r.str("emails", "0", "type") != "work" {
		t.Fatalf("after remove = %s", r.raw)
	}
}

// TestEntraGroupLifecycle replays Entra's group provisioning.
func TestEntraGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	e.t = t
	u := e.must(e.do(acmeEntra, "POST", "/Users", entraUser), 201, "user").str("id")
	u2 := e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u1091@testuser.com","active":true}`), 201, "user 2").str("id")
	e.events("acme")

	r := e.must(e.do(acmeEntra, "GET", "/Groups?excludedAttributes=members&filter="+q(`displayName eq "displayName"`), ""), 200, "group lookup")
	if r.get("totalResults") != 0.0 {
		t.Fatalf("lookup = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "POST", "/Groups", scimtest.Body("entra-create-group", nil)), 201, "create group")
	gid := r.str("id")
	if !strings.Contains(r.raw, `"members":[]`) || r.str("externalId") != "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159" {
		t.Fatalf("created group = %s", r.raw)
	}
	e.wantEvents("acme", "group.created")

	r = e.must(e.do(acmeEntra, "GET", "/Groups?excludedAttributes=members&filter="+q(`displayName eq "displayName"`), ""), 200, "group lookup")
	if r.get("totalResults") != 1.0 || r.get("Resources", "0", "members") != nil {
		t.Fatalf("lookup = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "GET", "/Groups/"+gid+"?excludedAttributes=members", ""), 200, "get group")
	if _, has := r.body["members"]; has || r.str("displayName") != "displayName" {
		t.Fatalf("get without members = %s", r.raw)
	}

	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, patch(`{"op":"Replace","path":"displayName","value":"1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}`)), 204, "rename")
	e.wantEvents("acme", "group.updated")

	add := patch(`{"op":"Add","path":"members","value":[{"$ref":null,"value":"` + u + `"}]}`)
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, add), 204, "add member")
	e.wantEvents("acme", "group.members_added")
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, add), 204, "add member again")
	e.wantEvents("acme")

	// Several memberships in one PATCH.
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, patch(`{"op":"Add","path":"members","value":[{"value":"`+u2+`"}]},{"op":"Remove","path":"members","value":[{"$ref":null,"value":"`+u+`"}]}`)), 204, "add and remove")
	evs := e.wantEvents("acme", "group.members_removed", "group.members_added")
	if !slices.Equal(evs[0].Members, []string{u}) || !slices.Equal(evs[1].Members, []string{u2}) {
		t.Fatalf("members = %v / %v", evs[0].Members, evs[1].Members)
	}
	remove := patch(`{"op":"Remove","path":"members","value":[{"value":"` + u2 + `"}]}`)
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, remove), 204, "remove member")
	e.wantEvents("acme", "group.members_removed")
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, remove), 204, "remove member again")
	e.wantEvents("acme")

	// The flag's removal by filter.
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, add), 204, "re-add")
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, patch(`{"op":"remove","path":"members[value eq \"`+u+`\"]"}`)), 204, "remove by filter")
	e.wantEvents("acme", "group.members_added", "group.members_removed")

	// Membership check filter.
	e.must(e.do(acmeEntra, "PATCH", "/Groups/"+gid, add), 204, "re-add")
	r = e.must(e.do(acmeEntra, "GET", "/Groups?excludedAttributes=members&filter="+q(`id eq "`+gid+`" and members eq "`+u+`"`), ""), 200, "membership filter")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("membership filter = %s", r.raw)
	}

	e.must(e.do(acmeEntra, "DELETE", "/Groups/"+gid, ""), 204, "delete group")
	e.wantEvents("acme", "group.members_added", "group.deleted")
	e.mustError(e.do(acmeEntra, "GET", "/Groups/"+gid, ""), 404, "", "deleted group")
}
