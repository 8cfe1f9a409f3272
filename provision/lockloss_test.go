package provision_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// losingStore is a memstore whose locks the test can take away from
// their holder, as a lease that was not renewed in time.
type losingStore struct {
	*memstore.Store
	mu    sync.Mutex
	loses []func()
}

func (s *losingStore) TryLock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	held, release, err := s.Store.TryLock(ctx, tenantID, name)
	if err != nil {
		return nil, nil, err
	}
	lost, lose := context.WithCancelCause(held)
	s.mu.Lock()
	s.loses = append(s.loses, func() { lose(provision.ErrLockLost); release() })
	s.mu.Unlock()
	return lost, release, nil
}

// loseAll takes every lock handed out so far from its holder.
func (s *losingStore) loseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.loses {
		f()
	}
	s.loses = nil
}

// TestConsumeStopsWhenItsLockIsLost: fn's context ends when the lock is
// lost; the pass stores neither the cursor nor a failure, and the next
// pass delivers the event again.
func TestConsumeStopsWhenItsLockIsLost(t *testing.T) {
	store := &losingStore{Store: memstore.New()}
	e, err := provision.NewEngine(provision.Config{Store: store, Tenants: tenants(), PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(t.Context(), okta, provision.User{UserName: "a", Active: true}); err != nil {
		t.Fatal(err)
	}
	var (
		first   atomic.Bool
		inFn    = make(chan struct{})
		cause   = make(chan error, 1)
		got     delivered
		calls   atomic.Int64
		acceptN atomic.Int64
	)
	first.Store(true)
	startConsumer(t, e, "webhook", fastOpts, func(ctx context.Context, ev provision.Event) error {
		calls.Add(1)
		if ev.TenantID == "acme" && first.CompareAndSwap(true, false) {
			close(inFn)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return ctx.Err()
		}
		got.add(ev)
		acceptN.Add(1)
		return nil
	})
	<-inFn
	store.loseAll()
	select {
	case c := <-cause:
		if !errors.Is(c, provision.ErrLockLost) {
			t.Fatalf("fn's context ended with %v, want ErrLockLost", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fn's context still live after its lock was lost")
	}
	waitFor(t, "the event again after the loss", func() bool { return len(got.get("acme")) == 1 })
	st, err := e.ConsumerStatus(t.Context(), "webhook", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st.Attempts != 0 || st.Failing || st.Cursor != 1 {
		t.Fatalf("status after a lost lock and a redelivery = %+v: a loss is not a failure", st)
	}
	if s := got.get("acme"); s[0] != 1 {
		t.Fatalf("acme got %v", s)
	}
}
