package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// DropLimit says when a change that removes many members is held: when
// it removes at least Count of them and more than Share (0 to 1) of the
// group. A negative Count never holds.
type DropLimit struct {
	Count int
	Share float64
}

func (l DropLimit) holds(removing, of int) bool {
	if l.Count < 0 || removing == 0 || removing < l.Count {
		return false
	}
	return float64(removing) > l.Share*float64(of)
}

// ErrHeld: the change crossed a safety threshold and was stored as a plan
// that applies only when the host confirms it. Nothing was applied.
var ErrHeld = errors.New("provision: change held for confirmation")

// HeldError names the plan a held change became. It matches ErrHeld.
type HeldError struct {
	PlanID string
	// Removing is how many of Members members the change would remove.
	Removing, Members int
}

// Error says what was held and why.
func (e *HeldError) Error() string {
	return fmt.Sprintf("provision: replacing the members would remove %d of %d; held as plan %s for confirmation", e.Removing, e.Members, e.PlanID)
}

// Is reports whether target is ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// membersPlan is a held replace of a group's members, as stored.
type membersPlan struct {
	ID           string    `json:"id"`
	TenantID     string    `json:"tenantId"`
	GroupID      string    `json:"groupId"`
	ConnectionID string    `json:"connectionId"`
	Members      []string  `json:"members"`
	Removed      []string  `json:"removed,omitempty"`
	Added        []string  `json:"added,omitempty"`
	Removing     int       `json:"removing"`
	Of           int       `json:"of"`
	Created      time.Time `json:"created"`
}

// Error makes a plan travel out of the transaction that found it.
func (p *membersPlan) Error() string { return "provision: members plan " + p.ID }

const membersPlanPrefix = "members-plan/"

// newMembersPlan describes a held replace of cur by want. Its ID derives
// from the group and the member set, so the identity provider's retry of
// the same replace finds the same plan.
func (e *Engine) newMembersPlan(s scope, groupID string, want, cur, drop []string) *membersPlan {
	sorted := slices.Sorted(slices.Values(want))
	h := sha256.New()
	for _, part := range append([]string{s.tenant.ID, groupID}, sorted...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	had := make(map[string]bool, len(cur))
	for _, m := range cur {
		had[m] = true
	}
	var added []string
	for _, m := range sorted {
		if !had[m] {
			added = append(added, m)
		}
	}
	return &membersPlan{
		ID: hex.EncodeToString(h.Sum(nil))[:24], TenantID: s.tenant.ID, GroupID: groupID,
		ConnectionID: s.conn.ID, Members: sorted, Removed: slices.Sorted(slices.Values(drop)), Added: added,
		Removing: len(drop), Of: len(cur), Created: e.now().UTC(),
	}
}

func (e *Engine) holdMembersPlan(ctx context.Context, p *membersPlan) error {
	if err := e.putPlan(ctx, p.TenantID, membersPlanPrefix+p.ID, "members plan", p); err != nil {
		return err
	}
	e.metrics.planHeld(ctx, "members")
	e.log.WarnContext(ctx, "provision: a replace of members is held for confirmation", "tenant", p.TenantID, "group", p.GroupID, "connection", p.ConnectionID, "removing", p.Removing, "of", p.Of, "plan", p.ID)
	return &HeldError{PlanID: p.ID, Removing: p.Removing, Members: p.Of}
}

// view is the plan as Plans and Plan show it, with all its changes when
// changes is set (Plans lists it without them).
func (p *membersPlan) view(changes bool) Plan {
	v := Plan{Kind: PlanMembers, ID: p.ID, TenantID: p.TenantID, ConnectionID: p.ConnectionID, Created: p.Created,
		Summary: fmt.Sprintf("Replace the members of group %s: remove %d of its %d members, add %d", p.GroupID, p.Removing, p.Of, len(p.Added)),
		Of:      p.Of, Size: len(p.Removed) + len(p.Added)}
	if !changes {
		return v
	}
	for _, id := range p.Removed {
		v.Changes = append(v.Changes, PlanChange{Op: "remove-member", UserID: id, GroupID: p.GroupID})
	}
	for _, id := range p.Added {
		v.Changes = append(v.Changes, PlanChange{Op: "add-member", UserID: id, GroupID: p.GroupID})
	}
	return v
}

// confirmMembers applies a held replace of a group's members, as the
// connection that asked for it (the events name it; o.Actor names who
// confirmed). The members are validated again: an id that is no longer a
// live user refuses the plan.
func (e *Engine) confirmMembers(ctx context.Context, o Origin, p *membersPlan) error {
	as := Origin{TenantID: p.TenantID, ConnectionID: p.ConnectionID, Actor: o.Actor, RequestID: o.RequestID}
	_, _, err := e.UpdateGroup(ctx, as, p.GroupID, Precondition{}, GroupUpdate{ReplaceMembers: true, Members: p.Members, confirmed: true})
	return err
}
