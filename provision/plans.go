package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PlanKind says what a held plan would change.
type PlanKind string

// The kinds of plans the engine holds.
const (
	// PlanMembers is a held replace of a group's members that would remove
	// many of them (Config.HoldMemberDrops): "remove-member" and
	// "add-member" changes.
	PlanMembers PlanKind = "members"
	// PlanAccess is a previewed change of the tenant's access rules
	// (PlanAccessRules): "grant-role" and "revoke-role" changes.
	PlanAccess PlanKind = "access"
	// PlanDeactivations is a set of deactivations a sync adapter held
	// because it crossed its safety threshold (an LDAP directory that
	// suddenly lists far fewer users): "deactivate" changes.
	PlanDeactivations PlanKind = "deactivations"
)

// Plan is a change the engine holds until an administrator confirms it
// (ConfirmPlan) or discards it (DiscardPlan). Every kind of held change is
// one: a replace of members that would remove many, a preview of access
// rules, an LDAP sync's mass deactivation.
type Plan struct {
	Kind     PlanKind `json:"kind"`
	ID       string   `json:"id"`
	TenantID string   `json:"tenantId"`
	// ConnectionID is who asked: the directory whose replace or sync was
	// held; "" for an access plan (an administrator's preview).
	ConnectionID string    `json:"connectionId,omitempty"`
	Created      time.Time `json:"created"`
	// Summary says in one line what the plan would do and, for a held
	// change, why it was held.
	Summary string `json:"summary"`
	// Size is how many changes the plan makes in all; Of is what they are
	// out of: the group's members, the users evaluated, the connection's
	// active users.
	Size int `json:"size"`
	Of   int `json:"of"`
	// Changes are the plan's changes: the page Plan was asked for (Plans
	// lists plans without them).
	Changes []PlanChange `json:"changes,omitempty"`
}

// PlanChange is one change of a plan.
type PlanChange struct {
	// Op is what would happen: "remove-member", "add-member",
	// "grant-role", "revoke-role" or "deactivate".
	Op     string `json:"op"`
	UserID string `json:"userId"`
	// UserName and ExternalID, when the plan knows them, are for display.
	UserName   string `json:"userName,omitempty"`
	ExternalID string `json:"externalId,omitempty"`
	// GroupID is the group of a member change; Role the role of a role
	// change.
	GroupID string `json:"groupId,omitempty"`
	Role    string `json:"role,omitempty"`
	// Reason says why, where a kind has several (an LDAP entry "gone",
	// "deleted" or "disabled").
	Reason string `json:"reason,omitempty"`
}

// page returns p with only the changes of pg (a zero Limit: none).
func (p Plan) page(pg Page) Plan {
	lo := min(max(pg.Offset, 0), len(p.Changes))
	hi := min(lo+max(pg.Limit, 0), len(p.Changes))
	p.Changes = slices.Clone(p.Changes[lo:hi])
	if len(p.Changes) == 0 {
		p.Changes = nil
	}
	return p
}

// planIndexKey is the tenant's KV entry that lists its held plans' keys
// (the KV capability cannot list keys).
const planIndexKey = "plans/index"

type planRef struct {
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
}

// Plans lists the tenant's held plans of every kind, oldest first, without
// their changes: the page asked for, and how many there are in all.
func (e *Engine) Plans(ctx context.Context, tenantID string, page Page) ([]Plan, int, error) {
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return nil, 0, err
	}
	refs, err := e.planIndex(ctx, tenantID)
	if err != nil {
		return nil, 0, err
	}
	var all []Plan
	for _, r := range refs {
		p, err := e.storedPlan(ctx, tenantID, r.Key)
		if errors.Is(err, ErrNotFound) {
			continue // expired, or consumed by another replica
		}
		if err != nil {
			return nil, 0, err
		}
		all = append(all, p.view(false))
	}
	total := len(all)
	lo := min(max(page.Offset, 0), total)
	hi := min(lo+max(page.Limit, 0), total)
	return all[lo:hi], total, nil
}

// Plan returns the tenant's held plan planID with the page of its changes
// asked for (Size says how many there are in all). A plan that was
// confirmed, discarded, replaced or expired is ErrNotFound.
func (e *Engine) Plan(ctx context.Context, tenantID, planID string, changes Page) (Plan, error) {
	if err := checkKey("plan id", planID); err != nil {
		return Plan{}, err
	}
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return Plan{}, err
	}
	_, p, err := e.findPlan(ctx, tenantID, planID)
	if err != nil {
		return Plan{}, err
	}
	return p.view(true).page(changes), nil
}

// ConfirmPlan applies the held plan planID and consumes it, and returns it
// (without its changes). Only an admin call (o without a ConnectionID)
// confirms; o.Actor names who did in the events.
//
//   - A members plan replaces the group's members as the directory that
//     asked for it (the events name it). The members are validated again:
//     an id that is no longer a live user refuses the plan.
//   - An access plan makes the plan's rules the tenant's and updates every
//     user whose roles change, in one transaction (user.updated, field
//     "roles"); users that changed since get what the rules give them now.
//   - A deactivations plan deactivates its users as the connection, those
//     it still owns and that are still active, after waiting a few seconds
//     for the connection's running sync to end (a push session, which
//     never ends, is not waited for).
func (e *Engine) ConfirmPlan(ctx context.Context, o Origin, planID string) (Plan, error) {
	if o.connection() != APIConnection {
		return Plan{}, fmt.Errorf("%w: held plans are confirmed only through admin calls", ErrForbidden)
	}
	if err := checkKey("plan id", planID); err != nil {
		return Plan{}, err
	}
	key, p, err := e.findPlan(ctx, o.TenantID, planID)
	if err != nil {
		return Plan{}, err
	}
	switch {
	case p.members != nil:
		err = e.confirmMembers(ctx, o, p.members)
	case p.access != nil:
		err = e.applyAccess(ctx, o, p.access)
	case p.deactivations != nil:
		err = e.confirmDeactivations(ctx, o, p.deactivations)
	}
	if err != nil {
		return Plan{}, err
	}
	if err := e.dropPlan(ctx, o.TenantID, key); err != nil {
		e.log.WarnContext(ctx, "provision: applied plan not deleted", "plan", planID, "err", err)
	}
	v := p.view(false)
	e.log.InfoContext(ctx, "provision: held plan confirmed", "tenant", o.TenantID, "plan", planID, "kind", string(v.Kind), "actor", o.Actor)
	return v, nil
}

// DiscardPlan drops a held plan without applying it. Only an admin call
// (o without a ConnectionID) discards. An identity provider that retries a
// discarded replace of members is held again; the next full sync holds
// the same deactivations again if their entries are still gone.
func (e *Engine) DiscardPlan(ctx context.Context, o Origin, planID string) error {
	if o.connection() != APIConnection {
		return fmt.Errorf("%w: held plans are discarded only through admin calls", ErrForbidden)
	}
	if err := checkKey("plan id", planID); err != nil {
		return err
	}
	key, _, err := e.findPlan(ctx, o.TenantID, planID)
	if err != nil {
		return err
	}
	return e.dropPlan(ctx, o.TenantID, key)
}

// anyPlan is a stored plan of one of the kinds.
type anyPlan struct {
	members       *membersPlan
	access        *accessPlan
	deactivations *deactivationPlan
}

// view is the plan with all its changes, or with none.
func (p anyPlan) view(changes bool) Plan {
	switch {
	case p.members != nil:
		return p.members.view(changes)
	case p.access != nil:
		return p.access.view(changes)
	}
	v := p.deactivations.Plan
	if !changes {
		v.Changes = nil
	}
	return v
}

// findPlan finds the plan planID among the tenant's and returns its key.
func (e *Engine) findPlan(ctx context.Context, tenantID, planID string) (string, anyPlan, error) {
	refs, err := e.planIndex(ctx, tenantID)
	if err != nil {
		return "", anyPlan{}, err
	}
	for _, r := range refs {
		if !strings.HasPrefix(r.Key, deactivationPlanPrefix) && !strings.HasSuffix(r.Key, "/"+planID) {
			continue
		}
		p, err := e.storedPlan(ctx, tenantID, r.Key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return "", anyPlan{}, err
		}
		if p.view(false).ID == planID {
			return r.Key, p, nil
		}
	}
	return "", anyPlan{}, fmt.Errorf("provision: plan %q: %w", planID, ErrNotFound)
}

// storedPlan reads the plan stored under key.
func (e *Engine) storedPlan(ctx context.Context, tenantID, key string) (anyPlan, error) {
	switch {
	case strings.HasPrefix(key, membersPlanPrefix):
		var p membersPlan
		if err := e.getPlan(ctx, tenantID, key, "members plan", &p); err != nil {
			return anyPlan{}, err
		}
		return anyPlan{members: &p}, nil
	case strings.HasPrefix(key, planKeyPrefix):
		var p accessPlan
		if err := e.getPlan(ctx, tenantID, key, "access plan", &p); err != nil {
			return anyPlan{}, err
		}
		return anyPlan{access: &p}, nil
	case strings.HasPrefix(key, deactivationPlanPrefix):
		var p deactivationPlan
		if err := e.getPlan(ctx, tenantID, key, "deactivations plan", &p); err != nil {
			return anyPlan{}, err
		}
		return anyPlan{deactivations: &p}, nil
	}
	return anyPlan{}, fmt.Errorf("provision: plan %q: %w", key, ErrNotFound)
}

func (e *Engine) planIndex(ctx context.Context, tenantID string) ([]planRef, error) {
	raw, err := e.kvGet(ctx, tenantID, planIndexKey)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("provision: plan index: %w", err)
	}
	var refs []planRef
	if err := json.Unmarshal(raw, &refs); err != nil {
		return nil, fmt.Errorf("provision: plan index: %w", err)
	}
	return refs, nil
}

// editPlanIndex changes the tenant's plan index under the tenant's
// "plans" lock (waiting up to 10 s for it), so that two replicas holding
// plans at once both list theirs. Entries whose plan is gone are pruned.
func (e *Engine) editPlanIndex(ctx context.Context, tenantID string, edit func([]planRef) []planRef) error {
	held, release, err := e.lockWithin(ctx, tenantID, "plans", 10*time.Second, 5*time.Millisecond)
	if err != nil {
		return fmt.Errorf("provision: plan index: %w", err)
	}
	defer release()
	return e.editPlanIndexLocked(held, tenantID, edit)
}

// lockWithin takes the tenant's lock name, trying again every poll while
// another holder has it, for up to wait; past it the error is ErrLocked.
func (e *Engine) lockWithin(ctx context.Context, tenantID, name string, wait, poll time.Duration) (context.Context, func(), error) {
	deadline := time.Now().Add(wait)
	for {
		held, release, err := e.lock(ctx, tenantID, name)
		if !errors.Is(err, ErrLocked) || !time.Now().Before(deadline) {
			return held, release, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}

func (e *Engine) editPlanIndexLocked(ctx context.Context, tenantID string, edit func([]planRef) []planRef) error {
	refs, err := e.planIndex(ctx, tenantID)
	if err != nil {
		return err
	}
	refs = slices.DeleteFunc(refs, func(r planRef) bool {
		_, err := e.kvGet(ctx, tenantID, r.Key)
		return errors.Is(err, ErrNotFound)
	})
	refs = edit(refs)
	raw, err := json.Marshal(refs)
	if err != nil {
		return fmt.Errorf("provision: plan index: %w", err)
	}
	if err := e.kvSet(ctx, tenantID, planIndexKey, raw, 0); err != nil {
		return fmt.Errorf("provision: plan index: %w", err)
	}
	return nil
}

// indexPlan lists the plan stored under key (once).
func (e *Engine) indexPlan(ctx context.Context, tenantID, key string, created time.Time) error {
	return e.editPlanIndex(ctx, tenantID, func(refs []planRef) []planRef {
		if slices.ContainsFunc(refs, func(r planRef) bool { return r.Key == key }) {
			return refs
		}
		return append(refs, planRef{Key: key, Created: created})
	})
}

// dropPlan deletes a plan and its index entry.
func (e *Engine) dropPlan(ctx context.Context, tenantID, key string) error {
	if err := e.kvDelete(ctx, tenantID, key); err != nil {
		return fmt.Errorf("provision: delete plan %q: %w", key, err)
	}
	return e.editPlanIndex(ctx, tenantID, func(refs []planRef) []planRef {
		return slices.DeleteFunc(refs, func(r planRef) bool { return r.Key == key })
	})
}
