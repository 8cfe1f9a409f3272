package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	elimity "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// patchCorpus are PATCH bodies of users (u) and groups (g): what Okta and
// Entra send, the dialects the front normalizes, and what elimity
// refuses (or our handlers refuse). fast marks those the fast path must
// take: every body elimity accepts.
var patchCorpus = []struct {
	k    kind
	body string
	fast bool
}{
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"title":"t1"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"x","active":true,"name.givenName":"A","displayName":"D"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"password":"p4ss"}}]}`, true},
	{userKind, `{"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"w@example.com"},{"op":"Replace","path":"name.familyName","value":"F"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"work\"].primary","value":"True"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m1"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R","costCenter":"7"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"E1"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"urn:example:custom:2.0:User:tag","value":"blue"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"},{"op":"Replace","path":"addresses[type eq \"work\"].locality","value":"Seattle"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"emails[type eq \"home\"]"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"a@example.com","type":"home","primary":"true"}]}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":{"value":"b@example.com","type":"other"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails","value":[{"value":"b@example.com"}]}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"roles","value":[{"value":"Admin"}]}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"x509Certificates":[{"value":"aGVsbG8="}]}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"unknownThing":1,"nickName":"n"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"externalId","value":"ext-1"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"name","value":{"givenName":"G","familyName":"H"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:title","value":"urn"}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"unknownAttr","value":"x"}]}`, true},
	// Refused by elimity, or read differently: elimity answers.
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"move","path":"userName","value":"x"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"userName","value":{"a":1}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"title":null}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":"maybe"}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"name.nope","value":"x"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[nope eq \"x\"].value","value":"x"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"a","ID":"b","title":"x"}}]}`, true},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","Op":"add","value":{"title":"x"}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":1,"value":{"title":"x"}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":7,"value":"x"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp","x"],"Operations":[{"op":"replace","value":{"title":"x"}}]}`, false},
	{userKind, `{"schemas":"urn:ietf:params:scim:api:messages:2.0:PatchOp","Operations":[{"op":"replace","value":{"title":"x"}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"title":"x"}}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":"x"}]}`, false},
	{userKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"x509Certificates":[{"value":"not base64!"}]}}]}`, false},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"displayName","value":"Renamed"}]}`, true},
	{groupKind, `{"Operations":[{"op":"replace","value":{"id":"g","displayName":"Okta renamed"}}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"MEMBER"}]}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"MEMBER\"]"}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"MEMBER"}]},{"op":"Remove","path":"members","value":[{"value":"MEMBER"}]}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[{"value":"MEMBER","display":"x"}]}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[display eq \"x\"]"}]}`, true},
	{groupKind, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"display":"x"}]}]}`, true},
}

// recordingHandler is an elimity ResourceHandler that keeps the
// operations elimity validated.
type recordingHandler struct{ ops *[]elimity.PatchOperation }

func (recordingHandler) Create(*http.Request, elimity.ResourceAttributes) (elimity.Resource, error) {
	return elimity.Resource{}, errors.New("unused")
}
func (recordingHandler) Get(*http.Request, string) (elimity.Resource, error) {
	return elimity.Resource{}, errors.New("unused")
}
func (recordingHandler) GetAll(*http.Request, elimity.ListRequestParams) (elimity.Page, error) {
	return elimity.Page{}, errors.New("unused")
}
func (recordingHandler) Replace(*http.Request, string, elimity.ResourceAttributes) (elimity.Resource, error) {
	return elimity.Resource{}, errors.New("unused")
}
func (recordingHandler) Delete(*http.Request, string) error { return errors.New("unused") }
func (rh recordingHandler) Patch(_ *http.Request, _ string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	*rh.ops = ops
	return elimity.Resource{}, nil
}

// TestPatchValidationMatchesElimity checks validatePatchOps against
// elimity's own PATCH validation, body by body: where elimity refuses,
// the fast path declines (elimity answers); where it accepts, both give
// the same operations.
func TestPatchValidationMatchesElimity(t *testing.T) {
	h, err := New(Config{Engine: testEngine(t)})
	if err != nil {
		t.Fatal(err)
	}
	var got []elimity.PatchOperation
	srv, err := elimity.NewServer(&elimity.ServerArgs{
		ServiceProviderConfig: &elimity.ServiceProviderConfig{},
		ResourceTypes: []elimity.ResourceType{
			{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users", Schema: h.userSchema,
				SchemaExtensions: []elimity.SchemaExtension{{Schema: h.enterpriseSchema}}, Handler: recordingHandler{&got}},
			{ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups", Schema: h.groupSchema, Handler: recordingHandler{&got}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range patchCorpus {
		ep, ps := epUsers, h.userPatch
		if c.k == groupKind {
			ep, ps = epGroups, h.groupPatch
		}
		st := &request{route: route{ep: ep, item: true}}
		body := []byte(c.body)
		if serr := h.preparePatch(st, &body, c.k); serr != nil {
			t.Errorf("%s: preparePatch: %v", c.body, serr)
			continue
		}
		prepared, err := json.Marshal(st.patchDoc)
		if err != nil {
			t.Fatal(err)
		}
		mine, ok := validatePatchOps(ps, deepCopy(st.patchDoc).(map[string]any))

		got = nil
		path := "/Users/x"
		if c.k == groupKind {
			path = "/Groups/x"
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, path, bytes.NewReader(prepared)))
		accepted := rec.Code == http.StatusNoContent
		switch {
		case !accepted && ok:
			t.Errorf("%s: elimity answers %d %s, the fast path accepts it", c.body, rec.Code, rec.Body)
		case accepted && ok && !reflect.DeepEqual(mine, got):
			t.Errorf("%s: operations\n%#v\nelimity's\n%#v", c.body, mine, got)
		case ok != c.fast:
			t.Errorf("%s: fast path taken: %v, want %v (elimity: %d)", c.body, ok, c.fast, rec.Code)
		}
	}
}

func testEngine(t *testing.T) *provision.Engine {
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{
		{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPatchFastPathAnswersAsElimity sends every body of the corpus twice
// to one resource, by the fast path and through elimity, in both orders,
// and compares the answers: status, headers and body, byte for byte (the
// second of a pair changes nothing, so the two answers are the same
// resource).
func TestPatchFastPathAnswersAsElimity(t *testing.T) {
	tokens, err := NewTokenSet(Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []TokenHash{HashToken("tok")}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Engine: testEngine(t), Authenticator: tokens})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer tok")
		r.Header.Set("X-Request-Id", "req-1")
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	id := func(w *httptest.ResponseRecorder) string {
		var v struct{ ID string }
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || v.ID == "" {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		return v.ID
	}
	uid := id(do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@example.com","emails":[{"value":"ada@example.com","type":"work"}]}`))
	member := id(do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@example.com"}`))
	gid := id(do("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Team"}`))

	same := func(what string, a, b *httptest.ResponseRecorder) {
		t.Helper()
		if a.Code != b.Code || !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) {
			t.Errorf("%s:\n%d %s\nelimity's\n%d %s", what, a.Code, a.Body, b.Code, b.Body)
		}
		for _, k := range []string{"Content-Type", "Content-Length", "Etag", "Location", "Retry-After"} {
			if a.Header().Get(k) != b.Header().Get(k) {
				t.Errorf("%s: %s %q, elimity's %q", what, k, a.Header().Get(k), b.Header().Get(k))
			}
		}
	}
	for _, c := range patchCorpus {
		path := "/Users/" + uid
		if c.k == groupKind {
			path = "/Groups/" + gid
		}
		body := strings.ReplaceAll(c.body, "MEMBER", member)
		fast := do("PATCH", path, body)
		h.noFast = true
		slow := do("PATCH", path, body)
		slow2 := do("PATCH", path+"?attributes=userName", body)
		h.noFast = false
		fast2 := do("PATCH", path+"?attributes=userName", body)
		same(body, fast, slow)
		same(body+" (attributes)", fast2, slow2)
	}
	// The same for ids elimity reads itself, If-Match and a missing
	// resource.
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"title":"x"}}]}`
	for _, c := range []struct {
		path string
		hdr  []string
	}{
		{"/Users/" + uid, []string{"If-Match", `W/"1"`}},
		{"/Users/" + uid, []string{"If-Match", `W/"x"`}},
		{"/Users/" + uid, []string{"If-Match", `*`}},
		{"/Users/nobody", nil},
		{"/Users/100%25", nil},
		{"/Groups/nobody", nil},
	} {
		fast := do("PATCH", c.path, patch, c.hdr...)
		h.noFast = true
		slow := do("PATCH", c.path, patch, c.hdr...)
		h.noFast = false
		same(c.path+" "+strings.Join(c.hdr, " "), fast, slow)
	}
}

// TestCreateFastPathAnswersAsElimity posts every body twice, by the fast
// path and through elimity (the first resource deleted in between), and
// compares the answers byte for byte but for the id; and a duplicate
// create both ways.
func TestCreateFastPathAnswersAsElimity(t *testing.T) {
	tokens, err := NewTokenSet(Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []TokenHash{HashToken("tok")}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, base := range []string{"", "https://app.example.com/scim/v2/"} {
		e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Now: func() time.Time { return at }, Tenants: []provision.Tenant{
			{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Config{Engine: e, Authenticator: tokens, BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		do := func(method, path, body string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, path, strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer tok")
			r.Header.Set("X-Request-Id", "req-1")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		idOf := func(w *httptest.ResponseRecorder) string {
			var v struct{ ID string }
			_ = json.Unmarshal(w.Body.Bytes(), &v)
			return v.ID
		}
		member := idOf(do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"member@example.com"}`))
		same := func(what string, a, b *httptest.ResponseRecorder, aid, bid string) {
			t.Helper()
			fix := func(s string) string {
				if bid == "" {
					return s
				}
				return strings.ReplaceAll(s, bid, aid)
			}
			if a.Code != b.Code || a.Body.String() != fix(b.Body.String()) {
				t.Errorf("%s:\n%d %s\nelimity's\n%d %s", what, a.Code, a.Body, b.Code, b.Body)
			}
			for _, k := range []string{"Content-Type", "Content-Length", "Etag", "Location", "Retry-After"} {
				if a.Header().Get(k) != fix(b.Header().Get(k)) {
					t.Errorf("%s: %s %q, elimity's %q", what, k, a.Header().Get(k), b.Header().Get(k))
				}
			}
		}
		for _, c := range []struct{ path, body string }{
			{"/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"s1@example.com","externalId":"x1","emails":[{"value":"s1@example.com","type":"work"}],"active":true}`},
			{"/Users", `{"userName":"okta@example.com","name":{"givenName":"A","familyName":"B"},"emails":[{"primary":true,"value":"okta@example.com","type":"work"}],"displayName":"A B","locale":"en-US","externalId":"00u1","groups":[],"password":"pw-1","active":true}`},
			{"/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"externalId":"e1","userName":"entra@example.com","active":"True","displayName":"E","emails":[{"primary":"true","type":"work","value":"entra@example.com"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7","department":"R","manager":"m-1"},"urn:example:custom:2.0:User":{"tag":"blue"}}`},
			{"/Users", `{"userName":"typo@example.com","adreses":[{"x":1}],"x509Certificates":[{"value":"aGVsbG8="}],"phoneNumbers":[{"value":"+1","type":"mobile"}]}`},
			{"/Users", `{"userName":"bad@example.com","active":"maybe"}`},
			{"/Users", `{"userName":"bad2@example.com","emails":"x"}`},
			{"/Users", `{"userName":"bad3@example.com","x509Certificates":[{"value":"not base64!"}]}`},
			{"/Users", `{"displayName":"no userName"}`},
			{"/Users", `{"userName":"dup@example.com","UserName":"dup2@example.com"}`},
			{"/Users", `{"userName":"bad4@example.com","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":7}}}`},
			{"/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G1","externalId":"g1","members":[{"value":"` + member + `"}]}`},
			{"/Groups", `{"displayName":"G2","members":[{"value":"nobody"}]}`},
			{"/Groups", `{"displayName":7}`},
		} {
			fast := do("POST", c.path, c.body)
			fid := idOf(fast)
			if fast.Code == http.StatusCreated {
				if d := do("DELETE", c.path+"/"+fid, ""); d.Code != http.StatusNoContent {
					t.Fatalf("delete: %d %s", d.Code, d.Body)
				}
			}
			h.noFast = true
			slow := do("POST", c.path, c.body)
			h.noFast = false
			same(base+" "+c.body, fast, slow, fid, idOf(slow))
			if slow.Code == http.StatusCreated {
				// Once more, now that it exists: the same conflict (or
				// retried create) both ways.
				again := do("POST", c.path, c.body)
				h.noFast = true
				againSlow := do("POST", c.path, c.body)
				h.noFast = false
				same(base+" again "+c.body, again, againSlow, "", "")
			}
		}
	}
}
