package sqlstore

import (
	"context"
	"sync"
	"time"
)

// commitWaker notifies EventsTopic of the tenants whose events a Store's
// transactions committed, after the commit rather than inside the
// transaction.
//
// A pg_notify inside a transaction makes its commit take PostgreSQL's
// database-wide notification lock: every committing writer of the
// database queues on it, one at a time. Measured on the SCIM write path
// (BenchmarkThroughput, 32 clients), that cost 7 to 10% of the
// throughput. Here each commit only adds its tenants to a set, and one
// goroutine at a time sends the set with one statement, then the set
// gathered meanwhile: under load a notification stands for many commits,
// and idle it costs nothing. A listener still hears a tenant only once
// its events are committed and visible.
//
// Notifications are a wake-up, not a log (see Subscribe): if this process
// stops between a commit and its notification, the other replicas find
// the events at their next poll.
type commitWaker struct {
	mu       sync.Mutex
	pending  map[string]bool
	flushing bool
}

// notifyBatch bounds the tenants of one notifying statement.
const notifyBatch = 200

// notifyGap is the least time between two notifying statements of a
// Store: the commits of a busy process gather into one notification
// instead of each paying for its own (a few milliseconds more for a
// consumer of another replica; the first commit after a quiet spell is
// sent at once).
const notifyGap = 5 * time.Millisecond

// committed adds the tenants of a committed transaction to the set to
// notify, and starts the flushing goroutine if none runs.
func (w *commitWaker) committed(r *root, tenants []string) {
	if r.d != Postgres || len(tenants) == 0 {
		return
	}
	w.mu.Lock()
	if w.pending == nil {
		w.pending = map[string]bool{}
	}
	for _, t := range tenants {
		w.pending[eventsPayload(t)] = true
	}
	start := !w.flushing
	w.flushing = true
	w.mu.Unlock()
	if start {
		go w.flush(r)
	}
}

// flush sends the pending set until it is empty, then ends.
func (w *commitWaker) flush(r *root) {
	for first := true; ; first = false {
		if !first {
			time.Sleep(notifyGap)
		}
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		batch := make([]string, 0, len(w.pending))
		for t := range w.pending {
			batch = append(batch, t)
		}
		clear(w.pending)
		w.mu.Unlock()
		for len(batch) > 0 {
			n := min(len(batch), notifyBatch)
			if err := w.send(r, batch[:n]); err != nil {
				r.log.Debug("sqlstore: notify committed events (listeners will poll)", "tenants", n, "err", err)
			}
			batch = batch[n:]
		}
	}
}

// send notifies EventsTopic once per tenant, in one statement (and one
// transaction: PostgreSQL takes its notification lock once).
func (w *commitWaker) send(r *root, tenants []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := make([]any, 0, 1+len(tenants))
	args = append(args, r.prefix+EventsTopic)
	for _, t := range tenants {
		args = append(args, t)
	}
	_, err := r.db.ExecContext(ctx, "SELECT pg_notify($1, v.t) FROM (VALUES "+placeholders(2, len(tenants), 1)+") AS v (t)", args...)
	return err
}
