package ldap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// cacheDump is a dirCache as comparable text: its live users (id, DN
// hash, uid hash, engine id), the aliases that name them and its groups.
func cacheDump(c *dirCache) []string {
	var out []string
	for i := range uint32(c.recs.len()) {
		r := c.recs.at(i)
		if r.dropped() {
			continue
		}
		out = append(out, fmt.Sprintf("user %s dn=%x uid=%x engine=%s", c.strs.str(r.idRef()), r.dn, r.uid, c.strs.str(r.userID)))
	}
	for dn, i := range c.alias {
		if r := c.recs.at(i); !r.dropped() && r.dn != dn {
			out = append(out, fmt.Sprintf("alias %x of %s", dn, c.strs.str(r.idRef())))
		}
	}
	for id, g := range c.groups {
		out = append(out, fmt.Sprintf("group %s dn=%s name=%s engine=%s applied=%x members=%x uids=%x", id, g.dn, g.name, g.groupID, g.applied, g.memberDNs, g.memberUIDs))
	}
	slices.Sort(out)
	return out
}

// stateValues returns the stored buckets of cur's state.
func stateValues(t *testing.T, e *env, s *Syncer, cur *cursor) [][]byte {
	var out [][]byte
	for b := range cur.StateBuckets {
		raw, err := provision.AdapterOf(e.eng).KVGet(e.ctx, tenant, s.stateKey(cur.StateGen, b))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

func mustCursor(t *testing.T, s *Syncer) *cursor {
	t.Helper()
	cur, err := s.loadCursor(context.Background())
	if err != nil || cur == nil {
		t.Fatalf("cursor: %v %v", cur, err)
	}
	return cur
}

// TestJournal: an incremental sync appends a journal record of what it
// changed and leaves the buckets as they were (its write is in
// proportion to its changes); a restarted Syncer loads buckets and
// journal into the same cache the running one has, and its first sync
// stays incremental and correct. Past the bound, a sync compacts the
// journal into the buckets and deletes its records.
func TestJournal(t *testing.T) {
	old := maxJournalRecords
	maxJournalRecords = 3
	t.Cleanup(func() { maxJournalRecords = old })
	e := newEnv(t, ldaptest.Options{})
	var users []string
	for i := range 32 {
		users = append(users, e.addUser(fmt.Sprintf("u%02d", i), "U", fmt.Sprint(i), nil))
	}
	eng := e.addGroup("eng", users[:10]...)
	all := e.addGroup("all", append([]string{eng}, users[10:15]...)...)
	engID, allID := e.srv.EntryUUID(t, eng), e.srv.EntryUUID(t, all)
	s := e.syncer(nil)
	e.sync(s)
	cur := mustCursor(t, s)
	buckets := stateValues(t, e, s, cur)
	eq(t, "journal after a full sync", [2]int{cur.JournalFrom, cur.JournalTo}, [2]int{0, 0})

	// Round k changes a few entries; rounds 1 to 3 are journaled, round 4
	// compacts.
	change := func(k int) {
		e.addUser(fmt.Sprintf("new%d", k), "N", fmt.Sprint(k), nil)
		e.srv.Rename(t, users[k], fmt.Sprintf("uid=renamed%d", k), "")
		users[k] = e.userDN(fmt.Sprintf("renamed%d", k))
		e.srv.Delete(t, users[20+k])
		e.srv.AddValues(t, eng, "member", users[25+k])
	}
	for k := 1; k <= 3; k++ {
		change(k)
		rep := e.changes(s)
		eq(t, fmt.Sprintf("round %d mode", k), rep.Mode, ModeSyncrepl)
		cur = mustCursor(t, s)
		eq(t, fmt.Sprintf("round %d journal", k), [2]int{cur.JournalFrom, cur.JournalTo}, [2]int{0, k})
		if got := stateValues(t, e, s, cur); !slices.EqualFunc(got, buckets, slices.Equal) {
			t.Fatalf("round %d rewrote buckets", k)
		}
		loaded, err := s.loadState(e.ctx, cur)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, fmt.Sprintf("round %d: loaded state", k), cacheDump(loaded), cacheDump(s.cache))
		// A Syncer from before the journal reads StateGen and the
		// buckets only: it must find no state (and sync in full), not
		// the buckets without the journal.
		raw, err := provision.AdapterOf(e.eng).KVGet(e.ctx, tenant, s.cursorKey())
		if err != nil {
			t.Fatal(err)
		}
		var older struct {
			StateGen     string
			StateBuckets int
		}
		if err := json.Unmarshal(raw, &older); err != nil || older.StateGen != "" {
			t.Fatalf("round %d: a cursor with a journal shows StateGen %q to older versions (%v)", k, older.StateGen, err)
		}
	}
	eq(t, "eng after 3 rounds", e.members(engID), []string{"renamed1", "renamed2", "renamed3", "u00", "u04", "u05", "u06", "u07", "u08", "u09", "u26", "u27", "u28"})

	// A restart on the journal: incremental, reading only what changed.
	change(4)
	restarted := e.syncer(nil)
	rep := e.changes(restarted)
	if rep.Mode != ModeSyncrepl || rep.Entries > 4 || rep.Groups.Entries > 2 {
		t.Fatalf("first sync after a restart on the journal: %s (%s)", rep, rep.FullReason)
	}
	eq(t, "eng after the restart", e.members(engID), []string{"renamed1", "renamed2", "renamed3", "renamed4", "u00", "u05", "u06", "u07", "u08", "u09", "u26", "u27", "u28", "u29"})
	eq(t, "all (nested) after the restart", slices.Contains(e.members(allID), "renamed4"), true)

	// That fourth sync compacted: an empty journal past the old records,
	// which are gone, and buckets that hold it all.
	cur = mustCursor(t, restarted)
	eq(t, "journal after compaction", [2]int{cur.JournalFrom, cur.JournalTo}, [2]int{3, 3})
	for seq := range 3 {
		if _, err := provision.AdapterOf(e.eng).KVGet(e.ctx, tenant, s.journalKey(cur.StateGen, seq)); err == nil {
			t.Fatalf("journal record %d kept after compaction", seq)
		}
	}
	loaded, err := restarted.loadState(e.ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "loaded after compaction", cacheDump(loaded), cacheDump(restarted.cache))

	// And the journal starts again after it.
	change(5)
	eq(t, "mode after compaction", e.changes(restarted).Mode, ModeSyncrepl)
	cur = mustCursor(t, restarted)
	eq(t, "journal after compaction and a sync", [2]int{cur.JournalFrom, cur.JournalTo}, [2]int{3, 4})
	rep = e.changes(e.syncer(nil))
	eq(t, "restart after compaction", rep.Mode, ModeSyncrepl)
	eq(t, "eng at the end", slices.Contains(e.members(engID), "renamed5"), true)
}

// TestJournalCrash: a sync that wrote its journal record but stopped
// before storing its cursor (a crash) leaves the record unnamed: a
// restarted Syncer loads the state the stored cursor names, continues
// from its cookie, and overwrites the record.
func TestJournalCrash(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	a := e.addUser("a", "A", "A", nil)
	b := e.addUser("b", "B", "B", nil)
	g := e.addGroup("g", a)
	gid := e.srv.EntryUUID(t, g)
	s := e.syncer(nil)
	e.sync(s)
	kv := provision.AdapterOf(e.eng)
	before, err := kv.KVGet(e.ctx, tenant, s.cursorKey())
	if err != nil {
		t.Fatal(err)
	}
	e.srv.AddValues(t, g, "member", b)
	e.srv.Rename(t, a, "uid=aa", "")
	e.changes(s)
	eq(t, "journal", mustCursor(t, s).JournalTo, 1)
	// The crash: the cursor as it was before that sync.
	if err := kv.KVSet(e.ctx, tenant, s.cursorKey(), before, 0); err != nil {
		t.Fatal(err)
	}
	restarted := e.syncer(nil)
	rep := e.changes(restarted)
	eq(t, "mode", rep.Mode, ModeSyncrepl)
	eq(t, "members", e.members(gid), []string{"aa", "b"})
	cur := mustCursor(t, restarted)
	eq(t, "journal", cur.JournalTo, 1)
	loaded, err := restarted.loadState(e.ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "loaded", cacheDump(loaded), cacheDump(restarted.cache))
}

// TestJournalDamaged: a journal record that is missing, cut, flipped or
// stored under another sequence number is refused, and the restarted
// Syncer's first sync is full, saying why; never a wrong incremental one.
func TestJournalDamaged(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	a := e.addUser("a", "A", "A", nil)
	e.addUser("b", "B", "B", nil)
	e.addGroup("g", a)
	s := e.syncer(nil)
	e.sync(s)
	for i := range 2 {
		e.addUser(fmt.Sprintf("c%d", i), "C", "C", nil)
		e.changes(s)
	}
	cur := mustCursor(t, s)
	eq(t, "journal", cur.JournalTo, 2)
	kv := provision.AdapterOf(e.eng)
	key0, key1 := s.journalKey(cur.StateGen, 0), s.journalKey(cur.StateGen, 1)
	rec0, err := kv.KVGet(e.ctx, tenant, key0)
	if err != nil {
		t.Fatal(err)
	}
	rec1, err := kv.KVGet(e.ctx, tenant, key1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.loadState(e.ctx, cur); err != nil {
		t.Fatal(err)
	}
	refused := func(what string) {
		t.Helper()
		if _, err := s.loadState(e.ctx, cur); err == nil {
			t.Fatalf("%s: accepted", what)
		}
	}
	for n := range len(rec1) {
		_ = kv.KVSet(e.ctx, tenant, key1, rec1[:n], 0)
		refused(fmt.Sprintf("record cut to %d of %d bytes", n, len(rec1)))
	}
	for i := range rec1 {
		bad := slices.Clone(rec1)
		bad[i] ^= 0x10
		_ = kv.KVSet(e.ctx, tenant, key1, bad, 0)
		refused(fmt.Sprintf("byte %d flipped", i))
	}
	_ = kv.KVSet(e.ctx, tenant, key1, rec0, 0)
	refused("record 0 stored as record 1")
	_ = kv.KVDelete(e.ctx, tenant, key1)
	refused("record missing")

	rep := e.changes(e.syncer(nil))
	eq(t, "mode", rep.Mode, ModeFull)
	if !strings.Contains(rep.FullReason, "stored directory state") {
		t.Fatalf("FullReason %q", rep.FullReason)
	}
	eq(t, "after", e.changes(e.syncer(nil)).Mode, ModeSyncrepl)
}

// refusingKV is memstore whose KVDelete fails while refuse is set (a
// store that was unavailable for a moment), and whose store of a cursor
// fails while cursorFails is set: before storing it, or after it when
// cursorStored is set too (a timeout after the commit).
type refusingKV struct {
	*memstore.Store
	refuse, cursorFails, cursorStored atomic.Bool
}

func (r *refusingKV) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	if !strings.HasSuffix(key, "/cursor") || !r.cursorFails.Load() {
		return r.Store.KVSet(ctx, tenantID, key, value, ttl)
	}
	if r.cursorStored.Load() {
		if err := r.Store.KVSet(ctx, tenantID, key, value, ttl); err != nil {
			return err
		}
	}
	return errors.New("store unavailable")
}

func (r *refusingKV) KVDelete(ctx context.Context, tenantID, key string) error {
	if r.refuse.Load() {
		return errors.New("store unavailable")
	}
	return r.Store.KVDelete(ctx, tenantID, key)
}

// TestStaleStateRetried: the state a full sync replaced, and the journal
// records a compaction folded in, are deleted after the cursor is
// stored; when the store refuses the deletes, the cursor lists them and
// the next sync deletes them, never the state the cursor names.
func TestStaleStateRetried(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	st := &refusingKV{Store: memstore.New()}
	eng, err := provision.NewEngine(provision.Config{Store: st,
		Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{{ID: ldapConn, Kind: provision.KindLDAP}}}}})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	kv := provision.AdapterOf(eng)
	a := e.addUser("a", "A", "A", nil)
	e.addGroup("g", a)
	s := e.syncer(nil)
	e.sync(s)
	first := mustCursor(t, s)
	present := func(what, key string, want bool) {
		t.Helper()
		_, err := kv.KVGet(e.ctx, tenant, key)
		if got := err == nil; got != want || err != nil && !errors.Is(err, provision.ErrNotFound) {
			t.Fatalf("%s: stored %v (%v), want %v", what, got, err, want)
		}
	}

	st.refuse.Store(true)
	e.sync(s)
	second := mustCursor(t, s)
	if second.StateGen == first.StateGen {
		t.Fatal("the full sync kept the state's generation")
	}
	present("replaced state, delete refused", s.stateKey(first.StateGen, 0), true)
	eq(t, "stale", second.Stale, []staleState{staleOf(first)})

	st.refuse.Store(false)
	e.addUser("b", "B", "B", nil)
	e.changes(s)
	present("replaced state, next sync", s.stateKey(first.StateGen, 0), false)
	present("live state", s.stateKey(second.StateGen, 0), true)
	e.addUser("c", "C", "C", nil)
	e.changes(s)
	eq(t, "stale once deleted", len(mustCursor(t, s).Stale), 0)

	// A compaction while deletes are refused: its old journal records
	// stay listed until a sync can delete them.
	cur := mustCursor(t, s)
	if cur.JournalTo-cur.JournalFrom < 1 {
		t.Fatalf("no journal: %+v", cur)
	}
	cur.JournalBytes = 1 << 40 // past the bound: the next sync compacts
	raw, _ := json.Marshal(cur)
	if err := kv.KVSet(e.ctx, tenant, s.cursorKey(), raw, 0); err != nil {
		t.Fatal(err)
	}
	s = e.syncer(nil)
	st.refuse.Store(true)
	d := e.addUser("d", "D", "D", nil)
	eq(t, "mode", e.changes(s).Mode, ModeSyncrepl)
	compacted := mustCursor(t, s)
	eq(t, "journal compacted", compacted.JournalFrom, cur.JournalTo)
	eq(t, "stale journal", compacted.Stale, []staleState{{Gen: cur.StateGen, From: cur.JournalFrom, To: cur.JournalTo}})
	present("folded journal record, delete refused", s.journalKey(cur.StateGen, cur.JournalFrom), true)
	st.refuse.Store(false)
	e.changes(s)
	present("folded journal record, next sync", s.journalKey(cur.StateGen, cur.JournalFrom), false)
	eq(t, "restarted", e.changes(e.syncer(nil)).Mode, ModeSyncrepl)
	eq(t, "d active", e.user(d).Active, true)

	// A full sync whose cursor is not stored leaves its state named by
	// no cursor: the next sync deletes it. One whose cursor was stored
	// although the store said no keeps it: it is the live state.
	for _, stored := range []bool{false, true} {
		before := mustCursor(t, s)
		st.cursorFails.Store(true)
		st.cursorStored.Store(stored)
		if _, err := s.Sync(e.ctx); err == nil {
			t.Fatal("the cursor's store failed, the sync did not")
		}
		st.cursorFails.Store(false)
		after := mustCursor(t, s)
		if (after.StateGen != before.StateGen) != stored {
			t.Fatalf("stored %v: the cursor names %s, before %s", stored, after.StateGen, before.StateGen)
		}
		orphans := slices.Clone(s.orphans)
		if len(orphans) != 1 {
			t.Fatalf("orphans %v", orphans)
		}
		eq(t, "next sync", e.changes(s).Mode, ModeSyncrepl)
		present(fmt.Sprintf("state of the failed store (stored %v)", stored), s.stateKey(orphans[0].Gen, 0), stored)
		present("live state", s.stateKey(mustCursor(t, s).StateGen, 0), true)
	}
	eq(t, "restarted at last", e.changes(e.syncer(nil)).Mode, ModeSyncrepl)
}
