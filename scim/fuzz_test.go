package scim_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// panicCounter is a slog.Handler counting the handler's panic reports.
type panicCounter struct{ n *atomic.Int64 }

func (p panicCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (p panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.n.Add(1)
	}
	return nil
}

func (p panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p panicCounter) WithGroup(string) slog.Handler      { return p }

// FuzzHandler sends arbitrary methods, paths, filters and bodies through
// the handler: it must never panic (the front's recover would log it),
// never answer 500, and always answer a JSON body or none.
func FuzzHandler(f *testing.F) {
	var panics atomic.Int64
	e := newEnv(f, func(c *scim.Config, p *provision.Config) {
		// Only errors, counted: a growing log would slow the fuzzer down.
		log := slog.New(panicCounter{&panics})
		c.Logger, p.Logger = log, log
	})
	seed := doReq(f, e.base, acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"seed@acme.test","emails":[{"value":"a@b","type":"work"}]}`)
	uid := seed.str("id")
	gid := doReq(f, e.base, acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Seed","members":[{"value":"`+uid+`"}]}`).str("id")
	if uid == "" || gid == "" {
		f.Fatal("seeding failed")
	}
	for _, s := range []struct {
		m          uint8
		path, f, b string
	}{
		{0, "/Users", `userName eq "x"`, ""},
		{0, "/Users", `emails[type eq "work"].value eq "a@b"`, ""},
		{0, "/Groups", `id eq "g" and members eq "u"`, ""},
		{0, "/Users", `not (active eq true) or (title pr and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "m")`, ""},
		{1, "/Users", "", entraUser},
		{1, "/Groups", "", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g","members":[{"value":"{u}"}]}`},
		{2, "/Users/{u}", "", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"seed@acme.test","urn:x:2.0:User":{"a":[1,{"b":null}]}}`},
		{3, "/Users/{u}", "", patch(`{"op":"Replace","path":"emails[type eq \"work\"].value","value":"x@y"},{"op":"replace","value":{"active":"False","name.givenName":"A","urn:x:2.0:User:t":1}}`)},
		{3, "/Users/{u}", "", patch(`{"op":"remove","path":"emails[value co \"@\" or not (type eq \"home\")]"},{"op":"add","path":"roles","value":[{"value":"r","primary":"True"}]}`)},
		{3, "/Users/{u}", "", patch(`{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":["m"]},{"op":"add","path":"x.y","value":{}}`)},
		{3, "/Groups/{g}", "", patch(`{"op":"remove","path":"members[value eq \"{u}\"]"},{"op":"add","path":"members","value":[{"$ref":null,"value":"{u}"}]},{"op":"replace","value":{"displayName":"n","members":[]}}`)},
		{4, "/Groups/{g}", "", ""},
		{0, "/ResourceTypes/User", "", ""},
		{0, "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "", ""},
		{3, "/Users/{u}", "", `{"Operations":[{"op":"add","path":"emails[type eq \"work\"]","value":"str"}]}`},
		{3, "/Users/{u}", "", `{"Operations":[{"op":"add","value":{"emails":[1,2]}},{"op":"add","path":"addresses[type eq \"w\"].primary","value":"yes"}]}`},
		{1, "/Bulk", "", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"failOnErrors":1,"Operations":[{"method":"POST","path":"/Users","bulkId":"a","data":{"userName":"bulk@x"}},{"method":"PATCH","path":"/Users/bulkId:a","version":"W/\"1\"","data":{"Operations":[{"op":"replace","path":"active","value":"False"}]}},{"method":"POST","path":"/Groups","bulkId":"g","data":{"displayName":"g","members":[{"value":"bulkId:a"},{"value":"bulkId:g"}]}},{"method":"DELETE","path":"/Groups/bulkId:g"}]}`},
		{1, "/Bulk", "", `{"Operations":[{"method":"PUT","path":"/Users/{u}","data":null},{"method":"POST","path":"/Bulk","bulkId":"x"},{"method":"patch","path":"/Groups/{g}","data":[1]}]}`},
		{1, "/Users/.search", "", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"attributes":["userName","name.givenName","urn:x:2.0:User:a.b"],"filter":"emails[type eq \"work\"].value sw \"a\"","sortBy":"emails.value","sortOrder":"descending","startIndex":"2","count":1}`},
		{1, "/.search", "", `{"excludedAttributes":["members","emails.value","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"filter":"displayName pr or userName pr","count":-1}`},
		{1, "/Groups/.search", "", `{"filter":"members eq \"{u}\"","sortBy":"members"}`},
	} {
		f.Add(s.m, s.path, s.f, s.b)
	}
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	f.Fuzz(func(t *testing.T, m uint8, path, filter, body string) {
		path = strings.ReplaceAll(strings.ReplaceAll(path, "{u}", uid), "{g}", gid)
		body = strings.ReplaceAll(strings.ReplaceAll(body, "{u}", uid), "{g}", gid)
		req := httptest.NewRequest("GET", "/", strings.NewReader(body))
		req.Method = methods[int(m)%len(methods)]
		req.URL = &url.URL{Path: path}
		if filter != "" {
			req.URL.RawQuery = url.Values{"filter": {filter}, "excludedAttributes": {"members"}, "attributes": {filter}, "sortBy": {filter}}.Encode()
		}
		req.Header.Set("Authorization", "Bearer "+acmeOkta)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if panics.Load() > 0 {
			t.Fatalf("panic on %s %q filter %q body %q", req.Method, path, filter, body)
		}
		if rec.Code >= 500 {
			t.Fatalf("%d on %s %q filter %q body %q: %s", rec.Code, req.Method, path, filter, body, rec.Body.String())
		}
		if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("not JSON: %q", rec.Body.String())
		}
	})
}
