package provision

import (
	"context"
	"fmt"
	"time"
)

// PurgeResult says what Purge removed.
type PurgeResult struct {
	// Users is how many tombstones were removed for good.
	Users int
	// RedactedEvents is how many events lost a purged user's personal data.
	RedactedEvents int
	// Events is how many events older than the retention were removed.
	Events int
	// Undelivered is how many of the removed events a consumer that ran on
	// this engine (Consume) had not acknowledged yet: they are lost to it.
	// Purge logs an error naming the consumer when it is not zero.
	Undelivered int
}

// Purge enforces the tenant's retention: it removes the tombstones of users
// deleted more than Config.TombstoneRetention ago (with their links and
// memberships) after redacting their personal data from the event log, and
// removes events older than Config.EventRetention. Run it periodically
// (daily is plenty); it is idempotent.
func (e *Engine) Purge(ctx context.Context, tenantID string) (PurgeResult, error) {
	var res PurgeResult
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return res, err
	}
	now := e.now().UTC()
	before := now.Add(-e.tombstoneRetention)
	for {
		users, err := e.store.DeletedUsers(ctx, tenantID, before, 500)
		if err != nil {
			return res, fmt.Errorf("provision: purge: %w", err)
		}
		for _, u := range users {
			if e.events != nil {
				n, err := e.events.RedactEvents(ctx, tenantID, u.ID)
				if err != nil {
					return res, fmt.Errorf("provision: purge: redact events of %s: %w", u.ID, err)
				}
				res.RedactedEvents += n
			}
			if err := e.store.PurgeUser(ctx, tenantID, u.ID); err != nil {
				return res, fmt.Errorf("provision: purge user %s: %w", u.ID, err)
			}
			res.Users++
		}
		if len(users) < 500 {
			break
		}
	}
	if e.events != nil {
		cutoff := now.Add(-e.eventRetention)
		for _, name := range e.hub.consumerNames() {
			n, err := e.undelivered(ctx, tenantID, name, cutoff)
			if err != nil {
				return res, fmt.Errorf("provision: purge events: %w", err)
			}
			if n > 0 {
				e.log.ErrorContext(ctx, "provision: purging events a consumer has not had; raise Config.EventRetention or fix the consumer", "consumer", name, "tenant", tenantID, "events", n)
				res.Undelivered += n
			}
		}
		n, err := e.events.PurgeEvents(ctx, tenantID, cutoff)
		if err != nil {
			return res, fmt.Errorf("provision: purge events: %w", err)
		}
		res.Events = n
	}
	return res, nil
}

const defaultRetention = 30 * 24 * time.Hour

// undelivered counts the tenant's events older than cutoff after the
// consumer's cursor.
func (e *Engine) undelivered(ctx context.Context, tenantID, name string, cutoff time.Time) (int, error) {
	cursor, err := e.events.Cursor(ctx, tenantID, name)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		evs, err := e.events.ListEvents(ctx, tenantID, cursor, 1000)
		if err != nil {
			return 0, err
		}
		for _, ev := range evs {
			if !ev.Time.Before(cutoff) {
				return n, nil
			}
			n++
			cursor = ev.Seq
		}
		if len(evs) < 1000 {
			return n, nil
		}
	}
}
