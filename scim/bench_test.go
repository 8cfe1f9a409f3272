package scim_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

// benchEnv is a tenant of 100,000 users (loaded with memstore.Load), a
// group holding all of them and a group of 10, behind the real handler.
type benchEnv struct {
	h          http.Handler
	base       http.Handler // the elimity baseline (vs_elimity_test.go)
	userID     string
	store      *memstore.Store
	engine     *provision.Engine
	big, small string
	next       int
}

var (
	benchOnce sync.Once
	bench     *benchEnv
)

const benchUsers = 100_000

func getBench(b *testing.B) *benchEnv {
	benchOnce.Do(func() {
		st := memstore.New()
		engine, err := provision.NewEngine(provision.Config{
			Store:   st,
			Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		tokens, _ := scim.NewTokenSet(scim.Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken(acmeOkta)}})
		h, err := scim.New(scim.Config{Engine: engine, Authenticator: tokens})
		if err != nil {
			b.Fatal(err)
		}
		users := make([]provision.User, benchUsers)
		for i := range users {
			users[i] = provision.User{UserName: fmt.Sprintf("user%d@acme.test", i), Active: true, Owner: "okta",
				Name:   provision.Name{GivenName: "User", FamilyName: fmt.Sprint(i)},
				Emails: []provision.Email{{Value: fmt.Sprintf("user%d@acme.test", i), Type: "work", Primary: true}}}
		}
		if err := st.Load("acme", users); err != nil {
			b.Fatal(err)
		}
		o := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
		ctx := context.Background()
		big, err := engine.CreateGroup(ctx, o, provision.Group{DisplayName: "Everyone"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < benchUsers; i += 1000 {
			ids := make([]string, 0, 1000)
			for _, u := range users[i:min(i+1000, benchUsers)] {
				ids = append(ids, u.ID)
			}
			if _, _, err := engine.UpdateGroup(ctx, o, big.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids}); err != nil {
				b.Fatal(err)
			}
		}
		ten := []string{}
		for _, u := range users[:10] {
			ten = append(ten, u.ID)
		}
		small, err := engine.CreateGroup(ctx, o, provision.Group{DisplayName: "Ten"}, ten)
		if err != nil {
			b.Fatal(err)
		}
		bench = &benchEnv{h: h, base: newBaseline(engine), store: st, engine: engine, big: big.ID, small: small.ID, userID: users[4242].ID}
	})
	return bench
}

// freshUsers loads n users that belong to no group, for PATCH benchmarks.
func (e *benchEnv) freshUsers(b *testing.B, n int) []string {
	users := make([]provision.User, n)
	for i := range users {
		e.next++
		users[i] = provision.User{UserName: fmt.Sprintf("fresh%d@acme.test", e.next), Active: true, Owner: "okta"}
	}
	if err := e.store.Load("acme", users); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i, u := range users {
		ids[i] = u.ID
	}
	return ids
}

func (e *benchEnv) serve(b *testing.B, method, target, body string, want int) {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+acmeOkta)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s = %d %s", method, target, rec.Code, rec.Body)
	}
}

// BenchmarkGetUsersByUserName is Okta's and Entra's lookup in a
// 100,000-user tenant.
func BenchmarkGetUsersByUserName(b *testing.B) {
	e := getBench(b)
	target := "/Users?filter=" + url.QueryEscape(`userName eq "user54321@acme.test"`)
	b.ReportAllocs()
	for b.Loop() {
		e.serve(b, "GET", target, "", 200)
	}
}

// BenchmarkPostUser creates users in the 100,000-user tenant.
func BenchmarkPostUser(b *testing.B) {
	e := getBench(b)
	bodies := make([]string, 0, 1024)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if len(bodies) == 0 {
			b.StopTimer()
			for range 1024 {
				e.next++
				bodies = append(bodies, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"new%d@acme.test","externalId":"00u%d","name":{"givenName":"New","familyName":"User"},"emails":[{"primary":true,"value":"new%d@acme.test","type":"work"}],"displayName":"New User","active":true}`, e.next, e.next, e.next))
			}
			b.StartTimer()
		}
		e.serve(b, "POST", "/Users", bodies[len(bodies)-1], 201)
		bodies = bodies[:len(bodies)-1]
		i++
	}
}

// BenchmarkPatchAddMember adds one member to a group of 100,000 and to a
// group of 10: the cost must not depend on the group's size.
func BenchmarkPatchAddMember(b *testing.B) {
	for _, tc := range []struct {
		name  string
		group func(*benchEnv) string
	}{
		{"members=10", func(e *benchEnv) string { return e.small }},
		{"members=100000", func(e *benchEnv) string { return e.big }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := getBench(b)
			gid := tc.group(e)
			var ids []string
			b.ReportAllocs()
			for b.Loop() {
				if len(ids) == 0 {
					b.StopTimer()
					ids = e.freshUsers(b, 1024)
					b.StartTimer()
				}
				body := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"` + ids[len(ids)-1] + `"}]}]}`
				ids = ids[:len(ids)-1]
				e.serve(b, "PATCH", "/Groups/"+gid, body, 204)
			}
		})
	}
}

// BenchmarkGetGroupExcludedMembers reads the 100,000-member group as
// Entra does, without its members.
func BenchmarkGetGroupExcludedMembers(b *testing.B) {
	e := getBench(b)
	target := "/Groups/" + e.big + "?excludedAttributes=members"
	b.ReportAllocs()
	for b.Loop() {
		e.serve(b, "GET", target, "", 200)
	}
}

// BenchmarkBulk1000 posts one Bulk request of 1,000 operations: 500 user
// creates, then 500 PATCHes of those users by bulkId reference.
func BenchmarkBulk1000(b *testing.B) {
	e := getBench(b)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		var sb strings.Builder
		sb.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[`)
		for i := range 500 {
			n++
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"method":"POST","path":"/Users","bulkId":"u%d","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bulk%d@acme.test","externalId":"00b%d","active":true}}`, n, n, n)
		}
		for i := range 500 {
			fmt.Fprintf(&sb, `,{"method":"PATCH","path":"/Users/bulkId:u%d","data":{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"t"}]}}`, n-499+i)
		}
		sb.WriteString(`]}`)
		body := sb.String()
		b.StartTimer()
		e.serve(b, "POST", "/Bulk", body, 200)
	}
}

// BenchmarkSortedList100k reads the first page (100) of the 100,000-user
// tenant sorted by userName, descending.
func BenchmarkSortedList100k(b *testing.B) {
	e := getBench(b)
	b.ReportAllocs()
	for b.Loop() {
		e.serve(b, "GET", "/Users?sortBy=userName&sortOrder=descending&count=100", "", 200)
	}
}
