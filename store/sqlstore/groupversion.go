package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/idprov/idprov/provision"
)

var _ provision.GroupVersionBumper = (*Store)(nil)

// BumpGroupVersion implements provision.GroupVersionBumper: one more
// Version and a new Modified for the group, whatever its Version. On
// PostgreSQL the row is read FOR NO KEY UPDATE, so concurrent bumps queue
// for the row instead of failing (and not FOR UPDATE: the membership rows
// the same transactions insert hold KEY SHARE locks on the group's row
// through their foreign key, which FOR UPDATE would deadlock with);
// SQLite has one writer at a time. The members are not read.
func (s *Store) BumpGroupVersion(ctx context.Context, tenantID, id string, modified time.Time) (provision.Group, error) {
	var out provision.Group
	err := s.write(ctx, func(q Querier) error {
		query := "SELECT doc FROM {p}groups WHERE tenant_id = $1 AND id = $2"
		if s.r.d == Postgres {
			query += " FOR NO KEY UPDATE"
		}
		var doc []byte
		err := q.QueryRowContext(ctx, s.r.sql(query), tenantID, id).Scan(&doc)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("group", id)
		}
		if err != nil {
			return mapErr("bump group version", err)
		}
		g, err := decodeGroup(doc)
		if err != nil {
			return err
		}
		g.Version++
		g.Modified = modified
		g = normGroup(g)
		enc, err := encodeGroup(g)
		if err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, s.r.sql("UPDATE {p}groups SET version = $3, modified = $4, doc = $5 WHERE tenant_id = $1 AND id = $2"),
			tenantID, id, g.Version, s.r.ts(g.Modified), enc); err != nil {
			return mapErr("bump group version", err)
		}
		out = g
		return nil
	})
	if err != nil {
		return provision.Group{}, err
	}
	return out, nil
}
