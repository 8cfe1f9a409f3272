package provision_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestHeldPlans: one call lists a tenant's held plans of every kind the
// engine holds, with their full size, paged; confirm, apply and discard
// take them off the list; other tenants see none of them.
func TestHeldPlans(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 300 {
		ids = append(ids, f.create(okta, provision.User{UserName: fmt.Sprintf("u%03d", i), Active: true}).ID)
	}
	var groups []provision.Group
	for i := range 3 {
		g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: fmt.Sprintf("All %d", i)}, ids[:200+i*50])
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	var held []string
	for i, g := range groups {
		_, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[:10]})
		var he *provision.HeldError
		if !errors.As(err, &he) || he.Removing != 190+i*50 {
			t.Fatalf("replace of %s = %v", g.DisplayName, err)
		}
		held = append(held, he.PlanID)
	}
	ap, err := f.engine.PlanAccessRules(f.ctx, "acme", []provision.AccessRule{{ID: "all", Filter: `active eq true`, Roles: []string{"member"}}})
	if err != nil {
		t.Fatal(err)
	}

	plans, total, err := f.engine.HeldPlans(f.ctx, "acme", provision.Page{Limit: 100})
	if err != nil || total != 4 || len(plans) != 4 {
		t.Fatalf("HeldPlans = %d of %d, %v; want 4", len(plans), total, err)
	}
	for i, id := range held {
		p := plans[i]
		if p.Kind != provision.PlanMembers || p.ID != id || p.ConnectionID != "okta" || p.Size != 190+i*50 || p.Of != 200+i*50 || p.Members == nil || len(p.Members.Members) != 10 {
			t.Errorf("plan %d = %+v, want members plan %s removing %d", i, p, id, 190+i*50)
		}
	}
	if p := plans[3]; p.Kind != provision.PlanAccess || p.ID != ap.ID || p.Size != 300 || p.Of != 300 || p.Access == nil {
		t.Errorf("access plan = %+v, want %s granting 300", p, ap.ID)
	}
	page, total, err := f.engine.HeldPlans(f.ctx, "acme", provision.Page{Offset: 1, Limit: 2})
	if err != nil || total != 4 || len(page) != 2 || page[0].ID != held[1] || page[1].ID != held[2] {
		t.Fatalf("page 2 of 2 = %+v of %d, %v", page, total, err)
	}
	// A retry of the same replace is the same plan, listed once.
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, groups[0].ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[:10]}); !errors.Is(err, provision.ErrHeld) {
		t.Fatal(err)
	}
	if _, total, _ := f.engine.HeldPlans(f.ctx, "acme", provision.Page{}); total != 4 {
		t.Fatalf("after a retry: %d plans", total)
	}
	// Another tenant sees none of them, an unknown one is an error.
	if _, total, err := f.engine.HeldPlans(f.ctx, "globex", provision.Page{Limit: 10}); err != nil || total != 0 {
		t.Fatalf("globex's plans: %d, %v", total, err)
	}
	if _, _, err := f.engine.HeldPlans(f.ctx, "nobody", provision.Page{Limit: 10}); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("an unknown tenant's plans: %v", err)
	}

	// Discard: only by an admin, only a held plan; the members stay.
	if err := f.engine.DiscardPlan(f.ctx, okta, provision.PlanMembers, held[0]); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("discard by the directory = %v", err)
	}
	if err := f.engine.DiscardPlan(f.ctx, provision.Origin{TenantID: "globex"}, provision.PlanMembers, held[0]); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("discard from another tenant = %v", err)
	}
	if err := f.engine.DiscardPlan(f.ctx, admin, provision.PlanMembers, held[0]); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := f.engine.ListMembers(f.ctx, okta, groups[0].ID, provision.Page{}); n != 200 {
		t.Fatalf("a discarded plan changed the group: %d members", n)
	}
	if _, err := f.engine.ConfirmMembersPlan(f.ctx, admin, held[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.ApplyAccessPlan(f.ctx, admin, ap.ID); err != nil {
		t.Fatal(err)
	}
	plans, total, err = f.engine.HeldPlans(f.ctx, "acme", provision.Page{Limit: 100})
	if err != nil || total != 1 || plans[0].ID != held[2] {
		t.Fatalf("after discard, confirm and apply: %+v of %d, %v; want only %s", plans, total, err, held[2])
	}
	if err := f.engine.DiscardPlan(f.ctx, admin, provision.PlanMembers, held[0]); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a second discard = %v", err)
	}
}

// TestHeldPlansConcurrent: plans held at the same time are all listed.
func TestHeldPlansConcurrent(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 120 {
		ids = append(ids, f.create(okta, provision.User{UserName: fmt.Sprintf("u%03d", i), Active: true}).ID)
	}
	const n = 8
	var groups []provision.Group
	for i := range n {
		g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: fmt.Sprintf("g%d", i)}, ids)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			if _, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[:1]}); !errors.Is(err, provision.ErrHeld) {
				t.Errorf("replace of %s = %v", g.DisplayName, err)
			}
		})
	}
	wg.Wait()
	if _, total, err := f.engine.HeldPlans(f.ctx, "acme", provision.Page{}); err != nil || total != n {
		t.Fatalf("%d plans listed (%v), want %d", total, err, n)
	}
}
