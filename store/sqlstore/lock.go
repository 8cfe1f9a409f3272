package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

// TryLock implements provision.Locker.
//
// On PostgreSQL it takes a session advisory lock, pg_try_advisory_lock on
// a 64-bit hash of (prefix, tenant, name), on a connection taken from the
// pool and held until release: the server frees the lock when that
// connection ends, so a holder that dies never keeps it. Every held lock
// uses one connection of the pool; size SetMaxOpenConns accordingly.
//
// On SQLite it writes a row with an owner token and a lease of
// Config.LockTTL, renewed in the background every LockTTL/3 until
// release; a holder that died loses the lock when the lease runs out.
func (s *Store) TryLock(ctx context.Context, tenantID, name string) (func(), error) {
	if s.r.d == Postgres {
		return s.r.tryAdvisoryLock(ctx, tenantID, name)
	}
	return s.tryLeaseLock(ctx, tenantID, name)
}

func (r *root) tryAdvisoryLock(ctx context.Context, tenantID, name string) (func(), error) {
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return nil, mapErr("lock", err)
	}
	key := lockKey(r.prefix, tenantID, name)
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Close()
		return nil, mapErr("lock", err)
	}
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlstore: lock %q of tenant %q: %w", name, tenantID, provision.ErrLocked)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var released bool
			if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", key).Scan(&released); err != nil || !released {
				// The session may still hold the lock: end it.
				r.log.Warn("sqlstore: advisory unlock failed; closing the connection", "tenant", tenantID, "lock", name, "err", err)
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			conn.Close()
		})
	}, nil
}

func (s *Store) tryLeaseLock(ctx context.Context, tenantID, name string) (func(), error) {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	owner := hex.EncodeToString(tok[:])
	take := func(ctx context.Context, st *Store) (bool, error) {
		var got string
		now := st.r.now()
		err := st.write(ctx, func(q Querier) error {
			return q.QueryRowContext(ctx, st.r.sql(`INSERT INTO {p}locks (tenant_id, name, owner, expires) VALUES ($1, $2, $3, $4)
				ON CONFLICT (tenant_id, name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
				WHERE {p}locks.expires <= $5 OR {p}locks.owner = $3 RETURNING owner`),
				tenantID, name, owner, st.r.ts(now.Add(st.r.lockTTL)), st.r.ts(now)).Scan(&got)
		})
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		return err == nil, mapErr("lock", err)
	}
	ok, err := take(ctx, s)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("sqlstore: lock %q of tenant %q: %w", name, tenantID, provision.ErrLocked)
	}
	rootStore := &Store{r: s.r, q: s.r.db}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.r.lockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), s.r.lockTTL/3)
				ok, err := take(ctx, rootStore)
				cancel()
				if err != nil || !ok {
					s.r.log.Warn("sqlstore: renewing a lock lease failed", "tenant", tenantID, "lock", name, "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := rootStore.write(ctx, func(q Querier) error {
				_, err := q.ExecContext(ctx, s.r.sql("DELETE FROM {p}locks WHERE tenant_id = $1 AND name = $2 AND owner = $3"), tenantID, name, owner)
				return err
			})
			if err != nil {
				s.r.log.Warn("sqlstore: releasing a lock failed; it expires with its lease", "tenant", tenantID, "lock", name, "err", err)
			}
		})
	}, nil
}
