package scim_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

func userBody(name string, extra string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + name + `","name":{"givenName":"G` + name + `","familyName":"F` + name + `"},"emails":[{"value":"` + name + `","type":"work","primary":true}],"active":true` + extra + `}`
}

// TestGroupPatchOneTransaction: a PATCH that renames a group to a taken
// name and changes its members is refused whole: the members stay.
func TestGroupPatchOneTransaction(t *testing.T) {
	e := newEnv(t)
	e.t = t
	u := e.must(e.do(acmeOkta, "POST", "/Users", userBody("a@acme.test", "")), 201, "user").str("id")
	e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Taken"}`), 201, "taken")
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Mine"}`), 201, "mine").str("id")
	e.events("acme")
	e.mustError(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"add","path":"members","value":[{"value":"`+u+`"}]},{"op":"replace","path":"displayName","value":"Taken"}`)), 409, "uniqueness", "rename to a taken name")
	r := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "group")
	if len(memberValues(r.get("members"))) != 0 || r.str("displayName") != "Mine" {
		t.Fatalf("a refused PATCH changed the group: %s", r.raw)
	}
	e.wantEvents("acme")
	// Both at once when it succeeds, with If-Match.
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"add","path":"members","value":[{"value":"`+u+`"}]},{"op":"replace","path":"displayName","value":"Mine 2"}`), "If-Match", `W/"1"`), 204, "rename and add")
	e.wantEvents("acme", "group.updated", "group.members_added")
	e.mustError(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"remove","path":"members","value":[{"value":"`+u+`"}]}`), "If-Match", `W/"1"`), 412, "", "stale If-Match")
	e.wantEvents("acme")
}

// TestSchemasListExtensions: a resource's schemas names every extension
// it carries, custom ones included.
func TestSchemasListExtensions(t *testing.T) {
	e := newEnv(t)
	e.t = t
	custom := "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	r := e.must(e.do(acmeEntra, "POST", "/Users", userBody("c@acme.test", `,"`+custom+`":{"tag":"blue"}`)), 201, "create")
	var schemas []string
	for _, s := range r.get("schemas").([]any) {
		schemas = append(schemas, s.(string))
	}
	if !slices.Contains(schemas, custom) || schemas[0] != "urn:ietf:params:scim:schemas:core:2.0:User" || r.str(custom, "tag") != "blue" {
		t.Fatalf("schemas = %v; body %s", schemas, r.raw)
	}
	r = e.must(e.do(acmeEntra, "GET", "/Users?filter="+q(custom+`:tag eq "blue"`), ""), 200, "list")
	if !strings.Contains(mustJSON(r.get("Resources", "0", "schemas")), custom) {
		t.Fatalf("listed schemas = %s", r.raw)
	}
}

func TestProjection(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/Users", userBody("p@acme.test", `,"title":"Eng","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R&D","employeeNumber":"7"}`)), 201, "create").str("id")
	keys := func(r resp) string {
		var ks []string
		for k := range r.body {
			ks = append(ks, k)
		}
		return strings.Join(sorted(ks), ",")
	}
	for _, c := range []struct{ query, want string }{
		{"attributes=userName", "id,schemas,userName"},
		{"attributes=USERNAME,name.givenName", "id,name,schemas,userName"},
		{"attributes=urn:ietf:params:scim:schemas:core:2.0:User:title,meta", "id,meta,schemas,title"},
		{"attributes=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "id,schemas,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		{"excludedAttributes=emails,name,meta,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "active,displayName,externalId,id,schemas,title,userName"},
		{"excludedAttributes=id,schemas,emails,name,meta,active,title,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "id,schemas,userName"},
	} {
		r := e.must(e.do(acmeOkta, "GET", "/Users/"+id+"?"+c.query, ""), 200, c.query)
		got := strings.ReplaceAll(keys(r), ",displayName,externalId", ",displayName,externalId") // no displayName/externalId given
		got = strings.ReplaceAll(got, "displayName,externalId,", "")
		want := strings.ReplaceAll(c.want, "displayName,externalId,", "")
		if got != want {
			t.Errorf("%s: keys %s, want %s (%s)", c.query, got, want, r.raw)
		}
	}
	r := e.must(e.do(acmeOkta, "GET", "/Users/"+id+"?attributes=name.givenName,emails.value", ""), 200, "subs")
	if r.str("name", "givenName") != "Gp@acme.test" || r.get("name", "familyName") != nil || r.str("emails", "0", "value") != "p@acme.test" || r.get("emails", "0", "type") != nil {
		t.Fatalf("sub-attributes = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Users/"+id+"?attributes=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", ""), 200, "ext attr")
	if r.str("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "department") != "R&D" || r.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "employeeNumber") != nil {
		t.Fatalf("extension attribute = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Users?attributes=userName&filter="+q(`userName eq "p@acme.test"`), ""), 200, "list")
	if r.str("Resources", "0", "userName") != "p@acme.test" || r.get("Resources", "0", "emails") != nil || r.get("totalResults") != 1.0 {
		t.Fatalf("projected list = %s", r.raw)
	}
	// A write answers with the projection too.
	r = e.must(e.do(acmeOkta, "PATCH", "/Users/"+id+"?attributes=active", patch(`{"op":"replace","path":"active","value":false}`)), 200, "patch")
	if r.get("active") != false || r.get("userName") != nil {
		t.Fatalf("projected PATCH answer = %s", r.raw)
	}
	// Groups: members are listed only when wanted.
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G","members":[{"value":"`+id+`"}]}`), 201, "group").str("id")
	for _, c := range []struct {
		query   string
		members bool
	}{{"", true}, {"attributes=displayName", false}, {"attributes=members", true}, {"excludedAttributes=members", false}, {"excludedAttributes=members.display", true}} {
		r := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid+"?"+c.query, ""), 200, c.query)
		if _, has := r.body["members"]; has != c.members {
			t.Errorf("group %s: members present %v, want %v: %s", c.query, has, c.members, r.raw)
		}
	}
}

func TestSort(t *testing.T) {
	e := newEnv(t)
	e.t = t
	for _, n := range []string{"carol", "alice", "bob"} {
		e.must(e.do(acmeOkta, "POST", "/Users", userBody(n+"@acme.test", "")), 201, n)
	}
	names := func(r resp) string {
		var out []string
		for _, u := range r.get("Resources").([]any) {
			out = append(out, strings.TrimSuffix(u.(map[string]any)["userName"].(string), "@acme.test"))
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct{ query, want string }{
		{"sortBy=userName", "alice,bob,carol"},
		{"sortBy=userName&sortOrder=descending", "carol,bob,alice"},
		{"sortBy=name.familyName&sortOrder=DESCENDING&count=2", "carol,bob"},
		{"sortBy=userName&startIndex=2&count=1", "bob"},
		{"sortBy=emails.value&filter=" + q(`userName sw "b" or userName sw "a"`), "alice,bob"},
	} {
		if got := names(e.must(e.do(acmeOkta, "GET", "/Users?"+c.query, ""), 200, c.query)); got != c.want {
			t.Errorf("%s: %s, want %s", c.query, got, c.want)
		}
	}
	// An attribute no user has (a custom one, maybe): the stable order.
	if got := names(e.must(e.do(acmeOkta, "GET", "/Users?sortBy=nope", ""), 200, "unknown sortBy")); got != "carol,alice,bob" {
		t.Errorf("sortBy=nope: %s", got)
	}
	e.mustError(e.do(acmeOkta, "GET", "/Users?sortBy=userName&sortOrder=up", ""), 400, "invalidValue", "bad sortOrder")
	e.mustError(e.do(acmeOkta, "GET", "/Groups?sortBy=members", ""), 400, "invalidPath", "sort by members")
}

func TestETags(t *testing.T) {
	e := newEnv(t)
	e.t = t
	r := e.must(e.do(acmeOkta, "POST", "/Users", userBody("e@acme.test", "")), 201, "create")
	id := r.str("id")
	if r.header.Get("Etag") != `W/"1"` || r.str("meta", "version") != `W/"1"` {
		t.Fatalf("ETag %q, meta %s", r.header.Get("Etag"), r.raw)
	}
	r = e.do(acmeOkta, "GET", "/Users/"+id, "", "If-None-Match", `W/"1"`)
	if r.status != http.StatusNotModified || r.raw != "" || r.header.Get("Etag") != `W/"1"` {
		t.Fatalf("If-None-Match current: %d %q %q", r.status, r.header.Get("Etag"), r.raw)
	}
	e.must(e.do(acmeOkta, "GET", "/Users/"+id, "", "If-None-Match", `W/"7"`), 200, "If-None-Match stale")
	// If-Match: a stale version is 412 and nothing changes; no retry.
	e.mustError(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"x"}`), "If-Match", `W/"9"`), 412, "", "stale PATCH")
	e.mustError(e.do(acmeOkta, "PUT", "/Users/"+id, userBody("e@acme.test", `,"title":"x"`), "If-Match", `"9"`), 412, "", "stale PUT")
	e.mustError(e.do(acmeOkta, "DELETE", "/Users/"+id, "", "If-Match", `W/"9"`), 412, "", "stale DELETE")
	e.mustError(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"x"}`), "If-Match", `W/"x"`), 412, "", "garbage If-Match")
	r = e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"x"}`), "If-Match", `W/"1"`), 200, "current PATCH")
	if r.header.Get("Etag") != `W/"2"` {
		t.Fatalf("ETag after PATCH %q", r.header.Get("Etag"))
	}
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"y"}`), "If-Match", `W/"1", W/"2"`), 200, "If-Match list")
	e.mustError(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"z"}`), "If-Match", `W/"1", W/"2"`), 412, "", "If-Match list, stale")
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"z"}`), "If-Match", `*`), 200, "If-Match *")
	// A group's version does not cover its members: 304 only without them.
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G"}`), 201, "group").str("id")
	e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, "", "If-None-Match", `W/"1"`), 200, "group with members")
	if r := e.do(acmeOkta, "GET", "/Groups/"+gid+"?excludedAttributes=members", "", "If-None-Match", `W/"1"`); r.status != 304 {
		t.Fatalf("group without members: %d", r.status)
	}
	e.must(e.do(acmeOkta, "DELETE", "/Users/"+id, "", "If-Match", `W/"4"`), 204, "current DELETE")
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	e.t = t
	var ids []string
	for _, n := range []string{"s2", "s1", "s3"} {
		ids = append(ids, e.must(e.do(acmeOkta, "POST", "/Users", userBody(n+"@acme.test", "")), 201, n).str("id"))
	}
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"S","members":[{"value":"`+ids[0]+`"}]}`), 201, "group").str("id")
	search := func(path, body string) resp {
		return e.must(e.do(acmeOkta, "POST", path, body), 200, "POST "+path+" "+body)
	}
	r := search("/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"attributes":["userName"],"filter":"userName sw \"s\"","sortBy":"userName","sortOrder":"descending","startIndex":1,"count":2}`)
	if r.get("totalResults") != 3.0 || r.get("itemsPerPage") != 2.0 || r.str("Resources", "0", "userName") != "s3@acme.test" || r.get("Resources", "0", "emails") != nil {
		t.Fatalf("users search = %s", r.raw)
	}
	// Filters elimity's .search refuses: id, externalId, Entra's value path.
	r = search("/users/.SEARCH", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"id eq \"`+ids[1]+`\" and emails[type eq \"work\"].value eq \"s1@acme.test\""}`)
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != ids[1] {
		t.Fatalf("id search = %s", r.raw)
	}
	r = search("/Groups/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"members eq \"`+ids[0]+`\"","excludedAttributes":["members"]}`)
	if r.get("totalResults") != 1.0 || r.get("Resources", "0", "members") != nil {
		t.Fatalf("group search = %s", r.raw)
	}
	// The root: users then groups, paged as one list.
	r = search("/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"startIndex":3,"count":2}`)
	if r.get("totalResults") != 4.0 || r.get("itemsPerPage") != 2.0 || r.str("Resources", "1", "id") != gid || r.str("Resources", "1", "meta", "resourceType") != "Group" {
		t.Fatalf("root search = %s", r.raw)
	}
	r = search("/.search", `{"filter":"displayName eq \"S\""}`)
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != gid {
		t.Fatalf("root search by displayName = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/?filter="+q(`userName eq "s2@acme.test"`), ""), 200, "GET /")
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != ids[0] {
		t.Fatalf("GET / = %s", r.raw)
	}
	e.mustError(e.do(acmeOkta, "POST", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`), 400, "invalidSyntax", "wrong schema")
	e.mustError(e.do(acmeOkta, "POST", "/Users/.search", `{"filter":"userName eq"}`), 400, "invalidFilter", "bad filter")
	e.mustError(e.do(acmeOkta, "POST", "/Users/.search", `{"count":"x"}`), 400, "invalidValue", "bad count")
	e.mustError(e.do(acmeOkta, "POST", "/.search", `{"sortBy":"userName"}`), 400, "invalidValue", "sorted root")
	e.must(e.do(acmeOkta, "GET", "/Users/.search", ""), 405, "GET .search")
}

func TestBulk(t *testing.T) {
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.Bulk.MaxOperations = 5 })
	e.t = t
	body := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"failOnErrors":2,"Operations":[
		{"method":"POST","path":"/Groups","bulkId":"g","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Bulk","members":[{"value":"bulkId:u1"},{"value":"bulkId:u2"}]}},
		{"method":"POST","path":"/Users","bulkId":"u1","data":` + userBody("b1@acme.test", `,"password":"sekret-1"`) + `},
		{"method":"POST","path":"/Users","bulkId":"u2","data":` + userBody("b2@acme.test", "") + `},
		{"method":"PATCH","path":"/Users/bulkId:u1","version":"W/\"1\"","data":` + patch(`{"op":"Replace","path":"active","value":"False"}`) + `}
	]}`
	r := e.must(e.do(acmeOkta, "POST", "/Bulk", body), 200, "bulk")
	ops, _ := r.get("Operations").([]any)
	if len(ops) != 4 {
		t.Fatalf("bulk = %s", r.raw)
	}
	// The group waits for the users it references.
	var order, statuses []string
	for i := range ops {
		order = append(order, r.str("Operations", fmt.Sprint(i), "bulkId"))
		statuses = append(statuses, r.str("Operations", fmt.Sprint(i), "status"))
	}
	if strings.Join(order, ",") != "u1,u2,,g" && strings.Join(order, ",") != "u1,u2,g," {
		t.Fatalf("order %v: %s", order, r.raw)
	}
	if strings.Join(sorted(statuses), ",") != "200,201,201,201" {
		t.Fatalf("statuses %v: %s", statuses, r.raw)
	}
	var gloc string
	for i := range ops {
		if r.str("Operations", fmt.Sprint(i), "bulkId") == "g" {
			gloc = r.str("Operations", fmt.Sprint(i), "location")
		}
	}
	g := e.must(e.do(acmeOkta, "GET", "/"+gloc, ""), 200, "bulk group")
	if len(memberValues(g.get("members"))) != 2 {
		t.Fatalf("bulk group = %s", g.raw)
	}
	u1 := e.must(e.do(acmeOkta, "GET", "/Users?filter="+q(`userName eq "b1@acme.test"`), ""), 200, "u1")
	if u1.get("Resources", "0", "active") != false {
		t.Fatalf("u1 = %s", u1.raw)
	}
	if !slices.ContainsFunc(e.passwords, func(p string) bool { return strings.HasSuffix(p, "=sekret-1") }) {
		t.Fatalf("bulk password not set: %v", e.passwords)
	}
	// failOnErrors stops after that many failures; unresolvable references are 409.
	r = e.must(e.do(acmeOkta, "POST", "/Bulk", `{"failOnErrors":1,"Operations":[
		{"method":"PATCH","path":"/Users/bulkId:nope","data":`+patch(`{"op":"replace","path":"title","value":"x"}`)+`},
		{"method":"POST","path":"/Users","bulkId":"x","data":`+userBody("never@acme.test", "")+`}]}`), 200, "failOnErrors")
	if ops, _ := r.get("Operations").([]any); len(ops) != 1 || r.str("Operations", "0", "status") != "409" || r.str("Operations", "0", "response", "scimType") != "invalidValue" {
		t.Fatalf("failOnErrors = %s", r.raw)
	}
	// A cycle, and an error answered in the operation.
	r = e.must(e.do(acmeOkta, "POST", "/Bulk", `{"Operations":[
		{"method":"POST","path":"/Groups","bulkId":"a","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"A","members":[{"value":"bulkId:b"}]}},
		{"method":"POST","path":"/Groups","bulkId":"b","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"B","members":[{"value":"bulkId:a"}]}},
		{"method":"DELETE","path":"/Users/unknown"}]}`), 200, "cycle")
	if r.str("Operations", "0", "status") != "404" || r.str("Operations", "1", "status") != "409" || r.str("Operations", "2", "status") != "409" {
		t.Fatalf("cycle = %s", r.raw)
	}
	// Limits: operations and payload.
	many := strings.Repeat(`{"method":"DELETE","path":"/Users/x"},`, 6)
	e.mustError(e.do(acmeOkta, "POST", "/Bulk", `{"Operations":[`+strings.TrimSuffix(many, ",")+`]}`), 413, "", "too many operations")
	e.mustError(e.do(acmeOkta, "POST", "/Bulk", `{"Operations":[],"pad":"`+strings.Repeat("x", 1<<20)+`"}`), 413, "", "too large")
	e.mustError(e.do(acmeOkta, "POST", "/Bulk", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"Operations":[]}`), 400, "invalidSyntax", "wrong schema")
	r = e.must(e.do(acmeOkta, "POST", "/Bulk", `{"Operations":[{"method":"GET","path":"/Users"},{"method":"POST","path":"/Bulk","bulkId":"q","data":{}},{"method":"POST","path":"/Users","data":{}}]}`), 200, "bad operations")
	for i := range 3 {
		if r.str("Operations", fmt.Sprint(i), "status") != "400" {
			t.Fatalf("bad operations = %s", r.raw)
		}
	}
	r = e.must(e.do(acmeOkta, "GET", "/ServiceProviderConfig", ""), 200, "spc")
	if r.get("bulk", "maxOperations") != 5.0 || r.get("bulk", "maxPayloadSize") != float64(1<<20) {
		t.Fatalf("spc = %s", r.raw)
	}
}

func TestServiceProviderConfigWithoutPasswordHook(t *testing.T) {
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.SetPassword = nil })
	e.t = t
	r := e.must(e.do(acmeOkta, "GET", "/ServiceProviderConfig", ""), 200, "spc")
	if r.get("changePassword", "supported") != false || r.get("etag", "supported") != true || r.get("filter", "maxResults") != 100.0 {
		t.Fatalf("spc = %s", r.raw)
	}
}
