package storetest

import (
	"errors"
	"testing"

	"github.com/idprov/idprov/provision"
)

func tryLock(t *testing.T, l provision.Locker, tenant, name string) func() {
	t.Helper()
	release, err := l.TryLock(t.Context(), tenant, name)
	if err != nil {
		t.Fatalf("TryLock(%s, %s) of a free lock: %v", tenant, name, err)
	}
	if release == nil {
		t.Fatalf("TryLock(%s, %s) returned a nil release func", tenant, name)
	}
	return release
}

func wantLocked(t *testing.T, l provision.Locker, tenant, name string) {
	t.Helper()
	release, err := l.TryLock(t.Context(), tenant, name)
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

	t.Run("Concurrent", func(t *testing.T) {
		l := s.locker(t)
		for range 10 {
			releases := make([]func(), workers)
			errs := make([]error, workers)
			together(workers, func(w int) {
				releases[w], errs[w] = l.TryLock(t.Context(), tenantA, "ldap-sync")
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
