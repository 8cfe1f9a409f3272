package memstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
	"github.com/idprov/idprov/store/memstore"
)

// fuzzStore is a small tenant with varied attributes for FuzzSearch.
func fuzzStore(t testing.TB) (*memstore.Store, []provision.User) {
	t.Helper()
	st := memstore.New()
	ctx := context.Background()
	var users []provision.User
	for i := range 60 {
		u := provision.User{
			TenantID:    "t",
			UserName:    fmt.Sprintf("User%d@Example.com", i),
			DisplayName: []string{"Ann", "bob", "Çelik", ""}[i%4],
			Title:       []string{"Engineer", "manager", ""}[i%3],
			Active:      i%2 == 0,
			Department:  []string{"Finance", "R&D"}[i%2],
			Emails:      []provision.Email{{Value: fmt.Sprintf("m%d@example.com", i%9), Type: []string{"work", "home"}[i%2], Primary: i%3 == 0}},
		}
		if i%5 == 0 {
			u.Attributes = map[string]json.RawMessage{"level": json.RawMessage(fmt.Sprint(i % 7)), "tags": json.RawMessage(`["a","B"]`)}
		}
		out, err := st.CreateUser(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, out)
	}
	return st, users
}

// FuzzSearch checks that memstore's Searcher (its index lookups and its
// scan) answers every parsable filter exactly as provision.MatchUser does
// over all users, in the store's order.
func FuzzSearch(f *testing.F) {
	for _, s := range []string{
		`userName eq "user3@example.com"`,
		`userName eq "USER3@example.com" or emails eq "m4@example.com"`,
		`emails[type eq "work"].value eq "m2@example.com" and active eq true`,
		`id eq "x" or title co "eng"`,
		`not (department eq "finance") and level gt 2`,
		`tags[value eq "b"] or displayName sw "ç"`,
	} {
		f.Add(s)
	}
	st, users := fuzzStore(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, s string) {
		e, err := filter.ParseFor(filter.Users, s)
		if err != nil {
			return
		}
		var want []string
		for _, u := range users {
			if ok, err := provision.MatchUser(e, u, ""); err != nil {
				t.Fatalf("MatchUser(%s): %v", e, err)
			} else if ok {
				want = append(want, u.ID)
			}
		}
		got, total, err := st.SearchUsers(ctx, "t", provision.Search{Filter: e, Page: provision.Page{Limit: 1000}})
		if err != nil {
			t.Fatalf("SearchUsers(%s): %v", e, err)
		}
		ids := make([]string, len(got))
		for i, u := range got {
			ids[i] = u.ID
		}
		if total != len(want) || !slices.Equal(ids, want) {
			t.Fatalf("SearchUsers(%s) = %v (total %d), MatchUser selects %v", e, ids, total, want)
		}
	})
}

// BenchmarkSearchUserNameEq is an indexed lookup through the Searcher: its
// cost must not grow with the tenant (1,000,000 users vs 100,000).
func BenchmarkSearchUserNameEq(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			s := seed(b, n)
			ctx := context.Background()
			exprs := make([]filter.Expr, 1024)
			for i := range exprs {
				e, err := filter.Parse(fmt.Sprintf("userName eq %q", s.users[(i*7919)%n].UserName))
				if err != nil {
					b.Fatal(err)
				}
				exprs[i] = e
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				us, total, err := s.store.SearchUsers(ctx, "bench", provision.Search{Filter: exprs[i%len(exprs)], Page: provision.Page{Limit: 10}})
				if err != nil || total != 1 || len(us) != 1 {
					b.Fatalf("%v %d %v", us, total, err)
				}
				i++
			}
		})
	}
}

// BenchmarkSearchUserNameCo is a scan of the whole tenant through the
// Searcher (no index answers co).
func BenchmarkSearchUserNameCo(b *testing.B) {
	const n = 100_000
	s := seed(b, n)
	ctx := context.Background()
	e, err := filter.Parse(`userName co "0099"`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, total, err := s.store.SearchUsers(ctx, "bench", provision.Search{Filter: e, Page: provision.Page{Limit: 10}})
		if err != nil || total == 0 {
			b.Fatalf("%d %v", total, err)
		}
	}
}
