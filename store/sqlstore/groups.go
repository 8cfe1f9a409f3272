package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/idprov/idprov/provision"
)

func (s *Store) queryGroups(ctx context.Context, op, query string, args ...any) ([]provision.Group, error) {
	rows, err := s.q.QueryContext(ctx, s.r.sql(query), args...)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	out := []provision.Group{}
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, mapErr(op, err)
		}
		g, err := decodeGroup(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return out, nil
}

// GetGroup implements provision.Store. In an Atomically transaction on
// PostgreSQL it locks the row until the transaction ends, like GetUser.
func (s *Store) GetGroup(ctx context.Context, tenantID, id string) (provision.Group, error) {
	var doc []byte
	err := s.q.QueryRowContext(ctx, s.r.sql("SELECT doc FROM {p}groups WHERE tenant_id = $1 AND id = $2"+s.forUpdate()), tenantID, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return provision.Group{}, notFound("group", id)
	}
	if err != nil {
		return provision.Group{}, mapErr("get group", err)
	}
	return decodeGroup(doc)
}

// GroupsByDisplayName implements provision.Store.
func (s *Store) GroupsByDisplayName(ctx context.Context, tenantID, name string) ([]provision.Group, error) {
	return s.queryGroups(ctx, "groups by displayName",
		"SELECT doc FROM {p}groups WHERE tenant_id = $1 AND display_name_lower = $2 ORDER BY id", tenantID, fold(name))
}

// ListGroups implements provision.Store, in ID (creation) order.
func (s *Store) ListGroups(ctx context.Context, tenantID string, p provision.Page) ([]provision.Group, int, error) {
	var total int
	if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) FROM {p}groups WHERE tenant_id = $1"), tenantID).Scan(&total); err != nil {
		return nil, 0, mapErr("count groups", err)
	}
	if p.Limit <= 0 || p.Offset >= total {
		return []provision.Group{}, total, nil
	}
	gs, err := s.queryGroups(ctx, "list groups",
		"SELECT doc FROM {p}groups WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3", tenantID, p.Limit, max(p.Offset, 0))
	return gs, total, err
}

// CreateGroup implements provision.Store.
func (s *Store) CreateGroup(ctx context.Context, g provision.Group) (provision.Group, error) {
	if g.TenantID == "" {
		return provision.Group{}, &provision.ValidationError{Field: "tenantId", Reason: "required"}
	}
	g = normGroup(g)
	if g.ID == "" {
		g.ID = s.r.ids.newID()
	}
	g.Version = 1
	doc, err := encodeGroup(g)
	if err != nil {
		return provision.Group{}, err
	}
	err = s.write(ctx, func(q Querier) error {
		var id string
		err := q.QueryRowContext(ctx, s.r.sql(`INSERT INTO {p}groups
			(tenant_id, id, display_name_lower, owner, version, created, modified, doc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id`),
			g.TenantID, g.ID, fold(g.DisplayName), g.Owner, g.Version, s.r.ts(g.Created), s.r.ts(g.Modified), doc).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return s.groupConflict(ctx, q, g, true)
		}
		return mapErr("create group", err)
	})
	if err != nil {
		return provision.Group{}, err
	}
	return g, nil
}

func (s *Store) groupConflict(ctx context.Context, q Querier, g provision.Group, create bool) error {
	if create {
		var one int
		err := q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}groups WHERE tenant_id = $1 AND id = $2"), g.TenantID, g.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("sqlstore: create group: %w", &provision.ConflictError{Field: "id", Value: g.ID, ExistingID: g.ID})
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr("create group", err)
		}
	}
	var id string
	err := q.QueryRowContext(ctx, s.r.sql("SELECT id FROM {p}groups WHERE tenant_id = $1 AND display_name_lower = $2 AND owner = $3 AND id <> $4"),
		g.TenantID, fold(g.DisplayName), g.Owner, g.ID).Scan(&id)
	if err == nil {
		return fmt.Errorf("sqlstore: write group: %w", &provision.ConflictError{Field: "displayName", Value: g.DisplayName, ExistingID: id, Owner: g.Owner})
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return mapErr("write group", err)
	}
	return fmt.Errorf("sqlstore: write group %q: %w", g.ID, provision.ErrAlreadyExists)
}

// UpdateGroup implements provision.Store.
func (s *Store) UpdateGroup(ctx context.Context, g provision.Group, expectedVersion int64) (provision.Group, error) {
	g = normGroup(g)
	g.Version = expectedVersion + 1
	doc, err := encodeGroup(g)
	if err != nil {
		return provision.Group{}, err
	}
	err = s.write(ctx, func(q Querier) error {
		var id string
		err := q.QueryRowContext(ctx, s.r.sql(`UPDATE {p}groups SET
			display_name_lower = $3, owner = $4, version = $5, created = $6, modified = $7, doc = $8
			WHERE tenant_id = $1 AND id = $2 AND version = $9
			AND NOT EXISTS (SELECT 1 FROM {p}groups o
				WHERE o.tenant_id = $1 AND o.display_name_lower = $3 AND o.owner = $4 AND o.id <> $2)
			RETURNING id`),
			g.TenantID, g.ID, fold(g.DisplayName), g.Owner, g.Version, s.r.ts(g.Created), s.r.ts(g.Modified), doc, expectedVersion).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			if err := s.checkVersion(ctx, q, "groups", "group", g.TenantID, g.ID, expectedVersion); err != nil {
				return err
			}
			return s.groupConflict(ctx, q, g, false)
		}
		return mapErr("update group", err)
	})
	if err != nil {
		return provision.Group{}, err
	}
	return g, nil
}

// checkVersion explains a write that matched no row: ErrNotFound, or
// ErrVersionConflict; nil when the row is at expectedVersion.
func (s *Store) checkVersion(ctx context.Context, q Querier, table, what, tenantID, id string, expectedVersion int64) error {
	var v int64
	err := q.QueryRowContext(ctx, s.r.sql("SELECT version FROM {p}"+table+" WHERE tenant_id = $1 AND id = $2"), tenantID, id).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return notFound(what, id)
	case err != nil:
		return mapErr("read version", err)
	case v != expectedVersion:
		return fmt.Errorf("sqlstore: %s %q is at version %d, not %d: %w", what, id, v, expectedVersion, provision.ErrVersionConflict)
	}
	return nil
}

// DeleteGroup implements provision.Store.
func (s *Store) DeleteGroup(ctx context.Context, tenantID, id string, expectedVersion int64) error {
	return s.write(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}groups WHERE tenant_id = $1 AND id = $2 AND version = $3"), tenantID, id, expectedVersion)
		if err != nil {
			return mapErr("delete group", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return mapErr("delete group", err)
		} else if n == 0 {
			if err := s.checkVersion(ctx, q, "groups", "group", tenantID, id, expectedVersion); err != nil {
				return err
			}
			return fmt.Errorf("sqlstore: delete group %q: %w", id, provision.ErrVersionConflict)
		}
		for _, del := range []string{
			"DELETE FROM {p}members WHERE tenant_id = $1 AND group_id = $2",
			"DELETE FROM {p}links WHERE tenant_id = $1 AND kind = 'group' AND resource_id = $2",
		} {
			if _, err := q.ExecContext(ctx, s.r.sql(del), tenantID, id); err != nil {
				return mapErr("delete group", err)
			}
		}
		return nil
	})
}

// AddMembers implements provision.Store. It costs one indexed lookup per
// user and one multi-row INSERT ... ON CONFLICT DO NOTHING, whatever the
// group's size.
func (s *Store) AddMembers(ctx context.Context, tenantID, groupID string, userIDs []string) ([]string, error) {
	ids := dedupe(userIDs)
	added := map[string]bool{}
	err := s.write(ctx, func(q Querier) error {
		clear(added)
		if err := s.groupExists(ctx, q, tenantID, groupID); err != nil {
			return err
		}
		for _, c := range chunks(ids) {
			args := make([]any, 0, len(c)+1)
			args = append(args, tenantID)
			for _, id := range c {
				args = append(args, id)
			}
			rows, err := q.QueryContext(ctx, s.r.sql("SELECT id FROM {p}users WHERE tenant_id = $1 AND deleted IS NULL AND id IN ("+list(2, len(c))+")"), args...)
			if err != nil {
				return mapErr("add members", err)
			}
			found, err := scanStrings(rows)
			if err != nil {
				return mapErr("add members", err)
			}
			if len(found) != len(c) {
				return fmt.Errorf("sqlstore: add members: %w: unknown users %v", provision.ErrNotFound, missing(c, found))
			}
		}
		for _, c := range chunks(ids) {
			args := make([]any, 0, 3*len(c))
			for _, id := range c {
				args = append(args, tenantID, groupID, id)
			}
			rows, err := q.QueryContext(ctx, s.r.sql("INSERT INTO {p}members (tenant_id, group_id, user_id) VALUES "+placeholders(1, len(c), 3)+
				" ON CONFLICT DO NOTHING RETURNING user_id"), args...)
			if err != nil {
				return mapErr("add members", err)
			}
			got, err := scanStrings(rows)
			if err != nil {
				return mapErr("add members", err)
			}
			for _, id := range got {
				added[id] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return inOrder(ids, added), nil
}

// RemoveMembers implements provision.Store.
func (s *Store) RemoveMembers(ctx context.Context, tenantID, groupID string, userIDs []string) ([]string, error) {
	ids := dedupe(userIDs)
	removed := map[string]bool{}
	err := s.write(ctx, func(q Querier) error {
		clear(removed)
		if err := s.groupExists(ctx, q, tenantID, groupID); err != nil {
			return err
		}
		for _, c := range chunks(ids) {
			args := make([]any, 0, len(c)+2)
			args = append(args, tenantID, groupID)
			for _, id := range c {
				args = append(args, id)
			}
			rows, err := q.QueryContext(ctx, s.r.sql("DELETE FROM {p}members WHERE tenant_id = $1 AND group_id = $2 AND user_id IN ("+list(3, len(c))+") RETURNING user_id"), args...)
			if err != nil {
				return mapErr("remove members", err)
			}
			got, err := scanStrings(rows)
			if err != nil {
				return mapErr("remove members", err)
			}
			for _, id := range got {
				removed[id] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return inOrder(ids, removed), nil
}

func (s *Store) groupExists(ctx context.Context, q Querier, tenantID, groupID string) error {
	var one int
	err := q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}groups WHERE tenant_id = $1 AND id = $2"), tenantID, groupID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("group", groupID)
	}
	return mapErr("get group", err)
}

// ListMembers implements provision.Store, in user ID order.
func (s *Store) ListMembers(ctx context.Context, tenantID, groupID string, p provision.Page) ([]string, int, error) {
	if err := s.groupExists(ctx, s.q, tenantID, groupID); err != nil {
		return nil, 0, err
	}
	var total int
	if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) FROM {p}members WHERE tenant_id = $1 AND group_id = $2"), tenantID, groupID).Scan(&total); err != nil {
		return nil, 0, mapErr("count members", err)
	}
	if p.Limit <= 0 || p.Offset >= total {
		return []string{}, total, nil
	}
	rows, err := s.q.QueryContext(ctx, s.r.sql("SELECT user_id FROM {p}members WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id LIMIT $3 OFFSET $4"),
		tenantID, groupID, p.Limit, max(p.Offset, 0))
	if err != nil {
		return nil, 0, mapErr("list members", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, 0, mapErr("list members", err)
	}
	return ids, total, nil
}

// IsMember implements provision.Store. An unknown group is ErrNotFound.
func (s *Store) IsMember(ctx context.Context, tenantID, groupID, userID string) (bool, error) {
	var one int
	err := s.q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3"), tenantID, groupID, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, s.groupExists(ctx, s.q, tenantID, groupID)
	}
	if err != nil {
		return false, mapErr("is member", err)
	}
	return true, nil
}

// GroupsOfUser implements provision.Store. An unknown user is
// ErrNotFound.
func (s *Store) GroupsOfUser(ctx context.Context, tenantID, userID string) ([]string, error) {
	rows, err := s.q.QueryContext(ctx, s.r.sql("SELECT group_id FROM {p}members WHERE tenant_id = $1 AND user_id = $2 ORDER BY group_id"), tenantID, userID)
	if err != nil {
		return nil, mapErr("groups of user", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, mapErr("groups of user", err)
	}
	if len(ids) == 0 {
		var one int
		err := s.q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}users WHERE tenant_id = $1 AND id = $2"), tenantID, userID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, notFound("user", userID)
		}
		if err != nil {
			return nil, mapErr("groups of user", err)
		}
	}
	return ids, nil
}

// scanStrings reads a one-column result and closes rows.
func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func missing(want, found []string) []string {
	have := make(map[string]bool, len(found))
	for _, id := range found {
		have[id] = true
	}
	var out []string
	for _, id := range want {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

func inOrder(ids []string, set map[string]bool) []string {
	out := []string{}
	for _, id := range ids {
		if set[id] {
			out = append(out, id)
		}
	}
	return out
}
