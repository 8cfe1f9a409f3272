package ldap

import (
	"context"
	"errors"
	"time"

	"github.com/idprov/idprov/provision"
)

// Run syncs until ctx ends: a round every Config.Interval, each a full
// sync when the last one is older than Config.FullInterval (or there is
// none), else an incremental one. A round runs only while this replica
// holds the connection's lock (provision.Adapter.Lock): on the other replicas the
// round is skipped, so one replica at a time syncs a connection. A failed
// round is logged and handed to Config.OnReport; the next round retries.
// Run returns nil when ctx ends.
//
// With Config.Push (the default), when the connection's incremental mode
// is syncrepl, Run keeps an RFC 4533 refreshAndPersist search open
// between the rounds instead: changes apply as the server sends them,
// the cookie is stored as it advances, a dropped search is reopened with
// a backoff from the stored cookie, and the full sync still runs every
// FullInterval. Status says which of the two Run does.
func (s *Syncer) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		failed := s.round(ctx) != nil
		next := s.cfg.Interval
		if s.cfg.Push != PushOff && ctx.Err() == nil && !failed {
			// A failed round (the server unreachable, a bad bind) waits
			// Interval: persisting now would redial at once, in a loop.
			next = s.persist(ctx)
		}
		t.Reset(next)
	}
}

// round runs one sync of Run and returns its error (nil when another
// replica holds the lock).
func (s *Syncer) round(ctx context.Context) error {
	held, release, err := s.lock(ctx)
	if errors.Is(err, provision.ErrLocked) {
		s.log().DebugContext(ctx, "ldap: another replica is syncing; skipping this round", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID)
		return nil
	}
	var rep *Report
	if err == nil {
		// held ends if the lock is lost: the round stops, and the next
		// round retries.
		rep, err = s.roundLocked(held)
		release()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		s.log().ErrorContext(ctx, "ldap: sync failed", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err)
	}
	if s.cfg.OnReport != nil {
		s.cfg.OnReport(rep, err)
	}
	return err
}

func (s *Syncer) roundLocked(ctx context.Context) (rep *Report, err error) {
	defer func(start time.Time) { s.observe(ctx, start, rep, err) }(time.Now())
	cur, err := s.loadCursor(ctx)
	if err != nil {
		return nil, err
	}
	if cur == nil || s.cfg.Now().Sub(cur.LastFull) >= s.cfg.FullInterval {
		return s.syncFull(ctx, false, "periodic full sync")
	}
	return s.syncChanges(ctx)
}
