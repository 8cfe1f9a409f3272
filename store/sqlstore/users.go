package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idprov/idprov/provision"
)

func (s *Store) queryUsers(ctx context.Context, op, query string, args ...any) ([]provision.User, error) {
	rows, err := s.q.QueryContext(ctx, s.r.sql(query), args...)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	var out []provision.User
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, mapErr(op, err)
		}
		u, err := decodeUser(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return out, nil
}

func (s *Store) queryUser(ctx context.Context, op, what string, query string, args ...any) (provision.User, error) {
	var doc []byte
	err := s.q.QueryRowContext(ctx, s.r.sql(query), args...).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return provision.User{}, notFound("user", what)
	}
	if err != nil {
		return provision.User{}, mapErr(op, err)
	}
	return decodeUser(doc)
}

// GetUser implements provision.Store. In an Atomically transaction on
// PostgreSQL it locks the row until the transaction ends (SELECT ... FOR
// UPDATE), so concurrent changes of one user queue instead of meeting a
// version conflict; see provision.Store.
func (s *Store) GetUser(ctx context.Context, tenantID, id string) (provision.User, error) {
	u, err := s.queryUser(ctx, "get user", id,
		"SELECT doc FROM {p}users WHERE tenant_id = $1 AND id = $2"+s.forUpdate(), tenantID, id)
	if err == nil && s.forUpdate() != "" {
		s.lockedUser(u)
	}
	return u, err
}

// lockedEmails is what a transaction knows of a user row it locked: its
// version and its e-mail keys, so that an update that leaves the e-mails
// alone does not rewrite them.
type lockedEmails struct {
	version int64
	emails  []string
}

func (s *Store) lockedUser(u provision.User) {
	if s.locked == nil {
		s.locked = map[string]lockedEmails{}
	}
	s.locked[u.TenantID+"\x00"+u.ID] = lockedEmails{u.Version, emailKeys(u)}
}

// emailKeys are the user's e-mail rows: folded, sorted, without repeats.
func emailKeys(u provision.User) []string {
	var emails []string
	for _, e := range u.Emails {
		if e.Value != "" {
			emails = append(emails, fold(e.Value))
		}
	}
	slices.Sort(emails)
	return slices.Compact(emails)
}

// forUpdate is the row-locking clause of a read in a PostgreSQL
// transaction (SQLite transactions are single-writer already).
func (s *Store) forUpdate() string {
	if s.inTx && s.r.d == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// UserByUserName implements provision.Store.
func (s *Store) UserByUserName(ctx context.Context, tenantID, userName string) (provision.User, error) {
	return s.queryUser(ctx, "user by userName", userName,
		"SELECT doc FROM {p}users WHERE tenant_id = $1 AND user_name_lower = $2 AND deleted IS NULL", tenantID, fold(userName))
}

// UsersByEmail implements provision.Store.
func (s *Store) UsersByEmail(ctx context.Context, tenantID, email string) ([]provision.User, error) {
	return s.queryUsers(ctx, "users by email",
		`SELECT u.doc FROM {p}user_emails e JOIN {p}users u ON u.tenant_id = e.tenant_id AND u.id = e.user_id
		WHERE e.tenant_id = $1 AND e.email_lower = $2 AND u.tenant_id = $1 AND u.deleted IS NULL ORDER BY u.id`, tenantID, fold(email))
}

// ListUsers implements provision.Store. The order is by ID, which this
// store assigns in creation order (UUID version 7).
func (s *Store) ListUsers(ctx context.Context, tenantID string, p provision.Page) ([]provision.User, int, error) {
	var total int
	err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) FROM {p}users WHERE tenant_id = $1 AND deleted IS NULL"), tenantID).Scan(&total)
	if err != nil {
		return nil, 0, mapErr("count users", err)
	}
	if p.Limit <= 0 || p.Offset >= total {
		return []provision.User{}, total, nil
	}
	us, err := s.queryUsers(ctx, "list users",
		"SELECT doc FROM {p}users WHERE tenant_id = $1 AND deleted IS NULL ORDER BY id LIMIT $2 OFFSET $3", tenantID, p.Limit, max(p.Offset, 0))
	if us == nil && err == nil {
		us = []provision.User{}
	}
	return us, total, err
}

// CreateUser implements provision.Store.
func (s *Store) CreateUser(ctx context.Context, u provision.User) (provision.User, error) {
	if u.TenantID == "" {
		return provision.User{}, &provision.ValidationError{Field: "tenantId", Reason: "required"}
	}
	u = normUser(u)
	if u.ID == "" {
		u.ID = s.r.ids.newID()
	}
	u.Version = 1
	doc, err := encodeUser(u)
	if err != nil {
		return provision.User{}, err
	}
	err = s.write(ctx, func(q Querier) error {
		args := []any{u.TenantID, u.ID, u.UserName, fold(u.UserName), fold(u.DisplayName), u.Owner, u.Active, u.Version,
			s.r.ts(u.Created), s.r.ts(u.Modified), s.r.tsNull(u.Deleted), doc}
		insert := `INSERT INTO {p}users
			(tenant_id, id, user_name, user_name_lower, display_name_lower, owner, active, version, created, modified, deleted, doc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT DO NOTHING RETURNING id`
		emails := emailKeys(u)
		together := s.r.d == Postgres && len(emails) > 0
		if together {
			// One round trip: the e-mail rows are inserted by the same
			// statement, from the user row it inserted (none when the
			// insert met a conflict).
			for _, e := range emails {
				args = append(args, e)
			}
			insert = "WITH u AS (" + insert + "), e AS (INSERT INTO {p}user_emails (tenant_id, user_id, email_lower) SELECT $1, u.id, v.x FROM u, (VALUES " +
				placeholders(13, len(emails), 1) + ") AS v (x)) SELECT id FROM u"
		}
		var id string
		err := q.QueryRowContext(ctx, s.r.sql(insert), args...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return s.userConflict(ctx, q, u, true)
		}
		if err != nil {
			return mapErr("create user", err)
		}
		if together {
			return nil
		}
		return s.writeEmails(ctx, q, u, false)
	})
	if err != nil {
		return provision.User{}, err
	}
	return u, nil
}

// userConflict explains why u could not be written: its ID (on create)
// or its userName is taken.
func (s *Store) userConflict(ctx context.Context, q Querier, u provision.User, create bool) error {
	if create {
		var one int
		err := q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}users WHERE tenant_id = $1 AND id = $2"), u.TenantID, u.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("sqlstore: create user: %w", &provision.ConflictError{Field: "id", Value: u.ID, ExistingID: u.ID})
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr("create user", err)
		}
	}
	var id, owner string
	err := q.QueryRowContext(ctx, s.r.sql("SELECT id, owner FROM {p}users WHERE tenant_id = $1 AND user_name_lower = $2 AND deleted IS NULL AND id <> $3"),
		u.TenantID, fold(u.UserName), u.ID).Scan(&id, &owner)
	if err == nil {
		return fmt.Errorf("sqlstore: write user: %w", &provision.ConflictError{Field: "userName", Value: u.UserName, ExistingID: id, Owner: owner})
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return mapErr("write user", err)
	}
	return fmt.Errorf("sqlstore: write user %q: %w", u.ID, provision.ErrAlreadyExists)
}

// writeEmails stores the folded e-mail addresses of u (replacing the old
// ones on update).
func (s *Store) writeEmails(ctx context.Context, q Querier, u provision.User, replace bool) error {
	emails := emailKeys(u)
	if replace && s.r.d == Postgres && len(emails) > 0 {
		// One round trip: drop the e-mails that went, add those that came
		// (a data-modifying CTE; the kept rows stay untouched).
		args := []any{u.TenantID, u.ID}
		rows := make([]string, len(emails))
		for i, e := range emails {
			args = append(args, e)
			rows[i] = fmt.Sprintf("($1, $2, $%d)", i+3)
		}
		_, err := q.ExecContext(ctx, s.r.sql("WITH gone AS (DELETE FROM {p}user_emails WHERE tenant_id = $1 AND user_id = $2 AND email_lower NOT IN ("+list(3, len(emails))+
			")) INSERT INTO {p}user_emails (tenant_id, user_id, email_lower) VALUES "+strings.Join(rows, ", ")+" ON CONFLICT DO NOTHING"), args...)
		return mapErr("write emails", err)
	}
	if replace {
		if _, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}user_emails WHERE tenant_id = $1 AND user_id = $2"), u.TenantID, u.ID); err != nil {
			return mapErr("write emails", err)
		}
	}
	if len(emails) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(emails))
	for _, e := range emails {
		args = append(args, u.TenantID, u.ID, e)
	}
	_, err := q.ExecContext(ctx, s.r.sql("INSERT INTO {p}user_emails (tenant_id, user_id, email_lower) VALUES "+placeholders(1, len(emails), 3)), args...)
	return mapErr("write emails", err)
}

// UpdateUser implements provision.Store.
func (s *Store) UpdateUser(ctx context.Context, u provision.User, expectedVersion int64) (provision.User, error) {
	u = normUser(u)
	u.Version = expectedVersion + 1
	doc, err := encodeUser(u)
	if err != nil {
		return provision.User{}, err
	}
	err = s.write(ctx, func(q Querier) error {
		// $14 skips the userName check only for a tombstone. It runs even
		// when the name did not change: a parameter that skipped it in
		// most executions kept PostgreSQL from settling on the statement's
		// generic plan, and planning every execution cost more (12% of an
		// update's throughput) than the check.
		var id string
		err := q.QueryRowContext(ctx, s.r.sql(`UPDATE {p}users SET
			user_name = $3, user_name_lower = $4, display_name_lower = $5, owner = $6, active = $7,
			version = $8, created = $9, modified = $10, deleted = $11, doc = $12
			WHERE tenant_id = $1 AND id = $2 AND version = $13
			AND ($14 OR NOT EXISTS (SELECT 1 FROM {p}users o
				WHERE o.tenant_id = $1 AND o.user_name_lower = $4 AND o.deleted IS NULL AND o.id <> $2))
			RETURNING id`),
			u.TenantID, u.ID, u.UserName, fold(u.UserName), fold(u.DisplayName), u.Owner, u.Active,
			u.Version, s.r.ts(u.Created), s.r.ts(u.Modified), s.r.tsNull(u.Deleted), doc, expectedVersion, !u.Deleted.IsZero()).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			var v int64
			err := q.QueryRowContext(ctx, s.r.sql("SELECT version FROM {p}users WHERE tenant_id = $1 AND id = $2"), u.TenantID, u.ID).Scan(&v)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return notFound("user", u.ID)
			case err != nil:
				return mapErr("update user", err)
			case v != expectedVersion:
				return fmt.Errorf("sqlstore: user %q is at version %d, not %d: %w", u.ID, v, expectedVersion, provision.ErrVersionConflict)
			}
			return s.userConflict(ctx, q, u, false)
		}
		if err != nil {
			return mapErr("update user", err)
		}
		key := u.TenantID + "\x00" + u.ID
		if prev, ok := s.locked[key]; ok && prev.version == expectedVersion && slices.Equal(prev.emails, emailKeys(u)) {
			return nil // the row is locked since it was read: its e-mail rows are these
		}
		return s.writeEmails(ctx, q, u, true)
	})
	if s.locked != nil {
		delete(s.locked, u.TenantID+"\x00"+u.ID)
		if err == nil {
			s.lockedUser(u)
		}
	}
	if err != nil {
		return provision.User{}, err
	}
	return u, nil
}

// DeletedUsers implements provision.Store.
func (s *Store) DeletedUsers(ctx context.Context, tenantID string, before time.Time, limit int) ([]provision.User, error) {
	if limit <= 0 {
		return []provision.User{}, nil
	}
	us, err := s.queryUsers(ctx, "deleted users",
		"SELECT doc FROM {p}users WHERE tenant_id = $1 AND deleted IS NOT NULL AND deleted < $2 ORDER BY deleted, id LIMIT $3",
		tenantID, s.r.ts(before), limit)
	if us == nil && err == nil {
		us = []provision.User{}
	}
	return us, err
}

// PurgeUser implements provision.Store.
func (s *Store) PurgeUser(ctx context.Context, tenantID, id string) error {
	return s.write(ctx, func(q Querier) error {
		for _, del := range []string{
			"DELETE FROM {p}members WHERE tenant_id = $1 AND user_id = $2",
			"DELETE FROM {p}user_emails WHERE tenant_id = $1 AND user_id = $2",
			"DELETE FROM {p}links WHERE tenant_id = $1 AND kind = 'user' AND resource_id = $2",
		} {
			if _, err := q.ExecContext(ctx, s.r.sql(del), tenantID, id); err != nil {
				return mapErr("purge user", err)
			}
		}
		res, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}users WHERE tenant_id = $1 AND id = $2"), tenantID, id)
		if err != nil {
			return mapErr("purge user", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return mapErr("purge user", err)
		} else if n == 0 {
			return notFound("user", id)
		}
		return nil
	})
}
