package ldap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
)

// deactivation is one user a sync would deactivate.
type deactivation struct {
	// UserID is the engine's user; ExternalID its entry's id; UserName
	// for display.
	UserID     string
	ExternalID string
	UserName   string
	// Reason is "gone" (absent from a complete full sync), "deleted" (a
	// syncrepl delete) or "disabled" (a Disabled rule matched).
	Reason string
}

// Held deactivations are a provision.Plan of kind PlanDeactivations,
// kept by the engine with the tenant's other plans (Engine.Plans, Plan,
// ConfirmPlan, DiscardPlan): a sync that crosses the safety threshold
// (Config.MaxDeactivations, Config.MaxDeactivationShare) holds them
// instead of applying them, and goes on with its creates and updates. The
// users stay active until an administrator confirms the plan. A later full
// sync recomputes it: the same deactivations keep the same plan ID,
// different ones replace it, and deactivations back under the threshold
// are applied and the plan dropped.

// held returns the connection's held deactivations, or ErrNotFound.
func (s *Syncer) held(ctx context.Context) (provision.Plan, error) {
	p, err := provision.AdapterOf(s.eng).HeldDeactivations(ctx, s.cfg.TenantID, s.cfg.ConnectionID)
	if err != nil && !errors.Is(err, provision.ErrNotFound) {
		return p, fmt.Errorf("ldap: read held plan: %w", err)
	}
	return p, err
}

func (s *Syncer) storePlan(ctx context.Context, p *provision.Plan) error {
	held, err := provision.AdapterOf(s.eng).HoldDeactivations(ctx, *p, s.lockName())
	if err != nil {
		return fmt.Errorf("ldap: store held plan: %w", err)
	}
	*p = held
	return nil
}

func (s *Syncer) dropPlan(ctx context.Context) error {
	if err := provision.AdapterOf(s.eng).DropDeactivations(ctx, s.cfg.TenantID, s.cfg.ConnectionID); err != nil {
		return fmt.Errorf("ldap: drop held plan: %w", err)
	}
	return nil
}

// newPlan builds a plan whose ID is a digest of its deactivations.
func (s *Syncer) newPlan(ds []deactivation, owned int, reason string) *provision.Plan {
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b deactivation) int { return compare(a.UserID, b.UserID) })
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", s.cfg.TenantID, s.cfg.ConnectionID)
	p := &provision.Plan{
		Kind:         provision.PlanDeactivations,
		TenantID:     s.cfg.TenantID,
		ConnectionID: s.cfg.ConnectionID,
		Created:      s.cfg.Now().UTC(),
		Summary:      fmt.Sprintf("Deactivate %d of the %d active users the LDAP directory %s manages: %s", len(ds), owned, s.cfg.ConnectionID, reason),
		Size:         len(ds),
		Of:           owned,
	}
	for _, d := range ds {
		fmt.Fprintf(h, "%s\x00", d.UserID)
		p.Changes = append(p.Changes, provision.PlanChange{Op: "deactivate", UserID: d.UserID, UserName: d.UserName, ExternalID: d.ExternalID, Reason: d.Reason})
	}
	p.ID = hex.EncodeToString(h.Sum(nil)[:12])
	return p
}

// heldDeactivations are a held plan's changes, as deactivations.
func heldDeactivations(p provision.Plan) []deactivation {
	out := make([]deactivation, 0, len(p.Changes))
	for _, c := range p.Changes {
		out = append(out, deactivation{UserID: c.UserID, ExternalID: c.ExternalID, UserName: c.UserName, Reason: c.Reason})
	}
	return out
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

// deactivate applies deactivations, skipping users the connection no
// longer owns or that are gone.
func (s *Syncer) deactivate(ctx context.Context, rep *Report, ds []deactivation) error {
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
func (s *Syncer) settle(ctx context.Context, rep *Report, ds []deactivation, owned, prior int, full bool) error {
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
			rep.Held.Changes = nil
		} else {
			rep.Deactivated += n
		}
		return nil
	}
	if reason != "" {
		p := s.newPlan(ds, owned, reason)
		if !full {
			// An incremental sync adds to what is held.
			if old, err := s.held(ctx); err == nil {
				p = s.newPlan(dedupeDeactivations(append(heldDeactivations(old), ds...)), owned, reason)
			}
		}
		if err := s.storePlan(ctx, p); err != nil {
			return err
		}
		p.Changes = nil
		rep.Held = p
		s.log().WarnContext(ctx, "ldap: deactivations held for confirmation", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "plan", p.ID, "count", p.Size, "reason", reason)
		return nil
	}
	if err := s.deactivate(ctx, rep, ds); err != nil {
		return err
	}
	if full {
		if _, err := s.held(ctx); err == nil {
			return s.dropPlan(ctx)
		}
	}
	return nil
}

func dedupeDeactivations(ds []deactivation) []deactivation {
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
	p, err := s.held(ctx)
	if errors.Is(err, provision.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	keep := p.Changes[:0]
	for _, c := range p.Changes {
		if !seen[c.UserID] {
			keep = append(keep, c)
		}
	}
	if len(keep) == len(p.Changes) {
		return nil
	}
	if len(keep) == 0 {
		return s.dropPlan(ctx)
	}
	// The plan keeps its ID: the remaining deactivations are those an
	// administrator was shown, less the users seen again.
	p.Changes = keep
	return s.storePlan(ctx, &p)
}
