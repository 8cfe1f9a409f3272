package scim_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	e.t = t
	for _, tc := range []struct{ name, token string }{
		{"missing", ""},
		{"wrong", "nope"},
		{"another case", strings.ToUpper(acmeOkta)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			r := e.do(tc.token, "GET", "/Users", "")
			e.mustError(r, 401, "", "bad token")
			if r.str("detail") == "" || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 = %v %s", r.header, r.raw)
			}
		})
	}
	e.t = t
	// Discovery needs a token too; with one it works.
	e.mustError(e.do("", "GET", "/ServiceProviderConfig", ""), 401, "", "spc without token")
	if strings.Contains(e.logs.String(), "nope") {
		t.Fatal("a presented token is in the logs")
	}
}

func TestTokenRotation(t *testing.T) {
	ts, err := scim.NewTokenSet(scim.Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("old")}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.Authenticator = ts })
	e.t = t
	e.must(e.do("old", "GET", "/Users", ""), 200, "old token")
	// Rotation: old and new valid together, then only the new one.
	if err := ts.Set(scim.Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("old"), scim.HashToken("new")}}); err != nil {
		t.Fatal(err)
	}
	e.must(e.do("old", "GET", "/Users", ""), 200, "old token during rotation")
	e.must(e.do("new", "GET", "/Users", ""), 200, "new token during rotation")
	if err := ts.Set(scim.Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("new")}}); err != nil {
		t.Fatal(err)
	}
	e.mustError(e.do("old", "GET", "/Users", ""), 401, "", "old token after rotation")
	e.must(e.do("new", "GET", "/Users", ""), 200, "new token after rotation")
	// A token names one directory.
	if err := ts.Set(scim.Directory{TenantID: "globex", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("new")}}); err == nil {
		t.Fatal("a token shared by two directories was accepted")
	}
	ts.Remove("acme", "okta")
	e.mustError(e.do("new", "GET", "/Users", ""), 401, "", "removed directory")

	h := scim.HashToken("x")
	back, err := scim.ParseTokenHash(h.String())
	if err != nil || back != h {
		t.Fatalf("ParseTokenHash(%s) = %v, %v", h, back, err)
	}
	if _, err := scim.ParseTokenHash("sha256:abc"); err == nil {
		t.Fatal("a short hash parsed")
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	e.t = t
	acmeUser := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","externalId":"a1","active":true}`), 201, "acme user").str("id")
	globexUser := e.must(e.do(globexOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","externalId":"a1","active":true}`), 201, "same userName in globex").str("id")
	globexGroup := e.must(e.do(globexOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng","members":[]}`), 201, "globex group").str("id")
	e.events("acme")
	e.events("globex")

	e.mustError(e.do(globexOkta, "GET", "/Users/"+acmeUser, ""), 404, "", "read another tenant's user")
	e.mustError(e.do(globexOkta, "PATCH", "/Users/"+acmeUser, patch(`{"op":"replace","value":{"active":false}}`)), 404, "", "patch another tenant's user")
	e.mustError(e.do(globexOkta, "PUT", "/Users/"+acmeUser, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x@y"}`), 404, "", "put another tenant's user")
	e.mustError(e.do(globexOkta, "DELETE", "/Users/"+acmeUser, ""), 404, "", "delete another tenant's user")
	r := e.must(e.do(globexOkta, "GET", "/Users", ""), 200, "list")
	if r.get("totalResults") != 1.0 || r.str("Resources", "0", "id") != globexUser {
		t.Fatalf("globex sees %s", r.raw)
	}
	// Another tenant's user as a member: 400 invalidValue, nothing applied.
	e.mustError(e.do(globexOkta, "PATCH", "/Groups/"+globexGroup, patch(`{"op":"add","path":"members","value":[{"value":"`+globexUser+`"},{"value":"`+acmeUser+`"}]}`)), 400, "invalidValue", "foreign member")
	e.mustError(e.do(globexOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Ops","members":[{"value":"`+acmeUser+`"}]}`), 400, "invalidValue", "foreign member on create")
	e.wantEvents("globex")
	e.wantEvents("acme")
}

func TestOwnership(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","externalId":"a1","active":true}`), 201, "okta user").str("id")
	r := e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"active","value":false}`))
	e.mustError(r, 409, "", "another directory's user")
	if !strings.Contains(r.str("detail"), `"okta"`) {
		t.Fatalf("409 detail does not name the owner: %s", r.raw)
	}
	// Entra's create of the same userName is a uniqueness conflict.
	e.mustError(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ADA@acme.test","externalId":"e1","active":true}`), 409, "uniqueness", "userName of another directory")
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","active":true}`), 201, "user").str("id")
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng"}`), 201, "group").str("id")
	e.events("acme")
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		scimType                 string
	}{
		{"malformed JSON", "POST", "/Users", `{"userName":`, 400, "invalidSyntax"},
		{"not an object", "POST", "/Users", `["userName"]`, 400, "invalidSyntax"},
		{"trailing data", "POST", "/Users", `{"userName":"x"} {}`, 400, "invalidSyntax"},
		{"userName a number", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":12}`, 400, "invalidValue"},
		{"no userName", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"displayName":"x"}`, 400, "invalidValue"},
		{"active not a boolean", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b@acme.test","active":"maybe"}`, 400, "invalidValue"},
		{"emails not a list", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b@acme.test","emails":"b@acme.test"}`, 400, "invalidSyntax"},
		{"two primary emails", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b@acme.test","emails":[{"value":"a@x","primary":true},{"value":"b@x","primary":true}]}`, 400, "invalidValue"},
		{"patch without operations", "PATCH", "/Users/" + id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`, 400, "invalidValue"},
		{"patch empty operations", "PATCH", "/Users/" + id, patch(``), 400, "invalidValue"},
		{"patch unknown op", "PATCH", "/Users/" + id, patch(`{"op":"move","path":"userName","value":"x"}`), 400, "invalidValue"},
		{"patch remove without path", "PATCH", "/Users/" + id, patch(`{"op":"remove"}`), 400, "noTarget"},
		{"patch bad path", "PATCH", "/Users/" + id, patch(`{"op":"replace","path":"emails[type eq","value":"x"}`), 400, "invalidPath"},
		{"patch wrong type", "PATCH", "/Users/" + id, patch(`{"op":"replace","path":"userName","value":{"a":1}}`), 400, "invalidValue"},
		{"patch clears userName", "PATCH", "/Users/" + id, patch(`{"op":"remove","path":"userName"}`), 400, "invalidValue"},
		{"patch unknown member", "PATCH", "/Groups/" + gid, patch(`{"op":"add","path":"members","value":[{"value":"` + id + `"},{"value":"nobody"}]}`), 400, "invalidValue"},
		{"patch member without value", "PATCH", "/Groups/" + gid, patch(`{"op":"add","path":"members","value":[{"display":"x"}]}`), 400, "invalidValue"},
		{"patch members by display", "PATCH", "/Groups/" + gid, patch(`{"op":"remove","path":"members[display eq \"x\"]"}`), 400, "invalidFilter"},
		{"filter syntax", "GET", "/Users?filter=" + q(`userName eq`), "", 400, "invalidFilter"},
		{"filter too long", "GET", "/Users?filter=" + q(`userName eq "`+strings.Repeat("x", 5000)+`"`), "", 400, "invalidFilter"},
		{"filter too deep", "GET", "/Users?filter=" + q(strings.Repeat("(", 40)+`userName eq "x"`+strings.Repeat(")", 40)), "", 400, "invalidFilter"},
		{"count not a number", "GET", "/Users?count=ten", "", 400, ""},
		{"unknown endpoint", "GET", "/Widgets", "", 404, ""},
		{"unknown user", "GET", "/Users/nobody", "", 404, ""},
		{"unknown group patch", "PATCH", "/Groups/nobody", patch(`{"op":"add","path":"members","value":[{"value":"` + id + `"}]}`), 404, ""},
		{"stale If-Match", "PATCH", "/Users/" + id, patch(`{"op":"replace","path":"title","value":"CTO"}`), 412, ""},
		{"bulk without operations", "POST", "/Bulk", `{}`, 400, "invalidValue"},
		{"me", "GET", "/Me", "", 501, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			var hdr []string
			if tc.status == 412 {
				hdr = []string{"If-Match", `W/"7"`}
			}
			e.mustError(e.do(acmeOkta, tc.method, tc.path, tc.body, hdr...), tc.status, tc.scimType, tc.name)
			e.wantEvents("acme")
		})
	}
	e.t = t
	r := e.must(e.do(acmeOkta, "GET", "/Users/"+id, ""), 200, "unchanged")
	if r.str("userName") != "ada@acme.test" || r.header.Get("Etag") != `W/"1"` {
		t.Fatalf("user changed: %s", r.raw)
	}
	// A matching If-Match applies.
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"title","value":"CTO"}`), "If-Match", `W/"1"`), 200, "If-Match")
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.MaxBodyBytes = 1024 })
	e.t = t
	big := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a@b","displayName":"` + strings.Repeat("x", 2000) + `"}`
	e.mustError(e.do(acmeOkta, "POST", "/Users", big), 413, "", "large body")
	// Without a Content-Length (chunked) too.
	req, _ := http.NewRequest("POST", e.base+"/Users", &slowReader{s: big})
	req.Header.Set("Authorization", "Bearer "+acmeOkta)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked large body = %d", resp.StatusCode)
	}
	e.wantEvents("acme")

	// The default is 1 MiB.
	d := newEnv(t)
	d.t = t
	d.mustError(d.do(acmeOkta, "POST", "/Users", `{"userName":"`+strings.Repeat("x", 1<<20)+`"}`), 413, "", "over 1 MiB")
}

type slowReader struct {
	s string
	i int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		return 0, errEOF
	}
	n := copy(p[:min(len(p), 100)], r.s[r.i:])
	r.i += n
	return n, nil
}

func TestCountClamped(t *testing.T) {
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.MaxResults = 2 })
	e.t = t
	for _, n := range []string{"a", "b", "c"} {
		e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+n+`@acme.test"}`), 201, "user")
	}
	r := e.must(e.do(acmeOkta, "GET", "/Users?count=1000000&startIndex=-5", ""), 200, "huge count")
	if r.get("totalResults") != 3.0 || r.get("itemsPerPage") != 2.0 || r.get("startIndex") != 1.0 {
		t.Fatalf("clamped = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Users?startIndex=3", ""), 200, "last page")
	if r.get("itemsPerPage") != 1.0 || r.get("startIndex") != 3.0 {
		t.Fatalf("last page = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Users?startIndex=99", ""), 200, "past the end")
	if r.get("itemsPerPage") != 0.0 || !strings.Contains(r.raw, `"Resources":[]`) {
		t.Fatalf("past the end = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/ServiceProviderConfig", ""), 200, "spc")
	if r.get("filter", "maxResults") != 2.0 || r.get("patch", "supported") != true || r.get("bulk", "supported") != true ||
		r.get("etag", "supported") != true || r.get("sort", "supported") != true || r.get("changePassword", "supported") != true {
		t.Fatalf("spc = %s", r.raw)
	}
}

func TestPaths(t *testing.T) {
	e := newEnv(t)
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/users/", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test"}`), 201, "lower-case POST").str("id")
	e.must(e.do(acmeOkta, "GET", "/USERS/"+id+"/", ""), 200, "upper-case GET with a slash")
	r := e.must(e.do(acmeOkta, "GET", "/Users/?filter="+q(`userName eq "ada@acme.test"`), ""), 200, "list with a slash")
	if r.get("totalResults") != 1.0 {
		t.Fatalf("list = %s", r.raw)
	}
	e.must(e.do(acmeOkta, "GET", "/v2/Users/"+id, ""), 200, "with /v2")
	e.must(e.do(acmeOkta, "GET", "/serviceproviderconfig", ""), 200, "spc")
	r = e.must(e.do(acmeOkta, "GET", "/resourcetypes", ""), 200, "resource types")
	if r.get("totalResults") != 2.0 {
		t.Fatalf("resource types = %s", r.raw)
	}
	r = e.must(e.do(acmeOkta, "GET", "/Schemas", ""), 200, "schemas")
	if strings.Contains(r.raw, "null") || !strings.Contains(r.raw, `"mutability":"readWrite"`) || !strings.Contains(r.raw, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User") {
		t.Fatalf("schemas = %.500s", r.raw)
	}
	e.must(e.do(acmeOkta, "GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", ""), 200, "user schema")
}

func TestDialectNormalization(t *testing.T) {
	e := newEnv(t)
	e.t = t
	// Entra's POST: string booleans, a bare manager, nulls, an unknown
	// extension block, an unknown enterprise key, the malformed URN, and
	// a top-level attribute no schema defines (dropped).
	r := e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"],
		"userName":"ada@acme.test","active":"True","addresses":null,"emails":[{"value":"ada@acme.test","type":"work","primary":"true"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":"123456","department":"R&D","building":"B2"},
		"urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"tag":"blue","level":3},
		"favoriteColor":"green"}`), 201, "entra POST")
	id := r.str("id")
	ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	if r.get("active") != true || r.get("emails", "0", "primary") != true || r.str(ent, "manager", "value") != "123456" || r.str(ent, "department") != "R&D" || r.str(ent, "building") != "B2" ||
		r.str("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User", "tag") != "blue" || r.get("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User", "level") != 3.0 || r.get("favoriteColor") != nil {
		t.Fatalf("normalized = %s", r.raw)
	}
	evs := e.wantEvents("acme", "user.created")
	if got := string(evs[0].User.Attributes["urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag"]); got != `"blue"` {
		t.Fatalf("stored custom attribute = %q (all: %v)", got, evs[0].User.Attributes)
	}
	// A PUT without the extension blocks keeps them.
	r = e.must(e.do(acmeEntra, "PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","emails":[{"value":"ada@acme.test","type":"work","primary":true}],"favoriteColor":"green"}`), 200, "put")
	if r.str(ent, "department") != "R&D" || r.str("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User", "tag") != "blue" || r.get("active") != true {
		t.Fatalf("put dropped data: %s", r.raw)
	}
	e.wantEvents("acme")
	// A path-less PATCH with a custom block, the enterprise block with a
	// bare manager, and a string boolean; and the malformed URN in a POST.
	r = e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","value":{"urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"tag":"red"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":"654321"},"active":"False"}}`)), 200, "path-less blocks")
	if r.str("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User", "tag") != "red" || r.str(ent, "manager", "value") != "654321" || r.get("active") != false || r.str(ent, "department") != "R&D" {
		t.Fatalf("path-less blocks = %s", r.raw)
	}
	r = e.must(e.do(acmeEntra, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@acme.test","urn:ietf:params:scim:schemas:extension:enterprise:2.0User":{"department":"Sales"}}`), 201, "malformed URN")
	if r.str(ent, "department") != "Sales" {
		t.Fatalf("malformed URN = %s", r.raw)
	}
}

// TestStrictTypes: two handlers in one process, one lenient, one strict.
func TestStrictTypes(t *testing.T) {
	lenient := newEnv(t)
	lenient.t = t
	strict := newEnv(t, func(c *scim.Config, _ *provision.Config) { c.StrictTypes = true })
	strict.t = t
	body := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","active":"True"}`
	strict.mustError(strict.do(acmeOkta, "POST", "/Users", body), 400, "invalidValue", "strict")
	lenient.must(lenient.do(acmeOkta, "POST", "/Users", body), 201, "lenient")
	strict.mustError(strict.do(acmeOkta, "POST", "/Users", body), 400, "invalidValue", "strict, after the lenient one")
}

// flaky is a Store that fails with ErrUnavailable while down is set.
type flaky struct {
	provision.Store
	down atomic.Bool
}

func (f *flaky) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) error {
	if f.down.Load() {
		return provision.ErrUnavailable
	}
	return f.Store.Atomically(ctx, fn)
}

func (f *flaky) GetUser(ctx context.Context, tenantID, id string) (provision.User, error) {
	if f.down.Load() {
		return provision.User{}, provision.ErrUnavailable
	}
	return f.Store.GetUser(ctx, tenantID, id)
}

func (f *flaky) ListUsers(ctx context.Context, tenantID string, p provision.Page) ([]provision.User, int, error) {
	if f.down.Load() {
		return nil, 0, provision.ErrUnavailable
	}
	return f.Store.ListUsers(ctx, tenantID, p)
}

func TestUnavailable(t *testing.T) {
	st := &flaky{Store: memstore.New()}
	e := newEnvStore(t, st, func(c *scim.Config, _ *provision.Config) { c.RetryAfter = 7 * time.Second })
	e.t = t
	id := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test"}`), 201, "user").str("id")
	st.down.Store(true)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/Users/" + id, ""},
		{"GET", "/Users", ""},
		{"POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@acme.test"}`},
		{"PATCH", "/Users/" + id, patch(`{"op":"replace","path":"title","value":"x"}`)},
		{"DELETE", "/Users/" + id, ""},
	} {
		r := e.do(acmeOkta, tc.method, tc.path, tc.body)
		e.mustError(r, 503, "", tc.method+" "+tc.path)
		if r.header.Get("Retry-After") != "7" {
			t.Fatalf("%s %s: Retry-After %q", tc.method, tc.path, r.header.Get("Retry-After"))
		}
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1e9, 0)
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) {
		c.RateLimit = scim.RateLimit{PerSecond: 0.5, Burst: 2}
		c.Now = func() time.Time { return now }
	})
	e.t = t
	e.must(e.do(acmeOkta, "GET", "/Users", ""), 200, "1")
	e.must(e.do(acmeOkta, "GET", "/Users", ""), 200, "2")
	r := e.do(acmeOkta, "GET", "/Users", "")
	e.mustError(r, 429, "", "3")
	if r.header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Another directory has its own bucket.
	e.must(e.do(acmeEntra, "GET", "/Users", ""), 200, "other directory")
	now = now.Add(2 * time.Second)
	e.must(e.do(acmeOkta, "GET", "/Users", ""), 200, "after waiting")
}
