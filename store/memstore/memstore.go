// Package memstore is an in-memory provision.Store: the embedded default for
// tests, demos and single-process tools.
//
// It implements the whole contract: the required provision.Store and the
// optional capabilities provision.Searcher, provision.EventLog,
// provision.KV, provision.Locker and provision.Registry. Hand it to the
// engine:
//
//	engine, err := provision.NewEngine(provision.Config{
//		Store:   memstore.New(),
//		Tenants: []provision.Tenant{{ID: "acme", Connections: ...}},
//	})
//
// Everything lives in process memory and is lost when the process ends. A
// Store is safe for concurrent use; every call is scoped by tenant.
//
// # Transactions
//
// Atomically holds the store's write lock for the whole of fn and records
// every write in an undo journal: when fn returns an error or panics the
// journal is replayed backwards and the store is as it was. Other callers
// wait meanwhile, so keep fn short, and inside fn use only the tx Store it
// is given: calling the outer Store from fn deadlocks. A tx must not be used
// after its Atomically returned: every call then fails.
//
// # Costs
//
// Lookups by id, userName (case-insensitive), e-mail, displayName and
// (connection, externalId) links are hash lookups; a membership add,
// remove or test costs the same in a group of ten members as in one of a
// hundred thousand. ListUsers, ListGroups and ListMembers keep creation
// order and find the page's start in O(log n), so a deep page is as cheap
// as the first one. DeletedUsers, PurgeEvents and RedactEvents scan the
// tenant's tombstones or events. The Registry's TenantByDomain and
// ConnectionByTokenHash are hash lookups, and RegistryChanges finds its
// start by binary search, whatever the number of tenants.
//
// For benchmarks and demos that need many users fast, Load seeds a tenant
// without the engine.
package memstore

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

// Config configures a Store built with NewWithConfig. The zero Config is
// what New uses.
type Config struct {
	// Now is the clock used for KV expiry. Nil means time.Now.
	Now func() time.Time
}

// Store is an in-memory provision.Store with the EventLog, KV, Locker and
// Registry capabilities. Build it with New or NewWithConfig; the zero value is not
// usable. It is safe for concurrent use.
type Store struct {
	mu sync.RWMutex
	st state

	locks lockTable
}

var (
	_ provision.Store    = (*Store)(nil)
	_ provision.EventLog = (*Store)(nil)
	_ provision.KV       = (*Store)(nil)
	_ provision.Locker   = (*Store)(nil)
	_ provision.Store    = (*tx)(nil)
	_ provision.EventLog = (*tx)(nil)
	_ provision.KV       = (*tx)(nil)
	_ provision.Locker   = (*tx)(nil)

	_ provision.EventBacklog = (*Store)(nil)
	_ provision.EventBacklog = (*tx)(nil)
)

// New returns an empty Store using time.Now for KV expiry.
func New() *Store { return NewWithConfig(Config{}) }

// NewWithConfig returns an empty Store configured by cfg.
func NewWithConfig(cfg Config) *Store {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics instead)
	s := &Store{}
	s.st = state{
		tenants: map[string]*tenant{},
		rng:     rand.NewChaCha8(seed),
		now:     now,
	}
	s.locks.held = map[lockKey]*lockToken{}
	return s
}

// errTxDone is returned by every call on a tx whose Atomically returned.
var errTxDone = errors.New("memstore: transaction already finished: use the tx only inside its Atomically function")

// read runs f under the read lock.
func (s *Store) read(ctx context.Context, f func(st *state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return f(&s.st)
}

// write runs f under the write lock as a transaction of its own: f's
// writes are undone when it fails (or panics).
func (s *Store) write(ctx context.Context, f func(st *state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.endWrite()
	if err := f(&s.st); err != nil {
		s.st.rollbackTo(0)
		return err
	}
	s.st.commit()
	return nil
}

// endWrite rolls back what a panicking write left in the journal, and
// releases the write lock.
func (s *Store) endWrite() {
	if len(s.st.undo) > 0 {
		s.st.rollbackTo(0)
	}
	s.st.touched = s.st.touched[:0]
	s.mu.Unlock()
}

// Atomically runs fn with a transaction Store holding the store's write
// lock: fn's writes commit when it returns nil, and are undone when it
// returns an error (which Atomically returns) or panics (the panic goes
// on). The tx also implements provision.EventLog, provision.KV and
// provision.Locker; its EventLog and KV calls are part of the transaction,
// its locks are not (a lock is taken and released at once, as on the
// Store). Calling Atomically on tx runs in the same transaction; an error
// there undoes only that inner call's writes.
func (s *Store) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) (err error) {
	if fn == nil {
		return errors.New("memstore: Atomically needs a function")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	t := &tx{s: s}
	committed := false
	defer func() {
		t.mu.Lock()
		t.done = true
		t.mu.Unlock()
		if committed {
			s.st.commit()
		}
		s.endWrite() // rolls back unless committed emptied the journal
	}()
	err = fn(ctx, t)
	committed = err == nil
	return err
}

// tx is the Store handed to an Atomically function. It works on the
// store's state without locking, because Atomically holds the write lock;
// its own mutex only serializes goroutines that share the tx and fences
// its use after the end.
type tx struct {
	s    *Store
	mu   sync.Mutex
	done bool
}

// read runs f on the transaction's state.
func (t *tx) read(ctx context.Context, f func(st *state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return errTxDone
	}
	return f(&t.s.st)
}

// write runs f on the transaction's state; a failing f leaves no trace.
func (t *tx) write(ctx context.Context, f func(st *state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return errTxDone
	}
	mark := len(t.s.st.undo)
	if err := f(&t.s.st); err != nil {
		t.s.st.rollbackTo(mark)
		return err
	}
	return nil
}

// Atomically runs fn in the same transaction, as a savepoint: an error or
// a panic from fn undoes fn's writes only, and the error is returned to
// the enclosing function to handle.
func (t *tx) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) (err error) {
	if fn == nil {
		return errors.New("memstore: Atomically needs a function")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return errTxDone
	}
	mark := len(t.s.st.undo)
	t.mu.Unlock()
	ok := false
	defer func() {
		if ok {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.done {
			t.s.st.rollbackTo(mark)
		}
	}()
	err = fn(ctx, t)
	ok = err == nil
	return err
}

// TryLock takes the lock through the Store: locks are not transactional.
func (t *tx) TryLock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done {
		return nil, nil, errTxDone
	}
	return t.s.TryLock(ctx, tenantID, name)
}
