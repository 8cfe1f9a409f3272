package ldap

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestDirCacheModel drives the compact cache and a plain map model with
// the same random puts (new entries, renames back and forth, uid and
// engine id changes) and drops, ids in UUID form and not, and checks
// after every step that both resolve every id, DN and uid alike: the
// open-addressing tables grow, reuse tombs and keep renamed DNs as
// aliases exactly as a map would; the sweep's set of applied users holds
// the engine ids of the live entries.
func TestDirCacheModel(t *testing.T) {
	type mrec struct {
		id, userID string
		dn, uid    uint64
		dropped    bool
	}
	rng := rand.New(rand.NewPCG(1, 2))
	c := newDirCache()
	c.indexUIDs()
	users := map[string]*mrec{}
	byDN := map[uint64]*mrec{}
	byUID := map[uint64]*mrec{}
	idOf := func(k int) string {
		if k%3 == 0 {
			return fmt.Sprintf("id-%d", k)
		}
		return fmt.Sprintf("%08x-82ab-1041-930c-ab00fdfbc648", k)
	}
	dnOf := func(k int) string { return fmt.Sprintf("uid=u%d,ou=people,dc=example,dc=com", k) }
	check := func(step int) {
		t.Helper()
		if c.live != len(users) {
			t.Fatalf("step %d: %d live, want %d", step, c.live, len(users))
		}
		for k := range 400 {
			id := idOf(k)
			_, want := users[id]
			if got := c.hasUser(id); got != want {
				t.Fatalf("step %d: hasUser(%s) = %v, want %v", step, id, got, want)
			}
			h := dnHash(dnKey(dnOf(k)))
			m, want := byDN[h]
			r, got := c.userByDN(h)
			if got != want || (got && (c.strs.str(r.idRef()) != m.id || r.dropped() != m.dropped || c.strs.str(r.userID) != m.userID)) {
				t.Fatalf("step %d: byDN %s: %v %v, want %+v %v", step, dnOf(k), r, got, m, want)
			}
			uh := uidHash(fmt.Sprintf("u%d", k))
			m, want = byUID[uh]
			i, got := c.byUID[uh]
			if got != want || (got && c.strs.str(c.recs.at(i).idRef()) != m.id) {
				t.Fatalf("step %d: byUID u%d: %v, want %v", step, k, got, want)
			}
		}
		var ids []string
		c.eachUser(func(id string) { ids = append(ids, id) })
		slices.Sort(ids)
		var want []string
		for id := range users {
			want = append(want, id)
		}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("step %d: eachUser %v, want %v", step, ids, want)
		}
		if step%50 == 0 {
			applied := c.appliedUsers()
			wantApplied := map[string]bool{}
			for _, m := range users {
				wantApplied[m.userID] = m.userID != ""
			}
			for k := range 200 {
				for v := range 2 {
					userID := fmt.Sprintf("e%d-%d", k, v)
					if got := applied(userID); got != wantApplied[userID] {
						t.Fatalf("step %d: appliedUsers(%s) = %v, want %v", step, userID, got, wantApplied[userID])
					}
				}
			}
		}
	}
	for step := range 5000 {
		k := rng.IntN(200)
		id := idOf(k)
		if rng.IntN(5) == 0 {
			c.dropUser(id)
			if m, ok := users[id]; ok {
				delete(users, id)
				m.dropped = true
				if byDN[m.dn] == m {
					delete(byDN, m.dn)
				}
				if byUID[m.uid] == m {
					delete(byUID, m.uid)
				}
			}
		} else {
			d := k + 200*rng.IntN(2) // renamed to another DN and back
			u := rng.IntN(400)
			dn, uid := dnHash(dnKey(dnOf(d))), uidHash(fmt.Sprintf("u%d", u))
			userID := ""
			if rng.IntN(4) > 0 {
				userID = fmt.Sprintf("e%d-%d", k, rng.IntN(2))
			}
			c.putUser(id, dnOf(d), fmt.Sprintf("u%d", u), userID)
			m, ok := users[id]
			if !ok {
				m = &mrec{id: id}
				users[id] = m
			}
			m.dn = dn
			if m.uid != uid {
				if byUID[m.uid] == m {
					delete(byUID, m.uid)
				}
				m.uid = uid
			}
			byDN[dn] = m
			byUID[uid] = m
			if userID != "" {
				m.userID = userID
			}
		}
		check(step)
	}
}

// TestArenaStrings: ids in UUID form are stored as 16 bytes and come
// back in their canonical form; anything else comes back as given.
func TestArenaStrings(t *testing.T) {
	a := newArena()
	for _, s := range []string{"", "x", "1c5d7e5e-82ab-1041-930c-ab00fdfbc648", "1C5D7E5E-82AB-1041-930C-AB00FDFBC648", "1c5d7e5e82ab1041930cab00fdfbc648", string(make([]byte, 300)), string(make([]byte, 3<<20))} {
		enc := encodeString(nil, s)
		ref := a.add(enc)
		if got := a.str(ref); got != s {
			t.Errorf("%q came back as %q", s, got)
		}
		if len(a.raw(ref)) != len(enc) {
			t.Errorf("%q: raw is %d bytes, want %d", s, len(a.raw(ref)), len(enc))
		}
	}
	// Enough strings to fill several chunks.
	refs := make([]uint32, 200000)
	for i := range refs {
		refs[i] = a.add(encodeString(nil, fmt.Sprintf("d%d", i)))
	}
	for i, ref := range refs {
		if got := a.str(ref); got != fmt.Sprintf("d%d", i) {
			t.Fatalf("string %d came back as %q", i, got)
		}
	}
	if n := len(encodeString(nil, "1c5d7e5e-82ab-1041-930c-ab00fdfbc648")); n != 17 {
		t.Errorf("a UUID takes %d bytes", n)
	}
}

// TestDirCacheOffHeap fills a cache past its heap-held first chunks, so
// that its records, strings and tables are mapped off the heap, checks
// that every entry resolves after the tables grew and after drops, and
// that the mappings are released once the cache is collected; and that
// the same cache works on the heap alone (no mappings to be had).
func TestDirCacheOffHeap(t *testing.T) {
	t.Run("mapped", testDirCacheLarge)
	t.Run("heap only", func(t *testing.T) {
		offheapOff.Store(true)
		defer offheapOff.Store(false)
		testDirCacheLarge(t)
	})
}

func testDirCacheLarge(t *testing.T) {
	const n = 40000
	uuid := func(k int) string { return fmt.Sprintf("%08x-82ab-1041-930c-ab00fdfbc648", k) }
	dn := func(k int) string { return fmt.Sprintf("uid=u%d,ou=people,dc=example,dc=com", k) }
	c := newDirCache()
	mem := c.mem
	for k := range n {
		c.putUser(uuid(k), dn(k), fmt.Sprintf("u%d", k), fmt.Sprintf("engine-%d", k))
	}
	for k := 0; k < n; k += 2 {
		c.dropUser(uuid(k))
	}
	mem.mu.Lock()
	mapped := len(mem.mapped)
	mem.mu.Unlock()
	wantMapped := !offheapUnsupported() && !offheapOff.Load()
	if (mapped > 0) != wantMapped {
		t.Fatalf("a cache of 40,000 users has %d mappings", mapped)
	}
	// 24-byte records, 17-byte ids, 9-byte engine ids and two tables.
	if heap, mapped := c.size(); heap+mapped < n*(24+17+9+8) || (mapped > heap) != wantMapped {
		t.Fatalf("size() = %d on the heap, %d mapped", heap, mapped)
	}
	for k := range n {
		live := k%2 == 1
		if got := c.hasUser(uuid(k)); got != live {
			t.Fatalf("hasUser(%d) = %v, want %v", k, got, live)
		}
		r, ok := c.userByDN(dnHash(dnKey(dn(k))))
		if ok != live || live && (r.dropped() || c.strs.str(r.userID) != fmt.Sprintf("engine-%d", k) || c.strs.str(r.idRef()) != uuid(k)) {
			t.Fatalf("userByDN(%d) = %+v %v, want live %v", k, r, ok, live)
		}
	}
	count := 0
	c.eachUser(func(string) { count++ })
	if count != n/2 {
		t.Fatalf("eachUser saw %d users, want %d", count, n/2)
	}
	applied := c.appliedUsers()
	if !applied("engine-1") || applied("engine-2") {
		t.Fatal("appliedUsers is wrong off the heap")
	}
	c, applied = nil, nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		mem.mu.Lock()
		mapped = len(mem.mapped)
		mem.mu.Unlock()
		if mapped == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mappings still there after the cache was collected", mapped)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkDirCacheTenants measures what a Syncer's directory state
// costs per tenant when a host serves many small directories: the heap
// (and mapped memory) of 1,000 caches of 10 or 1,000 users each, per cache.
//
//	go test ./ldap -run '^$' -bench DirCacheTenants -benchtime 3x
func BenchmarkDirCacheTenants(b *testing.B) {
	for _, users := range []int{10, 1000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			const tenants = 1000
			var perCache, mappedPer float64
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				caches := make([]*dirCache, tenants)
				for i := range caches {
					c := newDirCache()
					for k := range users {
						c.putUser(fmt.Sprintf("%08x-82ab-1041-930c-%012x", k, i), fmt.Sprintf("uid=u%d,ou=people,dc=t%d", k, i), fmt.Sprintf("u%d", k), fmt.Sprintf("%08x-0000-4000-8000-%012x", k, i))
					}
					caches[i] = c
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				var mapped int64
				for _, c := range caches {
					_, m := c.size()
					mapped += m
				}
				perCache = float64(after.HeapAlloc-before.HeapAlloc) / tenants
				mappedPer = float64(mapped) / tenants
				runtime.KeepAlive(caches)
			}
			b.ReportMetric(perCache, "heap-B/tenant")
			b.ReportMetric(mappedPer, "mapped-B/tenant")
			b.ReportMetric(perCache/float64(users), "heap-B/user")
		})
	}
}
