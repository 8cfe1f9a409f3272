package storetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/storetest"
)

// The suite must be able to fail. TestSuiteCatchesBrokenStores runs it, in
// a subprocess (a failing *testing.T cannot be contained in-process), on
// stores wrapping memstore with one deliberate bug each, and checks that
// the run fails and names the subtest that defines the broken rule.

// brokenEnv selects the store TestBrokenStore runs the suite on.
const brokenEnv = "STORETEST_BROKEN_STORE"

var brokenStores = []struct {
	name string
	bug  bug
	// mustFail are subtests (under TestBrokenStore/) the bug must fail.
	mustFail []string
}{
	// The wrapper itself, with no bug: the suite passes, so the failures
	// below come from the bugs, not from the wrapping.
	{"control", noBug, nil},
	// GetUser finds an id in any tenant the store has seen.
	{"tenant-blind-read", tenantBlindRead, []string{"Isolation/Reads"}},
	// UpdateUser overwrites whatever version is stored.
	{"no-version-check", noVersionCheck, []string{"Versions/User", "Concurrency/UpdateSameVersion"}},
	// AppendEvents inside a transaction keeps its events on rollback.
	{"events-survive-rollback", eventsSurviveRollback, []string{"EventLog/Rollback", "Atomically/RollbackOnError", "Atomically/RollbackOnPanic"}},
	// PutTenantRecord, refused a domain or token hash another tenant
	// holds, stores the record without them instead of nothing.
	{"registry-partial-claim", registryPartialClaim, []string{"Registry/DomainClaimedTwice", "Registry/TokenClaimedTwice"}},
}

// TestBrokenStore is what TestSuiteCatchesBrokenStores runs in a
// subprocess; on its own it skips.
func TestBrokenStore(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("run by TestSuiteCatchesBrokenStores in a subprocess with " + brokenEnv + " set")
	}
	i := slices.IndexFunc(brokenStores, func(b struct {
		name     string
		bug      bug
		mustFail []string
	}) bool {
		return b.name == name
	})
	if i < 0 {
		t.Fatalf("unknown %s=%q", brokenEnv, name)
	}
	bug := brokenStores[i].bug
	storetest.Run(t, func(t *testing.T) provision.Store { return newBroken(bug) })
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite once per broken store")
	}
	failLine := regexp.MustCompile(`(?m)^\s*--- FAIL: TestBrokenStore/(\S+)`)
	for _, b := range brokenStores {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrokenStore$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+b.name)
			out, err := cmd.CombinedOutput()
			var failed []string
			for _, m := range failLine.FindAllStringSubmatch(string(out), -1) {
				failed = append(failed, m[1])
			}
			var exit *exec.ExitError
			switch {
			case b.mustFail == nil:
				if err != nil {
					t.Fatalf("the suite failed on the store without a bug (%v); failed subtests %v; output:\n%s", err, failed, tail(out))
				}
				if !strings.Contains(string(out), "--- PASS: TestBrokenStore ") {
					t.Fatalf("the suite did not run; output:\n%s", tail(out))
				}
				return
			case err == nil:
				t.Fatalf("the suite passed on a store with the bug %q; output:\n%s", b.name, tail(out))
			case !errors.As(err, &exit):
				t.Fatalf("running the suite: %v", err)
			}
			for _, want := range b.mustFail {
				if !slices.Contains(failed, want) {
					t.Errorf("the bug %q did not fail TestBrokenStore/%s; failed subtests: %v", b.name, want, failed)
				}
			}
			t.Logf("the bug %q failed %d subtests: %v", b.name, len(failed), failed)
		})
	}
}

func tail(out []byte) string {
	const max = 8000
	if len(out) > max {
		return "...\n" + string(out[len(out)-max:])
	}
	return string(out)
}

type bug int

const (
	noBug bug = iota
	tenantBlindRead
	noVersionCheck
	eventsSurviveRollback
	registryPartialClaim
)

// shared is what a broken store and its transactions share.
type shared struct {
	bug bug

	mu      sync.Mutex
	tenants map[string]bool
	book    *eventBook
}

func (s *shared) saw(tenant string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenants[tenant] = true
}

func (s *shared) others(tenant string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.tenants {
		if t != tenant {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// newBroken wraps a new memstore. Only the core Store is passed through,
// except for eventsSurviveRollback, which adds its own EventLog, and
// registryPartialClaim, which passes memstore's Registry through with
// its bug.
func newBroken(b bug) provision.Store {
	sh := &shared{bug: b, tenants: map[string]bool{}, book: newEventBook()}
	return sh.wrap(memstore.New())
}

func (sh *shared) wrap(st provision.Store) provision.Store {
	w := &brokenStore{Store: st, sh: sh}
	switch sh.bug {
	case eventsSurviveRollback:
		return &leakyEvents{brokenStore: w}
	case registryPartialClaim:
		return &partialClaims{brokenStore: w, Registry: st.(provision.Registry)}
	}
	return w
}

// partialClaims is memstore's Registry, except that a PutTenantRecord
// refused because another tenant holds one of the record's domains or
// token hashes stores the record without them.
type partialClaims struct {
	*brokenStore
	provision.Registry
}

func (p *partialClaims) PutTenantRecord(ctx context.Context, r provision.TenantRecord, expected int64) (provision.TenantRecord, error) {
	out, err := p.Registry.PutTenantRecord(ctx, r, expected)
	if !errors.Is(err, provision.ErrAlreadyExists) {
		return out, err
	}
	mine := r
	mine.Domains, mine.Tokens = nil, nil
	for _, d := range r.Domains {
		if owner, err := p.TenantByDomain(ctx, d); err != nil || owner == r.TenantID {
			mine.Domains = append(mine.Domains, d)
		}
	}
	for _, tr := range r.Tokens {
		if owner, _, err := p.ConnectionByTokenHash(ctx, tr.Hash); err != nil || owner == r.TenantID {
			mine.Tokens = append(mine.Tokens, tr)
		}
	}
	return p.Registry.PutTenantRecord(ctx, mine, expected)
}

type brokenStore struct {
	provision.Store
	sh *shared
}

func (b *brokenStore) Atomically(ctx context.Context, fn func(context.Context, provision.Store) error) error {
	return b.Store.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		return fn(ctx, b.sh.wrap(tx))
	})
}

func (b *brokenStore) CreateUser(ctx context.Context, u provision.User) (provision.User, error) {
	b.sh.saw(u.TenantID)
	return b.Store.CreateUser(ctx, u)
}

func (b *brokenStore) GetUser(ctx context.Context, tenantID, id string) (provision.User, error) {
	u, err := b.Store.GetUser(ctx, tenantID, id)
	if b.sh.bug == tenantBlindRead && errors.Is(err, provision.ErrNotFound) {
		for _, other := range b.sh.others(tenantID) {
			if u, err2 := b.Store.GetUser(ctx, other, id); err2 == nil {
				return u, nil
			}
		}
	}
	return u, err
}

func (b *brokenStore) UpdateUser(ctx context.Context, u provision.User, expectedVersion int64) (provision.User, error) {
	if b.sh.bug == noVersionCheck {
		cur, err := b.Store.GetUser(ctx, u.TenantID, u.ID)
		if err != nil {
			return provision.User{}, err
		}
		expectedVersion = cur.Version
	}
	return b.Store.UpdateUser(ctx, u, expectedVersion)
}

// leakyEvents has an EventLog that ignores transactions: correct in every
// other way (gapless, per tenant, copies), but what a transaction appends
// stays when it rolls back.
type leakyEvents struct {
	*brokenStore
}

func (l *leakyEvents) AppendEvents(ctx context.Context, tenantID string, evs []provision.Event) ([]provision.Event, error) {
	return l.sh.book.append(tenantID, evs)
}

func (l *leakyEvents) ListEvents(ctx context.Context, tenantID string, after int64, limit int) ([]provision.Event, error) {
	return l.sh.book.list(tenantID, after, limit)
}

func (l *leakyEvents) LastSeq(ctx context.Context, tenantID string) (int64, error) {
	b := l.sh.book
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[tenantID], nil
}

func (l *leakyEvents) Cursor(ctx context.Context, tenantID, consumer string) (int64, error) {
	b := l.sh.book
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cursors[tenantID+"\x00"+consumer], nil
}

func (l *leakyEvents) SetCursor(ctx context.Context, tenantID, consumer string, seq int64) error {
	b := l.sh.book
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cursors[tenantID+"\x00"+consumer] = seq
	return nil
}

func (l *leakyEvents) PurgeEvents(ctx context.Context, tenantID string, before time.Time) (int, error) {
	b := l.sh.book
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.events[tenantID][:0]
	n := 0
	for _, e := range b.events[tenantID] {
		if e.Time.Before(before) {
			n++
			continue
		}
		kept = append(kept, e)
	}
	b.events[tenantID] = kept
	return n, nil
}

func (l *leakyEvents) RedactEvents(ctx context.Context, tenantID, userID string) (int, error) {
	b := l.sh.book
	b.mu.Lock()
	defer b.mu.Unlock()
	redact := func(u *provision.User) (*provision.User, bool) {
		if u == nil || u.ID != userID {
			return u, false
		}
		return &provision.User{ID: u.ID, TenantID: u.TenantID, Deleted: u.Deleted}, true
	}
	n := 0
	for i := range b.events[tenantID] {
		e := &b.events[tenantID][i]
		var c1, c2 bool
		e.User, c1 = redact(e.User)
		e.PreviousUser, c2 = redact(e.PreviousUser)
		if c1 || c2 {
			n++
		}
	}
	return n, nil
}

type eventBook struct {
	mu      sync.Mutex
	events  map[string][]provision.Event
	last    map[string]int64
	cursors map[string]int64
}

func newEventBook() *eventBook {
	return &eventBook{events: map[string][]provision.Event{}, last: map[string]int64{}, cursors: map[string]int64{}}
}

func (b *eventBook) append(tenantID string, evs []provision.Event) ([]provision.Event, error) {
	evs, err := clone(evs)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range evs {
		b.last[tenantID]++
		evs[i].Seq = b.last[tenantID]
	}
	b.events[tenantID] = append(b.events[tenantID], evs...)
	return clone(evs)
}

func (b *eventBook) list(tenantID string, after int64, limit int) ([]provision.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []provision.Event
	for _, e := range b.events[tenantID] {
		if len(out) >= limit {
			break
		}
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return clone(out)
}

// clone deep-copies through JSON, which every field of Event survives.
func clone[T any](v T) (T, error) {
	var out T
	data, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("clone: %w", err)
	}
	err = json.Unmarshal(data, &out)
	return out, err
}
