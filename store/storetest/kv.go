package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// kvTTL is the shortest expiry the suite waits for; kvWait bounds the wait
// (a store may check expiry coarsely, or in a database with its own clock).
const (
	kvTTL  = time.Second
	kvWait = 3 * time.Second
)

func kvWant(t *testing.T, kv provision.KV, tenant, key, want string) {
	t.Helper()
	got, err := kv.KVGet(t.Context(), tenant, key)
	if err != nil || string(got) != want {
		t.Errorf("KVGet(%s, %s) = %q, %v; want %q", tenant, key, got, err, want)
	}
}

func kvAbsent(t *testing.T, kv provision.KV, tenant, key string) {
	t.Helper()
	got, err := kv.KVGet(t.Context(), tenant, key)
	if !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("KVGet(%s, %s) = %q, %v; want ErrNotFound", tenant, key, got, err)
	}
}

func testKV(t *testing.T, s *suite) {
	t.Run("SetGetDelete", func(t *testing.T) {
		_, kv := s.kv(t)
		ctx := t.Context()
		kvAbsent(t, kv, tenantA, "saml/replay/id-1")
		must(t, kv.KVSet(ctx, tenantA, "saml/replay/id-1", []byte("one"), 0), "KVSet")
		kvWant(t, kv, tenantA, "saml/replay/id-1", "one")
		must(t, kv.KVSet(ctx, tenantA, "saml/replay/id-1", []byte("two"), time.Hour), "KVSet over a value")
		kvWant(t, kv, tenantA, "saml/replay/id-1", "two")
		must(t, kv.KVSet(ctx, tenantA, "binary", []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}, 0), "KVSet binary")
		kvWant(t, kv, tenantA, "binary", "\x00\x01\x02\xff\xfe\n\x00")
		must(t, kv.KVSet(ctx, tenantA, "empty", []byte{}, 0), "KVSet empty")
		kvWant(t, kv, tenantA, "empty", "")
		kvAbsent(t, kv, tenantA, "SAML/REPLAY/ID-1")
		must(t, kv.KVDelete(ctx, tenantA, "saml/replay/id-1"), "KVDelete")
		kvAbsent(t, kv, tenantA, "saml/replay/id-1")
		if err := kv.KVDelete(ctx, tenantA, "saml/replay/id-1"); err != nil {
			t.Errorf("KVDelete of a missing key: %v, want nil", err)
		}
		kvWant(t, kv, tenantA, "binary", "\x00\x01\x02\xff\xfe\n\x00")
	})

	t.Run("Insert", func(t *testing.T) {
		_, kv := s.kv(t)
		ctx := t.Context()
		ok, err := kv.KVInsert(ctx, tenantA, "k", []byte("first"), 0)
		if err != nil || !ok {
			t.Errorf("KVInsert of an absent key = %v, %v; want true", ok, err)
		}
		ok, err = kv.KVInsert(ctx, tenantA, "k", []byte("second"), time.Hour)
		if err != nil || ok {
			t.Errorf("KVInsert of a present key = %v, %v; want false", ok, err)
		}
		kvWant(t, kv, tenantA, "k", "first")
		must(t, kv.KVDelete(ctx, tenantA, "k"), "KVDelete")
		ok, err = kv.KVInsert(ctx, tenantA, "k", []byte("third"), 0)
		if err != nil || !ok {
			t.Errorf("KVInsert after KVDelete = %v, %v; want true", ok, err)
		}
		kvWant(t, kv, tenantA, "k", "third")
	})

	t.Run("Tenants", func(t *testing.T) {
		_, kv := s.kv(t)
		ctx := t.Context()
		must(t, kv.KVSet(ctx, tenantA, "k", []byte("a"), 0), "KVSet")
		kvAbsent(t, kv, tenantB, "k")
		ok, err := kv.KVInsert(ctx, tenantB, "k", []byte("b"), 0)
		if err != nil || !ok {
			t.Errorf("KVInsert(tenant B) of a key tenant A has = %v, %v; want true", ok, err)
		}
		kvWant(t, kv, tenantA, "k", "a")
		kvWant(t, kv, tenantB, "k", "b")
		must(t, kv.KVDelete(ctx, tenantB, "k"), "KVDelete(tenant B)")
		kvWant(t, kv, tenantA, "k", "a")
		must(t, kv.KVSet(ctx, tenantB, "k", []byte("b2"), 0), "KVSet(tenant B)")
		kvWant(t, kv, tenantA, "k", "a")
	})

	t.Run("Expiry", func(t *testing.T) {
		_, kv := s.kv(t)
		ctx := t.Context()
		start := time.Now()
		must(t, kv.KVSet(ctx, tenantA, "short", []byte("s"), kvTTL), "KVSet(ttl %v)", kvTTL)
		ok, err := kv.KVInsert(ctx, tenantA, "short-insert", []byte("s"), kvTTL)
		if err != nil || !ok {
			t.Fatalf("KVInsert(ttl %v) = %v, %v", kvTTL, ok, err)
		}
		must(t, kv.KVSet(ctx, tenantA, "forever", []byte("f"), 0), "KVSet(ttl 0)")
		must(t, kv.KVSet(ctx, tenantA, "long", []byte("l"), time.Hour), "KVSet(ttl 1h)")
		if time.Since(start) < kvTTL/2 {
			kvWant(t, kv, tenantA, "short", "s")
			kvWant(t, kv, tenantA, "short-insert", "s")
		}
		// Wait for the short keys to expire.
		deadline := start.Add(kvTTL + kvWait)
		for _, k := range []string{"short", "short-insert"} {
			for {
				_, err := kv.KVGet(ctx, tenantA, k)
				if errors.Is(err, provision.ErrNotFound) {
					break
				}
				if err != nil {
					t.Fatalf("KVGet(%s): %v", k, err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("KVGet(%s) still returns the value %v after it was set with ttl %v", k, time.Since(start).Round(time.Millisecond), kvTTL)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if time.Since(start) < kvTTL {
			t.Errorf("a value set with ttl %v expired after %v", kvTTL, time.Since(start))
		}
		kvWant(t, kv, tenantA, "forever", "f")
		kvWant(t, kv, tenantA, "long", "l")
		// An expired value is absent for KVInsert too.
		ok, err = kv.KVInsert(ctx, tenantA, "short", []byte("again"), 0)
		if err != nil || !ok {
			t.Errorf("KVInsert over an expired value = %v, %v; want true", ok, err)
		}
		kvWant(t, kv, tenantA, "short", "again")
		// KVSet without ttl over a value with one keeps it forever.
		must(t, kv.KVSet(ctx, tenantA, "short-insert", []byte("x"), kvTTL), "KVSet")
		must(t, kv.KVSet(ctx, tenantA, "short-insert", []byte("y"), 0), "KVSet(ttl 0)")
		time.Sleep(kvTTL + 100*time.Millisecond)
		kvWant(t, kv, tenantA, "short-insert", "y")
	})

	t.Run("ConcurrentInsert", func(t *testing.T) {
		// The SAML replay cache: of the replicas that see one assertion,
		// exactly one may accept it.
		_, kv := s.kv(t)
		for round := range 5 {
			key := fmt.Sprintf("saml/replay/%d", round)
			oks := make([]bool, workers)
			errs := make([]error, workers)
			together(workers, func(w int) {
				oks[w], errs[w] = kv.KVInsert(t.Context(), tenantA, key, []byte{byte(w)}, time.Hour)
			})
			wins := 0
			for w := range workers {
				if errs[w] != nil {
					t.Errorf("KVInsert: %v", errs[w])
				}
				if oks[w] {
					wins++
				}
			}
			if wins != 1 {
				t.Errorf("%d concurrent KVInsert of one key: %d reported true, want exactly 1", workers, wins)
			}
		}
	})

	t.Run("Copies", func(t *testing.T) {
		_, kv := s.kv(t)
		in := []byte("value")
		must(t, kv.KVSet(t.Context(), tenantA, "k", in, 0), "KVSet")
		in[0] = 'X'
		kvWant(t, kv, tenantA, "k", "value")
		got, err := kv.KVGet(t.Context(), tenantA, "k")
		must(t, err, "KVGet")
		if len(got) > 0 {
			got[0] = 'Y'
		}
		kvWant(t, kv, tenantA, "k", "value")
		ins := []byte("inserted")
		if _, err := kv.KVInsert(t.Context(), tenantA, "k2", ins, 0); err != nil {
			t.Fatalf("KVInsert: %v", err)
		}
		ins[0] = 'X'
		kvWant(t, kv, tenantA, "k2", "inserted")
	})
}
