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
// uses one connection of the pool; size SetMaxOpenConns accordingly. The
// server frees the lock as soon as that session ends, without telling
// the holder: a goroutine checks every min(LockTTL/3, 5s) that the
// session still holds it, and cancels held (cause provision.ErrLockLost)
// when it does not or the check fails. So a loss is seen within that
// interval (plus the check's timeout, the same); SetCursor with held (or
// a context derived from it) runs on the lock's own session, so it never
// stores a cursor once the lock is gone.
//
// On SQLite it writes a row with an owner token and a lease of
// Config.LockTTL, renewed in the background every LockTTL/3 until
// release; a holder that died loses the lock when the lease runs out.
// held is cancelled (cause provision.ErrLockLost) when a renewal finds
// the row gone, taken or expired, and when no renewal succeeded for
// 3/4 of LockTTL, before any other holder can take the lease; after a
// loss the lease is not renewed again. Every write transaction of this
// Store whose context carries held (or derives from it, through
// context.WithoutCancel too) checks in the transaction, under SQLite's
// write lock, that the lease is still this holder's and unexpired, and
// fails with provision.ErrLockLost, writing nothing, otherwise: cursors,
// failure records and a sync's changes are fenced.
func (s *Store) TryLock(ctx context.Context, tenantID, name string) (held context.Context, release func(), err error) {
	if s.r.d == Postgres {
		return s.r.tryAdvisoryLock(ctx, tenantID, name)
	}
	return s.tryLeaseLock(ctx, tenantID, name)
}

// fenceKey is the context key of the innermost fence of a held context.
type fenceKey struct{}

// fence is what a held context carries so that the store's writes made
// with it check the lock: a SQLite lease (owner) or a PostgreSQL session
// (pg).
type fence struct {
	r              *root
	tenantID, name string
	owner          string  // SQLite: the lease row's owner token
	pg             *pgHold // PostgreSQL: the lock's session
	// lost cancels the holding's held with cause.
	lost   func(cause error)
	parent *fence
}

func withFence(ctx context.Context, f *fence) context.Context {
	f.parent, _ = ctx.Value(fenceKey{}).(*fence)
	return context.WithValue(ctx, fenceKey{}, f)
}

// fences returns the fences of r that ctx carries, innermost first.
func (r *root) fences(ctx context.Context) []*fence {
	var out []*fence
	f, _ := ctx.Value(fenceKey{}).(*fence)
	for ; f != nil; f = f.parent {
		if f.r == r {
			out = append(out, f)
		}
	}
	return out
}

func lostError(tenantID, name, why string) error {
	return fmt.Errorf("sqlstore: lock %q of tenant %q: %w: %s", name, tenantID, provision.ErrLockLost, why)
}

// checkLeases runs in a SQLite write transaction, under the database's
// write lock: it fails with ErrLockLost unless every lease fence of ctx is
// still its holder's and unexpired. No other holder can take a lease
// before this transaction ends, so what it writes is fenced.
func (r *root) checkLeases(ctx context.Context, q Querier) error {
	for _, f := range r.fences(ctx) {
		if f.owner == "" {
			continue
		}
		var one int
		err := q.QueryRowContext(ctx, r.sql("SELECT 1 FROM {p}locks WHERE tenant_id = $1 AND name = $2 AND owner = $3 AND expires > $4"),
			f.tenantID, f.name, f.owner, r.ts(r.now())).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			lost := lostError(f.tenantID, f.name, "the lease is gone, expired or another holder's (fenced write refused)")
			f.lost(lost)
			return lost
		}
		if err != nil {
			return mapErr("check lock", err)
		}
	}
	return nil
}

// pgHold is the session holding a PostgreSQL advisory lock. mu
// serializes the statements run on it: the liveness check and fenced
// writes.
type pgHold struct {
	mu   sync.Mutex
	conn *sql.Conn
}

// pgCheckInterval is how often a PostgreSQL lock's session is checked.
func (r *root) pgCheckInterval() time.Duration {
	return min(r.lockTTL/3, 5*time.Second)
}

func (r *root) tryAdvisoryLock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return nil, nil, mapErr("lock", err)
	}
	key := lockKey(r.prefix, tenantID, name)
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Close()
		return nil, nil, mapErr("lock", err)
	}
	if !ok {
		conn.Close()
		return nil, nil, fmt.Errorf("sqlstore: lock %q of tenant %q: %w", name, tenantID, provision.ErrLocked)
	}
	h := &pgHold{conn: conn}
	held, cancel := context.WithCancelCause(ctx)
	var lostOnce sync.Once
	lost := func(cause error) {
		lostOnce.Do(func() {
			r.log.Warn("sqlstore: lock lost", "tenant", tenantID, "lock", name, "err", cause)
			cancel(cause)
		})
	}
	held = withFence(held, &fence{r: r, tenantID: tenantID, name: name, pg: h, lost: lost})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := r.pgCheckInterval()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			h.mu.Lock()
			ctx, cancelCheck := context.WithTimeout(context.Background(), every)
			var mine bool
			err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND pid = pg_backend_pid() AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1)`, key).Scan(&mine)
			cancelCheck()
			h.mu.Unlock()
			switch {
			case err != nil:
				lost(lostError(tenantID, name, "the lock's session failed its check: "+err.Error()))
				return
			case !mine:
				lost(lostError(tenantID, name, "the lock's session no longer holds it"))
				return
			}
		}
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel(context.Canceled)
			close(stop)
			<-done
			h.mu.Lock()
			defer h.mu.Unlock()
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

// pgFenced runs fn, one autocommit statement, on the session of the
// innermost PostgreSQL lock that ctx holds on this store, if any, and
// reports whether it did. While that session lives the lock is held, so
// the statement commits only under the lock; a failure of the statement
// there is taken as the lock's loss.
func (s *Store) pgFenced(ctx context.Context, fn func(q Querier) error) (bool, error) {
	if s.inTx || s.r.d != Postgres {
		return false, nil
	}
	var f *fence
	for _, g := range s.r.fences(ctx) {
		if g.pg != nil {
			f = g
			break
		}
	}
	if f == nil {
		return false, nil
	}
	f.pg.mu.Lock()
	defer f.pg.mu.Unlock()
	if err := fn(f.pg.conn); err != nil {
		if errors.Is(err, sql.ErrConnDone) || ctx.Err() == nil {
			lost := lostError(f.tenantID, f.name, "a fenced write on the lock's session failed: "+err.Error())
			f.lost(lost)
			return true, lost
		}
		return true, lockLostErr(ctx, err)
	}
	return true, nil
}

// leaseMargin is how long before a lease could lapse its holder gives it
// up: held ends when no renewal succeeded for LockTTL-leaseMargin.
func leaseMargin(ttl time.Duration) time.Duration { return ttl / 4 }

func (s *Store) tryLeaseLock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	r := s.r
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	owner := hex.EncodeToString(tok[:])
	ttl := r.lockTTL
	// The holder's deadline is measured on its monotonic clock from before
	// each write, so it is never later than the lease the write stored.
	start := time.Now()
	var got string
	err := s.write(ctx, func(q Querier) error {
		now := r.now()
		return q.QueryRowContext(ctx, r.sql(`INSERT INTO {p}locks (tenant_id, name, owner, expires) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
			WHERE {p}locks.expires <= $5 RETURNING owner`),
			tenantID, name, owner, r.ts(now.Add(ttl)), r.ts(now)).Scan(&got)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("sqlstore: lock %q of tenant %q: %w", name, tenantID, provision.ErrLocked)
	}
	if err != nil {
		return nil, nil, mapErr("lock", err)
	}
	rootStore := &Store{r: r, q: r.db}

	held, cancel := context.WithCancelCause(ctx)
	var mu sync.Mutex
	lostFlag := false
	lost := func(cause error) {
		mu.Lock()
		first := !lostFlag
		lostFlag = true
		mu.Unlock()
		if first {
			r.log.Warn("sqlstore: lock lost", "tenant", tenantID, "lock", name, "err", cause)
			cancel(cause)
		}
	}
	isLost := func() bool { mu.Lock(); defer mu.Unlock(); return lostFlag }
	held = withFence(held, &fence{r: r, tenantID: tenantID, name: name, owner: owner, lost: lost})
	giveUp := func() time.Duration { return ttl - leaseMargin(ttl) }
	deadline := time.AfterFunc(giveUp()-time.Since(start), func() {
		lost(lostError(tenantID, name, fmt.Sprintf("the lease was not renewed within %v of its %v", giveUp(), ttl)))
	})

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := start // start of the last successful renewal
		next := ttl / 3
		t := time.NewTimer(next)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if r.renewHook != nil {
				r.renewHook(tenantID, name)
			}
			if isLost() {
				return // never renew, or take back, a lost lease
			}
			begin := time.Now()
			remaining := giveUp() - begin.Sub(last)
			if remaining <= 0 {
				lost(lostError(tenantID, name, "the lease could have lapsed before it was renewed"))
				return
			}
			rctx, rcancel := context.WithTimeout(context.Background(), remaining)
			var n int64
			err := rootStore.write(rctx, func(q Querier) error {
				now := r.now()
				res, err := q.ExecContext(rctx, r.sql(`UPDATE {p}locks SET expires = $4
					WHERE tenant_id = $1 AND name = $2 AND owner = $3 AND expires > $5`),
					tenantID, name, owner, r.ts(now.Add(ttl)), r.ts(now))
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			rcancel()
			switch {
			case err == nil && n == 0:
				lost(lostError(tenantID, name, "the lease expired or another holder took it"))
				return
			case err != nil:
				// Retry soon: held ends at the deadline if no renewal
				// gets through by then.
				r.log.Warn("sqlstore: renewing a lock lease failed; retrying", "tenant", tenantID, "lock", name, "err", err)
				next = max(ttl/20, time.Millisecond)
			default:
				mu.Lock()
				if !lostFlag {
					// This renewal's lease runs from before begin.
					last = begin
					deadline.Reset(giveUp() - time.Since(last))
				}
				mu.Unlock()
				next = max(ttl/3-time.Since(begin), 0)
			}
			t.Reset(next)
		}
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel(context.Canceled)
			close(stop)
			<-done
			deadline.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := rootStore.write(ctx, func(q Querier) error {
				_, err := q.ExecContext(ctx, r.sql("DELETE FROM {p}locks WHERE tenant_id = $1 AND name = $2 AND owner = $3"), tenantID, name, owner)
				return err
			})
			if err != nil {
				r.log.Warn("sqlstore: releasing a lock failed; it expires with its lease", "tenant", tenantID, "lock", name, "err", err)
			}
		})
	}, nil
}
