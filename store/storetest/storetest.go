package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/idprov/idprov/provision"
)

// Run runs the conformance suite against the stores newStore returns.
// newStore is called once per subtest and must return a new, empty store;
// it may call t.Fatal and should register cleanups with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) provision.Store) {
	t.Helper()
	s := &suite{newStore: newStore}
	for _, g := range coreGroups {
		t.Run(g.name, func(t *testing.T) { g.run(t, s) })
	}
	probe := s.store(t)
	for _, c := range capabilities {
		if !c.has(probe) {
			t.Logf("storetest: the store does not implement provision.%s; its subtests were not run", c.name)
			continue
		}
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// subtests is a named group of subtests.
type subtests struct {
	name string
	run  func(t *testing.T, s *suite)
}

// coreGroups test the required provision.Store.
var coreGroups = []subtests{
	{"Users", testUsers},
	{"Groups", testGroups},
	{"Members", testMembers},
	{"MembershipVersion", testMembershipVersion},
	{"Links", testLinks},
	{"Versions", testVersions},
	{"Tombstones", testTombstones},
	{"Isolation", testIsolation},
	{"Paging", testPaging},
	{"Atomically", testAtomically},
	{"Time", testTime},
	{"Concurrency", testConcurrency},
}

type suite struct {
	newStore func(t *testing.T) provision.Store
}

// store returns a fresh store for the (sub)test t.
func (s *suite) store(t *testing.T) provision.Store {
	t.Helper()
	st := s.newStore(t)
	if st == nil {
		t.Fatal("storetest: newStore returned nil")
	}
	return st
}

// The tenants of the suite.
const (
	tenantA = "tenant-a"
	tenantB = "tenant-b"
)

// baseTime is whole seconds, so that only the Time subtests depend on a
// store's sub-second precision.
var baseTime = time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)

// errBoom is what transaction bodies return to force a rollback.
var errBoom = errors.New("storetest: boom (rollback requested by the test)")

// cmpOpts compare values read back from a store with what was written:
// times within a microsecond, JSON by value, nil equal to empty.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		d := a.Sub(b)
		return d > -time.Microsecond && d < time.Microsecond
	}),
	cmp.Comparer(jsonEqual),
	cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().Type() != reflect.TypeFor[json.RawMessage]()
	}, cmpopts.EquateEmpty()),
}

// jsonEqual compares two JSON texts by value; invalid JSON by bytes.
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	va, erra := decodeJSON(a)
	vb, errb := decodeJSON(b)
	if erra != nil || errb != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return canonicalNumbers(v), nil
}

// jsonNumber is a number in canonical form, unlike any string.
type jsonNumber string

// canonicalNumbers replaces the numbers in v by their exact value, so that
// 1e2, 100 and 100.0 compare equal (PostgreSQL jsonb rewrites numbers).
func canonicalNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = canonicalNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = canonicalNumbers(e)
		}
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(v)); ok {
			return jsonNumber(r.RatString())
		}
	}
	return v
}

// diff reports what differs between want and got, "" when equal.
func diff(want, got any) string { return cmp.Diff(want, got, cmpOpts) }

// wantErr fails t unless errors.Is(err, target).
func wantErr(t *testing.T, err, target error, format string, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", fmt.Sprintf(format, args...), err, target)
	}
}

// must stops t when err is not nil.
func must(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// user is a small valid user of tenant.
func user(tenant, userName string) provision.User {
	return provision.User{
		TenantID:    tenant,
		UserName:    userName,
		Name:        provision.Name{GivenName: "Given " + userName, FamilyName: "Family"},
		DisplayName: "Display " + userName,
		Active:      true,
		Emails:      []provision.Email{{Value: userName + "@example.com", Type: "work", Primary: true}},
		Owner:       "scim-okta",
		Created:     baseTime,
		Modified:    baseTime,
	}
}

// fullUser is a user with every field set.
func fullUser(tenant, userName string) provision.User {
	return provision.User{
		TenantID: tenant,
		UserName: userName,
		Name: provision.Name{
			Formatted:       "Ms. Ada King Lovelace III",
			FamilyName:      "Lovelace",
			GivenName:       "Ada",
			MiddleName:      "King",
			HonorificPrefix: "Ms.",
			HonorificSuffix: "III",
		},
		DisplayName:       "Ada Lovelace (Zoë, 数学)",
		NickName:          "ada",
		ProfileURL:        "https://example.com/ada",
		Title:             "Analyst",
		UserType:          "Employee",
		PreferredLanguage: "en-GB",
		Locale:            "en-GB",
		Timezone:          "Europe/London",
		Active:            true,
		Emails: []provision.Email{
			{Value: userName + "@example.com", Type: "work", Primary: true},
			{Value: userName + "@home.example.org", Type: "home", Display: "Home"},
		},
		PhoneNumbers: []provision.PhoneNumber{
			{Value: "+44 20 7946 0000", Type: "work", Primary: true},
			{Value: "+44 7700 900000", Type: "mobile", Display: "Mobile"},
		},
		Addresses: []provision.Address{{
			Formatted:     "12 St James's Square, London SW1Y 4LB, GB",
			StreetAddress: "12 St James's Square",
			Locality:      "London",
			Region:        "Greater London",
			PostalCode:    "SW1Y 4LB",
			Country:       "GB",
			Type:          "work",
			Primary:       true,
		}},
		Roles: []provision.Role{
			{Value: "admin", Display: "Administrator", Type: "app", Primary: true, Source: "direct"},
			{Value: "finance", Source: "rule:finance-dept"},
		},
		EmployeeNumber: "1815",
		CostCenter:     "CC-42",
		Organization:   "Analytical Engines Ltd",
		Division:       "Research",
		Department:     "Finance",
		Manager:        "babbage",
		Attributes: map[string]json.RawMessage{
			"urn:example:params:scim:schemas:extension:custom:2.0:User:badges": json.RawMessage(`{"ids": [1, 2, 3], "nested": {"ok": true, "none": null}, "text": "é \"quoted\" \\ \n"}`),
			"favouriteNumber": json.RawMessage(`12345678901234567890`),
			"nickNames":       json.RawMessage(`["a", "b"]`),
			"plain":           json.RawMessage(`"just a string"`),
		},
		Owner:    "scim-okta",
		Created:  baseTime,
		Modified: baseTime.Add(time.Hour),
	}
}

// group is a small valid group of tenant.
func group(tenant, owner, displayName string) provision.Group {
	return provision.Group{
		TenantID:    tenant,
		DisplayName: displayName,
		Attributes:  map[string]json.RawMessage{"description": json.RawMessage(`"the ` + displayName + ` group"`)},
		Owner:       owner,
		Created:     baseTime,
		Modified:    baseTime,
	}
}

func link(tenant string, kind provision.ResourceKind, conn, ext, resource string) provision.Link {
	return provision.Link{TenantID: tenant, Kind: kind, ConnectionID: conn, ExternalID: ext, ResourceID: resource, Created: baseTime}
}

func createUser(t *testing.T, st provision.Store, u provision.User) provision.User {
	t.Helper()
	got, err := st.CreateUser(t.Context(), u)
	must(t, err, "CreateUser(%q in %s)", u.UserName, u.TenantID)
	return got
}

func createGroup(t *testing.T, st provision.Store, g provision.Group) provision.Group {
	t.Helper()
	got, err := st.CreateGroup(t.Context(), g)
	must(t, err, "CreateGroup(%q in %s)", g.DisplayName, g.TenantID)
	return got
}

func createLink(t *testing.T, st provision.Store, l provision.Link) {
	t.Helper()
	must(t, st.CreateLink(t.Context(), l), "CreateLink(%+v)", l)
}

func addMembers(t *testing.T, st provision.Store, tenant, groupID string, ids ...string) []string {
	t.Helper()
	added, err := st.AddMembers(t.Context(), tenant, groupID, ids)
	must(t, err, "AddMembers(%s, group %s, %d users)", tenant, groupID, len(ids))
	return added
}

// createUsers creates n users named prefix-000... and returns them in
// creation order.
func createUsers(t *testing.T, st provision.Store, tenant, prefix string, n int) []provision.User {
	t.Helper()
	out := make([]provision.User, 0, n)
	for i := range n {
		out = append(out, createUser(t, st, user(tenant, fmt.Sprintf("%s-%05d", prefix, i))))
	}
	return out
}

func idsOf[T provision.User | provision.Group](xs []T) []string {
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

// allUsers walks ListUsers and returns every live user of the tenant.
func allUsers(t *testing.T, st provision.Store, tenant string) []provision.User {
	t.Helper()
	return walk(t, "ListUsers", 500, func(p provision.Page) ([]provision.User, int, error) {
		return st.ListUsers(t.Context(), tenant, p)
	})
}

func allGroups(t *testing.T, st provision.Store, tenant string) []provision.Group {
	t.Helper()
	return walk(t, "ListGroups", 500, func(p provision.Page) ([]provision.Group, int, error) {
		return st.ListGroups(t.Context(), tenant, p)
	})
}

func allMembers(t *testing.T, st provision.Store, tenant, groupID string) []string {
	t.Helper()
	return walk(t, "ListMembers", 1000, func(p provision.Page) ([]string, int, error) {
		return st.ListMembers(t.Context(), tenant, groupID, p)
	})
}

// walk pages through a list with limit entries per page.
func walk[T any](t *testing.T, what string, limit int, list func(provision.Page) ([]T, int, error)) []T {
	t.Helper()
	var out []T
	for offset := 0; ; offset += limit {
		page, total, err := list(provision.Page{Offset: offset, Limit: limit})
		must(t, err, "%s(offset %d, limit %d)", what, offset, limit)
		if len(page) > limit {
			t.Fatalf("%s(offset %d, limit %d) returned %d entries", what, offset, limit, len(page))
		}
		out = append(out, page...)
		if offset+limit >= total || len(page) == 0 {
			if len(out) != total {
				t.Fatalf("%s: walked %d entries, total says %d", what, len(out), total)
			}
			return out
		}
	}
}

// sorted returns a sorted copy.
func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// withTimeout runs fn and fails t if it does not return within d (a store
// left locked after a panic, a deadlock between transactions).
func withTimeout(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v: is the store left locked?", what, d)
	}
}
