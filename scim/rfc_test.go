package scim_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/sqlstore"
)

// The tests of this file hold the server to what RFC 7643 and RFC 7644
// say MUST (issue 17).

// ticking is a clock that moves one second on every reading, so that
// meta.lastModified (second precision) shows every write.
func ticking() envOption {
	var n atomic.Int64
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func(_ *scim.Config, p *provision.Config) {
		p.Now = func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Second) }
	}
}

func newSQLiteStore(t *testing.T) provision.Store {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "idprov.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

const groupSchema = `"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"]`

// TestGroupVersionFollowsMembers: a membership change changes the group's
// ETag and meta.lastModified, so that a PUT with an If-Match read before
// it is 412 and replaces nothing (no lost update).
func TestGroupVersionFollowsMembers(t *testing.T) {
	e := newEnv(t, ticking())
	e.t = t
	u1 := e.must(e.do(acmeOkta, "POST", "/Users", userBody("v1@acme.test", "")), 201, "user 1").str("id")
	u2 := e.must(e.do(acmeOkta, "POST", "/Users", userBody("v2@acme.test", "")), 201, "user 2").str("id")
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{`+groupSchema+`,"displayName":"Versioned","members":[{"value":"`+u1+`"}]}`), 201, "group").str("id")

	read := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "read")
	tag, modified := read.header.Get("ETag"), read.str("meta", "lastModified")
	if tag == "" || tag != read.str("meta", "version") {
		t.Fatalf("ETag %q, meta.version %q", tag, read.str("meta", "version"))
	}

	// A member is added (Okta's PATCH, no If-Match).
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"add","path":"members","value":[{"value":"`+u2+`"}]}`)), 204, "add a member")
	after := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "read after the add")
	if after.header.Get("ETag") == tag || after.str("meta", "version") == tag {
		t.Fatalf("the ETag stayed %s after a member was added", tag)
	}
	if after.str("meta", "lastModified") == modified {
		t.Fatalf("meta.lastModified stayed %s after a member was added", modified)
	}
	e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, "", "If-None-Match", tag), 200, "If-None-Match with the old ETag")

	// The first client's PUT, with the ETag it read before the add.
	put := `{` + groupSchema + `,"displayName":"Versioned","members":[{"value":"` + u1 + `"}]}`
	e.mustError(e.do(acmeOkta, "PUT", "/Groups/"+gid, put, "If-Match", tag), 412, "", "PUT with a stale If-Match")
	e.mustError(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"remove","path":"members[value eq \"`+u2+`\"]"}`), "If-Match", tag), 412, "", "PATCH with a stale If-Match")
	if got := memberValues(e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "read").get("members")); len(got) != 2 {
		t.Fatalf("members after refused writes = %v, want both", got)
	}
	// With the current ETag it applies, and changes the ETag again.
	cur := after.header.Get("ETag")
	r := e.must(e.do(acmeOkta, "PUT", "/Groups/"+gid, put, "If-Match", cur), 200, "PUT with the current If-Match")
	if r.header.Get("ETag") == cur {
		t.Fatalf("a PUT that removed a member kept the ETag %s", cur)
	}
	if got := memberValues(r.get("members")); len(got) != 1 || got[0] != u1 {
		t.Fatalf("members after the PUT = %v, want [%s]", got, u1)
	}
	// A PATCH that renames and adds at once is one new version.
	v := r.header.Get("ETag")
	e.must(e.do(acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"add","path":"members","value":[{"value":"`+u2+`"}]},{"op":"replace","path":"displayName","value":"Renamed"}`), "If-Match", v), 204, "rename and add")
	g, err := e.engine.GetGroup(t.Context(), provision.Origin{TenantID: "acme"}, gid)
	if err != nil {
		t.Fatal(err)
	}
	if want := etagVersion(t, v) + 1; g.Version != want {
		t.Fatalf("version after rename and add = %d, want %d (one bump)", g.Version, want)
	}
	// Deleting a member user changes the group's version too.
	e.must(e.do(acmeOkta, "DELETE", "/Users/"+u2, ""), 204, "delete a member")
	if g2, err := e.engine.GetGroup(t.Context(), provision.Origin{TenantID: "acme"}, gid); err != nil || g2.Version != g.Version+1 {
		t.Fatalf("version after a member was deleted = %d (%v), want %d", g2.Version, err, g.Version+1)
	}
}

func etagVersion(t *testing.T, tag string) int64 {
	t.Helper()
	var v int64
	if _, err := fmt.Sscanf(tag, `W/"%d"`, &v); err != nil {
		t.Fatalf("ETag %q: %v", tag, err)
	}
	return v
}

// TestConcurrentMemberAdds: 20 PATCHes adding one member each, at once and
// without If-Match, all succeed (the engine retries the version conflicts
// they cause one another) on memstore and on SQLite.
func TestConcurrentMemberAdds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) provision.Store
	}{
		{"memstore", func(*testing.T) provision.Store { return memstore.New() }},
		{"sqlite", newSQLiteStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvStore(t, tc.store(t))
			e.t = t
			const n = 20
			users := make([]string, n)
			for i := range users {
				users[i] = e.must(e.do(acmeOkta, "POST", "/Users", userBody(fmt.Sprintf("c%d@acme.test", i), "")), 201, "user").str("id")
			}
			gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{`+groupSchema+`,"displayName":"Crowded"}`), 201, "group").str("id")
			var wg sync.WaitGroup
			status := make([]int, n)
			bodies := make([]string, n)
			for i := range users {
				wg.Go(func() {
					r := doReq(t, e.base, acmeOkta, "PATCH", "/Groups/"+gid, patch(`{"op":"add","path":"members","value":[{"value":"`+users[i]+`"}]}`))
					status[i], bodies[i] = r.status, r.raw
				})
			}
			wg.Wait()
			for i, s := range status {
				if s != 204 {
					t.Errorf("PATCH %d: status %d, body %s", i, s, bodies[i])
				}
			}
			r := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "read")
			if got := memberValues(r.get("members")); len(got) != n {
				t.Fatalf("%d members, want %d", len(got), n)
			}
			if got := etagVersion(t, r.header.Get("ETag")); got != 1+n {
				t.Fatalf("version %d after %d member adds, want %d", got, n, 1+n)
			}
		})
	}
}

// TestSecondCreateIs409: a second POST of the same user (same userName and
// externalId) is 409 uniqueness (RFC 7644 section 3.3) and changes
// nothing; the engine's CreateUser stays idempotent for Go callers; a
// POST that rehires the directory's deactivated user is still 201.
func TestSecondCreateIs409(t *testing.T) {
	e := newEnv(t)
	e.t = t
	body := userBody("twice@acme.test", `,"externalId":"ext-twice"`)
	id := e.must(e.do(acmeOkta, "POST", "/Users", body), 201, "create").str("id")
	e.events("acme")
	for range 2 {
		e.mustError(e.do(acmeOkta, "POST", "/Users", body), 409, "uniqueness", "second create")
	}
	e.wantEvents("acme")
	o := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
	_, err := e.engine.CreateUser(t.Context(), o, provision.User{UserName: "twice@acme.test", ExternalID: "ext-twice", Active: true})
	var ce *provision.ConflictError
	if !errors.As(err, &ce) || ce.ExistingID != id || !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("CreateUser of the same user: %v, want a *ConflictError naming %s", err, id)
	}
	// In a Bulk request too.
	bulk := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[{"method":"POST","path":"/Users","bulkId":"b1","data":` + body + `}]}`
	r := e.must(e.do(acmeOkta, "POST", "/Bulk", bulk), 200, "bulk")
	if s := r.str("Operations", "0", "status"); s != "409" {
		t.Fatalf("bulk create of an existing user: status %q; body %s", s, r.raw)
	}
	// Deactivated, then created again by its directory: a rehire, 201.
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","value":{"active":false}}`)), 200, "deactivate")
	e.events("acme")
	r = e.must(e.do(acmeOkta, "POST", "/Users", body), 201, "rehire")
	if r.str("id") != id || r.get("active") != true {
		t.Fatalf("rehire = %s", r.raw)
	}
	e.wantEvents("acme", "user.reactivated")
}

// TestDiscoveryEndpointsReadOnly: writes to /ServiceProviderConfig,
// /Schemas and /ResourceTypes (and under them) are 405 with an Allow
// header and a SCIM error body; GET still answers.
func TestDiscoveryEndpointsReadOnly(t *testing.T) {
	e := newEnv(t)
	e.t = t
	paths := []string{"/ServiceProviderConfig", "/serviceproviderconfig", "/Schemas", "/Schemas/" + "urn:ietf:params:scim:schemas:core:2.0:User", "/ResourceTypes", "/ResourceTypes/User"}
	for _, p := range paths {
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			body := ""
			if m != "DELETE" {
				body = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"bulk":{"supported":true}}`
			}
			r := e.do(acmeOkta, m, p, body)
			e.mustError(r, 405, "", m+" "+p)
			if r.header.Get("Allow") != "GET" {
				t.Fatalf("%s %s: Allow %q, want GET", m, p, r.header.Get("Allow"))
			}
		}
		e.must(e.do(acmeOkta, "GET", p, ""), 200, "GET "+p)
	}
	if r := e.must(e.do(acmeOkta, "GET", "/ServiceProviderConfig", ""), 200, "spc"); r.get("bulk", "supported") != true {
		t.Fatalf("/ServiceProviderConfig after the refused writes: %s", r.raw)
	}
}

// TestStrayBytesAndNullBodies: a body with bytes after its JSON object is
// 400 invalidSyntax, and so is a search whose body is null or not an
// object; nothing is created.
func TestStrayBytesAndNullBodies(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/Users", userBody("s@acme.test", "")), 201, "user").str("id")
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{`+groupSchema+`,"displayName":"Strays"}`), 201, "group").str("id")
	e.events("acme")
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/Users", userBody("stray@acme.test", "") + "}"},
		{"POST", "/Users", userBody("stray@acme.test", "") + "]"},
		{"POST", "/Users", userBody("stray@acme.test", "") + ` {"userName":"x"}`},
		{"PUT", "/Users/" + id, userBody("s@acme.test", `,"title":"stray"`) + "}"},
		{"PATCH", "/Users/" + id, patch(`{"op":"replace","path":"title","value":"stray"}`) + "}"},
		{"POST", "/Groups", `{` + groupSchema + `,"displayName":"Stray"}}`},
		{"PATCH", "/Groups/" + gid, patch(`{"op":"replace","path":"displayName","value":"Stray"}`) + "}"},
		{"POST", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}}`},
		{"POST", "/Bulk", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[]}}`},
		{"POST", "/Users/.search", `null`},
		{"POST", "/Users/.search", ` null `},
		{"POST", "/Groups/.search", `null`},
		{"POST", "/.search", `null`},
		{"POST", "/Users/.search", `[]`},
		{"POST", "/Users/.search", `"filter"`},
		{"POST", "/Bulk", `null`},
	} {
		e.mustError(e.do(acmeOkta, tc.method, tc.path, tc.body), 400, "invalidSyntax", tc.method+" "+tc.path+" "+tc.body)
	}
	e.wantEvents("acme")
	// Trailing white space is fine.
	e.must(e.do(acmeOkta, "POST", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName eq \"s@acme.test\""}`+" \n"), 200, "search")
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"ok"}`)+"\r\n"), 200, "patch with a trailing newline")
}

// TestUnknownAttributesDropped: top-level attributes that no schema of the
// resource defines are dropped from POST, PUT and PATCH, and named in the
// request log; attributes of the core schema that the model keeps as
// sent, and extension attributes under a URN, are kept.
func TestUnknownAttributesDropped(t *testing.T) {
	e := newEnv(t)
	e.t = t
	custom := "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	h := e.h.(*scim.Handler)
	dropped := func(what string, want ...string) {
		t.Helper()
		log := h.RequestLog("acme", "okta")
		if len(log) == 0 {
			t.Fatalf("%s: no request log", what)
		}
		last := log[0]
		if last.Time.Before(log[len(log)-1].Time) {
			last = log[len(log)-1]
		}
		slices.Sort(want)
		if strings.Join(last.Dropped, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: the request log names %v as dropped, want %v", what, last.Dropped, want)
		}
	}
	r := e.must(e.do(acmeOkta, "POST", "/Users", userBody("drop@acme.test", `,"adreses":[{"locality":"Paris"}],"entitlements":[{"value":"beta"}],"`+custom+`":{"tag":"blue"},"`+userURNPrefix+`nickName":"Dee","`+userURNPrefix+`colour":"red"`)), 201, "create")
	id := r.str("id")
	if r.get("adreses") != nil || r.get("colour") != nil || r.str("entitlements", "0", "value") != "beta" || r.str(custom, "tag") != "blue" || r.str("nickName") != "Dee" {
		t.Fatalf("created = %s", r.raw)
	}
	dropped("POST", "adreses", userURNPrefix+"colour")
	u, err := e.engine.GetUser(t.Context(), provision.Origin{TenantID: "acme"}, id)
	if err != nil {
		t.Fatal(err)
	}
	for k := range u.Attributes {
		if strings.EqualFold(k, "adreses") || strings.Contains(strings.ToLower(k), "colour") {
			t.Fatalf("stored attributes %v hold the dropped %s", u.Attributes, k)
		}
	}
	r = e.must(e.do(acmeOkta, "PUT", "/Users/"+id, userBody("drop@acme.test", `,"adreses":[{"locality":"Lyon"}],"title":"CFO"`)), 200, "put")
	if r.get("adreses") != nil || r.str("title") != "CFO" {
		t.Fatalf("replaced = %s", r.raw)
	}
	dropped("PUT", "adreses")
	r = e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"add","path":"adreses","value":[{"locality":"Nice"}]},{"op":"replace","value":{"nickName":"D","favouriteColour":"red"}}`)), 200, "patch")
	if r.get("adreses") != nil || r.get("favouriteColour") != nil || r.str("nickName") != "D" {
		t.Fatalf("patched = %s", r.raw)
	}
	dropped("PATCH", "adreses", "favouriteColour")
	// A PATCH of nothing but unknown attributes changes nothing.
	e.events("acme")
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"adreses","value":[]}`)), 200, "patch unknown only")
	e.wantEvents("acme")
	// Groups too.
	r = e.must(e.do(acmeOkta, "POST", "/Groups", `{`+groupSchema+`,"displayName":"Dropped","descripton":"typo"}`), 201, "group")
	if r.get("descripton") != nil {
		t.Fatalf("group = %s", r.raw)
	}
	dropped("POST group", "descripton")
	// In a Bulk request, the request's entry names them.
	e.must(e.do(acmeOkta, "POST", "/Bulk", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[{"method":"PATCH","path":"/Users/`+id+`","data":`+patch(`{"op":"replace","value":{"nikName":"x"}}`)+`}]}`), 200, "bulk")
	dropped("Bulk", "nikName")
	// Nothing dropped: nothing listed.
	e.must(e.do(acmeOkta, "GET", "/Users/"+id, ""), 200, "get")
	dropped("GET")
}

const userURNPrefix = "urn:ietf:params:scim:schemas:core:2.0:User:"

// TestFilterOnUndefinedAttribute: a filter naming an attribute that no
// schema of the resource type defines is 400 invalidFilter; core
// attributes kept as sent, extension attributes under a URN and the
// filters Okta and Entra send keep working.
func TestFilterOnUndefinedAttribute(t *testing.T) {
	e := newEnv(t)
	e.t = t
	custom := "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	id := e.must(e.do(acmeEntra, "POST", "/Users", userBody("f@acme.test", `,"externalId":"ext-f","entitlements":[{"value":"beta"}],"`+custom+`":{"tag":"blue"},"`+ent+`":{"department":"R&D","building":"B2"}`)), 201, "user").str("id")
	e.must(e.do(acmeEntra, "POST", "/Groups", `{`+groupSchema+`,"displayName":"Filtered","externalId":"g-ext","members":[{"value":"`+id+`"}]}`), 201, "group")
	for _, tc := range []struct{ path, filter string }{
		{"/Users", `noSuchAttribute eq "x"`},
		{"/Users", `userName eq "f@acme.test" and adreses.locality eq "Paris"`},
		{"/Users", `not (noSuchAttribute pr)`},
		{"/Users", `noSuch[value eq "x"]`},
		{"/Users", userURNPrefix + `noSuchAttribute eq "x"`},
		{"/Groups", `noSuchAttribute eq "x"`},
		{"/Groups", `userName eq "f@acme.test"`},
		{"/", `noSuchAttribute eq "x"`},
	} {
		e.mustError(e.do(acmeEntra, "GET", tc.path+"?filter="+q(tc.filter), ""), 400, "invalidFilter", "GET "+tc.path+" "+tc.filter)
	}
	e.mustError(e.do(acmeEntra, "POST", "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"noSuchAttribute eq \"x\""}`), 400, "invalidFilter", ".search")
	for _, tc := range []struct {
		path, filter string
		want         float64
	}{
		{"/Users", `userName eq "f@acme.test"`, 1},
		{"/Users", `externalId eq "ext-f"`, 1},
		{"/Users", `emails[type eq "work"].value eq "f@acme.test"`, 1},
		{"/Users", `entitlements.value eq "beta"`, 1},
		{"/Users", custom + `:tag eq "blue"`, 1},
		{"/Users", ent + `:building eq "B2"`, 1},
		{"/Users", ent + `:department eq "R&D"`, 1},
		{"/Users", userURNPrefix + `userName eq "f@acme.test"`, 1},
		{"/Groups", `displayName eq "Filtered"`, 1},
		{"/Groups", `externalId eq "g-ext"`, 1},
		{"/Groups", `members[value eq "` + id + `"]`, 1},
		{"/", `userName eq "f@acme.test"`, 1},
	} {
		r := e.must(e.do(acmeEntra, "GET", tc.path+"?filter="+q(tc.filter), ""), 200, "GET "+tc.path+" "+tc.filter)
		if r.get("totalResults") != tc.want {
			t.Fatalf("%s %s: %s", tc.path, tc.filter, r.raw)
		}
	}
}

// TestEnterpriseSchemaListedOnlyWhenUsed: a User lists the enterprise
// extension in schemas only when it has one of its attributes, on every
// rendering path (create, get, list, with and without a projection).
func TestEnterpriseSchemaListedOnlyWhenUsed(t *testing.T) {
	e := newEnv(t)
	e.t = t
	ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	schemas := func(v any) []string {
		var out []string
		l, _ := v.([]any)
		for _, s := range l {
			out = append(out, s.(string))
		}
		return out
	}
	plain := e.must(e.do(acmeOkta, "POST", "/Users", userBody("plain@acme.test", "")), 201, "plain user")
	withEnt := e.must(e.do(acmeOkta, "POST", "/Users", userBody("ent@acme.test", `,"`+ent+`":{"department":"R&D"}`)), 201, "enterprise user")
	onlyUnknown := e.must(e.do(acmeEntra, "POST", "/Users", userBody("bldg@acme.test", `,"`+ent+`":{"building":"B2"}`)), 201, "enterprise user with an attribute kept as sent")
	for _, tc := range []struct {
		name string
		r    resp
		want bool
	}{
		{"created plain", plain, false},
		{"created with department", withEnt, true},
		{"created with an unknown enterprise key", onlyUnknown, true},
		{"get plain", e.must(e.do(acmeOkta, "GET", "/Users/"+plain.str("id"), ""), 200, "get"), false},
		{"get plain, projected", e.must(e.do(acmeOkta, "GET", "/Users/"+plain.str("id")+"?attributes=userName", ""), 200, "get"), false},
		{"get with department", e.must(e.do(acmeOkta, "GET", "/Users/"+withEnt.str("id"), ""), 200, "get"), true},
		{"listed plain", resp{body: e.must(e.do(acmeOkta, "GET", "/Users?filter="+q(`userName eq "plain@acme.test"`), ""), 200, "list").get("Resources", "0").(map[string]any)}, false},
		{"listed with department", resp{body: e.must(e.do(acmeOkta, "GET", "/Users?filter="+q(`userName eq "ent@acme.test"`), ""), 200, "list").get("Resources", "0").(map[string]any)}, true},
	} {
		got := schemas(tc.r.get("schemas"))
		if slices.Contains(got, ent) != tc.want || len(got) == 0 || got[0] != "urn:ietf:params:scim:schemas:core:2.0:User" {
			t.Errorf("%s: schemas %v, enterprise listed should be %v", tc.name, got, tc.want)
		}
	}
	// Removing the last enterprise attribute unlists the extension.
	r := e.must(e.do(acmeOkta, "PATCH", "/Users/"+withEnt.str("id"), patch(`{"op":"remove","path":"`+ent+`:department"}`)), 200, "remove department")
	if slices.Contains(schemas(r.get("schemas")), ent) {
		t.Fatalf("after removing the department: %s", r.raw)
	}
}
