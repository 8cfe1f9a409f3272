package scim_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/idprov/idprov/scim/scimtest"
)

// TestOktaUserLifecycle replays Okta's user lifecycle (research section
// 2.2, developer.okta.com SCIM 2.0 reference) with its literal bodies.
func TestOktaUserLifecycle(t *testing.T) {
	e := newEnv(t)
	e.t = t

	// Does the user exist? Okta's exact query.
	r := e.must(e.do(acmeOkta, "GET", `/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100`, ""), 200, "exists?")
	if r.get("totalResults") != 0.0 || r.get("startIndex") != 1.0 || r.get("itemsPerPage") != 0.0 || r.raw == "" || !strings.Contains(r.raw, `"Resources":[]`) {
		t.Fatalf("empty ListResponse = %s", r.raw)
	}

	// Create, with application/json as Okta sends it.
	create := scimtest.Body("okta-create-user", nil)
	r = e.must(e.do(acmeOkta, "POST", "/Users", create, "Content-Type", "application/json", "User-Agent", "Okta SCIM Client 1.0.0"), 201, "create")
	id := r.str("id")
	if id == "" || r.str("externalId") != "00ujl29u0le5T6Aj10h7" || r.str("meta", "resourceType") != "User" || r.get("active") != true {
		t.Fatalf("created user = %s", r.raw)
	}
	if r.header.Get("Location") != "Users/"+id || r.header.Get("Etag") != `W/"1"` {
		t.Fatalf("Location %q, ETag %q", r.header.Get("Location"), r.header.Get("Etag"))
	}
	if strings.Contains(r.raw, "1mz050nq") || strings.Contains(r.raw, "password") {
		t.Fatalf("the password is echoed: %s", r.raw)
	}
	if want := "acme/okta/" + id + "=1mz050nq"; !slices.Equal(e.passwords, []string{want}) {
		t.Fatalf("SetPassword got %v, want [%s]", e.passwords, want)
	}
	evs := e.wantEvents("acme", "user.created")
	if evs[0].Actor != "scim: Okta SCIM Client 1.0.0" || evs[0].ConnectionID != "okta" || evs[0].User.UserName != "test.user@okta.local" {
		t.Fatalf("user.created = %+v", evs[0])
	}

	// A second create of the same user is 409 uniqueness (RFC 7644
	// section 3.3; Okta then looks the user up), and nothing happens.
	e.mustError(e.do(acmeOkta, "POST", "/Users", create, "Content-Type", "application/json"), 409, "uniqueness", "retried create")
	e.wantEvents("acme")

	// The same userName for another person: 409 uniqueness, case-insensitive.
	dup := strings.Replace(strings.Replace(create, "00ujl29u0le5T6Aj10h7", "00uOTHER", 1), `"userName":"test.user@okta.local"`, `"userName":"TEST.USER@okta.local"`, 1)
	e.mustError(e.do(acmeOkta, "POST", "/Users", dup), 409, "uniqueness", "duplicate userName")

	// The uppercase filter of Okta's spec test finds it.
	r = e.must(e.do(acmeOkta, "GET", `/Users?filter=userName%20eq%20%22TEST.USER%40OKTA.LOCAL%22&startIndex=1&count=100`, ""), 200, "uppercase filter")
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != id {
		t.Fatalf("uppercase filter = %s", r.raw)
	}

	// OIN update: GET then PUT of the full object with id, meta and groups.
	e.must(e.do(acmeOkta, "GET", "/Users/"+id, ""), 200, "get")
	put := scimtest.Body("okta-put-user", map[string]string{"user": id})
	r = e.must(e.do(acmeOkta, "PUT", "/Users/"+id, put, "Content-Type", "application/json"), 200, "put")
	if r.str("name", "middleName") != "Middle" || r.str("displayName") != "Another User" || r.header.Get("Etag") != `W/"2"` {
		t.Fatalf("put = %s", r.raw)
	}
	evs = e.wantEvents("acme", "user.updated")
	if f := strings.Join(sorted(evs[0].Fields), ","); f != "displayName,name.givenName,name.middleName" {
		t.Fatalf("user.updated fields = %s", f)
	}
	// The same PUT again changes nothing: no version bump, no event.
	r = e.must(e.do(acmeOkta, "PUT", "/Users/"+id, put), 200, "put again")
	if r.header.Get("Etag") != `W/"2"` {
		t.Fatalf("unchanged put bumped the version: %s", r.header.Get("Etag"))
	}
	e.wantEvents("acme")

	// Deactivate: the path-less replace touches only active.
	deactivate := scimtest.Body("okta-deactivate-user", nil)
	r = e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, deactivate), 200, "deactivate")
	if r.get("active") != false || r.str("name", "givenName") != "Another" || r.str("emails", "0", "value") != "test.user@okta.local" {
		t.Fatalf("deactivated = %s", r.raw)
	}
	e.wantEvents("acme", "user.deactivated")
	// Soft-deleted: still there for GET and filters.
	e.must(e.do(acmeOkta, "GET", "/Users/"+id, ""), 200, "get deactivated")
	r = e.must(e.do(acmeOkta, "GET", `/Users?filter=userName%20eq%20%22test.user%40okta.local%22`, ""), 200, "filter deactivated")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("deactivated user not found by filter: %s", r.raw)
	}

	// Reactivate.
	r = e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, strings.Replace(deactivate, "false", "true", 1)), 200, "reactivate")
	if r.get("active") != true {
		t.Fatalf("reactivated = %s", r.raw)
	}
	e.wantEvents("acme", "user.reactivated")

	// Password sync: handed to the hook, nothing stored, no event.
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"password":"newpassword1"}}]}`), 200, "password sync")
	if last := e.passwords[len(e.passwords)-1]; last != "acme/okta/"+id+"=newpassword1" {
		t.Fatalf("SetPassword got %q", last)
	}
	e.wantEvents("acme")
	if strings.Contains(e.logs.String(), "1mz050nq") || strings.Contains(e.logs.String(), "newpassword1") || strings.Contains(e.logs.String(), acmeOkta) {
		t.Fatal("a password or a token is in the logs")
	}

	// Import: pages with a stable order.
	e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"second@okta.local","externalId":"00u2","active":true}`), 201, "second user")
	p1 := e.must(e.do(acmeOkta, "GET", "/Users?startIndex=1&count=1", ""), 200, "page 1")
	p2 := e.must(e.do(acmeOkta, "GET", "/Users?startIndex=2&count=1", ""), 200, "page 2")
	if p1.get("totalResults") != 2.0 || p1.get("itemsPerPage") != 1.0 || p2.get("startIndex") != 2.0 || p1.str("Resources", "0", "id") == p2.str("Resources", "0", "id") {
		t.Fatalf("pages = %s / %s", p1.raw, p2.raw)
	}
}

// TestOktaGroupLifecycle replays Okta's group push.
func TestOktaGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	e.t = t
	u1 := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"test.user@okta.local","externalId":"00u1","active":true}`), 201, "u1").str("id")
	u2 := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"other.user@okta.local","externalId":"00u2","active":true}`), 201, "u2").str("id")
	e.events("acme")

	r := e.must(e.do(acmeOkta, "POST", "/Groups", scimtest.Body("okta-create-group", nil)), 201, "push group")
	gid := r.str("id")
	if gid == "" || r.raw == "" || !strings.Contains(r.raw, `"members":[]`) {
		t.Fatalf("created group = %s", r.raw)
	}
	e.wantEvents("acme", "group.created")
	e.mustError(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"test scimv2","members":[]}`), 409, "uniqueness", "duplicate group")

	// Rename, with the id inside the value (Okta sends no schemas here).
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, `{"Operations":[{"op":"replace","value":{"id":"`+gid+`","displayName":"Test SCIMv2 renamed"}}]}`), 204, "rename")
	evs := e.wantEvents("acme", "group.updated")
	if evs[0].Group.DisplayName != "Test SCIMv2 renamed" {
		t.Fatalf("group.updated = %+v", evs[0].Group)
	}

	// Remove one and add another, in one PATCH.
	members := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"` + u2 + `\"]"},{"op":"add","path":"members","value":[{"value":"` + u1 + `","display":"test.user@okta.local"}]}]}`
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, members), 204, "members add/remove")
	evs = e.wantEvents("acme", "group.members_added")
	if !slices.Equal(evs[0].Members, []string{u1}) {
		t.Fatalf("members_added %v", evs[0].Members)
	}
	// Idempotent: the same PATCH again changes nothing.
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, members), 204, "members again")
	e.wantEvents("acme")

	// Full member push.
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[{"value":"`+u1+`","display":"test.user@okta.local"},{"value":"`+u2+`","display":"other.user@okta.local"}]}]}`), 204, "replace members")
	evs = e.wantEvents("acme", "group.members_added")
	if !slices.Equal(evs[0].Members, []string{u2}) {
		t.Fatalf("members_added %v", evs[0].Members)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "get group")
	if got := memberValues(r.get("members")); !slices.Equal(sorted(got), sorted([]string{u1, u2})) {
		t.Fatalf("members = %v", got)
	}

	// AIW: PUT of the full group.
	r = e.must(e.do(acmeOkta, "PUT", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":"`+gid+`","displayName":"Test SCIMv2 renamed","members":[{"value":"`+u2+`","display":"other.user@okta.local"}]}`), 200, "put group")
	if got := memberValues(r.get("members")); !slices.Equal(got, []string{u2}) {
		t.Fatalf("members after PUT = %v", got)
	}
	evs = e.wantEvents("acme", "group.members_removed")
	if !slices.Equal(evs[0].Members, []string{u1}) {
		t.Fatalf("members_removed %v", evs[0].Members)
	}

	// Import.
	r = e.must(e.do(acmeOkta, "GET", "/Groups?startIndex=1&count=100", ""), 200, "list groups")
	if r.get("totalResults") != 1.0 || len(memberValues(r.get("Resources", "0", "members"))) != 1 {
		t.Fatalf("groups = %s", r.raw)
	}

	e.must(e.do(acmeOkta, "DELETE", "/Groups/"+gid, ""), 204, "delete group")
	e.wantEvents("acme", "group.deleted")
	e.mustError(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 404, "", "deleted group")
}

func memberValues(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, m := range l {
		if mm, ok := m.(map[string]any); ok {
			s, _ := mm["value"].(string)
			out = append(out, s)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func mustJSON(v any) string {
	b, _ := jsonMarshal(v)
	return string(b)
}

var _ = http.StatusOK
