package ldap

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/idprov/idprov/internal/testenv"
	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/sqlstore"
)

// TestRestartIncremental: a new Syncer on the same store (a restarted
// process) continues from the stored cookie and directory state: its
// first sync reads only the changed entries, and still resolves group
// members it never read itself, nested groups included.
func TestRestartIncremental(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	a := e.addUser("a", "A", "A", nil)
	b := e.addUser("b", "B", "B", nil)
	c := e.addUser("c", "C", "C", nil)
	d := e.addUser("d", "D", "D", nil)
	for i := range 20 {
		e.addUser(fmt.Sprintf("x%02d", i), "X", fmt.Sprint(i), nil)
		e.addGroup(fmt.Sprintf("g%02d", i), a)
	}
	eng := e.addGroup("eng", a)
	all := e.addGroup("all", eng, b)
	engID, allID := e.srv.EntryUUID(t, eng), e.srv.EntryUUID(t, all)
	full := e.sync(e.syncer(nil))
	eq(t, "full read", []int{full.Entries, full.Groups.Entries}, []int{24, 22})
	eq(t, "all", e.members(allID), []string{"a", "b"})

	ee := e.addUser("e", "E", "E", nil)
	e.srv.AddValues(t, eng, "member", ee)
	e.srv.Rename(t, b, "uid=bee", "")
	e.srv.Delete(t, c)
	e.srv.Replace(t, d, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})

	restarted := e.syncer(nil)
	rep := e.changes(restarted)
	if rep.Mode != ModeSyncrepl || rep.FullReason != "" {
		t.Fatalf("first sync after restart: %s (%s)", rep.Mode, rep.FullReason)
	}
	// A full read would read 24 users and 22 groups.
	if rep.Entries > 3 || rep.Groups.Entries > 2 {
		t.Fatalf("first sync after restart read %d user and %d group entries: %s", rep.Entries, rep.Groups.Entries, rep)
	}
	eq(t, "deactivated (delete, lock)", rep.Deactivated, 2)
	eq(t, "eng", e.members(engID), []string{"a", "e"})
	eq(t, "all (nested)", e.members(allID), []string{"a", "bee", "e"})

	// A second restart, now under Run with push: its first round is
	// incremental too, and a change to a nested group reaches the parent.
	e.srv.DeleteValues(t, eng, "member", a)
	p := startPush(t, e, nil)
	if m := p.modes(); len(m) == 0 || m[0] != ModeSyncrepl {
		t.Fatalf("rounds after the second restart: %v", m)
	}
	eq(t, "all after the second restart", e.members(allID), []string{"bee", "e"})
	e.srv.AddValues(t, eng, "member", e.userDN("x03"))
	within(t, 2e9, "nested change by push", func() bool { return slices.Contains(e.members(allID), "x03") })
}

// BenchmarkStateLoad: loading the stored directory state of 100,000
// users in 100 groups, what a restarted Syncer does before its first
// incremental sync.
//
//	go test ./ldap -run '^$' -bench StateLoad -benchtime 3x
func BenchmarkStateLoad(b *testing.B) {
	eng := newBenchEngine(b, memstore.New())
	s, err := NewSyncer(Config{Engine: eng, TenantID: tenant, ConnectionID: ldapConn, URL: "ldap://127.0.0.1", InsecurePlaintext: true, UserBaseDN: "ou=people,dc=example,dc=com"})
	if err != nil {
		b.Fatal(err)
	}
	c := newDirCache()
	const n = 100000
	for i := range n {
		c.putUser(fmt.Sprintf("%08x-82ab-1041-930c-ab00fdfbc648", i), fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=com", i), fmt.Sprintf("user%06d", i), fmt.Sprintf("0000000000%018x", i))
	}
	for j := range 100 {
		g := &groupRec{id: fmt.Sprintf("g%03d", j), dn: fmt.Sprintf("cn=group%03d,ou=groups,dc=example,dc=com", j), name: "g"}
		for i := j; i < n; i += 100 {
			g.memberDNs = append(g.memberDNs, dnHash(fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=com", i)))
		}
		c.putGroup(g)
	}
	ctx := context.Background()
	var cur cursor
	b.Run("save", func(b *testing.B) {
		for b.Loop() {
			if err := s.saveState(ctx, c, &cur); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.loadState(ctx, &cur); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStateLoadPostgres: the same state of 100,000 users loaded
// from sqlstore on PostgreSQL (IDPROV_TEST_POSTGRES_DSN): what a
// restarted Syncer on a real store does before its first incremental
// sync.
//
//	go test ./ldap -run '^$' -bench StateLoadPostgres -benchtime 5x -count 3
func BenchmarkStateLoadPostgres(b *testing.B) {
	db, err := sql.Open("pgx", testenv.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var rb [5]byte
	_, _ = rand.Read(rb[:])
	prefix := "b" + hex.EncodeToString(rb[:]) + "_"
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.Postgres, TablePrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		testenv.DropTables(b, db, prefix)
	}()
	s, err := NewSyncer(Config{Engine: newBenchEngine(b, st), TenantID: tenant, ConnectionID: ldapConn, URL: "ldap://127.0.0.1", InsecurePlaintext: true, UserBaseDN: "ou=people,dc=example,dc=com"})
	if err != nil {
		b.Fatal(err)
	}
	c := newDirCache()
	const n = 100000
	for i := range n {
		c.putUser(fmt.Sprintf("%08x-82ab-1041-930c-ab00fdfbc648", i), fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=com", i), fmt.Sprintf("user%06d", i), fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i))
	}
	var cur cursor
	if err := s.saveState(ctx, c, &cur); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.loadState(ctx, &cur); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRestartBadState: a stored state that cannot be read (a bucket
// lost or damaged) makes the restarted Syncer's first sync a full one
// that says why, never a wrong incremental one.
func TestRestartBadState(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	e.addUser("a", "A", "A", nil)
	s := e.syncer(nil)
	e.sync(s)
	cur, err := s.loadCursor(e.ctx)
	if err != nil || cur.StateGen == "" || cur.StateBuckets == 0 {
		t.Fatalf("cursor %+v, %v: no state", cur, err)
	}
	raw, err := provision.AdapterOf(e.eng).KVGet(e.ctx, tenant, s.stateKey(cur.StateGen, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.AdapterOf(e.eng).KVSet(e.ctx, tenant, s.stateKey(cur.StateGen, 0), raw[:len(raw)-3], 0); err != nil {
		t.Fatal(err)
	}
	rep := e.changes(e.syncer(nil))
	eq(t, "mode", rep.Mode, ModeFull)
	if !strings.Contains(rep.FullReason, "stored directory state") {
		t.Fatalf("FullReason %q", rep.FullReason)
	}
	// The full sync stored a new state: the next restart is incremental.
	eq(t, "after", e.changes(e.syncer(nil)).Mode, ModeSyncrepl)
}

// TestStateDecodeDamaged: every truncation and a flipped byte of a
// stored bucket is refused with an error, never a panic or a wrong
// cache.
func TestStateDecodeDamaged(t *testing.T) {
	eng := newBenchEngine(t, memstore.New())
	s, err := NewSyncer(Config{Engine: eng, TenantID: tenant, ConnectionID: ldapConn, URL: "ldap://127.0.0.1", InsecurePlaintext: true, UserBaseDN: "ou=people,dc=example,dc=com"})
	if err != nil {
		t.Fatal(err)
	}
	c := newDirCache()
	c.putUser("id-1", "uid=a,ou=people,dc=example,dc=com", "a", "u1")
	c.putUser("id-2", "uid=b,ou=people,dc=example,dc=com", "b", "u2")
	c.putUser("id-2", "uid=bee,ou=people,dc=example,dc=com", "bee", "u2") // an alias
	c.putGroup(&groupRec{id: "g1", dn: "cn=g,ou=groups,dc=example,dc=com", name: "g", memberDNs: []uint64{dnHash("uid=a,ou=people,dc=example,dc=com")}, memberUIDs: []uint64{uidHash("bee")}})
	ctx := context.Background()
	var cur cursor
	if err := s.saveState(ctx, c, &cur); err != nil {
		t.Fatal(err)
	}
	eq(t, "buckets", cur.StateBuckets, 1)
	got, err := s.loadState(ctx, &cur)
	if err != nil {
		t.Fatal(err)
	}
	if m, _, _ := got.members(got.groups["g1"]); !slices.Equal(m, []string{"u1", "u2"}) {
		t.Fatalf("members after a round trip: %v", m)
	}
	if _, ok := got.userByDN(dnHash("uid=b,ou=people,dc=example,dc=com")); !ok {
		t.Fatal("the alias of the renamed user was lost")
	}
	key := s.stateKey(cur.StateGen, 0)
	raw, err := provision.AdapterOf(eng).KVGet(ctx, tenant, key)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(raw) {
		if err := provision.AdapterOf(eng).KVSet(ctx, tenant, key, raw[:n], 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.loadState(ctx, &cur); err == nil {
			t.Fatalf("a bucket cut to %d of %d bytes was accepted", n, len(raw))
		}
	}
	bad := slices.Clone(raw)
	bad[0] = 9 // unknown version
	_ = provision.AdapterOf(eng).KVSet(ctx, tenant, key, bad, 0)
	if _, err := s.loadState(ctx, &cur); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
