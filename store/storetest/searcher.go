package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

// searchFixture is a generated tenant for the Searcher subtests: users
// with varied attributes (some deleted), groups with members.
type searchFixture struct {
	st     provision.Store
	srch   provision.Searcher
	users  []provision.User // live, in ListUsers order
	groups []provision.Group
	// members maps a group ID to its member IDs.
	members map[string]map[string]bool
	// deleted are tombstones a search must never return.
	deleted map[string]bool
}

// Searcher subtest sizes: enough users for every attribute value to be
// shared by several, few enough for the suite to stay fast on a real
// database.
const (
	numSearchUsers  = 240
	numSearchGroups = 24
)

var (
	givenNames  = []string{"Barbara", "Bob", "Élodie", "Chen", "Dmitri", "Ana", "kelvin", "O'Brien", "Zoë", "Ünal"}
	familyNames = []string{"Jensen", "Smith", "García", "Nguyen", "Müller", "Kowalski", "LEE", "d'Arc"}
	departments = []string{"Finance", "Engineering", "Sales", "engineering", "R&D", ""}
	titles      = []string{"Manager", "Engineer", "Senior Engineer", "VP Sales", "", "CFO"}
	domains     = []string{"example.com", "Example.COM", "corp.example.org", "test.io"}
	emailTypes  = []string{"work", "home", "other", ""}
)

// seedSearch builds the generated tenant in tenantA, and a few users in
// tenantB that no search of tenantA may return. The seed is fixed: a
// failure reproduces.
func seedSearch(t *testing.T, s *suite) *searchFixture {
	t.Helper()
	st := s.store(t)
	srch, ok := st.(provision.Searcher)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.Searcher, although the first store it returned was", st)
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	f := &searchFixture{st: st, srch: srch, members: map[string]map[string]bool{}, deleted: map[string]bool{}}

	var created []provision.User
	for i := range numSearchUsers {
		given, family := pick(givenNames), pick(familyNames)
		u := provision.User{
			TenantID:       tenantA,
			UserName:       fmt.Sprintf("%s.%s%03d@%s", strings.ToLower(prefix(given, 1)), family, i, pick(domains)),
			Name:           provision.Name{GivenName: given, FamilyName: family, Formatted: given + " " + family},
			DisplayName:    given + " " + family,
			Title:          pick(titles),
			Department:     pick(departments),
			EmployeeNumber: fmt.Sprintf("%05d", rng.IntN(500)),
			CostCenter:     pick([]string{"CC-1", "cc-2", ""}),
			Active:         rng.IntN(5) != 0,
			Owner:          pick([]string{"okta", "entra", provision.APIConnection}),
			Created:        baseTime.Add(time.Duration(i) * time.Hour),
			Modified:       baseTime.Add(time.Duration(i*37%numSearchUsers) * time.Hour),
		}
		for n := rng.IntN(4); n > 0; n-- {
			u.Emails = append(u.Emails, provision.Email{
				Value:   fmt.Sprintf("%s%d@%s", strings.ToLower(family), rng.IntN(60), pick(domains)),
				Type:    pick(emailTypes),
				Primary: n == 1 && rng.IntN(2) == 0,
			})
		}
		if rng.IntN(3) == 0 {
			u.PhoneNumbers = []provision.PhoneNumber{{Value: fmt.Sprintf("+1 555 %04d", rng.IntN(100)), Type: pick([]string{"work", "mobile"})}}
		}
		if rng.IntN(3) == 0 {
			u.Roles = []provision.Role{{Value: pick([]string{"admin", "viewer", "Editor"}), Source: "direct"}}
		}
		if rng.IntN(4) == 0 {
			u.Addresses = []provision.Address{{Locality: pick([]string{"Paris", "Berlin", "paris"}), Country: pick([]string{"FR", "DE"}), Type: "work", Primary: true}}
		}
		if i > 0 && rng.IntN(2) == 0 {
			u.Manager = created[rng.IntN(len(created))].ID
		}
		if rng.IntN(3) == 0 {
			u.Attributes = map[string]json.RawMessage{
				"urn:ietf:params:scim:schemas:extension:acme:2.0:User:level": json.RawMessage(fmt.Sprint(rng.IntN(10))),
				"tags":     json.RawMessage(fmt.Sprintf(`["t%d","T%d"]`, rng.IntN(5), rng.IntN(5))),
				"badge":    json.RawMessage(fmt.Sprintf(`{"color":%q,"active":%v}`, pick([]string{"red", "Blue"}), rng.IntN(2) == 0)),
				"contract": json.RawMessage(`"permanent"`),
			}
		}
		out, err := st.CreateUser(ctx, u)
		if err != nil {
			t.Fatalf("CreateUser(%s): %v", u.UserName, err)
		}
		created = append(created, out)
	}
	// Tombstones, and a live user taking a deleted user's userName.
	for i, u := range created {
		if i%29 != 3 {
			continue
		}
		u.Deleted = baseTime.Add(1000 * time.Hour)
		if _, err := st.UpdateUser(ctx, u, u.Version); err != nil {
			t.Fatalf("UpdateUser (delete) %s: %v", u.ID, err)
		}
		f.deleted[u.ID] = true
	}
	if _, err := st.CreateUser(ctx, provision.User{TenantID: tenantB, UserName: created[0].UserName, Active: true, Emails: created[0].Emails, Created: baseTime}); err != nil {
		t.Fatalf("CreateUser in %s: %v", tenantB, err)
	}
	for i := range numSearchGroups {
		g, err := st.CreateGroup(ctx, provision.Group{
			TenantID:    tenantA,
			DisplayName: fmt.Sprintf("%s %d", pick([]string{"Engineering", "sales", "All Staff", "Admins"}), i),
			Owner:       pick([]string{"okta", "entra"}),
			Created:     baseTime.Add(time.Duration(i) * time.Minute),
			Modified:    baseTime.Add(time.Duration(i) * time.Minute),
		})
		if err != nil {
			t.Fatalf("CreateGroup: %v", err)
		}
		var ids []string
		for _, u := range created {
			if !f.deleted[u.ID] && rng.IntN(8) == 0 {
				ids = append(ids, u.ID)
			}
		}
		if _, err := st.AddMembers(ctx, tenantA, g.ID, ids); err != nil {
			t.Fatalf("AddMembers: %v", err)
		}
		f.members[g.ID] = map[string]bool{}
		for _, id := range ids {
			f.members[g.ID][id] = true
		}
	}
	var err error
	if f.users, _, err = st.ListUsers(ctx, tenantA, provision.Page{Limit: 10 * numSearchUsers}); err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if f.groups, _, err = st.ListGroups(ctx, tenantA, provision.Page{Limit: 10 * numSearchGroups}); err != nil {
		t.Fatalf("ListGroups: %v", err)
	}
	return f
}

// userFilters returns filters over every user attribute type and
// operator, with values taken from the data (case changed where the
// comparison ignores case).
func (f *searchFixture) userFilters(rng *rand.Rand) []string {
	u := func() provision.User { return f.users[rng.IntN(len(f.users))] }
	oneOf := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	withEmail := func() provision.User {
		for {
			if x := u(); len(x.Emails) > 0 {
				return x
			}
		}
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var out []string
	for _, op := range []string{"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"} {
		x := u()
		e := withEmail()
		out = append(out,
			fmt.Sprintf("userName %s %s", op, q(strings.ToUpper(prefix(x.UserName, 6)))),
			fmt.Sprintf("userName %s %s", op, q(x.UserName)),
			fmt.Sprintf("displayName %s %s", op, q(strings.ToLower(x.DisplayName))),
			fmt.Sprintf("name.givenName %s %s", op, q(prefix(x.Name.GivenName, 1))),
			fmt.Sprintf("NAME.FAMILYNAME %s %s", op, q(strings.ToUpper(x.Name.FamilyName))),
			fmt.Sprintf("title %s %s", op, q(oneOf(titles...))),
			fmt.Sprintf("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department %s %s", op, q(oneOf(departments...))),
			fmt.Sprintf("employeeNumber %s %s", op, q(x.EmployeeNumber)),
			fmt.Sprintf("costCenter %s %s", op, q(oneOf("cc-1", "CC-2", "C"))),
			fmt.Sprintf("emails %s %s", op, q(strings.ToUpper(e.Emails[0].Value))),
			fmt.Sprintf("emails.type %s %s", op, q(oneOf(emailTypes...))),
			fmt.Sprintf("id %s %s", op, q(x.ID)),
			fmt.Sprintf("id %s %s", op, q(strings.ToUpper(x.ID))),
			fmt.Sprintf("manager %s %s", op, q(x.ID)),
			fmt.Sprintf("phoneNumbers.value %s %s", op, q(oneOf("+1 555", "+1 555 0042", "55"))),
			fmt.Sprintf("roles %s %s", op, q(oneOf("admin", "EDITOR", "v"))),
			fmt.Sprintf("addresses.locality %s %s", op, q(oneOf("Paris", "berlin"))),
			fmt.Sprintf("tags %s %s", op, q(oneOf("t1", "T3", "t"))),
			fmt.Sprintf("badge.color %s %s", op, q(oneOf("red", "blue"))),
			fmt.Sprintf("contract %s %s", op, q("Permanent")),
		)
		if op != "co" && op != "sw" && op != "ew" {
			out = append(out,
				fmt.Sprintf("meta.created %s %s", op, q(x.Created.Format(time.RFC3339))),
				fmt.Sprintf("meta.lastModified %s %s", op, q(x.Modified.In(time.FixedZone("", 2*3600)).Format(time.RFC3339))),
				fmt.Sprintf("urn:ietf:params:scim:schemas:extension:acme:2.0:User:level %s %d", op, rng.IntN(10)),
			)
		}
		if op == "eq" || op == "ne" {
			out = append(out,
				fmt.Sprintf("active %s %s", op, oneOf("true", "false", `"True"`)),
				fmt.Sprintf("emails.primary %s true", op),
				fmt.Sprintf("badge.active %s false", op),
			)
		}
	}
	e := withEmail()
	out = append(out,
		"userName pr", "title pr", "name pr", "emails pr", "addresses pr", "manager pr", "phoneNumbers pr",
		"meta.created pr", "tags pr", "badge pr", "nosuchattribute pr", "title eq null", "department ne null",
		fmt.Sprintf(`emails[type eq "work"].value eq %s`, q(e.Emails[0].Value)),
		fmt.Sprintf(`emails[type eq %s and value co %s]`, q(e.Emails[0].Type), q(prefix(e.Emails[0].Value, 3))),
		`emails[type eq "work" and primary eq true]`,
		`emails[not (type eq "work") and value ew ".io"]`,
		`roles[value eq "admin" or value eq "viewer"]`,
		`addresses[locality eq "paris" and country eq "FR"]`,
		`tags[value eq "t1"]`,
		fmt.Sprintf("userName eq %s", q(strings.ToUpper(u().UserName))),
		fmt.Sprintf("id eq %s and manager eq %s", q(u().ID), q(u().Manager)),
		fmt.Sprintf("emails.value eq %s or userName eq %s", q(e.Emails[0].Value), q(u().UserName)),
		fmt.Sprintf("userName eq %s", q(f.users[0].UserName)), // also taken in tenantB
	)
	return out
}

func (f *searchFixture) groupFilters(rng *rand.Rand) []string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var memberOf []string
	for _, g := range f.groups {
		for id := range f.members[g.ID] {
			memberOf = append(memberOf, id)
		}
	}
	slices.Sort(memberOf)
	m := func() string { return memberOf[rng.IntN(len(memberOf))] }
	g := f.groups[rng.IntN(len(f.groups))]
	var out []string
	for _, op := range []string{"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"} {
		out = append(out,
			fmt.Sprintf("displayName %s %s", op, q(strings.ToUpper(g.DisplayName))),
			fmt.Sprintf("displayName %s %s", op, q("sales")),
			fmt.Sprintf("id %s %s", op, q(g.ID)),
		)
		if op != "co" && op != "sw" && op != "ew" {
			out = append(out, fmt.Sprintf("meta.created %s %s", op, q(g.Created.Format(time.RFC3339Nano))))
		}
	}
	out = append(out,
		fmt.Sprintf("members eq %s", q(m())),
		fmt.Sprintf("members[value eq %s]", q(m())),
		fmt.Sprintf("members[value eq %s or value eq %s]", q(m()), q(m())),
		fmt.Sprintf("displayName sw \"eng\" and members eq %s", q(m())),
		fmt.Sprintf("not (members eq %s)", q(m())),
		fmt.Sprintf("members eq %s", q(f.users[0].ID+"-unknown")),
		"displayName pr", "externalIdish pr",
	)
	return out
}

// combine builds random and/or/not combinations of the atoms.
func combine(rng *rand.Rand, atoms []string, n int) []string {
	var gen func(depth int) string
	gen = func(depth int) string {
		if depth == 0 || rng.IntN(3) == 0 {
			return atoms[rng.IntN(len(atoms))]
		}
		switch rng.IntN(5) {
		case 0:
			return "not (" + gen(depth-1) + ")"
		case 1, 2:
			return "(" + gen(depth-1) + ") and (" + gen(depth-1) + ")"
		default:
			return "(" + gen(depth-1) + ") OR (" + gen(depth-1) + ")"
		}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = gen(3)
	}
	return out
}

// prefix returns the first n runes of s.
func prefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// searchIDs returns the IDs of users or groups, in order.
func searchIDs[T provision.User | provision.Group](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		switch v := any(x).(type) {
		case provision.User:
			out[i] = v.ID
		case provision.Group:
			out[i] = v.ID
		}
	}
	return out
}

func testSearcher(t *testing.T, s *suite) {
	f := seedSearch(t, s)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 5))

	wantUsers := func(t *testing.T, e filter.Expr, sortBy string, desc bool) []string {
		t.Helper()
		var out []provision.User
		for _, u := range f.users {
			ok, err := provision.MatchUser(e, u, "")
			if err != nil {
				t.Fatalf("MatchUser(%s): %v", e, err)
			}
			if ok {
				out = append(out, u)
			}
		}
		if err := provision.SortUsers(out, sortBy, desc); err != nil {
			t.Fatalf("SortUsers(%s): %v", sortBy, err)
		}
		return searchIDs(out)
	}
	wantGroups := func(t *testing.T, e filter.Expr, sortBy string, desc bool) []string {
		t.Helper()
		var out []provision.Group
		for _, g := range f.groups {
			ok, err := provision.MatchGroup(e, g, "", func(id string) (bool, error) { return f.members[g.ID][id], nil })
			if err != nil {
				t.Fatalf("MatchGroup(%s): %v", e, err)
			}
			if ok {
				out = append(out, g)
			}
		}
		if err := provision.SortGroups(out, sortBy, desc); err != nil {
			t.Fatalf("SortGroups(%s): %v", sortBy, err)
		}
		return searchIDs(out)
	}
	searchUsers := func(t *testing.T, q provision.Search) ([]string, int) {
		t.Helper()
		us, total, err := f.srch.SearchUsers(ctx, tenantA, q)
		if err != nil {
			t.Fatalf("SearchUsers(%v, sort %q): %v", q.Filter, q.SortBy, err)
		}
		for _, u := range us {
			if f.deleted[u.ID] || u.TenantID != tenantA {
				t.Fatalf("SearchUsers(%v) returned user %s (tenant %q, deleted %v)", q.Filter, u.ID, u.TenantID, f.deleted[u.ID])
			}
		}
		return searchIDs(us), total
	}
	searchGroups := func(t *testing.T, q provision.Search) ([]string, int) {
		t.Helper()
		gs, total, err := f.srch.SearchGroups(ctx, tenantA, q)
		if err != nil {
			t.Fatalf("SearchGroups(%v, sort %q): %v", q.Filter, q.SortBy, err)
		}
		return searchIDs(gs), total
	}
	check := func(t *testing.T, what string, e filter.Expr, got []string, total int, want []string) {
		t.Helper()
		if total != len(want) || !slices.Equal(got, want) {
			t.Errorf("%s %v: got %d results (total %d) %.8v, want %d %.8v", what, e, len(got), total, got, len(want), want)
		}
	}
	parse := func(t *testing.T, r filter.Resource, s string) filter.Expr {
		t.Helper()
		e, err := filter.ParseFor(r, s)
		if err != nil {
			t.Fatalf("ParseFor(%q): %v", s, err)
		}
		return e
	}

	userAtoms := f.userFilters(rng)
	groupAtoms := f.groupFilters(rng)

	t.Run("UserOperators", func(t *testing.T) {
		some := 0
		for _, s := range userAtoms {
			e := parse(t, filter.Users, s)
			got, total := searchUsers(t, provision.Search{Filter: e, Page: provision.Page{Limit: 10 * numSearchUsers}})
			want := wantUsers(t, e, "", false)
			check(t, "SearchUsers", e, got, total, want)
			if len(want) > 0 && len(want) < len(f.users) {
				some++
			}
		}
		// The generated data must make most filters select some users and
		// not all, else the comparison proves little.
		if some < len(userAtoms)/2 {
			t.Errorf("storetest: only %d of %d filters select a proper subset of the users: the generated tenant is too uniform", some, len(userAtoms))
		}
	})
	t.Run("UserCombinations", func(t *testing.T) {
		for _, s := range combine(rng, userAtoms, 300) {
			e := parse(t, filter.Users, s)
			got, total := searchUsers(t, provision.Search{Filter: e, Page: provision.Page{Limit: 10 * numSearchUsers}})
			check(t, "SearchUsers", e, got, total, wantUsers(t, e, "", false))
		}
	})
	t.Run("GroupOperators", func(t *testing.T) {
		for _, s := range append(groupAtoms, combine(rng, groupAtoms, 100)...) {
			e := parse(t, filter.Groups, s)
			got, total := searchGroups(t, provision.Search{Filter: e, Page: provision.Page{Limit: 10 * numSearchGroups}})
			check(t, "SearchGroups", e, got, total, wantGroups(t, e, "", false))
		}
	})
	t.Run("NilFilter", func(t *testing.T) {
		got, total := searchUsers(t, provision.Search{Page: provision.Page{Limit: 10 * numSearchUsers}})
		check(t, "SearchUsers", nil, got, total, searchIDs(f.users))
		gg, gtotal := searchGroups(t, provision.Search{Page: provision.Page{Limit: 10 * numSearchGroups}})
		check(t, "SearchGroups", nil, gg, gtotal, searchIDs(f.groups))
	})
	t.Run("Sorted", func(t *testing.T) {
		filters := []string{"", `active eq true`, `emails.type eq "work" or title pr`}
		for _, sortBy := range []string{"userName", "NAME.familyName", "meta.created", "meta.lastModified", "emails", "title", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "tags", "id"} {
			for _, desc := range []bool{false, true} {
				for _, s := range filters {
					var e filter.Expr
					if s != "" {
						e = parse(t, filter.Users, s)
					}
					got, total := searchUsers(t, provision.Search{Filter: e, SortBy: sortBy, Descending: desc, Page: provision.Page{Limit: 10 * numSearchUsers}})
					check(t, fmt.Sprintf("SearchUsers sorted by %s (descending %v)", sortBy, desc), e, got, total, wantUsers(t, e, sortBy, desc))
				}
			}
		}
		for _, sortBy := range []string{"displayName", "meta.created"} {
			for _, desc := range []bool{false, true} {
				got, total := searchGroups(t, provision.Search{SortBy: sortBy, Descending: desc, Page: provision.Page{Limit: 10 * numSearchGroups}})
				check(t, "SearchGroups sorted by "+sortBy, nil, got, total, wantGroups(t, nil, sortBy, desc))
			}
		}
	})
	t.Run("Pagination", func(t *testing.T) {
		for _, c := range []struct{ filter, sortBy string }{
			{`active eq true`, ""}, {`emails pr`, "userName"}, {`title pr or department eq "finance"`, "meta.lastModified"}, {"", "displayName"},
		} {
			var e filter.Expr
			if c.filter != "" {
				e = parse(t, filter.Users, c.filter)
			}
			want := wantUsers(t, e, c.sortBy, false)
			for _, limit := range []int{1, 7, 50} {
				var got []string
				for off := 0; off < len(want)+limit; off += limit {
					page, total := searchUsers(t, provision.Search{Filter: e, SortBy: c.sortBy, Page: provision.Page{Offset: off, Limit: limit}})
					if total != len(want) {
						t.Fatalf("SearchUsers(%v) offset %d limit %d: total %d, want %d", e, off, limit, total, len(want))
					}
					if len(page) > limit {
						t.Fatalf("SearchUsers(%v) offset %d limit %d: %d results", e, off, limit, len(page))
					}
					got = append(got, page...)
				}
				if !slices.Equal(got, want) {
					t.Errorf("SearchUsers(%v, sort %q) in pages of %d: %.8v..., want %.8v...", e, c.sortBy, limit, got, want)
				}
			}
			page, total := searchUsers(t, provision.Search{Filter: e, SortBy: c.sortBy, Page: provision.Page{Limit: 0}})
			if len(page) != 0 || total != len(want) {
				t.Errorf("SearchUsers(%v) with limit 0: %d results, total %d; want 0 and %d", e, len(page), total, len(want))
			}
		}
	})
	t.Run("OtherTenant", func(t *testing.T) {
		e := parse(t, filter.Users, fmt.Sprintf("userName eq %q", f.users[0].UserName))
		us, total, err := f.srch.SearchUsers(ctx, tenantB, provision.Search{Filter: e, Page: provision.Page{Limit: 10}})
		if err != nil || total != 1 || len(us) != 1 || us[0].TenantID != tenantB {
			t.Errorf("SearchUsers in %s: %v, total %d, %v; want the one user of %s", tenantB, us, total, err, tenantB)
		}
		us, total, err = f.srch.SearchUsers(ctx, "no-such-tenant", provision.Search{Filter: e, Page: provision.Page{Limit: 10}})
		if err != nil || total != 0 || len(us) != 0 {
			t.Errorf("SearchUsers in an unknown tenant: %v, total %d, %v; want none", us, total, err)
		}
	})
	t.Run("Copies", func(t *testing.T) {
		e := parse(t, filter.Users, "emails pr")
		us, _, err := f.srch.SearchUsers(ctx, tenantA, provision.Search{Filter: e, Page: provision.Page{Limit: 1}})
		if err != nil || len(us) != 1 {
			t.Fatalf("SearchUsers: %v, %v", us, err)
		}
		us[0].Emails[0].Value = "changed@example.com"
		again, err := f.st.GetUser(ctx, tenantA, us[0].ID)
		if err != nil || again.Emails[0].Value == "changed@example.com" {
			t.Errorf("changing a user SearchUsers returned changed the store: %v", err)
		}
	})
}
