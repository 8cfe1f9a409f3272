package memstore

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

// cloneEvent returns a deep copy of ev.
func cloneEvent(ev provision.Event) provision.Event {
	if ev.User != nil {
		u := provision.CloneUser(*ev.User)
		ev.User = &u
	}
	if ev.PreviousUser != nil {
		u := provision.CloneUser(*ev.PreviousUser)
		ev.PreviousUser = &u
	}
	if ev.Group != nil {
		g := provision.CloneGroup(*ev.Group)
		ev.Group = &g
	}
	if ev.PreviousGroup != nil {
		g := provision.CloneGroup(*ev.PreviousGroup)
		ev.PreviousGroup = &g
	}
	ev.Fields = slices.Clone(ev.Fields)
	ev.Members = slices.Clone(ev.Members)
	return ev
}

func (st *state) appendEvents(tenantID string, evs []provision.Event) ([]provision.Event, error) {
	for i := range evs {
		if evs[i].TenantID != "" && evs[i].TenantID != tenantID {
			return nil, fmt.Errorf("memstore: event of tenant %q appended to tenant %q: %w", evs[i].TenantID, tenantID, provision.ErrInvalid)
		}
	}
	t := st.tenantW(tenantID)
	out := make([]provision.Event, len(evs))
	n, last := len(t.events), t.lastSeq
	for i, ev := range evs {
		ev = cloneEvent(ev)
		ev.TenantID = tenantID
		t.lastSeq++
		ev.Seq = t.lastSeq
		t.events = append(t.events, ev)
		out[i] = cloneEvent(ev)
	}
	st.do(func() {
		clear(t.events[n:])
		t.events = t.events[:n]
		t.lastSeq = last
	})
	return out, nil
}

func (st *state) listEvents(tenantID string, after int64, limit int) []provision.Event {
	t := st.tenantR(tenantID)
	if t == nil || limit <= 0 {
		return []provision.Event{}
	}
	i := sort.Search(len(t.events), func(i int) bool { return t.events[i].Seq > after })
	evs := t.events[i:min(len(t.events), i+limit)]
	out := make([]provision.Event, len(evs))
	for i, ev := range evs {
		out[i] = cloneEvent(ev)
	}
	return out
}

func (st *state) purgeEvents(tenantID string, before time.Time) int {
	t := st.tenantR(tenantID)
	if t == nil {
		return 0
	}
	n := 0
	for i := range t.events {
		if t.events[i].Time.Before(before) {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	old := t.events
	kept := make([]provision.Event, 0, len(old)-n)
	for _, ev := range old {
		if !ev.Time.Before(before) {
			kept = append(kept, ev)
		}
	}
	t.events = kept
	st.do(func() { t.events = old })
	return n
}

// redacted returns the snapshot u without personal data, and whether that
// changes it.
func redacted(u *provision.User) (*provision.User, bool) {
	r := &provision.User{ID: u.ID, TenantID: u.TenantID, Deleted: u.Deleted}
	return r, !reflect.DeepEqual(*u, *r)
}

func (st *state) redactEvents(tenantID, userID string) int {
	t := st.tenantR(tenantID)
	if t == nil {
		return 0
	}
	type prev struct {
		i          int
		user, prev *provision.User
	}
	var undo []prev
	for i := range t.events {
		ev := &t.events[i]
		p := prev{i: i, user: ev.User, prev: ev.PreviousUser}
		changed := false
		if ev.User != nil && ev.User.ID == userID {
			if r, ok := redacted(ev.User); ok {
				ev.User, changed = r, true
			}
		}
		if ev.PreviousUser != nil && ev.PreviousUser.ID == userID {
			if r, ok := redacted(ev.PreviousUser); ok {
				ev.PreviousUser, changed = r, true
			}
		}
		if changed {
			undo = append(undo, p)
		}
	}
	if len(undo) > 0 {
		st.do(func() {
			for _, p := range undo {
				t.events[p.i].User, t.events[p.i].PreviousUser = p.user, p.prev
			}
		})
	}
	return len(undo)
}

func (st *state) lastSeqOf(tenantID string) int64 {
	if t := st.tenantR(tenantID); t != nil {
		return t.lastSeq
	}
	return 0
}

func (st *state) cursor(tenantID, consumer string) int64 {
	if t := st.tenantR(tenantID); t != nil {
		return t.cursors[consumer]
	}
	return 0
}

func (st *state) setCursor(tenantID, consumer string, seq int64) {
	t := st.tenantW(tenantID)
	old, had := t.cursors[consumer]
	t.cursors[consumer] = seq
	st.do(func() {
		if had {
			t.cursors[consumer] = old
		} else {
			delete(t.cursors, consumer)
		}
	})
}

// dedupeStrings returns ids sorted, without repeats.
func dedupeStrings(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// backlogs returns the tenants behind for the consumer: see
// provision.EventBacklog. It scans the tenants in memory (or only those
// named).
func (st *state) backlogs(consumer string, tenants []string, afterTenant string, limit int) []provision.Backlog {
	out := []provision.Backlog{}
	if limit <= 0 {
		return out
	}
	add := func(id string, t *tenant) {
		if t != nil && id > afterTenant && t.lastSeq > t.cursors[consumer] {
			out = append(out, provision.Backlog{TenantID: id, Cursor: t.cursors[consumer], LastSeq: t.lastSeq})
		}
	}
	if tenants != nil {
		for _, id := range dedupeStrings(tenants) {
			add(id, st.tenants[id])
		}
	} else {
		for id, t := range st.tenants {
			add(id, t)
		}
	}
	slices.SortFunc(out, func(a, b provision.Backlog) int { return strings.Compare(a.TenantID, b.TenantID) })
	return out[:min(len(out), limit)]
}

// Backlogs implements provision.EventBacklog: the tenants whose last Seq
// is above the consumer's cursor, in tenant id order. It scans the
// tenants in memory (no query to save here).
func (s *Store) Backlogs(ctx context.Context, consumer string, tenants []string, afterTenant string, limit int) (out []provision.Backlog, err error) {
	err = s.read(ctx, func(st *state) error { out = st.backlogs(consumer, tenants, afterTenant, limit); return nil })
	return out, err
}

// Backlogs implements provision.EventBacklog in the transaction.
func (t *tx) Backlogs(ctx context.Context, consumer string, tenants []string, afterTenant string, limit int) (out []provision.Backlog, err error) {
	err = t.read(ctx, func(st *state) error { out = st.backlogs(consumer, tenants, afterTenant, limit); return nil })
	return out, err
}

// AppendEvents appends the tenant's events and returns them with Seq
// assigned: the tenant's last Seq plus one, and so on. A rollback takes
// the numbers back, so committed Seqs have no gap.
func (s *Store) AppendEvents(ctx context.Context, tenantID string, events []provision.Event) (out []provision.Event, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.appendEvents(tenantID, events); return err })
	return out, err
}

// ListEvents returns at most limit events of the tenant after Seq after.
func (s *Store) ListEvents(ctx context.Context, tenantID string, after int64, limit int) (evs []provision.Event, err error) {
	err = s.read(ctx, func(st *state) error { evs = st.listEvents(tenantID, after, limit); return nil })
	return evs, err
}

// LastSeq returns the tenant's highest Seq (kept after a purge), 0 when
// none.
func (s *Store) LastSeq(ctx context.Context, tenantID string) (seq int64, err error) {
	err = s.read(ctx, func(st *state) error { seq = st.lastSeqOf(tenantID); return nil })
	return seq, err
}

// Cursor returns the consumer's cursor for the tenant, 0 when none.
func (s *Store) Cursor(ctx context.Context, tenantID, consumer string) (seq int64, err error) {
	err = s.read(ctx, func(st *state) error { seq = st.cursor(tenantID, consumer); return nil })
	return seq, err
}

// SetCursor stores the consumer's cursor for the tenant.
func (s *Store) SetCursor(ctx context.Context, tenantID, consumer string, seq int64) error {
	return s.write(ctx, func(st *state) error { st.setCursor(tenantID, consumer, seq); return nil })
}

// PurgeEvents removes the tenant's events older than before. It scans the
// tenant's events.
func (s *Store) PurgeEvents(ctx context.Context, tenantID string, before time.Time) (n int, err error) {
	err = s.write(ctx, func(st *state) error { n = st.purgeEvents(tenantID, before); return nil })
	return n, err
}

// RedactEvents replaces the snapshots of userID in the tenant's events
// with copies holding only ID, TenantID and Deleted. It scans the tenant's
// events.
func (s *Store) RedactEvents(ctx context.Context, tenantID, userID string) (n int, err error) {
	err = s.write(ctx, func(st *state) error { n = st.redactEvents(tenantID, userID); return nil })
	return n, err
}

// AppendEvents implements provision.EventLog in the transaction.
func (t *tx) AppendEvents(ctx context.Context, tenantID string, events []provision.Event) (out []provision.Event, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.appendEvents(tenantID, events); return err })
	return out, err
}

// ListEvents implements provision.EventLog in the transaction.
func (t *tx) ListEvents(ctx context.Context, tenantID string, after int64, limit int) (evs []provision.Event, err error) {
	err = t.read(ctx, func(st *state) error { evs = st.listEvents(tenantID, after, limit); return nil })
	return evs, err
}

// LastSeq implements provision.EventLog in the transaction.
func (t *tx) LastSeq(ctx context.Context, tenantID string) (seq int64, err error) {
	err = t.read(ctx, func(st *state) error { seq = st.lastSeqOf(tenantID); return nil })
	return seq, err
}

// Cursor implements provision.EventLog in the transaction.
func (t *tx) Cursor(ctx context.Context, tenantID, consumer string) (seq int64, err error) {
	err = t.read(ctx, func(st *state) error { seq = st.cursor(tenantID, consumer); return nil })
	return seq, err
}

// SetCursor implements provision.EventLog in the transaction.
func (t *tx) SetCursor(ctx context.Context, tenantID, consumer string, seq int64) error {
	return t.write(ctx, func(st *state) error { st.setCursor(tenantID, consumer, seq); return nil })
}

// PurgeEvents implements provision.EventLog in the transaction.
func (t *tx) PurgeEvents(ctx context.Context, tenantID string, before time.Time) (n int, err error) {
	err = t.write(ctx, func(st *state) error { n = st.purgeEvents(tenantID, before); return nil })
	return n, err
}

// RedactEvents implements provision.EventLog in the transaction.
func (t *tx) RedactEvents(ctx context.Context, tenantID, userID string) (n int, err error) {
	err = t.write(ctx, func(st *state) error { n = st.redactEvents(tenantID, userID); return nil })
	return n, err
}

// KV.

func (st *state) kvGet(tenantID, key string) ([]byte, error) {
	if t := st.tenantR(tenantID); t != nil {
		if e, ok := t.kv[key]; ok && e.live(st.now()) {
			return slices.Clone(e.value), nil
		}
	}
	return nil, fmt.Errorf("memstore: key %q of tenant %q: %w", key, tenantID, provision.ErrNotFound)
}

func (e kvEntry) live(now time.Time) bool { return e.expires.IsZero() || now.Before(e.expires) }

func (st *state) kvPut(tenantID, key string, value []byte, ttl time.Duration, onlyIfAbsent bool) (bool, error) {
	if ttl < 0 {
		return false, fmt.Errorf("memstore: negative ttl for key %q: %w", key, provision.ErrInvalid)
	}
	t := st.tenantW(tenantID)
	now := st.now()
	old, had := t.kv[key]
	if onlyIfAbsent && had && old.live(now) {
		return false, nil
	}
	e := kvEntry{value: slices.Clone(value)}
	if e.value == nil {
		e.value = []byte{}
	}
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	t.kv[key] = e
	st.do(func() {
		if had {
			t.kv[key] = old
		} else {
			delete(t.kv, key)
		}
	})
	// Sweep expired keys once the writes reach half the keys: amortized
	// O(1) per write. Expired entries are invisible, so the sweep needs no
	// undo.
	if t.kvWrites++; t.kvWrites > 64 && 2*t.kvWrites > len(t.kv) {
		t.kvWrites = 0
		for k, e := range t.kv {
			if !e.live(now) {
				delete(t.kv, k)
			}
		}
	}
	return true, nil
}

func (st *state) kvDelete(tenantID, key string) {
	t := st.tenantR(tenantID)
	if t == nil {
		return
	}
	old, had := t.kv[key]
	if !had {
		return
	}
	delete(t.kv, key)
	st.do(func() { t.kv[key] = old })
}

// KVGet returns the live value of key, ErrNotFound when absent or expired.
func (s *Store) KVGet(ctx context.Context, tenantID, key string) (v []byte, err error) {
	err = s.read(ctx, func(st *state) error { v, err = st.kvGet(tenantID, key); return err })
	return v, err
}

// KVSet stores value under key; ttl 0 keeps it forever, expiry follows
// Config.Now.
func (s *Store) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	return s.write(ctx, func(st *state) error { _, err := st.kvPut(tenantID, key, value, ttl, false); return err })
}

// KVInsert stores value under key if no live value is there, and reports
// whether it did.
func (s *Store) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (ok bool, err error) {
	err = s.write(ctx, func(st *state) error { ok, err = st.kvPut(tenantID, key, value, ttl, true); return err })
	return ok, err
}

// KVDelete removes key; a missing key is not an error.
func (s *Store) KVDelete(ctx context.Context, tenantID, key string) error {
	return s.write(ctx, func(st *state) error { st.kvDelete(tenantID, key); return nil })
}

// KVGet implements provision.KV in the transaction.
func (t *tx) KVGet(ctx context.Context, tenantID, key string) (v []byte, err error) {
	err = t.read(ctx, func(st *state) error { v, err = st.kvGet(tenantID, key); return err })
	return v, err
}

// KVSet implements provision.KV in the transaction.
func (t *tx) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	return t.write(ctx, func(st *state) error { _, err := st.kvPut(tenantID, key, value, ttl, false); return err })
}

// KVInsert implements provision.KV in the transaction.
func (t *tx) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (ok bool, err error) {
	err = t.write(ctx, func(st *state) error { ok, err = st.kvPut(tenantID, key, value, ttl, true); return err })
	return ok, err
}

// KVDelete implements provision.KV in the transaction.
func (t *tx) KVDelete(ctx context.Context, tenantID, key string) error {
	return t.write(ctx, func(st *state) error { st.kvDelete(tenantID, key); return nil })
}

// Locker.

type lockKey struct{ tenant, name string }

type lockToken struct{ _ byte } // not zero-size: each token has its own address

// lockTable holds the Locker's locks. It has its own mutex: locks are not
// part of transactions, and taking one never waits for the store's lock.
type lockTable struct {
	mu   sync.Mutex
	held map[lockKey]*lockToken
}

// TryLock takes the named lock of the tenant, or returns ErrLocked while
// another holder has it. The lock lives in this process: it is gone when
// the process ends, and it is never lost otherwise, so held ends only on
// release or with ctx. release is idempotent.
func (s *Store) TryLock(ctx context.Context, tenantID, name string) (held context.Context, release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("memstore: %w", err)
	}
	k := lockKey{tenantID, name}
	tok := &lockToken{}
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	if s.locks.held[k] != nil {
		return nil, nil, fmt.Errorf("memstore: lock %q of tenant %q: %w", name, tenantID, provision.ErrLocked)
	}
	s.locks.held[k] = tok
	held, cancel := context.WithCancel(ctx)
	return held, func() {
		cancel()
		s.locks.mu.Lock()
		defer s.locks.mu.Unlock()
		if s.locks.held[k] == tok {
			delete(s.locks.held, k)
		}
	}, nil
}
