package scim_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestBadStringsNeverFail: ids, names, member values and filter values
// holding NUL or invalid UTF-8, in the URL, in a body and inside /Bulk,
// are a clear 4xx on SQL stores (PostgreSQL refuses them with SQLSTATE
// 22021 if they reach it), never a 5xx, and change nothing.
func TestBadStringsNeverFail(t *testing.T) {
	stores := map[string]func(t *testing.T) provision.Store{
		"postgres": func(t *testing.T) provision.Store { return postgresStore(t) },
		"sqlite":   func(t *testing.T) provision.Store { return sqliteStore(t) },
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnvStore(t, newStore(t))
			uid := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@example.com","active":true}`), 201, "create user").str("id")
			gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng","members":[]}`), 201, "create group").str("id")
			user := func(field, v string) string {
				return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@example.com",` + field + `:` + v + `}`
			}
			type req struct{ method, path, body string }
			var reqs []req
			for _, bad := range []string{"%00", "%ff%fe", "a%00b", "%c3%28"} {
				for _, res := range []string{"/Users/", "/Groups/"} {
					reqs = append(reqs,
						req{"GET", res + bad, ""},
						req{"DELETE", res + bad, ""},
						req{"PATCH", res + bad, patchOp + `{"op":"replace","path":"displayName","value":"x"}]}`},
						req{"PUT", res + bad, user(`"displayName"`, `"x"`)},
					)
				}
				reqs = append(reqs,
					req{"GET", "/Users?filter=" + "userName%20eq%20%22" + bad + "%22", ""},
					req{"GET", "/Users?filter=" + "externalId%20eq%20%22" + bad + "%22", ""},
					req{"GET", "/Groups?filter=" + "displayName%20eq%20%22" + bad + "%22", ""},
					req{"GET", "/Groups?filter=" + "members.value%20eq%20%22" + bad + "%22", ""},
					req{"GET", "/Users?filter=" + "id%20eq%20%22" + bad + "%22", ""},
				)
			}
			for _, v := range []string{`"a\u0000b"`, `"\u0000"`} {
				reqs = append(reqs,
					req{"POST", "/Users", user(`"externalId"`, v)},
					req{"POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":` + v + `}`},
					req{"POST", "/Users", user(`"emails"`, `[{"value":`+v+`}]`)},
					req{"POST", "/Users", user(`"name"`, `{"givenName":`+v+`}`)},
					req{"POST", "/Users", user(`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`, `{"department":`+v+`}`)},
					req{"POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G","externalId":` + v + `}`},
					req{"POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G2","members":[{"value":` + v + `}]}`},
					req{"PATCH", "/Groups/" + gid, patchOp + `{"op":"add","path":"members","value":[{"value":` + v + `}]}]}`},
					req{"PATCH", "/Groups/" + gid, patchOp + `{"op":"remove","path":"members[value eq ` + strings.ReplaceAll(v, `"`, `\"`) + `]"}]}`},
					req{"PATCH", "/Groups/" + gid, patchOp + `{"op":"replace","path":"members","value":[{"value":` + v + `}]}]}`},
					req{"PATCH", "/Users/" + uid, patchOp + `{"op":"replace","path":"externalId","value":` + v + `}]}`},
					req{"PATCH", "/Users/" + uid, patchOp + `{"op":"replace","path":"userName","value":` + v + `}]}`},
				)
			}
			var ops []string
			for i, r := range reqs {
				if r.method == "GET" || strings.Contains(r.path, "?") {
					continue
				}
				path, err := url.PathUnescape(r.path)
				if err != nil {
					t.Fatal(err)
				}
				jp, _ := json.Marshal(path) // NUL stays (\u0000); invalid UTF-8 becomes U+FFFD
				op := `{"method":"` + r.method + `","path":` + string(jp) + `,"bulkId":"b` + itoa(i) + `"`
				if r.body != "" {
					op += `,"data":` + r.body
				}
				ops = append(ops, op+`}`)
			}
			bulk := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[` + strings.Join(ops, ",") + `]}`
			for _, r := range reqs {
				got := doReq(t, e.base, acmeOkta, r.method, r.path, r.body)
				if got.status >= 500 || got.status < 400 {
					t.Errorf("%s %s %.80q: %d %s", r.method, r.path, r.body, got.status, got.raw)
				}
			}
			got := doReq(t, e.base, acmeOkta, "POST", "/Bulk", bulk)
			if got.status != 200 {
				t.Fatalf("Bulk: %d %s", got.status, got.raw)
			}
			for _, op := range walk(got.body, "Operations").([]any) {
				m := op.(map[string]any)
				st, _ := m["status"].(string)
				if st == "" || st[0] == '5' || st[0] == '2' {
					t.Errorf("Bulk operation %v: %v", m["bulkId"], m)
				}
			}
			// Nothing changed.
			if evs := e.wantEvents("acme", "user.created", "group.created"); len(evs) != 2 {
				t.Errorf("events: %v", kinds(evs))
			}
		})
	}
}
