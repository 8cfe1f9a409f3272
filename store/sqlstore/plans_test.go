package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

// explain returns the plan of query: EXPLAIN on PostgreSQL, EXPLAIN QUERY
// PLAN on SQLite.
func explain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	prefix := "EXPLAIN "
	if s.Dialect() == SQLite {
		prefix = "EXPLAIN QUERY PLAN "
	}
	rows, err := s.DB().QueryContext(context.Background(), prefix+s.r.sql(query), args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprint(vals[len(vals)-1]))
	}
	return strings.Join(lines, "\n")
}

// TestIndexPlans shows that the equality lookups the engine and SCIM
// clients make (userName, email, displayName, externalId through the
// links, members) are answered from an index, never by a scan of the
// tenant: the plans of the store's own queries, at 5,000 users.
func TestIndexPlans(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		ids := seedUsers(t, s, "t1", "user", 5000)
		seedUsers(t, s, "t2", "user", 500)
		var gid string
		err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			for i := range 3000 {
				g, err := tx.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: fmt.Sprint("group ", i), Owner: "okta"})
				if err != nil {
					return err
				}
				gid = g.ID
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		seedMembers(t, s, "t1", gid, ids[:2000])
		for i, id := range ids[:1000] {
			if err := s.CreateLink(ctx, provision.Link{TenantID: "t1", Kind: provision.ResourceUser, ConnectionID: "okta", ExternalID: fmt.Sprint("ext", i), ResourceID: id, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		analyze(t, s)
		p := s.TablePrefix()
		search := func(res filter.Resource, f string) (string, []any) {
			e, err := filter.ParseFor(res, f)
			if err != nil {
				t.Fatal(err)
			}
			base, args, exact := s.compileSearch(res, "t1", e)
			if !exact {
				t.Fatalf("%s is not compiled exactly", f)
			}
			col := "u.doc"
			if res == filter.Groups {
				col = "g.doc"
			}
			return "SELECT " + col + " " + base, args
		}
		for _, c := range []struct {
			name, index string
			query       func() (string, []any)
		}{
			{"UserByUserName", "users_user_name", func() (string, []any) {
				return "SELECT doc FROM {p}users WHERE tenant_id = $1 AND user_name_lower = $2 AND deleted IS NULL", []any{"t1", "user0000042"}
			}},
			{"search userName eq", "users_user_name", func() (string, []any) { return search(filter.Users, `userName eq "USER0000042"`) }},
			{"UsersByEmail", "user_emails_email", func() (string, []any) {
				return `SELECT u.doc FROM {p}user_emails e JOIN {p}users u ON u.tenant_id = e.tenant_id AND u.id = e.user_id
					WHERE e.tenant_id = $1 AND e.email_lower = $2 AND u.tenant_id = $1 AND u.deleted IS NULL ORDER BY u.id`, []any{"t1", "user0000042@example.com"}
			}},
			{"search emails eq", "user_emails_email", func() (string, []any) { return search(filter.Users, `emails eq "user0000042@example.com"`) }},
			{"search users displayName eq", "users_display_name", func() (string, []any) { return search(filter.Users, `displayName eq "user 0000042"`) }},
			{"GroupsByDisplayName", "groups_display_name", func() (string, []any) {
				return "SELECT doc FROM {p}groups WHERE tenant_id = $1 AND display_name_lower = $2 ORDER BY id", []any{"t1", "group 7"}
			}},
			{"search groups displayName eq", "groups_display_name", func() (string, []any) { return search(filter.Groups, `displayName eq "Group 7"`) }},
			{"GetLink (externalId)", "links", func() (string, []any) {
				return "SELECT " + linkCols + " FROM {p}links WHERE tenant_id = $1 AND kind = $2 AND connection_id = $3 AND external_id = $4", []any{"t1", "user", "okta", "ext42"}
			}},
			{"search groups members eq", "members_user", func() (string, []any) { return search(filter.Groups, fmt.Sprintf(`members eq %q`, ids[42])) }},
		} {
			q, args := c.query()
			plan := explain(t, s, q, args...)
			t.Logf("%s (%s):\n%s", c.name, s.Dialect(), plan)
			want := []string{p + c.index}
			if c.index == "links" { // the primary key, or the index on external_id
				want = []string{p + "links_pkey", p + "links_external_id", "SEARCH " + p + "links USING PRIMARY KEY"}
			}
			if !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(plan, w) }) {
				t.Errorf("%s: the plan does not use %s:\n%s", c.name, want, plan)
			}
			for _, table := range []string{"users", "groups", "links", "user_emails", "members"} {
				if strings.Contains(plan, "Seq Scan on "+p+table) || strings.Contains(plan, "SCAN "+p+table) {
					t.Errorf("%s: the plan scans %s:\n%s", c.name, table, plan)
				}
			}
		}
	})
}
