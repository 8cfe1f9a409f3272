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
	// PlanMembers is a held replace of a group's members (MembersPlan).
	PlanMembers PlanKind = "members"
	// PlanAccess is a previewed change of the tenant's access rules
	// (AccessPlan).
	PlanAccess PlanKind = "access"
)

// HeldPlan is one plan of a tenant that waits for an administrator to
// confirm or discard it. Exactly one of Members and Access is set.
type HeldPlan struct {
	Kind         PlanKind
	ID           string
	TenantID     string
	ConnectionID string // who asked: a members plan's directory; "" for access plans
	Created      time.Time
	// Size is how many changes the plan makes, in full: the members a
	// replace removes; the roles an access plan grants and takes away.
	// Of is what it is out of: the group's members; the users evaluated.
	Size, Of int
	Members  *MembersPlan
	Access   *AccessPlan
}

// planIndexKey is the tenant's KV entry that lists its held plans' keys
// (the KV capability cannot list keys).
const planIndexKey = "plans/index"

type planRef struct {
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
}

// HeldPlans lists the tenant's held plans (members replaces and access-rule
// plans), oldest first, the page asked for, and how many there are in all.
// Plans kept elsewhere (an LDAP syncer's held deactivations: ldap.Syncer's
// Held) are not among them; a host lists those next to these.
func (e *Engine) HeldPlans(ctx context.Context, tenantID string, page Page) ([]HeldPlan, int, error) {
	if _, err := e.lookupTenant(ctx, tenantID); err != nil {
		return nil, 0, err
	}
	refs, err := e.planIndex(ctx, tenantID)
	if err != nil {
		return nil, 0, err
	}
	var all []HeldPlan
	for _, r := range refs {
		p, err := e.heldPlan(ctx, tenantID, r.Key)
		if errors.Is(err, ErrNotFound) {
			continue // expired, or consumed by another replica
		}
		if err != nil {
			return nil, 0, err
		}
		all = append(all, p)
	}
	total := len(all)
	lo := min(max(page.Offset, 0), total)
	hi := min(lo+max(page.Limit, 0), total)
	return all[lo:hi], total, nil
}

// DiscardPlan drops a held plan without applying it. Only an admin call
// (o without a ConnectionID) discards. An identity provider that retries a
// discarded members replace is held again.
func (e *Engine) DiscardPlan(ctx context.Context, o Origin, kind PlanKind, planID string) error {
	if o.connection() != APIConnection {
		return fmt.Errorf("%w: held plans are discarded only through admin calls", ErrForbidden)
	}
	key, err := planKey(kind, planID)
	if err != nil {
		return err
	}
	if _, err := e.heldPlan(ctx, o.TenantID, key); err != nil {
		return err
	}
	return e.dropPlan(ctx, o.TenantID, key)
}

func planKey(kind PlanKind, id string) (string, error) {
	switch kind {
	case PlanMembers:
		return membersPlanPrefix + id, nil
	case PlanAccess:
		return planKeyPrefix + id, nil
	}
	return "", &ValidationError{Field: "plan.kind", Reason: fmt.Sprintf("unknown plan kind %q", kind)}
}

// heldPlan reads the plan stored under key.
func (e *Engine) heldPlan(ctx context.Context, tenantID, key string) (HeldPlan, error) {
	switch {
	case strings.HasPrefix(key, membersPlanPrefix):
		var p MembersPlan
		if err := e.getPlan(ctx, tenantID, key, "members plan", &p); err != nil {
			return HeldPlan{}, err
		}
		return HeldPlan{Kind: PlanMembers, ID: p.ID, TenantID: p.TenantID, ConnectionID: p.ConnectionID,
			Created: p.Created, Size: p.Removing, Of: p.Of, Members: &p}, nil
	case strings.HasPrefix(key, planKeyPrefix):
		var p AccessPlan
		if err := e.getPlan(ctx, tenantID, key, "access plan", &p); err != nil {
			return HeldPlan{}, err
		}
		n := 0
		for _, rc := range p.Roles {
			n += len(rc.Gain) + len(rc.Lose)
		}
		return HeldPlan{Kind: PlanAccess, ID: p.ID, TenantID: p.TenantID, Created: p.Created, Size: n, Of: p.Users, Access: &p}, nil
	}
	return HeldPlan{}, fmt.Errorf("provision: plan %q: %w", key, ErrNotFound)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, release, err := e.lock(ctx, tenantID, "plans")
		if errors.Is(err, ErrLocked) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("provision: plan index: %w", err)
		}
		err = e.editPlanIndexLocked(held, tenantID, edit)
		release()
		return err
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
