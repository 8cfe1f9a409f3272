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
}

// Purge enforces the tenant's retention: it removes the tombstones of users
// deleted more than Config.TombstoneRetention ago (with their links and
// memberships) after redacting their personal data from the event log, and
// removes events older than Config.EventRetention. Run it periodically
// (daily is plenty); it is idempotent.
func (e *Engine) Purge(ctx context.Context, tenantID string) (PurgeResult, error) {
	var res PurgeResult
	if _, err := e.Tenant(tenantID); err != nil {
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
		n, err := e.events.PurgeEvents(ctx, tenantID, now.Add(-e.eventRetention))
		if err != nil {
			return res, fmt.Errorf("provision: purge events: %w", err)
		}
		res.Events = n
	}
	return res, nil
}

const defaultRetention = 30 * 24 * time.Hour
