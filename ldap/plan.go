package ldap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/idprov/idprov/provision"
)

// ErrNoPlan says there is no held plan with the given ID (it was
// confirmed, discarded, or replaced by a later sync).
var ErrNoPlan = errors.New("ldap: no such held plan")

// HeldPlan is a set of deactivations that crossed the safety threshold
// (Config.MaxDeactivations, Config.MaxDeactivationShare): a sync stored it
// instead of applying it, and went on with its creates and updates. The
// users stay active until Confirm applies it. A later full sync recomputes
// it: the same deactivations keep the same ID, different ones replace it,
// and deactivations back under the threshold are applied and the plan
// dropped.
type HeldPlan struct {
	// ID names the plan for Confirm. It is derived from its content (a
	// later sync that sees some of its users again removes them and keeps
	// the ID).
	ID string
	// TenantID and ConnectionID name the connection.
	TenantID     string
	ConnectionID string
	// Created is when the plan was first held.
	Created time.Time
	// Reason says which threshold was crossed.
	Reason string
	// Owned is the number of active users the connection owned when the
	// plan was made.
	Owned int
	// Deactivations are the users it would deactivate.
	Deactivations []Deactivation
}

// Deactivation is one user a sync would deactivate.
type Deactivation struct {
	// UserID is the engine's user; ExternalID its entry's id; UserName
	// for display.
	UserID     string
	ExternalID string `json:",omitempty"`
	UserName   string `json:",omitempty"`
	// Reason is "gone" (absent from a complete full sync), "deleted" (a
	// syncrepl delete) or "disabled" (a Disabled rule matched).
	Reason string
}

func (s *Syncer) planKey() string { return "ldap/" + s.cfg.ConnectionID + "/plan" }

// Held returns the connection's held plan, or ErrNoPlan.
func (s *Syncer) Held(ctx context.Context) (*HeldPlan, error) {
	b, err := provision.AdapterOf(s.eng).KVGet(ctx, s.cfg.TenantID, s.planKey())
	if errors.Is(err, provision.ErrNotFound) {
		return nil, ErrNoPlan
	}
	if err != nil {
		return nil, fmt.Errorf("ldap: read held plan: %w", err)
	}
	var p HeldPlan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("ldap: decode held plan: %w", err)
	}
	return &p, nil
}

func (s *Syncer) storePlan(ctx context.Context, p *HeldPlan) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := provision.AdapterOf(s.eng).KVSet(ctx, s.cfg.TenantID, s.planKey(), b, 0); err != nil {
		return fmt.Errorf("ldap: store held plan: %w", err)
	}
	return nil
}

func (s *Syncer) dropPlan(ctx context.Context) error {
	if err := provision.AdapterOf(s.eng).KVDelete(ctx, s.cfg.TenantID, s.planKey()); err != nil {
		return fmt.Errorf("ldap: drop held plan: %w", err)
	}
	return nil
}

// newPlan builds a plan whose ID is a digest of its deactivations.
func (s *Syncer) newPlan(ds []Deactivation, owned int, reason string) *HeldPlan {
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b Deactivation) int { return compare(a.UserID, b.UserID) })
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", s.cfg.TenantID, s.cfg.ConnectionID)
	for _, d := range ds {
		fmt.Fprintf(h, "%s\x00", d.UserID)
	}
	return &HeldPlan{
		ID:            hex.EncodeToString(h.Sum(nil)[:12]),
		TenantID:      s.cfg.TenantID,
		ConnectionID:  s.cfg.ConnectionID,
		Created:       s.cfg.Now().UTC(),
		Reason:        reason,
		Owned:         owned,
		Deactivations: ds,
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Confirm applies the held plan planID: it deactivates its users (those
// the connection still owns and that are still active) and drops the
// plan. It waits for a sync running elsewhere to finish (the connection's
// lock), until ctx ends. A plan that is no longer held is ErrNoPlan.
func (s *Syncer) Confirm(ctx context.Context, planID string) (*Report, error) {
	defer s.yield(ctx)()
	ctx, release, err := s.lockWait(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.track(ModeConfirm)()
	p, err := s.Held(ctx)
	if err != nil {
		return nil, err
	}
	if p.ID != planID {
		return nil, fmt.Errorf("%w: %q (the held plan is %q)", ErrNoPlan, planID, p.ID)
	}
	rep := s.newReport(ModeConfirm, false)
	if err := s.deactivate(ctx, rep, p.Deactivations); err != nil {
		return rep, err
	}
	if err := s.dropPlan(ctx); err != nil {
		return rep, err
	}
	rep.Duration = s.cfg.Now().Sub(rep.Started)
	s.log().InfoContext(ctx, "ldap: held plan confirmed", "plan", planID, "deactivated", rep.Deactivated, "skipped", rep.Skipped)
	return rep, nil
}

// Discard drops the held plan planID without applying it. The next full
// sync holds the same deactivations again if their entries are still gone.
func (s *Syncer) Discard(ctx context.Context, planID string) error {
	defer s.yield(ctx)()
	ctx, release, err := s.lockWait(ctx)
	if err != nil {
		return err
	}
	defer release()
	p, err := s.Held(ctx)
	if err != nil {
		return err
	}
	if p.ID != planID {
		return fmt.Errorf("%w: %q (the held plan is %q)", ErrNoPlan, planID, p.ID)
	}
	return s.dropPlan(ctx)
}

// deactivate applies deactivations, skipping users the connection no
// longer owns or that are gone.
func (s *Syncer) deactivate(ctx context.Context, rep *Report, ds []Deactivation) error {
	prog := s.tracking(rep)
	for _, d := range ds {
		prog.applied()
		if err := ctx.Err(); err != nil {
			return err
		}
		u, err := s.eng.GetUser(ctx, s.origin, d.UserID)
		if err != nil {
			if reason, ok := skipReason(err); ok {
				rep.skip("", d.ExternalID, "deactivate "+d.UserID+": "+reason)
				continue
			}
			return fmt.Errorf("ldap: deactivate %s: %w", d.UserID, err)
		}
		if u.Owner != s.cfg.ConnectionID {
			rep.skip("", d.ExternalID, fmt.Sprintf("deactivate %s: now owned by %q", d.UserID, u.Owner))
			continue
		}
		if !u.Active {
			rep.Unchanged++
			continue
		}
		if _, err := s.eng.DeactivateUser(ctx, s.origin, d.UserID); err != nil {
			if reason, ok := skipReason(err); ok {
				rep.skip("", d.ExternalID, "deactivate "+d.UserID+": "+reason)
				continue
			}
			return fmt.Errorf("ldap: deactivate %s: %w", d.UserID, err)
		}
		rep.Deactivated++
	}
	return nil
}

// settle applies the deactivations a sync collected, or holds them as a
// plan when they cross a threshold. owned is the number of active users
// the connection owns. full says the deactivations are the complete set
// (a full sync), which replaces any held plan. prior is the number of
// deactivations applied shortly before, which count against the
// thresholds too (a persistent search's changes arrive one by one).
func (s *Syncer) settle(ctx context.Context, rep *Report, ds []Deactivation, owned, prior int, full bool) error {
	ds = dedupeDeactivations(ds)
	n := len(ds)
	var reason string
	switch {
	case n == 0:
	case s.cfg.MaxDeactivations >= 0 && n+prior > s.cfg.MaxDeactivations:
		reason = fmt.Sprintf("%d deactivations exceed the limit of %d (Config.MaxDeactivations)", n+prior, s.cfg.MaxDeactivations)
	case s.cfg.MaxDeactivationShare >= 0 && n+prior > 1 && float64(n+prior) > s.cfg.MaxDeactivationShare*float64(owned):
		reason = fmt.Sprintf("%d deactivations exceed %.0f%% of the connection's %d active users (Config.MaxDeactivationShare)", n+prior, 100*s.cfg.MaxDeactivationShare, owned)
	}
	if prior > 0 && reason != "" {
		reason += fmt.Sprintf(", counting the %d applied by the persistent search within Config.Interval", prior)
	}
	if rep.DryRun {
		if reason != "" {
			rep.Held = s.newPlan(ds, owned, reason)
		} else {
			rep.Deactivated += n
		}
		return nil
	}
	if reason != "" {
		p := s.newPlan(ds, owned, reason)
		if old, err := s.Held(ctx); err == nil && old.ID == p.ID {
			p.Created = old.Created
		}
		if !full {
			// An incremental sync adds to what is held.
			if old, err := s.Held(ctx); err == nil {
				p = s.newPlan(append(slices.Clone(old.Deactivations), ds...), owned, reason)
			}
		}
		if err := s.storePlan(ctx, p); err != nil {
			return err
		}
		rep.Held = p
		s.log().WarnContext(ctx, "ldap: deactivations held for confirmation", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "plan", p.ID, "count", len(p.Deactivations), "reason", reason)
		return nil
	}
	if err := s.deactivate(ctx, rep, ds); err != nil {
		return err
	}
	if full {
		if _, err := s.Held(ctx); err == nil {
			return s.dropPlan(ctx)
		}
	}
	return nil
}

func dedupeDeactivations(ds []Deactivation) []Deactivation {
	seen := make(map[string]bool, len(ds))
	out := ds[:0:0]
	for _, d := range ds {
		if !seen[d.UserID] {
			seen[d.UserID] = true
			out = append(out, d)
		}
	}
	return out
}

// unhold removes users seen enabled again from the held plan.
func (s *Syncer) unhold(ctx context.Context, seen map[string]bool) error {
	if len(seen) == 0 {
		return nil
	}
	p, err := s.Held(ctx)
	if errors.Is(err, ErrNoPlan) {
		return nil
	}
	if err != nil {
		return err
	}
	keep := p.Deactivations[:0]
	for _, d := range p.Deactivations {
		if !seen[d.UserID] {
			keep = append(keep, d)
		}
	}
	if len(keep) == len(p.Deactivations) {
		return nil
	}
	if len(keep) == 0 {
		return s.dropPlan(ctx)
	}
	p.Deactivations = keep
	return s.storePlan(ctx, p)
}
