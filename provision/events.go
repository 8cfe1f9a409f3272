package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is a Consume call running without an EventLog.
type subscriber struct {
	ch chan Event
}

// consumerHub connects commits to the running durable consumers: each
// Consume call registers a listener, and afterCommit marks the committing
// tenant dirty in every listener, so a commit makes a consumer read only
// that tenant's log. It also remembers the consumer names this engine ran,
// so Purge can warn before it removes events one of them has not had.
// Its zero value is ready to use.
type consumerHub struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
	names     map[string]struct{}
}

type listener struct {
	mu    sync.Mutex
	dirty map[string]bool
	all   bool          // every tenant may have new events: poll now
	ch    chan struct{} // capacity 1: "dirty is not empty or all is set"
}

func (h *consumerHub) register(name string) *listener {
	l := &listener{dirty: map[string]bool{}, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.listeners == nil {
		h.listeners = map[*listener]struct{}{}
		h.names = map[string]struct{}{}
	}
	h.listeners[l] = struct{}{}
	h.names[name] = struct{}{}
	h.mu.Unlock()
	return l
}

func (h *consumerHub) unregister(l *listener) {
	h.mu.Lock()
	delete(h.listeners, l)
	h.mu.Unlock()
}

func (h *consumerHub) consumerNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.names))
	for n := range h.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (h *consumerHub) notify(tenantID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		l.mark(tenantID)
	}
}

// mark records that the tenant has new events.
func (l *listener) mark(tenantID string) {
	l.mu.Lock()
	l.dirty[tenantID] = true
	l.mu.Unlock()
	l.signal()
}

// markAll records that any tenant may have new events.
func (l *listener) markAll() {
	l.mu.Lock()
	l.all = true
	l.mu.Unlock()
	l.signal()
}

func (l *listener) signal() {
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

// take returns and clears the dirty tenants, and whether every tenant
// must be looked at.
func (l *listener) take() ([]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.dirty))
	for t := range l.dirty {
		out = append(out, t)
	}
	clear(l.dirty)
	all := l.all
	l.all = false
	return out, all
}

// afterCommit wakes durable consumers, or hands events to the best-effort
// subscribers when the store has no EventLog.
func (e *Engine) afterCommit(evs []Event) {
	e.mu.Lock()
	close(e.wake)
	e.wake = make(chan struct{})
	var subs []*subscriber
	if e.events == nil {
		for s := range e.subs {
			subs = append(subs, s)
		}
	}
	e.mu.Unlock()
	var last string
	for _, ev := range evs {
		if ev.TenantID != last {
			e.hub.notify(ev.TenantID)
			last = ev.TenantID
		}
	}
	for _, s := range subs {
		for _, ev := range evs {
			select {
			case s.ch <- ev:
			default:
				e.log.Warn("provision: best-effort consumer is behind; event dropped", "tenant", ev.TenantID, "kind", ev.Kind)
			}
		}
	}
}

// Events returns at most limit events of the tenant after seq after, in
// order: the cursor API. It needs a Store with EventLog. A limit outside
// 1..1000 means 1000.
//
// A client keeps the Seq of the last event it handled and asks for the
// events after it; an empty answer means it is up to date. Events older
// than Config.EventRetention are purged by Purge, so a cursor left behind
// longer than that skips them.
func (e *Engine) Events(ctx context.Context, tenantID string, after int64, limit int) ([]Event, error) {
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return nil, err
	}
	if e.events == nil {
		return nil, errors.New("provision: the store has no EventLog; events cannot be listed")
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	return e.events.ListEvents(ctx, tenantID, after, limit)
}

// ConsumeFunc handles one event. Returning an error makes the consumer
// retry the same event later (with capped exponential backoff and jitter)
// before it moves on: delivery is at least once and in order per tenant,
// so a handler must tolerate seeing an event again (Seq identifies it).
// The context ends when Consume stops; a handler doing I/O should also
// bound each attempt with its own timeout.
type ConsumeFunc func(ctx context.Context, ev Event) error

// ConsumeOptions tune Consume. The zero value gives the defaults.
type ConsumeOptions struct {
	// Parallelism is how many tenants are delivered at the same time, so
	// a slow or failing tenant does not hold up the others. Each tenant's
	// events are still delivered one at a time, in order. Default 4.
	Parallelism int
	// MinBackoff is the delay before the first retry of a failed event.
	// It doubles on every further failure of that event, up to
	// MaxBackoff, with jitter (the actual delay is between half and all
	// of it). Default 1s.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between retries. Default 5m.
	MaxBackoff time.Duration
	// SuspendAfter, when positive, suspends a tenant's delivery after its
	// handler has failed without a success for that long (by Config.Now):
	// Consume stops retrying it, logs an error and reports it in
	// ConsumerStatus, until ResumeConsumer is called. The events stay in
	// the log (subject to Config.EventRetention). Zero means never
	// suspend: retry at MaxBackoff for as long as it takes.
	SuspendAfter time.Duration
	// Tenants, when set, returns the tenants to consume (it is called on
	// every pass, so it may change). Nil means every declared tenant and
	// every tenant registered in the Store's Registry.
	// Returning the very same slice as the last call (not a copy) while
	// nothing changed spares the consumer rebuilding its set of tenants
	// at every poll; the slice must not be modified once returned.
	Tenants func() []string
	// BatchSize is how many events of a tenant are read at a time.
	// Default 256.
	BatchSize int
}

func (o *ConsumeOptions) setDefaults() error {
	if o.Parallelism < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 || o.SuspendAfter < 0 || o.BatchSize < 0 {
		return errors.New("provision: ConsumeOptions must not be negative")
	}
	if o.Parallelism == 0 {
		o.Parallelism = 4
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.MaxBackoff < o.MinBackoff {
		return fmt.Errorf("provision: ConsumeOptions.MaxBackoff %v is below MinBackoff %v", o.MaxBackoff, o.MinBackoff)
	}
	if o.BatchSize == 0 {
		o.BatchSize = 256
	}
	return nil
}

// backoff returns the delay after the attempts-th consecutive failure:
// MinBackoff doubled per failure, capped at MaxBackoff, then jittered into
// [d/2, d].
func (o *ConsumeOptions) backoff(attempts int) time.Duration {
	d := o.MinBackoff
	for i := 1; i < attempts && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// ConsumerStatus is the delivery state of one consumer for one tenant, as
// stored (so every replica reads the same): how far it got, and whether it
// is failing.
type ConsumerStatus struct {
	Consumer string `json:"consumer"`
	TenantID string `json:"tenantId"`
	// Cursor is the Seq of the last event the consumer acknowledged.
	Cursor int64 `json:"cursor"`
	// LastSeq is the tenant's newest event; LastSeq-Cursor events wait.
	LastSeq int64 `json:"lastSeq"`
	// Failing is set while the handler fails on the event after Cursor.
	Failing bool `json:"failing"`
	// Suspended is set once a failing consumer was failing for longer
	// than ConsumeOptions.SuspendAfter: nothing is retried until
	// ResumeConsumer.
	Suspended bool `json:"suspended,omitempty"`
	// Attempts counts the failed attempts since the last success.
	Attempts int `json:"attempts,omitempty"`
	// FailingSeq is the event the handler fails on.
	FailingSeq int64 `json:"failingSeq,omitempty"`
	// LastError is the last attempt's error.
	LastError string `json:"lastError,omitempty"`
	// FailingSince is the time of the first failure since the last
	// success.
	FailingSince time.Time `json:"failingSince,omitzero"`
	// LastAttempt is the time of the last failed attempt.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// NextAttempt is when the event is retried (zero when suspended).
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
}

// failureRecord is what the KV holds for a failing consumer.
type failureRecord struct {
	Suspended    bool      `json:"suspended,omitempty"`
	Attempts     int       `json:"attempts"`
	FailingSeq   int64     `json:"failingSeq"`
	LastError    string    `json:"lastError"`
	FailingSince time.Time `json:"failingSince"`
	LastAttempt  time.Time `json:"lastAttempt"`
	NextAttempt  time.Time `json:"nextAttempt,omitzero"`
}

func statusKey(name string) string { return "consumer/" + name + "/failure" }

func (e *Engine) loadFailure(ctx context.Context, tenantID, name string) (failureRecord, bool, error) {
	b, err := e.kvGet(ctx, tenantID, statusKey(name))
	if errors.Is(err, ErrNotFound) {
		return failureRecord{}, false, nil
	}
	if err != nil {
		return failureRecord{}, false, err
	}
	var r failureRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return failureRecord{}, false, fmt.Errorf("provision: consumer %q status of tenant %q: %w", name, tenantID, err)
	}
	return r, true, nil
}

func (e *Engine) saveFailure(ctx context.Context, tenantID, name string, r failureRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return e.kvSet(ctx, tenantID, statusKey(name), b, 0)
}

// ConsumerStatus returns the stored delivery state of the named consumer
// for the tenant: its cursor, the tenant's last Seq and, when the handler
// is failing, the attempts, the last error and since when. A host shows it
// on an admin page or alerts on Failing and Suspended. It needs a Store
// with EventLog.
func (e *Engine) ConsumerStatus(ctx context.Context, name, tenantID string) (ConsumerStatus, error) {
	st := ConsumerStatus{Consumer: name, TenantID: tenantID}
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return st, err
	}
	if e.events == nil {
		return st, errors.New("provision: the store has no EventLog; consumers keep no status")
	}
	var err error
	if st.Cursor, err = e.events.Cursor(ctx, tenantID, name); err != nil {
		return st, fmt.Errorf("provision: read cursor: %w", err)
	}
	if st.LastSeq, err = e.events.LastSeq(ctx, tenantID); err != nil {
		return st, fmt.Errorf("provision: last seq: %w", err)
	}
	r, ok, err := e.loadFailure(ctx, tenantID, name)
	if err != nil {
		return st, err
	}
	if ok {
		st.Failing = true
		st.Suspended = r.Suspended
		st.Attempts = r.Attempts
		st.FailingSeq = r.FailingSeq
		st.LastError = r.LastError
		st.FailingSince = r.FailingSince
		st.LastAttempt = r.LastAttempt
		if !r.Suspended {
			st.NextAttempt = r.NextAttempt
		}
	}
	return st, nil
}

// ResumeConsumer clears the failure state of the named consumer for the
// tenant (a suspension included): a running Consume retries the pending
// event at its next pass (within Config.PollInterval). Call it once the
// receiving end is fixed.
func (e *Engine) ResumeConsumer(ctx context.Context, name, tenantID string) error {
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return err
	}
	if err := e.kvDelete(ctx, tenantID, statusKey(name)); err != nil {
		return fmt.Errorf("provision: resume consumer %q of tenant %q: %w", name, tenantID, err)
	}
	e.hub.notify(tenantID)
	return nil
}

// Consume delivers every tenant's events to fn, in Seq order per tenant,
// after the cursor stored for name, and advances that cursor after each
// event fn accepts. It runs until ctx ends and then returns ctx's error.
// opts, at most one, tunes the delivery; none is the defaults of
// ConsumeOptions.
//
// With an EventLog the delivery is durable: at least once, resuming after a
// crash or a restart where the last accepted event was, and the Locker lets
// one replica at a time consume a tenant for name. Without an EventLog
// Consume gets only the events committed while it runs, best-effort.
// Tenants are delivered in parallel (up to opts.Parallelism at a time),
// each in Seq order. A tenant's events are read in batches while holding
// the Locker lock "consumer:"+name of the tenant, so across replicas one
// delivers a tenant at a time; the cursor is stored after every accepted
// event, so a crash redelivers at most the event in flight. fn's context
// is the lock's held context: when the lock is lost (see Locker), it
// ends, the tenant's pass stops at once, stores neither the cursor nor a
// failure, and the next pass (here or on the replica that holds the lock
// then) redelivers the event in flight.
//
// When fn fails, the tenant's delivery stops at that event, the failure is
// stored (see ConsumerStatus) and logged, the lock is released, and the
// event is retried after a backoff (opts.MinBackoff doubling up to
// opts.MaxBackoff, with jitter), while the other tenants go on. A failure
// record left by another replica or an earlier process is honoured: its
// NextAttempt is waited for. After opts.SuspendAfter of failures the
// tenant is suspended until ResumeConsumer. The first success clears the
// failure.
//
// Consume wakes on the engine's own commits, on the commits of other
// replicas when the Store is a CommitWatcher with a live notification
// source, and polls every Config.PollInterval in any case (the fallback:
// a missed notification costs at most that delay). A poll asks an
// EventBacklog Store for the tenants behind in one query; without one it
// reads every tenant's cursor and log.
func (e *Engine) Consume(ctx context.Context, name string, fn ConsumeFunc, options ...ConsumeOptions) error {
	if len(options) > 1 {
		return errors.New("provision: Consume takes at most one ConsumeOptions")
	}
	var opts ConsumeOptions
	if len(options) == 1 {
		opts = options[0]
	}
	if name == "" {
		return errors.New("provision: Consume needs a consumer name")
	}
	if fn == nil {
		return errors.New("provision: Consume needs a function")
	}
	if err := opts.setDefaults(); err != nil {
		return err
	}
	if e.events == nil {
		return e.consumeBestEffort(ctx, fn, &opts)
	}
	c := &consumer{e: e, name: name, fn: fn, opts: opts, states: map[string]*tenantState{}}
	return c.run(ctx)
}

// consumer is one running Consume. Its scheduling state is owned by
// run's goroutine; drains run on up to Parallelism other goroutines.
type consumer struct {
	e    *Engine
	name string
	fn   ConsumeFunc
	opts ConsumeOptions

	// backlog is the events waiting as of the last poll (-1: unknown),
	// for the idprov.consumer.backlog gauge.
	backlog atomic.Int64

	states  map[string]*tenantState
	live    map[string]bool // the tenants to consume, as of the last look
	liveSet uint64          // the engine's tenantSet live was built at
	lastIDs []string        // what opts.Tenants returned when live was built
	hasLive bool
	queue   []string // tenants to drain, first come first served
	queued  map[string]bool
	waiting map[string]time.Time // tenants backing off, until when
}

type tenantState struct {
	running bool
	// again: new events were signalled while it was running.
	again bool
	// failed is set while a failure record is stored for the tenant and
	// this consumer knows it (it scheduled the retry itself).
	failed bool
}

// outcome is what one drain of a tenant reports back to run.
type outcome struct {
	tenant string
	// more: a full batch was delivered; run again now.
	more bool
	// wait: do not run before this long (a backoff, a suspension, a
	// record from another replica).
	wait time.Duration
	// failed: a failure record is stored for the tenant.
	failed bool
	err    error
}

func (c *consumer) refreshLive() {
	var ids []string
	if c.opts.Tenants != nil {
		ids = c.opts.Tenants()
		if c.hasLive && sameSlice(ids, c.lastIDs) {
			return
		}
		c.lastIDs, c.hasLive = ids, true
	} else {
		var changed bool
		var gen uint64
		if ids, gen, changed = c.e.tenantIDsSince(c.liveSet, c.hasLive); !changed {
			return
		}
		c.liveSet, c.hasLive = gen, true
	}
	c.live = make(map[string]bool, len(ids))
	for _, id := range ids {
		c.live[id] = true
	}
	for id, s := range c.states {
		if !c.live[id] && !s.running {
			delete(c.states, id)
			delete(c.waiting, id)
		}
	}
}

func (c *consumer) enqueue(id string) {
	if !c.queued[id] {
		c.queued[id] = true
		c.queue = append(c.queue, id)
	}
}

func (c *consumer) state(id string) *tenantState {
	s, ok := c.states[id]
	if !ok {
		s = &tenantState{}
		c.states[id] = s
	}
	return s
}

// poll queues the live tenants that may have new events: those the
// EventLog's EventBacklog reports behind (one query per page), or every
// live tenant when it has none or it fails.
func (c *consumer) poll(ctx context.Context) {
	c.refreshLive()
	if bl, ok := c.e.events.(EventBacklog); ok {
		ids, err := c.behind(ctx, bl)
		if err == nil {
			for _, id := range ids {
				c.enqueue(id)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.e.log.WarnContext(ctx, "provision: reading the consumer's backlog failed; looking at every tenant", "consumer", c.name, "err", err)
	}
	ids := make([]string, 0, len(c.live))
	for id := range c.live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.enqueue(id)
	}
	if c.opts.Tenants == nil && c.e.reg != nil {
		// Without a backlog query, the registered tenants are looked at
		// one by one too.
		for off := 0; ; {
			recs, total, err := c.e.reg.store.ListTenantRecords(ctx, Page{Offset: off, Limit: 1000})
			if err != nil {
				c.e.log.WarnContext(ctx, "provision: listing the registered tenants failed", "consumer", c.name, "err", err)
				return
			}
			for _, r := range recs {
				c.enqueue(r.TenantID)
			}
			off += len(recs)
			if len(recs) == 0 || off >= total {
				return
			}
		}
	}
}

func (c *consumer) run(ctx context.Context) error {
	e := c.e
	c.states, c.queued, c.waiting = map[string]*tenantState{}, map[string]bool{}, map[string]time.Time{}
	l := e.hub.register(c.name)
	defer e.hub.unregister(l)
	defer e.watch(l)()
	defer e.metrics.running(c)()
	results := make(chan outcome)
	inFlight := 0
	defer func() {
		for ; inFlight > 0; inFlight-- {
			<-results
		}
	}()
	c.poll(ctx)
	nextPoll := time.Now().Add(e.pollInterval)
	timer := time.NewTimer(e.pollInterval)
	defer timer.Stop()
	for {
		now := time.Now()
		wakeAt := nextPoll
		for id, at := range c.waiting {
			if now.Before(at) {
				wakeAt = minTime(wakeAt, at)
				continue
			}
			delete(c.waiting, id)
			c.enqueue(id)
		}
		for inFlight < c.opts.Parallelism && len(c.queue) > 0 {
			id := c.queue[0]
			c.queue = c.queue[1:]
			delete(c.queued, id)
			if _, backingOff := c.waiting[id]; backingOff || !c.isLive(ctx, id) {
				continue // queued again when its wait ends
			}
			s := c.state(id)
			if s.running {
				s.again = true
				continue
			}
			s.running = true
			inFlight++
			go func(id string, failed bool) {
				results <- c.drain(ctx, id, failed)
			}(id, s.failed)
		}
		if len(c.queue) == 0 {
			c.queue = nil // let the backing array go
		}
		timer.Reset(max(time.Until(wakeAt), 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-results:
			inFlight--
			c.settle(ctx, r)
		case <-l.ch:
			ids, all := l.take()
			if all {
				c.poll(ctx)
				nextPoll = time.Now().Add(e.pollInterval)
			}
			for _, id := range ids {
				if !c.live[id] {
					c.refreshLive()
				}
				c.enqueue(id)
			}
		case <-timer.C:
			if !time.Now().Before(nextPoll) {
				c.poll(ctx)
				nextPoll = time.Now().Add(e.pollInterval)
			}
		}
	}
}

func (c *consumer) settle(ctx context.Context, r outcome) {
	s := c.state(r.tenant)
	s.running = false
	s.failed = r.failed
	again := s.again
	s.again = false
	switch {
	case r.err != nil:
		if ctx.Err() == nil {
			// A store error: try again at the next poll.
			c.e.log.WarnContext(ctx, "provision: consumer pass failed", "consumer", c.name, "tenant", r.tenant, "err", r.err)
		}
	case r.wait > 0:
		c.waiting[r.tenant] = time.Now().Add(r.wait)
	case r.more || again:
		c.enqueue(r.tenant)
	}
}

// drain delivers one batch of the tenant's pending events to fn while
// holding the consumer's lock for the tenant. knownFailure says this
// consumer stored the tenant's failure record itself, and scheduled this
// run after its backoff.
func (c *consumer) drain(ctx context.Context, tenantID string, knownFailure bool) outcome {
	e, name := c.e, c.name
	out := outcome{tenant: tenantID, failed: knownFailure}
	held, release, err := e.lock(ctx, tenantID, "consumer:"+name)
	if errors.Is(err, ErrLocked) {
		return out // another replica is on it; look again at the next poll
	}
	if err != nil {
		out.err = err
		return out
	}
	defer release()
	// Everything below runs under held: when the lock is lost, fn's
	// context ends, the pass stops at once and stores nothing more, and
	// the next pass (on whichever replica holds the lock then) goes on
	// from the stored cursor.
	lost := func() outcome {
		out.err = fmt.Errorf("provision: consumer %q of tenant %q stopped: %w", name, tenantID, lostErr(held))
		return out
	}
	cursor, err := e.events.Cursor(held, tenantID, name)
	if err != nil {
		out.err = fmt.Errorf("provision: read cursor: %w", err)
		return out
	}
	evs, err := e.events.ListEvents(held, tenantID, cursor, c.opts.BatchSize)
	if err != nil {
		out.err = fmt.Errorf("provision: list events: %w", err)
		return out
	}
	if len(evs) == 0 {
		return out
	}
	rec, failing, err := e.loadFailure(held, tenantID, name)
	if err != nil {
		out.err = err
		return out
	}
	out.failed = failing
	if failing {
		if rec.Suspended {
			// Look again at every poll, for a ResumeConsumer.
			out.wait = e.pollInterval
			return out
		}
		if !knownFailure {
			// Another replica or an earlier process stored it: keep to
			// its schedule, so restarts do not retry in a hot loop.
			if wait := rec.NextAttempt.Sub(e.now()); wait > 0 {
				out.wait = min(wait, c.opts.MaxBackoff)
				return out
			}
		}
	}
	if evs[0].Seq != cursor+1 {
		e.log.ErrorContext(ctx, "provision: events were purged before this consumer had them", "consumer", name, "tenant", tenantID, "cursor", cursor, "next", evs[0].Seq)
	}
	for _, ev := range evs {
		if lockLost(ctx, held) {
			return lost()
		}
		err := c.fn(held, ev)
		if lockLost(ctx, held) {
			// Whatever fn answered, another holder may be delivering
			// this tenant already: store nothing, not even a failure.
			return lost()
		}
		if err != nil {
			if ctx.Err() != nil {
				out.err = ctx.Err()
				return out
			}
			return c.fail(held, tenantID, ev, err, rec, failing)
		}
		// An accepted event is acknowledged even when ctx has just
		// ended, so a clean stop redelivers nothing; but not after the
		// lock was lost, and a fencing Locker refuses the write if the
		// lock goes in between.
		if err := c.ack(held, tenantID, ev.Seq); err != nil {
			if errors.Is(err, ErrLockLost) || lockLost(ctx, held) {
				return lost()
			}
			out.err = fmt.Errorf("provision: store cursor: %w", err)
			return out
		}
		e.metrics.accepted(ctx, name, ev, e.now())
		if ctx.Err() != nil {
			out.err = ctx.Err()
			return out
		}
		if failing {
			if err := e.kvDelete(held, tenantID, statusKey(name)); err != nil {
				if lockLost(ctx, held) {
					return lost()
				}
				out.err = fmt.Errorf("provision: clear consumer status: %w", err)
				return out
			}
			e.log.InfoContext(ctx, "provision: consumer recovered", "consumer", name, "tenant", tenantID, "seq", ev.Seq, "attempts", rec.Attempts, "failingSince", rec.FailingSince)
			failing, out.failed, rec = false, false, failureRecord{}
		}
	}
	out.more = len(evs) == c.opts.BatchSize
	return out
}

// ack stores the cursor after an accepted event. held is the lock's
// context: ack runs even when it has just ended with the consumer's ctx,
// but keeps its values, so a fencing Store checks the lock in the
// cursor's transaction.
func (c *consumer) ack(held context.Context, tenantID string, seq int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(held), 10*time.Second)
	defer cancel()
	return c.e.events.SetCursor(ctx, tenantID, c.name, seq)
}

// fail records fn's failure on ev and returns when to retry.
func (c *consumer) fail(ctx context.Context, tenantID string, ev Event, ferr error, rec failureRecord, failing bool) outcome {
	e, name := c.e, c.name
	now := e.now().UTC()
	if !failing || rec.FailingSeq != ev.Seq {
		rec = failureRecord{FailingSeq: ev.Seq, FailingSince: now}
	}
	rec.Attempts++
	rec.LastAttempt = now
	rec.LastError = ferr.Error()
	wait := c.opts.backoff(rec.Attempts)
	rec.NextAttempt = now.Add(wait)
	if c.opts.SuspendAfter > 0 && now.Sub(rec.FailingSince) >= c.opts.SuspendAfter {
		rec.Suspended = true
		rec.NextAttempt = time.Time{}
		wait = e.pollInterval
		e.log.ErrorContext(ctx, "provision: consumer suspended after failing too long; call ResumeConsumer once fixed", "consumer", name, "tenant", tenantID, "seq", ev.Seq, "attempts", rec.Attempts, "failingSince", rec.FailingSince, "err", ferr)
	} else {
		e.log.WarnContext(ctx, "provision: consumer failed; will retry", "consumer", name, "tenant", tenantID, "seq", ev.Seq, "attempts", rec.Attempts, "failingSince", rec.FailingSince, "backoff", wait, "err", ferr)
	}
	e.metrics.failed(ctx, name, rec.Suspended)
	out := outcome{tenant: tenantID, wait: wait, failed: true}
	if err := e.saveFailure(ctx, tenantID, name, rec); err != nil {
		e.log.WarnContext(ctx, "provision: storing a consumer's failure failed", "consumer", name, "tenant", tenantID, "err", err)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (e *Engine) consumeBestEffort(ctx context.Context, fn ConsumeFunc, opts *ConsumeOptions) error {
	s := &subscriber{ch: make(chan Event, 4096)}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.subs, s)
		e.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-s.ch:
			for attempt := 1; ; attempt++ {
				err := fn(ctx, ev)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				wait := opts.backoff(attempt)
				e.log.WarnContext(ctx, "provision: best-effort consumer failed; retrying", "tenant", ev.TenantID, "kind", ev.Kind, "attempts", attempt, "backoff", wait, "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
	}
}

func (e *Engine) lock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	if e.locker != nil {
		return e.locker.TryLock(ctx, tenantID, name)
	}
	return e.localLocks.TryLock(ctx, tenantID, name)
}

// lockLost reports whether held, a Locker's context taken under ctx,
// ended because its lock was lost rather than because ctx ended. A
// Locker that cancels held without ErrLockLost while ctx is live lost it
// too.
func lockLost(ctx, held context.Context) bool {
	if held.Err() == nil {
		return false
	}
	return errors.Is(context.Cause(held), ErrLockLost) || ctx.Err() == nil
}

// lostErr is the error of a consumer pass whose lock was lost.
func lostErr(held context.Context) error {
	if cause := context.Cause(held); errors.Is(cause, ErrLockLost) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrLockLost, context.Cause(held))
}
