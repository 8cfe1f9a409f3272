package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/idprov/idprov/provision"
)

// kvSweepEvery is how many KV writes of the store pass between sweeps of
// a tenant's expired keys.
const kvSweepEvery = 256

// KVGet implements provision.KV.
func (s *Store) KVGet(ctx context.Context, tenantID, key string) ([]byte, error) {
	var v []byte
	err := s.q.QueryRowContext(ctx, s.r.sql("SELECT value FROM {p}kv WHERE tenant_id = $1 AND key = $2 AND (expires IS NULL OR expires > $3)"),
		tenantID, key, s.r.ts(s.r.now())).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlstore: key %q: %w", key, provision.ErrNotFound)
	}
	if err != nil {
		return nil, mapErr("kv get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (s *Store) expiry(ttl time.Duration) any {
	if ttl <= 0 {
		return nil
	}
	return s.r.ts(s.r.now().Add(ttl))
}

func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// KVSet implements provision.KV.
func (s *Store) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	err := s.writeOne(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, s.r.sql(`INSERT INTO {p}kv (tenant_id, key, value, expires) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, expires = excluded.expires`),
			tenantID, key, nonNil(value), s.expiry(ttl))
		return mapErr("kv set", err)
	})
	if err == nil {
		s.maybeSweep(ctx, tenantID)
	}
	return err
}

// KVInsert implements provision.KV: one INSERT ... ON CONFLICT DO UPDATE
// that replaces only an expired value, so concurrent inserts of one key
// (the SAML replay cache on several replicas) let exactly one win.
func (s *Store) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error) {
	var ok bool
	err := s.writeOne(ctx, func(q Querier) error {
		var one int
		err := q.QueryRowContext(ctx, s.r.sql(`INSERT INTO {p}kv (tenant_id, key, value, expires) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
			WHERE {p}kv.expires IS NOT NULL AND {p}kv.expires <= $5 RETURNING 1`),
			tenantID, key, nonNil(value), s.expiry(ttl), s.r.ts(s.r.now())).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			ok = false
			return nil
		case err != nil:
			return mapErr("kv insert", err)
		}
		ok = true
		return nil
	})
	if err == nil && ok {
		s.maybeSweep(ctx, tenantID)
	}
	return ok, err
}

// KVDelete implements provision.KV.
func (s *Store) KVDelete(ctx context.Context, tenantID, key string) error {
	return s.writeOne(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}kv WHERE tenant_id = $1 AND key = $2"), tenantID, key)
		return mapErr("kv delete", err)
	})
}

// maybeSweep removes the tenant's expired keys every kvSweepEvery writes,
// so a replay cache does not grow without bound. Outside transactions
// only; failures are logged.
func (s *Store) maybeSweep(ctx context.Context, tenantID string) {
	if s.inTx || s.r.kvWrites.Add(1)%kvSweepEvery != 0 {
		return
	}
	if _, err := s.PurgeExpiredKV(ctx, tenantID); err != nil {
		s.r.log.WarnContext(ctx, "sqlstore: sweeping expired keys failed", "tenant", tenantID, "err", err)
	}
}

// PurgeExpiredKV removes the tenant's expired KV entries and returns how
// many it removed. The store also does it every few hundred KV writes.
func (s *Store) PurgeExpiredKV(ctx context.Context, tenantID string) (int, error) {
	var n int64
	err := s.writeOne(ctx, func(q Querier) error {
		res, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}kv WHERE tenant_id = $1 AND expires IS NOT NULL AND expires <= $2"), tenantID, s.r.ts(s.r.now()))
		if err != nil {
			return mapErr("kv purge", err)
		}
		n, err = res.RowsAffected()
		return mapErr("kv purge", err)
	})
	return int(n), err
}
