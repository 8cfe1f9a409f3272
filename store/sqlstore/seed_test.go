package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// seedUsers bulk-inserts n users named <prefix><i> (with one e-mail
// each) into tenantID with multi-row INSERTs of 500 rows, and returns
// their IDs.
func seedUsers(t testing.TB, s *Store, tenantID, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, n)
	now := time.Now()
	for start := 0; start < n; start += 500 {
		end := min(start+500, n)
		err := s.r.runTx(ctx, func(tx *Store) error {
			uargs := make([]any, 0, 12*(end-start))
			eargs := make([]any, 0, 3*(end-start))
			for i := start; i < end; i++ {
				u := provision.User{
					ID: s.r.ids.newID(), TenantID: tenantID, UserName: fmt.Sprintf("%s%07d", prefix, i), Active: true, Owner: "okta",
					DisplayName: fmt.Sprintf("User %07d", i), Emails: []provision.Email{{Value: fmt.Sprintf("%s%07d@example.com", prefix, i)}},
					Version: 1, Created: now, Modified: now,
				}
				u = normUser(u)
				doc, err := encodeUser(u)
				if err != nil {
					return err
				}
				uargs = append(uargs, u.TenantID, u.ID, u.UserName, fold(u.UserName), fold(u.DisplayName), u.Owner, u.Active, u.Version,
					s.r.ts(u.Created), s.r.ts(u.Modified), nil, doc)
				eargs = append(eargs, u.TenantID, u.ID, fold(u.Emails[0].Value))
				ids = append(ids, u.ID)
			}
			if _, err := tx.q.ExecContext(ctx, s.r.sql(`INSERT INTO {p}users
				(tenant_id, id, user_name, user_name_lower, display_name_lower, owner, active, version, created, modified, deleted, doc) VALUES `+
				placeholders(1, end-start, 12)), uargs...); err != nil {
				return err
			}
			_, err := tx.q.ExecContext(ctx, s.r.sql("INSERT INTO {p}user_emails (tenant_id, user_id, email_lower) VALUES "+placeholders(1, end-start, 3)), eargs...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// seedMembers bulk-inserts memberships.
func seedMembers(t testing.TB, s *Store, tenantID, groupID string, userIDs []string) {
	t.Helper()
	for _, c := range chunks(userIDs) {
		args := make([]any, 0, 3*len(c))
		for _, id := range c {
			args = append(args, tenantID, groupID, id)
		}
		if _, err := s.DB().ExecContext(context.Background(), s.r.sql("INSERT INTO {p}members (tenant_id, group_id, user_id) VALUES "+placeholders(1, len(c), 3)), args...); err != nil {
			t.Fatal(err)
		}
	}
}

// analyze refreshes the planner statistics.
func analyze(t testing.TB, s *Store) {
	t.Helper()
	q := "ANALYZE"
	if s.Dialect() == Postgres {
		q = s.r.sql("ANALYZE {p}users, {p}user_emails, {p}groups, {p}members, {p}links")
	}
	if _, err := s.DB().ExecContext(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}
