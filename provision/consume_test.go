package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// fastOpts are consumer options with millisecond backoffs, for tests.
var fastOpts = provision.ConsumeOptions{MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}

// startConsumer runs Consume in the background until the test ends.
func startConsumer(t *testing.T, e *provision.Engine, name string, opts provision.ConsumeOptions, fn provision.ConsumeFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Consume(ctx, name, fn, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Consume = %v", err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// delivered records what a consumer got, per tenant, safely.
type delivered struct {
	mu   sync.Mutex
	seqs map[string][]int64
}

func (d *delivered) add(ev provision.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seqs == nil {
		d.seqs = map[string][]int64{}
	}
	d.seqs[ev.TenantID] = append(d.seqs[ev.TenantID], ev.Seq)
}

func (d *delivered) get(tenant string) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int64(nil), d.seqs[tenant]...)
}

func TestConsumeSlowTenantDoesNotBlockOthers(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond })
	f.create(okta, provision.User{UserName: "stuck", Active: true})
	unblock := make(chan struct{})
	var got delivered
	startConsumer(t, f.engine, "sessions", fastOpts, func(ctx context.Context, ev provision.Event) error {
		if ev.TenantID == "acme" {
			select {
			case <-unblock:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		got.add(ev)
		return nil
	})
	for i := range 5 {
		f.create(globex, provision.User{UserName: fmt.Sprint("g", i), Active: true})
	}
	waitFor(t, "globex's events while acme's handler hangs", func() bool { return len(got.get("globex")) == 5 })
	if n := len(got.get("acme")); n != 0 {
		t.Fatalf("acme got %d events while its handler hangs", n)
	}
	close(unblock)
	waitFor(t, "acme's event", func() bool { return len(got.get("acme")) == 1 })
}

func TestConsumeFailureIsReportedAndBacksOff(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond; c.Now = nil })
	first := f.create(okta, provision.User{UserName: "a", Active: true})
	f.create(okta, provision.User{UserName: "b", Active: true})
	f.create(globex, provision.User{UserName: "g", Active: true})
	var healthy atomic.Bool
	var attempts atomic.Int64
	var got delivered
	startConsumer(t, f.engine, "webhook", fastOpts, func(ctx context.Context, ev provision.Event) error {
		if ev.TenantID == "acme" && !healthy.Load() {
			attempts.Add(1)
			return errors.New("receiver answered 503")
		}
		got.add(ev)
		return nil
	})
	waitFor(t, "globex's event", func() bool { return len(got.get("globex")) == 1 })
	time.Sleep(400 * time.Millisecond)
	// With backoffs from 5ms capped at 40ms (jittered down to 20ms), 400ms
	// allow about 20 attempts; a hot loop would make thousands.
	if n := attempts.Load(); n < 3 || n > 40 {
		t.Fatalf("%d attempts in 400ms", n)
	}
	st, err := f.engine.ConsumerStatus(f.ctx, "webhook", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Failing || st.Suspended || st.Attempts < 3 || st.LastError != "receiver answered 503" ||
		st.FailingSeq != 1 || st.Cursor != 0 || st.LastSeq != 2 || st.FailingSince.IsZero() || st.NextAttempt.Before(st.LastAttempt) {
		t.Fatalf("status while failing = %+v", st)
	}
	_ = first
	healthy.Store(true)
	waitFor(t, "acme's events after recovery", func() bool { return len(got.get("acme")) == 2 })
	if s := got.get("acme"); s[0] != 1 || s[1] != 2 {
		t.Fatalf("acme got %v", s)
	}
	st, err = f.engine.ConsumerStatus(f.ctx, "webhook", "acme")
	if err != nil || st.Failing || st.Cursor != 2 || st.Attempts != 0 {
		t.Fatalf("status after recovery = %+v, %v", st, err)
	}
}

// clock is a settable clock safe for concurrent use.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func TestConsumeSuspendsAPermanentFailureUntilResumed(t *testing.T) {
	var clk clock
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond; c.Now = clk.now })
	f.create(okta, provision.User{UserName: "a", Active: true})
	var healthy atomic.Bool
	var attempts atomic.Int64
	var got delivered
	opts := fastOpts
	opts.SuspendAfter = time.Hour
	startConsumer(t, f.engine, "webhook", opts, func(ctx context.Context, ev provision.Event) error {
		if !healthy.Load() {
			attempts.Add(1)
			return errors.New("connection refused")
		}
		got.add(ev)
		return nil
	})
	waitFor(t, "a few failures", func() bool { return attempts.Load() >= 3 })
	clk.advance(61 * time.Minute)
	var st provision.ConsumerStatus
	waitFor(t, "the suspension", func() bool {
		var err error
		st, err = f.engine.ConsumerStatus(f.ctx, "webhook", "acme")
		return err == nil && st.Suspended
	})
	if !st.Failing || !st.NextAttempt.IsZero() || st.Attempts < 4 {
		t.Fatalf("suspended status = %+v", st)
	}
	n := attempts.Load()
	time.Sleep(200 * time.Millisecond)
	if m := attempts.Load(); m != n {
		t.Fatalf("a suspended consumer was retried %d times", m-n)
	}
	healthy.Store(true)
	if err := f.engine.ResumeConsumer(f.ctx, "webhook", "acme"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after ResumeConsumer", func() bool { return len(got.get("acme")) == 1 })
}

func TestConsumeRestartKeepsTheStoredBackoff(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond; c.Now = nil })
	f.create(okta, provision.User{UserName: "a", Active: true})
	var attempts atomic.Int64
	failing := func(ctx context.Context, ev provision.Event) error {
		attempts.Add(1)
		return errors.New("down")
	}
	opts := provision.ConsumeOptions{MinBackoff: 2 * time.Second, MaxBackoff: 2 * time.Second}
	for range 3 { // three quick restarts of a crashing process
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan error, 1)
		go func() { done <- f.engine.Consume(ctx, "webhook", failing, opts) }()
		time.Sleep(50 * time.Millisecond)
		cancel()
		<-done
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d attempts across restarts within the backoff, want 1", n)
	}
}

func TestConsumeReplicasNeverOverlapPerTenant(t *testing.T) {
	store := memstore.New()
	var engines []*provision.Engine
	for range 2 {
		e, err := provision.NewEngine(provision.Config{Store: store, Tenants: tenants(), PollInterval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	var (
		inside  [2]atomic.Int32 // per tenant: handlers running now
		overlap atomic.Bool
		got     delivered
		byRep   [2]atomic.Int64
	)
	idx := map[string]int{"acme": 0, "globex": 1}
	for r, e := range engines {
		startConsumer(t, e, "sessions", fastOpts, func(ctx context.Context, ev provision.Event) error {
			i := idx[ev.TenantID]
			if inside[i].Add(1) > 1 {
				overlap.Store(true)
			}
			time.Sleep(100 * time.Microsecond)
			inside[i].Add(-1)
			got.add(ev)
			byRep[r].Add(1)
			return nil
		})
	}
	const n = 200
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			e := engines[w%2]
			o := []provision.Origin{okta, globex}[w%2]
			for i := range n / 4 {
				if _, err := e.CreateUser(context.Background(), o, provision.User{UserName: fmt.Sprintf("u%d-%d", w, i), Active: true}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, tenant := range []string{"acme", "globex"} {
		waitFor(t, tenant+"'s events", func() bool { return len(got.get(tenant)) >= n/2 })
		seqs := got.get(tenant)
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("%s got %v..., want 1..%d each once in order", tenant, seqs[:i+1], n/2)
			}
		}
	}
	if overlap.Load() {
		t.Fatal("two replicas delivered one tenant's events at the same time")
	}
	t.Logf("deliveries by replica: %d, %d", byRep[0].Load(), byRep[1].Load())
}
