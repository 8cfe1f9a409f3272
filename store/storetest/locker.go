package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func tryLock(t *testing.T, l provision.Locker, tenant, name string) func() {
	t.Helper()
	_, release := tryLockCtx(t, t.Context(), l, tenant, name)
	return release
}

// tryLockCtx takes a free lock under ctx and checks held: live, derived
// from ctx.
func tryLockCtx(t *testing.T, ctx context.Context, l provision.Locker, tenant, name string) (context.Context, func()) {
	t.Helper()
	held, release, err := l.TryLock(ctx, tenant, name)
	if err != nil {
		t.Fatalf("TryLock(%s, %s) of a free lock: %v", tenant, name, err)
	}
	if release == nil || held == nil {
		t.Fatalf("TryLock(%s, %s) returned a nil held context or release func", tenant, name)
	}
	if err := held.Err(); err != nil {
		release()
		t.Fatalf("TryLock(%s, %s): held ended at once: %v (cause %v)", tenant, name, err, context.Cause(held))
	}
	return held, release
}

// wantEnded waits a little for held to end: release must cancel it
// before returning, ctx's end reaches it at once or nearly.
func wantEnded(t *testing.T, held context.Context, what string) {
	t.Helper()
	select {
	case <-held.Done():
	case <-time.After(time.Second):
		t.Fatalf("held still live a second after %s", what)
	}
	if held.Err() == nil {
		t.Fatalf("held's Done is closed after %s but Err is nil", what)
	}
}

func wantLocked(t *testing.T, l provision.Locker, tenant, name string) {
	t.Helper()
	_, release, err := l.TryLock(t.Context(), tenant, name)
	if !errors.Is(err, provision.ErrLocked) {
		t.Errorf("TryLock(%s, %s) of a held lock: %v, want ErrLocked", tenant, name, err)
		if err == nil && release != nil {
			release()
		}
	}
}

func testLocker(t *testing.T, s *suite) {
	t.Run("Exclusion", func(t *testing.T) {
		l := s.locker(t)
		release := tryLock(t, l, tenantA, "ldap-sync")
		wantLocked(t, l, tenantA, "ldap-sync")
		wantLocked(t, l, tenantA, "ldap-sync")
		release()
		release = tryLock(t, l, tenantA, "ldap-sync")
		release()
	})

	t.Run("Independent", func(t *testing.T) {
		l := s.locker(t)
		r1 := tryLock(t, l, tenantA, "ldap-sync")
		r2 := tryLock(t, l, tenantA, "consumer/webhooks")
		r3 := tryLock(t, l, tenantB, "ldap-sync")
		wantLocked(t, l, tenantA, "consumer/webhooks")
		wantLocked(t, l, tenantB, "ldap-sync")
		r1()
		wantLocked(t, l, tenantA, "consumer/webhooks")
		wantLocked(t, l, tenantB, "ldap-sync")
		r4 := tryLock(t, l, tenantA, "ldap-sync")
		r2()
		r3()
		r4()
	})

	t.Run("ReleaseTwice", func(t *testing.T) {
		// A release func frees its own holding only: called again, after
		// someone else took the lock, it must not free theirs.
		l := s.locker(t)
		first := tryLock(t, l, tenantA, "ldap-sync")
		first()
		second := tryLock(t, l, tenantA, "ldap-sync")
		first()
		wantLocked(t, l, tenantA, "ldap-sync")
		second()
	})

	t.Run("HeldEndsOnRelease", func(t *testing.T) {
		// held is cancelled when release returns, and not before; the
		// cause of a release is not a loss.
		l := s.locker(t)
		type key struct{}
		ctx := context.WithValue(t.Context(), key{}, "v")
		held, release := tryLockCtx(t, ctx, l, tenantA, "ldap-sync")
		if held.Value(key{}) != "v" {
			t.Errorf("held does not carry ctx's values")
		}
		other, releaseOther := tryLockCtx(t, ctx, l, tenantB, "ldap-sync")
		select {
		case <-held.Done():
			t.Fatalf("held ended while the lock is held: %v", context.Cause(held))
		case <-time.After(50 * time.Millisecond):
		}
		release()
		if held.Err() == nil {
			t.Fatal("held still live when release returned")
		}
		if errors.Is(context.Cause(held), provision.ErrLockLost) {
			t.Errorf("cause of a released lock's held: %v, want no ErrLockLost", context.Cause(held))
		}
		release()
		if other.Err() != nil {
			t.Errorf("releasing one lock ended another's held: %v", context.Cause(other))
		}
		releaseOther()
		wantEnded(t, other, "its release")
	})

	t.Run("HeldEndsWithCtx", func(t *testing.T) {
		// held is derived from ctx: ctx's end ends it, and the lock
		// stays held until release.
		l := s.locker(t)
		ctx, cancel := context.WithCancel(t.Context())
		held, release := tryLockCtx(t, ctx, l, tenantA, "ldap-sync")
		cancel()
		wantEnded(t, held, "ctx ended")
		wantLocked(t, l, tenantA, "ldap-sync")
		release()
		tryLock(t, l, tenantA, "ldap-sync")()
	})

	t.Run("Concurrent", func(t *testing.T) {
		l := s.locker(t)
		for range 10 {
			releases := make([]func(), workers)
			errs := make([]error, workers)
			together(workers, func(w int) {
				_, releases[w], errs[w] = l.TryLock(t.Context(), tenantA, "ldap-sync")
			})
			wins := 0
			for w := range workers {
				switch {
				case errs[w] == nil:
					wins++
				case !errors.Is(errs[w], provision.ErrLocked):
					t.Errorf("TryLock: %v, want nil or ErrLocked", errs[w])
				}
			}
			if wins != 1 {
				t.Fatalf("%d concurrent TryLock of one free lock: %d won, want exactly 1", workers, wins)
			}
			for w := range workers {
				if errs[w] == nil {
					releases[w]()
				}
			}
		}
	})
}
