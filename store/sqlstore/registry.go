package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/idprov/idprov/provision"
)

var _ provision.Registry = (*Store)(nil)

// RegistryChannel is the PostgreSQL NOTIFY channel of the store's
// registry: every PutTenantRecord and DeleteTenantRecord notifies it,
// with the tenant id as the payload, in its transaction (so the
// notification is delivered at commit, and not at all on rollback). An
// engine on another replica LISTENs to it to refresh that tenant at once,
// and pages RegistryChanges as the fallback. The name is the table prefix
// followed by "registry"; SQLite has no notifications.
func (s *Store) RegistryChannel() string { return s.Channel(RegistryTopic) }

// RegistryTopic is the notification topic of registry writes (see
// Subscribe): its channel is RegistryChannel.
const RegistryTopic = "registry"

var _ provision.RegistryWatcher = (*Store)(nil)

// WatchRegistry implements provision.RegistryWatcher over Subscribe: live
// on PostgreSQL with Config.Listen set.
func (s *Store) WatchRegistry(fn func(tenantID string)) (stop func(), live bool) {
	return s.Subscribe(RegistryTopic, func(n Notification) {
		if n.Missed {
			fn("")
			return
		}
		fn(n.Payload)
	})
}

// registryRowsPerInsert bounds one multi-row INSERT of index entries.
const registryRowsPerInsert = 200

// regTokenJSON is a token hash as the tenants row keeps it.
type regTokenJSON struct {
	Hash       string `json:"hash"`
	Connection string `json:"connection"`
}

func encodeRegIndex(r provision.TenantRecord) (domains, tokens string, err error) {
	d, err := json.Marshal(r.Domains)
	if err != nil {
		return "", "", fmt.Errorf("sqlstore: encode domains: %w", err)
	}
	ts := make([]regTokenJSON, len(r.Tokens))
	for i, t := range r.Tokens {
		ts[i] = regTokenJSON{Hash: hex.EncodeToString(t.Hash[:]), Connection: t.ConnectionID}
	}
	tb, err := json.Marshal(ts)
	if err != nil {
		return "", "", fmt.Errorf("sqlstore: encode token hashes: %w", err)
	}
	return string(d), string(tb), nil
}

func decodeRegIndex(r *provision.TenantRecord, domains, tokens string) error {
	if err := json.Unmarshal([]byte(domains), &r.Domains); err != nil {
		return fmt.Errorf("sqlstore: tenant record %q: decode domains: %w", r.TenantID, err)
	}
	var ts []regTokenJSON
	if err := json.Unmarshal([]byte(tokens), &ts); err != nil {
		return fmt.Errorf("sqlstore: tenant record %q: decode token hashes: %w", r.TenantID, err)
	}
	r.Tokens = make([]provision.TokenRef, len(ts))
	for i, t := range ts {
		b, err := hex.DecodeString(t.Hash)
		if err != nil || len(b) != len(provision.TokenHash{}) {
			return fmt.Errorf("sqlstore: tenant record %q: bad token hash %q", r.TenantID, t.Hash)
		}
		copy(r.Tokens[i].Hash[:], b)
		r.Tokens[i].ConnectionID = t.Connection
	}
	return nil
}

const regCols = "tenant_id, version, rev, modified, body, domains, tokens"

func scanRecord(sc interface{ Scan(...any) error }) (provision.TenantRecord, error) {
	var (
		r               provision.TenantRecord
		domains, tokens string
	)
	if err := sc.Scan(&r.TenantID, &r.Version, &r.Rev, timeScanner{&r.Modified}, &r.Body, &domains, &tokens); err != nil {
		return r, err
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	return r, decodeRegIndex(&r, domains, tokens)
}

// GetTenantRecord implements provision.Registry: one row read by its
// primary key.
func (s *Store) GetTenantRecord(ctx context.Context, tenantID string) (provision.TenantRecord, error) {
	r, err := scanRecord(s.q.QueryRowContext(ctx, s.r.sql("SELECT "+regCols+" FROM {p}registry_tenants WHERE tenant_id = $1 AND NOT deleted"), tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return provision.TenantRecord{}, notFound("tenant record", tenantID)
	}
	if err != nil {
		return provision.TenantRecord{}, mapErr("get tenant record", err)
	}
	return r, nil
}

// TenantByDomain implements provision.Registry: a primary key lookup.
func (s *Store) TenantByDomain(ctx context.Context, domain string) (string, error) {
	var id string
	err := s.q.QueryRowContext(ctx, s.r.sql("SELECT tenant_id FROM {p}registry_domains WHERE domain = $1"), fold(domain)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("domain", domain)
	}
	if err != nil {
		return "", mapErr("tenant by domain", err)
	}
	return id, nil
}

// ConnectionByTokenHash implements provision.Registry: a primary key
// lookup.
func (s *Store) ConnectionByTokenHash(ctx context.Context, hash provision.TokenHash) (tenantID, connectionID string, err error) {
	err = s.q.QueryRowContext(ctx, s.r.sql("SELECT tenant_id, connection_id FROM {p}registry_tokens WHERE hash = $1"), hash[:]).Scan(&tenantID, &connectionID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("sqlstore: token hash: %w", provision.ErrNotFound)
	}
	if err != nil {
		return "", "", mapErr("connection by token hash", err)
	}
	return tenantID, connectionID, nil
}

// ListTenantRecords implements provision.Registry. The total counts the
// live rows (a scan of the tenants table, the page itself is read
// through the primary key).
func (s *Store) ListTenantRecords(ctx context.Context, p provision.Page) ([]provision.TenantRecord, int, error) {
	var total int
	if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) FROM {p}registry_tenants WHERE NOT deleted")).Scan(&total); err != nil {
		return nil, 0, mapErr("count tenant records", err)
	}
	out := []provision.TenantRecord{}
	if p.Limit <= 0 || p.Offset >= total {
		return out, total, nil
	}
	rows, err := s.q.QueryContext(ctx, s.r.sql("SELECT "+regCols+" FROM {p}registry_tenants WHERE NOT deleted ORDER BY tenant_id LIMIT $1 OFFSET $2"), p.Limit, max(p.Offset, 0))
	if err != nil {
		return nil, 0, mapErr("list tenant records", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, 0, mapErr("list tenant records", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr("list tenant records", err)
	}
	return out, total, nil
}

// RegistryChanges implements provision.Registry: an index range scan by
// Rev. Revs are taken in the writing transaction under the counter's row
// lock, so they commit in order and a reader never sees a Rev while a
// smaller one is still to be committed; a rolled back write leaves a gap.
func (s *Store) RegistryChanges(ctx context.Context, afterRev int64, limit int) ([]provision.RegistryChange, error) {
	out := []provision.RegistryChange{}
	if limit <= 0 {
		return out, nil
	}
	rows, err := s.q.QueryContext(ctx, s.r.sql("SELECT tenant_id, rev, deleted FROM {p}registry_tenants WHERE rev > $1 ORDER BY rev LIMIT $2"), afterRev, limit)
	if err != nil {
		return nil, mapErr("registry changes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c provision.RegistryChange
		if err := rows.Scan(&c.TenantID, &c.Rev, &c.Deleted); err != nil {
			return nil, mapErr("registry changes", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("registry changes", err)
	}
	return out, nil
}

// registryWrite runs fn, a registry write of tenantID, with the next Rev:
// in the current transaction (inside a savepoint, so that a refused write
// leaves no trace and the transaction usable) or in a new one. The Rev
// comes from the counter row, which stays locked until commit: registry
// writers serialize, so fn's checks cannot race another writer's.
func (s *Store) registryWrite(ctx context.Context, tenantID string, fn func(q Querier, rev int64) error) error {
	return s.write(ctx, func(q Querier) error {
		if s.inTx {
			if _, err := q.ExecContext(ctx, "SAVEPOINT idprov_registry"); err != nil {
				return mapErr("registry: savepoint", err)
			}
		}
		err := s.registryWriteIn(ctx, q, tenantID, fn)
		if !s.inTx {
			return err
		}
		if err != nil {
			if _, rerr := q.ExecContext(context.WithoutCancel(ctx), "ROLLBACK TO SAVEPOINT idprov_registry"); rerr != nil {
				return errors.Join(err, mapErr("registry: rollback to savepoint", rerr))
			}
		}
		if _, rerr := q.ExecContext(context.WithoutCancel(ctx), "RELEASE SAVEPOINT idprov_registry"); rerr != nil && err == nil {
			return mapErr("registry: release savepoint", rerr)
		}
		return err
	})
}

func (s *Store) registryWriteIn(ctx context.Context, q Querier, tenantID string, fn func(q Querier, rev int64) error) error {
	var rev int64
	if err := q.QueryRowContext(ctx, s.r.sql("UPDATE {p}registry_rev SET rev = rev + 1 WHERE id = 1 RETURNING rev")).Scan(&rev); err != nil {
		return mapErr("registry: next rev", err)
	}
	if err := fn(q, rev); err != nil {
		return err
	}
	if s.r.d == Postgres {
		if _, err := q.ExecContext(ctx, "SELECT pg_notify($1, $2)", s.RegistryChannel(), tenantID); err != nil {
			return mapErr("registry: notify", err)
		}
	}
	return nil
}

// currentRecord reads the version of the tenant's row, and whether it is
// live (neither deleted nor never registered).
func (s *Store) currentRecord(ctx context.Context, q Querier, tenantID string) (version int64, live bool, err error) {
	var deleted bool
	err = q.QueryRowContext(ctx, s.r.sql("SELECT version, deleted FROM {p}registry_tenants WHERE tenant_id = $1"), tenantID).Scan(&version, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, mapErr("registry: read tenant record", err)
	}
	return version, !deleted, nil
}

// PutTenantRecord implements provision.Registry. The stored record is in
// provision.NormalizeTenantRecord's form (Domains lower case and sorted,
// Tokens sorted by hash); Modified is Config.Now, in UTC to the
// microsecond. A domain or token hash another tenant holds is a
// *provision.ConflictError (Field "domain" or "tokenHash", ExistingID the
// holder), found before anything is written; the tables' primary keys
// enforce the same.
func (s *Store) PutTenantRecord(ctx context.Context, in provision.TenantRecord, expectedVersion int64) (provision.TenantRecord, error) {
	r, err := provision.NormalizeTenantRecord(in)
	if err != nil {
		return provision.TenantRecord{}, err
	}
	if expectedVersion < 0 {
		return provision.TenantRecord{}, &provision.ValidationError{Field: "expectedVersion", Reason: "negative"}
	}
	domains, tokens, err := encodeRegIndex(r)
	if err != nil {
		return provision.TenantRecord{}, err
	}
	err = s.registryWrite(ctx, r.TenantID, func(q Querier, rev int64) error {
		version, live, err := s.currentRecord(ctx, q, r.TenantID)
		switch {
		case err != nil:
			return err
		case expectedVersion == 0 && live:
			return fmt.Errorf("sqlstore: tenant record %q: %w", r.TenantID, provision.ErrAlreadyExists)
		case expectedVersion > 0 && !live:
			return notFound("tenant record", r.TenantID)
		case expectedVersion > 0 && version != expectedVersion:
			return fmt.Errorf("sqlstore: tenant record %q is at version %d, not %d: %w", r.TenantID, version, expectedVersion, provision.ErrVersionConflict)
		}
		if err := s.registryConflicts(ctx, q, r); err != nil {
			return err
		}
		r.Version, r.Rev, r.Modified = expectedVersion+1, rev, normTime(s.r.now())
		_, err = q.ExecContext(ctx, s.r.sql(`INSERT INTO {p}registry_tenants (tenant_id, version, rev, deleted, modified, body, domains, tokens)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version, rev = excluded.rev, deleted = excluded.deleted,
				modified = excluded.modified, body = excluded.body, domains = excluded.domains, tokens = excluded.tokens`),
			r.TenantID, r.Version, r.Rev, false, s.r.ts(r.Modified), r.Body, domains, tokens)
		if err != nil {
			return mapErr("put tenant record", err)
		}
		if err := s.unindexTenant(ctx, q, r.TenantID); err != nil {
			return err
		}
		return s.indexTenant(ctx, q, r)
	})
	if err != nil {
		return provision.TenantRecord{}, err
	}
	return r, nil
}

// registryConflicts returns a *provision.ConflictError for the first of
// r's domains and token hashes another tenant holds.
func (s *Store) registryConflicts(ctx context.Context, q Querier, r provision.TenantRecord) error {
	for start := 0; start < len(r.Domains); start += registryRowsPerInsert {
		batch := r.Domains[start:min(len(r.Domains), start+registryRowsPerInsert)]
		args := []any{r.TenantID}
		for _, d := range batch {
			args = append(args, d)
		}
		var d, owner string
		err := q.QueryRowContext(ctx, s.r.sql("SELECT domain, tenant_id FROM {p}registry_domains WHERE domain IN "+placeholders(2, 1, len(batch))+" AND tenant_id <> $1 ORDER BY domain LIMIT 1"), args...).Scan(&d, &owner)
		if err == nil {
			return fmt.Errorf("sqlstore: %w", &provision.ConflictError{Field: "domain", Value: d, ExistingID: owner})
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr("registry: check domains", err)
		}
	}
	for start := 0; start < len(r.Tokens); start += registryRowsPerInsert {
		batch := r.Tokens[start:min(len(r.Tokens), start+registryRowsPerInsert)]
		args := []any{r.TenantID}
		for _, t := range batch {
			args = append(args, t.Hash[:])
		}
		var h []byte
		var owner string
		err := q.QueryRowContext(ctx, s.r.sql("SELECT hash, tenant_id FROM {p}registry_tokens WHERE hash IN "+placeholders(2, 1, len(batch))+" AND tenant_id <> $1 ORDER BY hash LIMIT 1"), args...).Scan(&h, &owner)
		if err == nil {
			return fmt.Errorf("sqlstore: %w", &provision.ConflictError{Field: "tokenHash", Value: hex.EncodeToString(h), ExistingID: owner})
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr("registry: check token hashes", err)
		}
	}
	return nil
}

// unindexTenant removes the tenant's domain and token hash entries.
func (s *Store) unindexTenant(ctx context.Context, q Querier, tenantID string) error {
	if _, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}registry_domains WHERE tenant_id = $1"), tenantID); err != nil {
		return mapErr("registry: remove domains", err)
	}
	if _, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}registry_tokens WHERE tenant_id = $1"), tenantID); err != nil {
		return mapErr("registry: remove token hashes", err)
	}
	return nil
}

// indexTenant inserts r's domain and token hash entries.
func (s *Store) indexTenant(ctx context.Context, q Querier, r provision.TenantRecord) error {
	for start := 0; start < len(r.Domains); start += registryRowsPerInsert {
		batch := r.Domains[start:min(len(r.Domains), start+registryRowsPerInsert)]
		args := make([]any, 0, 2*len(batch))
		for _, d := range batch {
			args = append(args, d, r.TenantID)
		}
		if _, err := q.ExecContext(ctx, s.r.sql("INSERT INTO {p}registry_domains (domain, tenant_id) VALUES "+placeholders(1, len(batch), 2)), args...); err != nil {
			return mapErr("registry: add domains", err)
		}
	}
	for start := 0; start < len(r.Tokens); start += registryRowsPerInsert {
		batch := r.Tokens[start:min(len(r.Tokens), start+registryRowsPerInsert)]
		args := make([]any, 0, 3*len(batch))
		for _, t := range batch {
			args = append(args, t.Hash[:], r.TenantID, t.ConnectionID)
		}
		if _, err := q.ExecContext(ctx, s.r.sql("INSERT INTO {p}registry_tokens (hash, tenant_id, connection_id) VALUES "+placeholders(1, len(batch), 3)), args...); err != nil {
			return mapErr("registry: add token hashes", err)
		}
	}
	return nil
}

// DeleteTenantRecord implements provision.Registry. The tenant's row
// stays as a tombstone (its body emptied) holding the Rev of the
// deletion, so that followers see it in RegistryChanges.
func (s *Store) DeleteTenantRecord(ctx context.Context, tenantID string, expectedVersion int64) error {
	return s.registryWrite(ctx, tenantID, func(q Querier, rev int64) error {
		version, live, err := s.currentRecord(ctx, q, tenantID)
		switch {
		case err != nil:
			return err
		case !live:
			return notFound("tenant record", tenantID)
		case version != expectedVersion:
			return fmt.Errorf("sqlstore: tenant record %q is at version %d, not %d: %w", tenantID, version, expectedVersion, provision.ErrVersionConflict)
		}
		_, err = q.ExecContext(ctx, s.r.sql(`UPDATE {p}registry_tenants SET rev = $2, deleted = $3, modified = $4, body = $5, domains = '[]', tokens = '[]'
			WHERE tenant_id = $1`), tenantID, rev, true, s.r.ts(s.r.now()), []byte{})
		if err != nil {
			return mapErr("delete tenant record", err)
		}
		return s.unindexTenant(ctx, q, tenantID)
	})
}

// registryConflictField names the field of a unique violation of a
// registry table, "" for another table.
func registryConflictField(msg string) string {
	switch {
	case strings.Contains(msg, "registry_domains"):
		return "domain"
	case strings.Contains(msg, "registry_tokens"):
		return "tokenHash"
	}
	return ""
}

// RegistryRev implements provision.Registry: the counter row.
func (s *Store) RegistryRev(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT rev FROM {p}registry_rev WHERE id = 1")).Scan(&rev); err != nil {
		return 0, mapErr("registry rev", err)
	}
	return rev, nil
}
