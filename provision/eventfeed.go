package provision

import (
	"context"
	"fmt"
)

// Backlog is how far one consumer is behind in one tenant's event log.
type Backlog struct {
	TenantID string `json:"tenantId"`
	// Cursor is the consumer's stored cursor (0 when none was stored).
	Cursor int64 `json:"cursor"`
	// LastSeq is the tenant's highest committed Seq: LastSeq-Cursor
	// events wait (fewer when some were purged).
	LastSeq int64 `json:"lastSeq"`
}

// EventBacklog is an optional capability of an EventLog: it finds the
// tenants a consumer is behind on without visiting every tenant, so an
// idle consumer costs one query per poll whatever the number of tenants.
// Without it, Consume reads every tenant's cursor and log at every poll.
type EventBacklog interface {
	// Backlogs returns the tenants whose committed LastSeq is above the
	// consumer's cursor (a tenant without a stored cursor counts as
	// cursor 0), with tenant id greater than afterTenant, in tenant id
	// order, at most limit of them: a page; the next one starts after the
	// last TenantID returned. A non-nil tenants restricts the answer to
	// those tenants (any number, any order): a consumer of a few tenants
	// among many does not read the others' backlogs.
	//
	// It reads committed state only and keeps no watermark of its own,
	// so a transaction that commits late (its events were numbered
	// before those of a transaction that committed first) is reported
	// once it commits: nothing is skipped.
	Backlogs(ctx context.Context, consumer string, tenants []string, afterTenant string, limit int) ([]Backlog, error)
}

// CommitWatcher is an optional Store capability: it reports the commits
// that appended events, on this replica and on every other one sharing
// the database (PostgreSQL LISTEN/NOTIFY in sqlstore), so that Consume
// delivers them at once instead of at its next poll.
type CommitWatcher interface {
	// WatchCommits calls fn with the tenant id of each committed
	// transaction that appended events of that tenant, and with "" when
	// notifications may have been missed (each time the store's
	// listening session starts or restarts): then any tenant may have new
	// events. fn must return quickly; it may be called from several
	// goroutines. live is false when the store has no notification source
	// wired (fn is then never called); stop ends the watch in every case.
	WatchCommits(fn func(tenantID string)) (stop func(), live bool)
}

// backlogPage is how many tenants one Backlogs call returns.
const backlogPage = 1000

// backlogFilterMax is the largest explicit tenant list (ConsumeOptions.
// Tenants) a poll hands to Backlogs; past it, the poll reads every
// backlog and keeps the live ones.
const backlogFilterMax = 5000

// behind returns the live tenants the consumer is behind on, through the
// EventLog's EventBacklog, one query per page.
func (c *consumer) behind(ctx context.Context, bl EventBacklog) ([]string, error) {
	var out []string
	var waiting int64
	var only []string
	if c.opts.Tenants != nil && len(c.live) <= backlogFilterMax {
		only = make([]string, 0, len(c.live))
		for id := range c.live {
			only = append(only, id)
		}
	}
	after := ""
	for {
		page, err := bl.Backlogs(ctx, c.name, only, after, backlogPage)
		if err != nil {
			return nil, fmt.Errorf("provision: consumer %q backlog: %w", c.name, err)
		}
		for _, b := range page {
			if c.isLive(ctx, b.TenantID) {
				out = append(out, b.TenantID)
				waiting += b.LastSeq - b.Cursor
			}
		}
		if len(page) < backlogPage {
			c.backlog.Store(waiting)
			return out, nil
		}
		after = page[len(page)-1].TenantID
	}
}

// watch subscribes l to the commits the Store reports, when it can.
func (e *Engine) watch(l *listener) (stop func()) {
	w, ok := e.events.(CommitWatcher)
	if !ok {
		return func() {}
	}
	stop, _ = w.WatchCommits(func(tenantID string) {
		if tenantID == "" {
			l.markAll()
			return
		}
		l.mark(tenantID)
	})
	return stop
}

// tenantIDsSince returns the declared tenant ids and the generation of
// the tenant set they are, unless known is set and the set is still
// generation gen (then changed is false): a consumer's poll over 100,000
// idle tenants copies nothing.
func (e *Engine) tenantIDsSince(gen uint64, known bool) (ids []string, now uint64, changed bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if known && e.tenantSet == gen {
		return nil, gen, false
	}
	ids = make([]string, 0, len(e.tenants))
	for id := range e.tenants {
		ids = append(ids, id)
	}
	return ids, e.tenantSet, true
}

// sameSlice reports whether a and b are the same slice (same array, same
// length), not merely equal.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// isLive reports whether the consumer consumes the tenant: one of its
// live tenants (declared, or returned by ConsumeOptions.Tenants), or, when
// ConsumeOptions.Tenants is nil, a tenant registered in the Registry
// (read through the engine's cache).
func (c *consumer) isLive(ctx context.Context, id string) bool {
	if c.live[id] {
		return true
	}
	if c.opts.Tenants != nil || c.e.reg == nil {
		return false
	}
	t, err := c.e.reg.get(ctx, id, c.e.now())
	return err == nil && t != nil
}
