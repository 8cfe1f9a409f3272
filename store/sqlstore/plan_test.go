package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestUserLinksPlan checks that GetUserLinks reads a user's links from the
// links_resource index on a table PostgreSQL has no statistics for yet (a
// new store): joined on the user's row, the planner once read them
// through links_external_id, every link of the tenant for each user
// change, a cost that grew with the tenant.
func TestUserLinksPlan(t *testing.T) {
	postgresDSN(t)
	st := newPostgres(t, Config{})
	ctx := context.Background()
	var id string
	for i := range 300 {
		u, err := st.CreateUser(ctx, provision.User{TenantID: "big", UserName: fmt.Sprintf("u%d", i), Active: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateLink(ctx, provision.Link{TenantID: "big", Kind: provision.ResourceUser, ConnectionID: "okta", ExternalID: fmt.Sprintf("x%d", i), ResourceID: u.ID}); err != nil {
			t.Fatal(err)
		}
		id = u.ID
	}
	conn, err := st.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	query := st.userLinksQuery()
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "PREPARE userlinks(text, text) AS "+query); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE userlinks('big', '"+id+"')")
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	rows.Close()
	if !strings.Contains(plan.String(), st.TablePrefix()+"links_resource") || strings.Contains(plan.String(), "Rows Removed by Filter") {
		t.Errorf("GetUserLinks does not read the links by resource:\n%s", plan.String())
	}
}
