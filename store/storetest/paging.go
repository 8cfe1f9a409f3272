package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// pageSizes are the page sizes the paging subtests walk with, for lists of
// pagedN entries.
var pageSizes = []int{1, 2, 3, 5, 7, 10, 22, 23, 24, 100}

const pagedN = 23

// checkPaging checks a stable-ordered list of exactly the ids want: the
// same order on every call and for every page size, every entry exactly
// once, exact totals, and empty pages past the end.
func checkPaging(t *testing.T, what string, want []string, list func(provision.Page) ([]string, int, error)) {
	t.Helper()
	n := len(want)
	full, total, err := list(provision.Page{Offset: 0, Limit: n + 10})
	must(t, err, "%s(offset 0, limit %d)", what, n+10)
	if total != n {
		t.Errorf("%s: total = %d, want %d", what, total, n)
	}
	if !slices.Equal(sorted(full), sorted(want)) {
		t.Fatalf("%s returned %d entries %v,\nwant each of these %d once: %v", what, len(full), full, n, want)
	}
	again, _, err := list(provision.Page{Offset: 0, Limit: n + 10})
	must(t, err, "%s", what)
	if !slices.Equal(full, again) {
		t.Errorf("%s: two calls returned different orders:\n%v\n%v", what, full, again)
	}
	for _, size := range pageSizes {
		var walked []string
		for off := 0; off < n; off += size {
			page, total, err := list(provision.Page{Offset: off, Limit: size})
			must(t, err, "%s(offset %d, limit %d)", what, off, size)
			if total != n {
				t.Errorf("%s(offset %d, limit %d): total = %d, want %d", what, off, size, total, n)
			}
			if w := full[off:min(off+size, n)]; !slices.Equal(page, w) {
				t.Errorf("%s(offset %d, limit %d) = %v, want %v (the same order as one big page)", what, off, size, page, w)
			}
			walked = append(walked, page...)
		}
		if !slices.Equal(walked, full) {
			t.Errorf("%s walked with limit %d = %v, want %v", what, size, walked, full)
		}
	}
	for _, p := range []provision.Page{{Offset: n, Limit: 10}, {Offset: n + 7, Limit: 10}, {Offset: 0, Limit: 0}, {Offset: 5, Limit: 0}} {
		page, total, err := list(p)
		must(t, err, "%s(offset %d, limit %d)", what, p.Offset, p.Limit)
		if len(page) != 0 || total != n {
			t.Errorf("%s(offset %d, limit %d) = %v (total %d), want no entries and total %d", what, p.Offset, p.Limit, page, total, n)
		}
	}
}

func testPaging(t *testing.T, s *suite) {
	t.Run("Users", func(t *testing.T) {
		st := s.store(t)
		var want []string
		for i := range pagedN + 4 {
			u := createUser(t, st, user(tenantA, fmt.Sprintf("page-%02d", i)))
			if i%7 == 3 {
				tombstone(t, st, u, baseTime.Add(time.Duration(i)*time.Minute))
				continue
			}
			want = append(want, u.ID)
		}
		createUsers(t, st, tenantB, "other", 5)
		checkPaging(t, "ListUsers", want, func(p provision.Page) ([]string, int, error) {
			us, total, err := st.ListUsers(t.Context(), tenantA, p)
			return idsOf(us), total, err
		})
	})

	t.Run("Groups", func(t *testing.T) {
		st := s.store(t)
		var want []string
		for i := range pagedN {
			owner := "scim-okta"
			if i%2 == 1 {
				owner = "ldap-corp"
			}
			want = append(want, createGroup(t, st, group(tenantA, owner, fmt.Sprintf("group %02d", i))).ID)
		}
		g := createGroup(t, st, group(tenantA, "scim-okta", "deleted"))
		must(t, st.DeleteGroup(t.Context(), tenantA, g.ID, 1), "DeleteGroup")
		createGroup(t, st, group(tenantB, "scim-okta", "other"))
		checkPaging(t, "ListGroups", want, func(p provision.Page) ([]string, int, error) {
			gs, total, err := st.ListGroups(t.Context(), tenantA, p)
			return idsOf(gs), total, err
		})
	})

	t.Run("Members", func(t *testing.T) {
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "paged"))
		other := createGroup(t, st, group(tenantA, "scim-okta", "other"))
		us := idsOf(createUsers(t, st, tenantA, "member", pagedN+3))
		// Added in several calls, out of creation order.
		addMembers(t, st, tenantA, g.ID, us[10:pagedN]...)
		addMembers(t, st, tenantA, g.ID, us[:10]...)
		addMembers(t, st, tenantA, other.ID, us...)
		checkPaging(t, "ListMembers", us[:pagedN], func(p provision.Page) ([]string, int, error) {
			return st.ListMembers(t.Context(), tenantA, g.ID, p)
		})
	})
}
