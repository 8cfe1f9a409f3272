package provision_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
	"github.com/idprov/idprov/store/memstore"
)

// noSearch hides every capability of the Store it wraps, Searcher
// included: the engine answers filters itself.
type noSearch struct{ provision.Store }

func queryTenant() provision.Tenant {
	return provision.Tenant{ID: "q", Connections: []provision.Connection{
		{ID: "okta", Kind: provision.KindSCIM},
		{ID: "entra", Kind: provision.KindSCIM},
	}}
}

// queryEngines returns two engines over equal data: one pushing filters to
// memstore's Searcher, one evaluating them itself. scanLimit applies to
// the second.
func queryEngines(t *testing.T, users, scanLimit int) (push, fallback *provision.Engine, ids []string) {
	t.Helper()
	ctx := context.Background()
	var engines []*provision.Engine
	for _, wrap := range []bool{false, true} {
		var st provision.Store = memstore.New()
		if wrap {
			st = noSearch{st}
		}
		e, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{queryTenant()}, ScanLimit: scanLimit})
		if err != nil {
			t.Fatal(err)
		}
		okta := provision.Origin{TenantID: "q", ConnectionID: "okta"}
		ids = ids[:0]
		for i := range users {
			u := provision.User{
				UserName:    fmt.Sprintf("User%03d@Example.com", i),
				ExternalID:  fmt.Sprintf("ext-%03d", i),
				DisplayName: fmt.Sprintf("User %d", i%7),
				Title:       []string{"Engineer", "Manager", ""}[i%3],
				Active:      i%4 != 0,
				Emails:      []provision.Email{{Value: fmt.Sprintf("u%d@example.com", i%10), Type: []string{"work", "home"}[i%2], Primary: true}},
			}
			if i%5 == 0 {
				u.ExternalID = "" // no okta link
			}
			out, err := e.CreateUser(ctx, okta, u)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, out.ID)
		}
		for g := range 3 {
			grp, err := e.CreateGroup(ctx, okta, provision.Group{DisplayName: fmt.Sprintf("Team %d", g), ExternalID: fmt.Sprintf("g-%d", g)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var members []string
			for i, id := range ids {
				if i%3 == g {
					members = append(members, id)
				}
			}
			if _, _, err := e.UpdateGroup(ctx, okta, grp.ID, provision.Precondition{}, provision.GroupUpdate{Add: members}); err != nil {
				t.Fatal(err)
			}
		}
		engines = append(engines, e)
	}
	return engines[0], engines[1], ids
}

func listIDs(t *testing.T, e *provision.Engine, o provision.Origin, q provision.Query) ([]string, []string, int) {
	t.Helper()
	us, total, err := e.ListUsers(context.Background(), o, q)
	if err != nil {
		t.Fatalf("ListUsers(%v): %v", q.Filter, err)
	}
	var ids, exts []string
	for _, u := range us {
		ids = append(ids, u.ID)
		exts = append(exts, u.ExternalID)
	}
	return ids, exts, total
}

func mustParse(t *testing.T, s string) filter.Expr {
	t.Helper()
	e, err := filter.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestQueryPaths(t *testing.T) {
	push, fallback, _ := queryEngines(t, 40, 1000)
	okta := provision.Origin{TenantID: "q", ConnectionID: "okta"}
	entra := provision.Origin{TenantID: "q", ConnectionID: "entra"}
	admin := provision.Origin{TenantID: "q"}
	tests := []struct {
		filter string
		origin provision.Origin
		sortBy string
		desc   bool
		page   provision.Page
		want   []int // indexes into ids, in order
	}{
		{filter: `USERNAME eq "user007@example.COM"`, origin: okta, want: []int{7}},
		{filter: `externalId eq "ext-007"`, origin: okta, want: []int{7}},
		{filter: `externalId eq "ext-007"`, origin: entra, want: nil}, // entra has no link
		{filter: `externalId eq "ext-007"`, origin: admin, want: nil}, // the admin API sees no externalId
		{filter: `externalId eq "EXT-007"`, origin: okta, want: nil},  // caseExact
		{filter: `externalId eq "ext-005"`, origin: okta, want: nil},  // user 5 has no link
		{filter: `externalId sw "ext-00"`, origin: okta, want: []int{1, 2, 3, 4, 6, 7, 8, 9}},
		{filter: `not (externalId pr) and title eq "engineer"`, origin: okta, want: []int{0, 15, 30}},
		{filter: `externalId pr`, origin: entra, want: nil},
		{filter: `emails[type eq "home"].value eq "U3@example.com"`, origin: okta, want: []int{3, 13, 23, 33}},
		{filter: `emails eq "u4@example.com" and active eq true`, origin: okta, want: []int{14, 34}},
		{filter: `userName eq "user009@example.com" or userName eq "user011@example.com"`, origin: okta, want: []int{9, 11}},
		{filter: `displayName eq "user 3" and title pr`, origin: okta, want: []int{3, 10, 24, 31}},
		{filter: `title co "ag"`, origin: okta, sortBy: "userName", desc: true, page: provision.Page{Offset: 2, Limit: 3}, want: []int{31, 28, 25}},
		{filter: `title co "ag"`, origin: okta, sortBy: "externalId", page: provision.Page{Limit: 3}, want: []int{1, 4, 7}},
		{filter: ``, origin: okta, sortBy: "externalId", desc: true, page: provision.Page{Limit: 2}, want: []int{39, 38}},
	}
	for _, tt := range tests {
		var f filter.Expr
		if tt.filter != "" {
			f = mustParse(t, tt.filter)
		}
		if tt.page == (provision.Page{}) {
			tt.page.Limit = 100
		}
		for name, e := range map[string]*provision.Engine{"searcher": push, "fallback": fallback} {
			q := provision.Query{Filter: f, SortBy: tt.sortBy, Descending: tt.desc, Page: tt.page}
			got, exts, total := listIDs(t, e, tt.origin, q)
			// IDs differ between the two stores: compare creation indexes.
			pos := positions(t, e, got)
			wantPos := fmt.Sprint(tt.want)
			if fmt.Sprint(pos) != wantPos {
				t.Errorf("%s: ListUsers(%q, sort %q desc %v, %+v) = users %v (total %d), want %v", name, tt.filter, tt.sortBy, tt.desc, tt.page, pos, total, wantPos)
			}
			for i, x := range exts {
				if tt.origin == okta && pos[i]%5 != 0 && x != fmt.Sprintf("ext-%03d", pos[i]) {
					t.Errorf("%s: user %d has ExternalID %q for okta", name, pos[i], x)
				}
				if tt.origin != okta && x != "" {
					t.Errorf("%s: user %d has ExternalID %q for %s", name, pos[i], x, tt.origin.ConnectionID)
				}
			}
		}
	}
}

// positions maps user IDs back to the creation index (from the userName).
func positions(t *testing.T, e *provision.Engine, ids []string) []int {
	t.Helper()
	out := []int{}
	for _, id := range ids {
		u, err := e.GetUser(context.Background(), provision.Origin{TenantID: "q"}, id)
		if err != nil {
			t.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscanf(u.UserName, "User%03d@", &i); err != nil {
			t.Fatal(err)
		}
		out = append(out, i)
	}
	return out
}

func TestQueryGroups(t *testing.T) {
	push, fallback, _ := queryEngines(t, 12, 1000)
	okta := provision.Origin{TenantID: "q", ConnectionID: "okta"}
	for name, e := range map[string]*provision.Engine{"searcher": push, "fallback": fallback} {
		us, _, _ := e.ListUsers(context.Background(), okta, provision.Query{Filter: mustParse(t, `userName eq "user004@example.com"`), Page: provision.Page{Limit: 1}})
		if len(us) != 1 {
			t.Fatalf("%s: user 4 not found", name)
		}
		u4 := us[0].ID
		for _, c := range []struct {
			filter string
			want   []string
		}{
			{`displayName eq "TEAM 1"`, []string{"Team 1"}},
			{`members eq "` + u4 + `"`, []string{"Team 1"}},
			{`members[value eq "` + u4 + `" or value eq "nobody"] or displayName sw "team 2"`, []string{"Team 1", "Team 2"}},
			{`not (members eq "` + u4 + `")`, []string{"Team 0", "Team 2"}},
			{`externalId eq "g-2"`, []string{"Team 2"}},
			{`externalId ew "0"`, []string{"Team 0"}},
			{`displayName co "team"`, []string{"Team 0", "Team 1", "Team 2"}},
		} {
			gs, total, err := e.ListGroups(context.Background(), okta, provision.Query{Filter: mustParse(t, c.filter), Page: provision.Page{Limit: 10}})
			if err != nil {
				t.Fatalf("%s: ListGroups(%q): %v", name, c.filter, err)
			}
			var got []string
			for _, g := range gs {
				got = append(got, g.DisplayName)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) || total != len(c.want) {
				t.Errorf("%s: ListGroups(%q) = %v (total %d), want %v", name, c.filter, got, total, c.want)
			}
		}
		_, _, err := e.ListGroups(context.Background(), okta, provision.Query{Filter: mustParse(t, `members co "a"`), Page: provision.Page{Limit: 10}})
		if !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("%s: ListGroups(members co) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestQueryScanLimit(t *testing.T) {
	_, fallback, _ := queryEngines(t, 30, 20)
	okta := provision.Origin{TenantID: "q", ConnectionID: "okta"}
	ctx := context.Background()
	_, _, err := fallback.ListUsers(ctx, okta, provision.Query{Filter: mustParse(t, `title co "eng"`), Page: provision.Page{Limit: 10}})
	if !errors.Is(err, provision.ErrTooMany) {
		t.Errorf("a scan of 30 users with ScanLimit 20: %v, want ErrTooMany", err)
	}
	_, _, err = fallback.ListUsers(ctx, okta, provision.Query{SortBy: "userName", Page: provision.Page{Limit: 10}})
	if !errors.Is(err, provision.ErrTooMany) {
		t.Errorf("a sort of 30 users with ScanLimit 20: %v, want ErrTooMany", err)
	}
	// Indexed equalities need no scan, whatever the tenant's size.
	for _, s := range []string{`userName eq "user003@example.com" and title co "eng"`, `externalId eq "ext-003"`, `emails.value eq "u3@example.com" or id eq "x"`} {
		us, total, err := fallback.ListUsers(ctx, okta, provision.Query{Filter: mustParse(t, s), Page: provision.Page{Limit: 10}})
		if err != nil || total == 0 || len(us) == 0 {
			t.Errorf("ListUsers(%q) = %d users (total %d), %v; want some and no error", s, len(us), total, err)
		}
	}
	_, _, err = fallback.ListUsers(ctx, okta, provision.Query{SortBy: "name.nickname", Page: provision.Page{Limit: 10}})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("sort by an unknown sub-attribute: %v, want ErrInvalid", err)
	}
}

// BenchmarkQueryScan is the engine's fallback for a store without a
// Searcher: a co filter over 100,000 users, scanned within ScanLimit, and
// refused with ErrTooMany when ScanLimit is below the tenant's size.
func BenchmarkQueryScan(b *testing.B) {
	const n = 100_000
	st := memstore.New()
	users := make([]provision.User, n)
	for i := range users {
		users[i] = provision.User{
			UserName:    fmt.Sprintf("user%07d@example.com", i),
			DisplayName: fmt.Sprintf("User %d", i),
			Active:      true,
			Emails:      []provision.Email{{Value: fmt.Sprintf("user%07d@example.com", i), Type: "work", Primary: true}},
			Owner:       "okta",
		}
	}
	if err := st.Load("q", users); err != nil {
		b.Fatal(err)
	}
	f, err := filter.Parse(`userName co "0099"`)
	if err != nil {
		b.Fatal(err)
	}
	okta := provision.Origin{TenantID: "q", ConnectionID: "okta"}
	for _, limit := range []int{n, n / 2} {
		b.Run(fmt.Sprintf("users=%d/ScanLimit=%d", n, limit), func(b *testing.B) {
			e, err := provision.NewEngine(provision.Config{Store: noSearch{st}, Tenants: []provision.Tenant{queryTenant()}, ScanLimit: limit})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, total, err := e.ListUsers(ctx, okta, provision.Query{Filter: f, Page: provision.Page{Limit: 10}})
				switch {
				case limit >= n && (err != nil || total == 0):
					b.Fatalf("total %d, %v", total, err)
				case limit < n && !errors.Is(err, provision.ErrTooMany):
					b.Fatalf("ScanLimit %d below %d users: %v, want ErrTooMany", limit, n, err)
				}
			}
		})
	}
}
