package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// deactivationPlanPrefix keys a connection's held deactivations: one plan
// a connection, which a later sync replaces.
const deactivationPlanPrefix = "deactivation-plan/"

// confirmLockWait bounds how long ConfirmPlan waits for the sync lock of
// the connection whose deactivations it applies.
const confirmLockWait = 3 * time.Second

// deactivationPlan is a sync adapter's held deactivations, as stored.
type deactivationPlan struct {
	Plan
	// Lock is the adapter's lock ConfirmPlan holds while it applies the
	// plan (the connection's sync lock), so that no sync runs meanwhile.
	Lock string `json:"lock,omitempty"`
}

// HoldDeactivations stores p as the connection's held deactivations,
// replacing those it held before, for an administrator to confirm
// (Engine.ConfirmPlan) or discard: what a sync adapter does instead of
// deactivating many users at once. p.Kind must be PlanDeactivations, and
// p names its tenant, connection and ID (derive the ID from the content,
// so that a later sync that finds the same set keeps it: the plan then
// keeps its Created time); p.Changes are all of its "deactivate" changes,
// and Size is set from them. While ConfirmPlan applies it, it holds the
// tenant's lock named lock (the adapter's sync lock; "" for none).
func (a Adapter) HoldDeactivations(ctx context.Context, p Plan, lock string) (Plan, error) {
	e := a.e
	switch {
	case p.Kind != PlanDeactivations:
		return Plan{}, &ValidationError{Field: "plan.kind", Reason: fmt.Sprintf("HoldDeactivations holds %q plans, not %q", PlanDeactivations, p.Kind)}
	case p.ID == "" || p.TenantID == "" || p.ConnectionID == "":
		return Plan{}, &ValidationError{Field: "plan", Reason: "a held plan needs its ID, TenantID and ConnectionID"}
	}
	for _, c := range p.Changes {
		if c.Op != "deactivate" || c.UserID == "" {
			return Plan{}, &ValidationError{Field: "plan.changes", Reason: fmt.Sprintf("a deactivations plan holds deactivate changes naming a user, not %+v", c)}
		}
	}
	if err := checkKey("plan id", p.ID); err != nil {
		return Plan{}, err
	}
	if p.Created.IsZero() {
		p.Created = e.now().UTC()
	}
	old, err := a.HeldDeactivations(ctx, p.TenantID, p.ConnectionID)
	if err == nil && old.ID == p.ID {
		p.Created = old.Created
	}
	p.Changes = slices.Clone(p.Changes)
	p.Size = len(p.Changes)
	key := deactivationPlanPrefix + p.ConnectionID
	if err := e.putPlan(ctx, p.TenantID, key, "deactivations plan", deactivationPlan{Plan: p, Lock: lock}); err != nil {
		return Plan{}, err
	}
	if err != nil || old.ID != p.ID {
		e.metrics.planHeld(ctx, string(PlanDeactivations))
	}
	return p, nil
}

// HeldDeactivations returns the connection's held deactivations with all
// their changes, or ErrNotFound.
func (a Adapter) HeldDeactivations(ctx context.Context, tenantID, connectionID string) (Plan, error) {
	var p deactivationPlan
	if err := a.e.getPlan(ctx, tenantID, deactivationPlanPrefix+connectionID, "deactivations plan", &p); err != nil {
		return Plan{}, err
	}
	return p.Plan, nil
}

// DropDeactivations drops the connection's held deactivations (a later
// sync found them back under the threshold, or applied them). Dropping
// none is no error.
func (a Adapter) DropDeactivations(ctx context.Context, tenantID, connectionID string) error {
	err := a.e.dropPlan(ctx, tenantID, deactivationPlanPrefix+connectionID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// confirmDeactivations applies held deactivations as the connection that
// held them (o.Actor names who confirmed), skipping users the connection
// no longer owns, that are gone, or that are inactive already. It waits up
// to confirmLockWait for the connection's sync lock first.
func (e *Engine) confirmDeactivations(ctx context.Context, o Origin, p *deactivationPlan) error {
	if p.Lock != "" {
		// Wait a little for a running sync to end. A push session (an
		// LDAP persistent search) holds the lock for as long as it runs,
		// possibly on another replica: past the wait the plan applies
		// without it, each deactivation checked on its own (still owned
		// by the connection, still active).
		held, release, err := e.lockWithin(ctx, p.TenantID, p.Lock, confirmLockWait, 100*time.Millisecond)
		switch {
		case errors.Is(err, ErrLocked):
			e.log.InfoContext(ctx, "provision: held deactivations applied while the connection's sync runs", "tenant", p.TenantID, "connection", p.ConnectionID, "lock", p.Lock)
		case err != nil:
			return fmt.Errorf("provision: lock %q: %w", p.Lock, err)
		default:
			defer release()
			ctx = held
		}
	}
	as := Origin{TenantID: p.TenantID, ConnectionID: p.ConnectionID, Actor: o.Actor, RequestID: o.RequestID}
	skip := func(err error) bool {
		var oe *OwnerError
		return errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrDeprovisioned) || errors.As(err, &oe)
	}
	done, skipped := 0, 0
	for _, c := range p.Changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		u, err := e.GetUser(ctx, as, c.UserID)
		if skip(err) {
			skipped++
			continue
		}
		if err != nil {
			return fmt.Errorf("provision: deactivate %s: %w", c.UserID, err)
		}
		if u.Owner != p.ConnectionID || !u.Active {
			skipped++
			continue
		}
		if _, err := e.DeactivateUser(ctx, as, c.UserID); err != nil {
			if skip(err) {
				skipped++
				continue
			}
			return fmt.Errorf("provision: deactivate %s: %w", c.UserID, err)
		}
		done++
	}
	e.log.InfoContext(ctx, "provision: held deactivations applied", "tenant", p.TenantID, "connection", p.ConnectionID, "plan", p.ID, "deactivated", done, "skipped", skipped)
	return nil
}
