package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/idprov/idprov/provision"
)

func (s *Store) scanLink(row interface{ Scan(...any) error }) (provision.Link, error) {
	var l provision.Link
	var kind string
	err := row.Scan(&l.TenantID, &kind, &l.ConnectionID, &l.ExternalID, &l.ResourceID, timeScanner{&l.Created})
	l.Kind = provision.ResourceKind(kind)
	return l, err
}

const linkCols = "tenant_id, kind, connection_id, external_id, resource_id, created"

// GetLink implements provision.Store.
func (s *Store) GetLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) (provision.Link, error) {
	l, err := s.scanLink(s.q.QueryRowContext(ctx, s.r.sql("SELECT "+linkCols+" FROM {p}links WHERE tenant_id = $1 AND kind = $2 AND connection_id = $3 AND external_id = $4"),
		tenantID, string(kind), connectionID, externalID))
	if errors.Is(err, sql.ErrNoRows) {
		return provision.Link{}, fmt.Errorf("sqlstore: link %s %s/%s: %w", kind, connectionID, externalID, provision.ErrNotFound)
	}
	if err != nil {
		return provision.Link{}, mapErr("get link", err)
	}
	return l, nil
}

// LinksOf implements provision.Store.
func (s *Store) LinksOf(ctx context.Context, tenantID string, kind provision.ResourceKind, resourceID string) ([]provision.Link, error) {
	rows, err := s.q.QueryContext(ctx, s.r.sql("SELECT "+linkCols+" FROM {p}links WHERE tenant_id = $1 AND kind = $2 AND resource_id = $3 ORDER BY connection_id"),
		tenantID, string(kind), resourceID)
	if err != nil {
		return nil, mapErr("links of", err)
	}
	defer rows.Close()
	out := []provision.Link{}
	for rows.Next() {
		l, err := s.scanLink(rows)
		if err != nil {
			return nil, mapErr("links of", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("links of", err)
	}
	return out, nil
}

// CreateLink implements provision.Store.
func (s *Store) CreateLink(ctx context.Context, l provision.Link) error {
	var table string
	switch l.Kind {
	case provision.ResourceUser:
		table = "users"
	case provision.ResourceGroup:
		table = "groups"
	default:
		return &provision.ValidationError{Field: "link.kind", Reason: fmt.Sprintf("unknown resource kind %q", l.Kind)}
	}
	return s.write(ctx, func(q Querier) error {
		// One statement when it works: the insert checks that the
		// resource exists; only a refusal looks at why.
		var got string
		err := q.QueryRowContext(ctx, s.r.sql("INSERT INTO {p}links ("+linkCols+") SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM {p}"+table+
			" WHERE tenant_id = $1 AND id = $5) ON CONFLICT DO NOTHING RETURNING resource_id"),
			l.TenantID, string(l.Kind), l.ConnectionID, l.ExternalID, l.ResourceID, s.r.ts(l.Created)).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			var one int
			err := q.QueryRowContext(ctx, s.r.sql("SELECT 1 FROM {p}"+table+" WHERE tenant_id = $1 AND id = $2"), l.TenantID, l.ResourceID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound(string(l.Kind), l.ResourceID)
			}
			if err != nil {
				return mapErr("create link", err)
			}
			ce := &provision.ConflictError{Field: "externalId", Value: l.ExternalID}
			if ex, err := (&Store{r: s.r, q: q}).GetLink(ctx, l.TenantID, l.Kind, l.ConnectionID, l.ExternalID); err == nil {
				ce.ExistingID = ex.ResourceID
			} else {
				ce.ExistingID = l.ResourceID // the resource already has a link of this connection
			}
			return fmt.Errorf("sqlstore: create link: %w", ce)
		}
		return mapErr("create link", err)
	})
}

// DeleteLink implements provision.Store. A missing link is ErrNotFound.
func (s *Store) DeleteLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) error {
	return s.write(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}links WHERE tenant_id = $1 AND kind = $2 AND connection_id = $3 AND external_id = $4"),
			tenantID, string(kind), connectionID, externalID)
		if err != nil {
			return mapErr("delete link", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return mapErr("delete link", err)
		} else if n == 0 {
			return fmt.Errorf("sqlstore: link %s %s/%s: %w", kind, connectionID, externalID, provision.ErrNotFound)
		}
		return nil
	})
}

// userLinksQuery reads a user ($2 of tenant $1) with its links.
func (s *Store) userLinksQuery() string {
	return s.r.sql(`WITH l AS MATERIALIZED (SELECT connection_id, external_id, created FROM {p}links
			WHERE tenant_id = $1 AND kind = 'user' AND resource_id = $2 ORDER BY connection_id)
		SELECT u.doc, l.connection_id, l.external_id, l.created FROM {p}users u LEFT JOIN l ON true
		WHERE u.tenant_id = $1 AND u.id = $2 ORDER BY l.connection_id`)
}

// GetUserLinks implements provision.UserLinksGetter: the user and its
// links in one statement (the user's row joined with its links), locked
// like GetUser in a PostgreSQL transaction. The links are a materialized
// CTE, planned on their own as LinksOf is: joined, a PostgreSQL without
// statistics on the links table (a new table, not analyzed yet) read them
// through links_external_id, every link of the tenant for each user.
func (s *Store) GetUserLinks(ctx context.Context, tenantID, id string) (provision.User, []provision.Link, error) {
	lock := ""
	if s.forUpdate() != "" {
		lock = " FOR UPDATE OF u"
	}
	rows, err := s.q.QueryContext(ctx, s.userLinksQuery()+lock, tenantID, id)
	if err != nil {
		return provision.User{}, nil, mapErr("get user and links", err)
	}
	defer rows.Close()
	var (
		doc   []byte
		found bool
		links = []provision.Link{}
	)
	for rows.Next() {
		var conn, ext sql.NullString
		var created time.Time
		var raw []byte
		if err := rows.Scan(&raw, &conn, &ext, timeScanner{&created}); err != nil {
			return provision.User{}, nil, mapErr("get user and links", err)
		}
		if !found {
			doc, found = raw, true
		}
		if conn.Valid {
			links = append(links, provision.Link{TenantID: tenantID, Kind: provision.ResourceUser, ConnectionID: conn.String,
				ExternalID: ext.String, ResourceID: id, Created: created})
		}
	}
	if err := rows.Err(); err != nil {
		return provision.User{}, nil, mapErr("get user and links", err)
	}
	if !found {
		return provision.User{}, nil, notFound("user", id)
	}
	u, err := decodeUser(doc)
	if err != nil {
		return provision.User{}, nil, err
	}
	if lock != "" {
		s.lockedUser(u)
	}
	return u, links, nil
}
