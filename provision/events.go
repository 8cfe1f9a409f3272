package provision

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// subscriber is a Consume call running without an EventLog.
type subscriber struct {
	ch chan Event
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

func (e *Engine) wakeChan() <-chan struct{} {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.wake
}

// Events returns at most limit events of the tenant after seq after, in
// order: the cursor API. It needs a Store with EventLog.
func (e *Engine) Events(ctx context.Context, tenantID string, after int64, limit int) ([]Event, error) {
	if _, err := e.Tenant(tenantID); err != nil {
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

// ConsumeFunc handles one event. Returning an error makes Consume retry the
// same event (with capped backoff) before it moves on: delivery is at least
// once and in order per tenant.
type ConsumeFunc func(ctx context.Context, ev Event) error

// Consume delivers every tenant's events to fn, in Seq order per tenant,
// after the cursor stored for name, and advances that cursor after each
// event fn accepts. It runs until ctx ends and then returns ctx's error.
//
// With an EventLog the delivery is durable: at least once, resuming after a
// crash or a restart where the last accepted event was, and the Locker lets
// one replica at a time consume a tenant for name. Without an EventLog
// Consume gets only the events committed while it runs, best-effort.
func (e *Engine) Consume(ctx context.Context, name string, fn ConsumeFunc) error {
	if name == "" {
		return errors.New("provision: Consume needs a consumer name")
	}
	if fn == nil {
		return errors.New("provision: Consume needs a function")
	}
	if e.events == nil {
		return e.consumeBestEffort(ctx, fn)
	}
	for {
		wake := e.wakeChan()
		for _, t := range e.Tenants() {
			if err := e.drain(ctx, t.ID, name, fn); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				e.log.WarnContext(ctx, "provision: consumer pass failed", "consumer", name, "tenant", t.ID, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(e.pollInterval):
		}
	}
}

func (e *Engine) lock(ctx context.Context, tenantID, name string) (func(), error) {
	if e.locker != nil {
		return e.locker.TryLock(ctx, tenantID, name)
	}
	return e.localLocks.TryLock(ctx, tenantID, name)
}

// drain delivers the tenant's pending events to fn while holding the
// consumer's lock for the tenant.
func (e *Engine) drain(ctx context.Context, tenantID, name string, fn ConsumeFunc) error {
	release, err := e.lock(ctx, tenantID, "consumer:"+name)
	if errors.Is(err, ErrLocked) {
		return nil // another replica is on it
	}
	if err != nil {
		return err
	}
	defer release()
	cursor, err := e.events.Cursor(ctx, tenantID, name)
	if err != nil {
		return fmt.Errorf("provision: read cursor: %w", err)
	}
	for {
		evs, err := e.events.ListEvents(ctx, tenantID, cursor, 256)
		if err != nil {
			return fmt.Errorf("provision: list events: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		for _, ev := range evs {
			if err := e.deliver(ctx, name, ev, fn); err != nil {
				return err
			}
			cursor = ev.Seq
			if err := e.events.SetCursor(ctx, tenantID, name, cursor); err != nil {
				return fmt.Errorf("provision: store cursor: %w", err)
			}
		}
	}
}

// deliver calls fn until it accepts ev, backing off from 10ms to 30s.
func (e *Engine) deliver(ctx context.Context, name string, ev Event, fn ConsumeFunc) error {
	backoff := 10 * time.Millisecond
	for {
		err := fn(ctx, ev)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.log.WarnContext(ctx, "provision: consumer failed; retrying", "consumer", name, "tenant", ev.TenantID, "seq", ev.Seq, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (e *Engine) consumeBestEffort(ctx context.Context, fn ConsumeFunc) error {
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
			if err := e.deliver(ctx, "best-effort", ev, fn); err != nil {
				return err
			}
		}
	}
}

// Lock takes the named lock of the tenant through the Store's Locker (or a
// process-local one), for adapters that must run one replica at a time
// (an LDAP sync). It returns ErrLocked when another holder has it.
func (e *Engine) Lock(ctx context.Context, tenantID, name string) (release func(), err error) {
	return e.lock(ctx, tenantID, name)
}

// KVGet reads a tenant's value from the Store's KV (or process memory).
func (e *Engine) KVGet(ctx context.Context, tenantID, key string) ([]byte, error) {
	if e.kv != nil {
		return e.kv.KVGet(ctx, tenantID, key)
	}
	return e.localKV.KVGet(ctx, tenantID, key, e.now())
}

// KVSet stores a tenant's value; ttl 0 keeps it forever.
func (e *Engine) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	if e.kv != nil {
		return e.kv.KVSet(ctx, tenantID, key, value, ttl)
	}
	e.localKV.KVSet(ctx, tenantID, key, value, ttl, e.now())
	return nil
}

// KVInsert stores a value only if the key has no live value, and reports
// whether it did: the primitive of the SAML replay cache.
func (e *Engine) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error) {
	if e.kv != nil {
		return e.kv.KVInsert(ctx, tenantID, key, value, ttl)
	}
	return e.localKV.KVInsert(ctx, tenantID, key, value, ttl, e.now()), nil
}

// KVDelete removes a tenant's key.
func (e *Engine) KVDelete(ctx context.Context, tenantID, key string) error {
	if e.kv != nil {
		return e.kv.KVDelete(ctx, tenantID, key)
	}
	e.localKV.KVDelete(ctx, tenantID, key)
	return nil
}
