package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// twoSQLite returns two stores on one SQLite file, through two pools (as
// two processes would), with lease ttl.
func twoSQLite(t *testing.T, ttl time.Duration) (a, b *Store) {
	t.Helper()
	db, path := openSQLiteDB(t)
	a = migrated(t, db, Config{Dialect: SQLite, LockTTL: ttl})
	db2, err := sql.Open("sqlite", fastSQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	b = migrated(t, db2, Config{Dialect: SQLite, LockTTL: ttl})
	return a, b
}

// TestLeaseLostWhenNotRenewed stalls a holder's renewals: its held must end
// (ErrLockLost) before its lease lapses, so before the other replica can
// take the lock; the stalled holder never renews afterwards, and its
// fenced writes are refused.
func TestLeaseLostWhenNotRenewed(t *testing.T) {
	const ttl = 300 * time.Millisecond
	a, b := twoSQLite(t, ttl)
	var stall atomic.Bool
	unstall := make(chan struct{})
	a.r.renewHook = func(string, string) {
		if stall.Load() {
			<-unstall
		}
	}
	ctx := t.Context()
	start := time.Now()
	held, release, err := a.TryLock(ctx, "t1", "consumer:c")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := a.SetCursor(held, "t1", "c", 1); err != nil {
		t.Fatalf("fenced SetCursor while holding: %v", err)
	}
	// Renewals keep it alive across several TTLs.
	time.Sleep(3 * ttl)
	if held.Err() != nil {
		t.Fatalf("held ended while renewals get through: %v", context.Cause(held))
	}
	if _, _, err := b.TryLock(ctx, "t1", "consumer:c"); !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("other replica's TryLock while held: %v, want ErrLocked", err)
	}

	stall.Store(true)
	stalledAt := time.Now()
	var lostAt time.Time
	select {
	case <-held.Done():
		lostAt = time.Now()
	case <-time.After(2 * ttl):
		t.Fatalf("held still live %v after renewals stopped (started %v ago)", 2*ttl, time.Since(start))
	}
	if !errors.Is(context.Cause(held), provision.ErrLockLost) {
		t.Fatalf("cause: %v, want ErrLockLost", context.Cause(held))
	}
	if d := lostAt.Sub(stalledAt); d > ttl {
		t.Errorf("held ended %v after renewals stopped, later than the %v lease", d, ttl)
	}
	// The other replica gets the lock once the lease lapsed, not before
	// a held was cancelled.
	var heldB context.Context
	var releaseB func()
	deadline := time.Now().Add(5 * ttl)
	for {
		heldB, releaseB, err = b.TryLock(ctx, "t1", "consumer:c")
		if err == nil {
			break
		}
		if !errors.Is(err, provision.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("other replica's TryLock after the lease: %v", err)
		}
		time.Sleep(ttl / 20)
	}
	defer releaseB()
	if tookAt := time.Now(); tookAt.Before(lostAt) {
		t.Fatalf("the other replica took the lock at %v, before the old holder's held ended at %v", tookAt, lostAt)
	}
	// Let the stalled renewer run: it must not renew (or take back) the
	// lost lease, and the old holder's fenced write is refused.
	close(unstall)
	stall.Store(false)
	time.Sleep(ttl / 2)
	if err := a.SetCursor(held, "t1", "c", 2); !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("old holder's SetCursor after the loss: %v, want ErrLockLost", err)
	}
	if err := a.SetCursor(context.WithoutCancel(held), "t1", "c", 2); !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("old holder's SetCursor (WithoutCancel) after the loss: %v, want ErrLockLost", err)
	}
	if err := b.SetCursor(heldB, "t1", "c", 3); err != nil {
		t.Fatalf("new holder's SetCursor: %v", err)
	}
	if got, _ := b.Cursor(ctx, "t1", "c"); got != 3 {
		t.Fatalf("cursor %d, want 3", got)
	}
	time.Sleep(ttl)
	if heldB.Err() != nil {
		t.Fatalf("new holder's held ended: %v", context.Cause(heldB))
	}
	// The old holder's late release does not free the new holder's lock.
	release()
	if _, _, err := a.TryLock(ctx, "t1", "consumer:c"); !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("TryLock after the old holder's release: %v, want ErrLocked", err)
	}
}

// TestLeaseLostWhenStolen: a renewal that finds another owner in the row
// ends held at once.
func TestLeaseLostWhenStolen(t *testing.T) {
	const ttl = 300 * time.Millisecond
	s := newSQLite(t, Config{LockTTL: ttl})
	held, release, err := s.TryLock(t.Context(), "t1", "x")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := s.r.db.Exec(s.r.sql("UPDATE {p}locks SET owner = 'someone-else' WHERE tenant_id = 't1' AND name = 'x'")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(ttl):
		t.Fatal("held still live a TTL after the lease was taken")
	}
	if !errors.Is(context.Cause(held), provision.ErrLockLost) {
		t.Fatalf("cause: %v, want ErrLockLost", context.Cause(held))
	}
	var owner string
	if err := s.r.db.QueryRow(s.r.sql("SELECT owner FROM {p}locks WHERE tenant_id = 't1' AND name = 'x'")).Scan(&owner); err != nil || owner != "someone-else" {
		t.Fatalf("lock row owner %q (%v), want the thief's", owner, err)
	}
}

// TestFencedWritesOnSQLite: every write transaction made with held checks
// the lease, Atomically and KV included, and writes nothing once it is
// gone.
func TestFencedWritesOnSQLite(t *testing.T) {
	s := newSQLite(t, Config{LockTTL: time.Hour})
	held, release, err := s.TryLock(t.Context(), "t1", "x")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := s.KVSet(held, "t1", "k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.r.db.Exec(s.r.sql("DELETE FROM {p}locks")); err != nil {
		t.Fatal(err)
	}
	if err := s.KVSet(held, "t1", "k", []byte("2"), 0); !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("KVSet after the loss: %v, want ErrLockLost", err)
	}
	err = s.Atomically(held, func(ctx context.Context, tx provision.Store) error {
		t.Error("Atomically ran its function after the loss")
		return nil
	})
	if !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("Atomically after the loss: %v, want ErrLockLost", err)
	}
	if v, _ := s.KVGet(t.Context(), "t1", "k"); string(v) != "1" {
		t.Fatalf("KV %q, want the value written before the loss", v)
	}
	if !errors.Is(context.Cause(held), provision.ErrLockLost) {
		t.Fatalf("held's cause after a refused fenced write: %v, want ErrLockLost", context.Cause(held))
	}
	// Writes without held are not fenced.
	if err := s.KVSet(t.Context(), "t1", "k", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestAdvisoryLockLostWhenSessionDies terminates the PostgreSQL session
// holding an advisory lock: held must end (ErrLockLost) within the check
// interval, and a fenced SetCursor must fail rather than store the cursor
// once another replica may hold the lock.
func TestAdvisoryLockLostWhenSessionDies(t *testing.T) {
	postgresDSN(t)
	s := newPostgres(t, Config{LockTTL: 300 * time.Millisecond}) // checks every 100ms
	ctx := t.Context()
	held, release, err := s.TryLock(ctx, "t1", "consumer:c")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := s.SetCursor(held, "t1", "c", 1); err != nil {
		t.Fatalf("fenced SetCursor while holding: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if held.Err() != nil {
		t.Fatalf("held ended while the session lives: %v", context.Cause(held))
	}
	key := lockKey(s.r.prefix, "t1", "consumer:c")
	var killed bool
	err = s.r.db.QueryRowContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`, key).Scan(&killed)
	if err != nil || !killed {
		t.Fatalf("terminating the lock's session: %v %v", killed, err)
	}
	// Another replica may take it as soon as the server ended the
	// session.
	var releaseB func()
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, releaseB, err = s.TryLock(ctx, "t1", "consumer:c")
		if err == nil {
			break
		}
		if !errors.Is(err, provision.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("TryLock after the holder's session ended: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer releaseB()
	if err := s.SetCursor(context.WithoutCancel(held), "t1", "c", 2); !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("old holder's fenced SetCursor: %v, want ErrLockLost", err)
	}
	select {
	case <-held.Done():
	case <-time.After(time.Second):
		t.Fatal("held still live a second after the lock's session ended")
	}
	if !errors.Is(context.Cause(held), provision.ErrLockLost) {
		t.Fatalf("cause: %v, want ErrLockLost", context.Cause(held))
	}
	if got, _ := s.Cursor(ctx, "t1", "c"); got != 1 {
		t.Fatalf("cursor %d, want 1 (the old holder's late write refused)", got)
	}
}

// TestAdvisoryLockCheckNoticesLoss: without any write, the periodic check
// ends held when the session dies.
func TestAdvisoryLockCheckNoticesLoss(t *testing.T) {
	postgresDSN(t)
	s := newPostgres(t, Config{LockTTL: 300 * time.Millisecond})
	held, release, err := s.TryLock(t.Context(), "t1", "x")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	key := lockKey(s.r.prefix, "t1", "x")
	if _, err := s.r.db.ExecContext(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`, key); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(time.Second):
		t.Fatal("held still live a second after the lock's session ended")
	}
	if !errors.Is(context.Cause(held), provision.ErrLockLost) {
		t.Fatalf("cause: %v, want ErrLockLost", context.Cause(held))
	}
}
