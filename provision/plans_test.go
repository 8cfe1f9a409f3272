package provision_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// TestPlans: one call lists a tenant's held plans of every kind the
// engine holds, with their full size, paged; confirm, apply and discard
// take them off the list; other tenants see none of them.
func TestPlans(t *testing.T) {
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

	plans, total, err := f.engine.Plans(f.ctx, "acme", provision.Page{Limit: 100})
	if err != nil || total != 4 || len(plans) != 4 {
		t.Fatalf("Plans = %d of %d, %v; want 4", len(plans), total, err)
	}
	for i, id := range held {
		p := plans[i]
		if p.Kind != provision.PlanMembers || p.ID != id || p.ConnectionID != "okta" || p.Size != 190+i*50 || p.Of != 200+i*50 || p.Changes != nil || p.Summary == "" {
			t.Errorf("plan %d = %+v, want members plan %s removing %d", i, p, id, 190+i*50)
		}
	}
	if p := plans[3]; p.Kind != provision.PlanAccess || p.ID != ap.ID || p.Size != 300 || p.Of != 300 {
		t.Errorf("access plan = %+v, want %s granting 300", p, ap.ID)
	}
	// A plan's changes, paged.
	p, err := f.engine.Plan(f.ctx, "acme", held[0], provision.Page{Offset: 180, Limit: 50})
	if err != nil || p.Size != 190 || len(p.Changes) != 10 || p.Changes[0].Op != "remove-member" || p.Changes[0].GroupID != groups[0].ID {
		t.Fatalf("Plan(page 180+50) = %d changes of %d, %v", len(p.Changes), p.Size, err)
	}
	if _, err := f.engine.Plan(f.ctx, "globex", held[0], provision.Page{Limit: 1}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("another tenant's plan: %v", err)
	}
	page, total, err := f.engine.Plans(f.ctx, "acme", provision.Page{Offset: 1, Limit: 2})
	if err != nil || total != 4 || len(page) != 2 || page[0].ID != held[1] || page[1].ID != held[2] {
		t.Fatalf("page 2 of 2 = %+v of %d, %v", page, total, err)
	}
	// A retry of the same replace is the same plan, listed once.
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, groups[0].ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[:10]}); !errors.Is(err, provision.ErrHeld) {
		t.Fatal(err)
	}
	if _, total, _ := f.engine.Plans(f.ctx, "acme", provision.Page{}); total != 4 {
		t.Fatalf("after a retry: %d plans", total)
	}
	// Another tenant sees none of them, an unknown one is an error.
	if _, total, err := f.engine.Plans(f.ctx, "globex", provision.Page{Limit: 10}); err != nil || total != 0 {
		t.Fatalf("globex's plans: %d, %v", total, err)
	}
	if _, _, err := f.engine.Plans(f.ctx, "nobody", provision.Page{Limit: 10}); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("an unknown tenant's plans: %v", err)
	}

	// Discard: only by an admin, only a held plan; the members stay.
	if err := f.engine.DiscardPlan(f.ctx, okta, held[0]); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("discard by the directory = %v", err)
	}
	if err := f.engine.DiscardPlan(f.ctx, provision.Origin{TenantID: "globex"}, held[0]); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("discard from another tenant = %v", err)
	}
	if err := f.engine.DiscardPlan(f.ctx, admin, held[0]); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := f.engine.ListMembers(f.ctx, okta, groups[0].ID, provision.Page{}); n != 200 {
		t.Fatalf("a discarded plan changed the group: %d members", n)
	}
	if _, err := f.engine.ConfirmPlan(f.ctx, admin, held[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.ConfirmPlan(f.ctx, admin, ap.ID); err != nil {
		t.Fatal(err)
	}
	plans, total, err = f.engine.Plans(f.ctx, "acme", provision.Page{Limit: 100})
	if err != nil || total != 1 || plans[0].ID != held[2] {
		t.Fatalf("after discard, confirm and apply: %+v of %d, %v; want only %s", plans, total, err, held[2])
	}
	if err := f.engine.DiscardPlan(f.ctx, admin, held[0]); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a second discard = %v", err)
	}
}

// TestPlansConcurrent: plans held at the same time are all listed.
func TestPlansConcurrent(t *testing.T) {
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
	if _, total, err := f.engine.Plans(f.ctx, "acme", provision.Page{}); err != nil || total != n {
		t.Fatalf("%d plans listed (%v), want %d", total, err, n)
	}
}

// TestDeactivationPlan: a sync adapter's held deactivations are a plan
// like the others: listed, paged, confirmed only by an admin call, applied
// as the connection to the users it still owns and that are still active,
// after waiting for the connection's sync lock.
func TestDeactivationPlan(t *testing.T) {
	f := newFixture(t)
	ad := provision.AdapterOf(f.engine)
	a := f.create(dir, provision.User{UserName: "a@acme.test", ExternalID: "a", Active: true})
	b := f.create(dir, provision.User{UserName: "b@acme.test", ExternalID: "b", Active: true})
	c := f.create(okta, provision.User{UserName: "c@acme.test", Active: true}) // another connection's
	changes := []provision.PlanChange{
		{Op: "deactivate", UserID: a.ID, UserName: a.UserName, Reason: "gone"},
		{Op: "deactivate", UserID: b.ID, UserName: b.UserName, Reason: "disabled"},
		{Op: "deactivate", UserID: c.ID, Reason: "gone"},
	}
	p := provision.Plan{Kind: provision.PlanDeactivations, ID: "d1", TenantID: "acme", ConnectionID: "ldap", Summary: "3 of 3", Of: 3, Changes: changes}
	if _, err := ad.HoldDeactivations(f.ctx, provision.Plan{Kind: provision.PlanMembers, ID: "x", TenantID: "acme", ConnectionID: "ldap"}, ""); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("a members plan held as deactivations: %v", err)
	}
	held, err := ad.HoldDeactivations(f.ctx, p, "ldap-sync/ldap")
	if err != nil || held.Size != 3 {
		t.Fatalf("HoldDeactivations = %+v, %v", held, err)
	}
	// The next sync finding the same set keeps the plan and its time.
	p.Created = held.Created.Add(time.Hour)
	if again, err := ad.HoldDeactivations(f.ctx, p, "ldap-sync/ldap"); err != nil || !again.Created.Equal(held.Created) {
		t.Fatalf("held again = %+v, %v", again, err)
	}
	plans, total, err := f.engine.Plans(f.ctx, "acme", provision.Page{Limit: 10})
	if err != nil || total != 1 || plans[0].Kind != provision.PlanDeactivations || plans[0].ConnectionID != "ldap" || plans[0].Changes != nil {
		t.Fatalf("Plans = %+v of %d, %v", plans, total, err)
	}
	if pg, err := f.engine.Plan(f.ctx, "acme", "d1", provision.Page{Offset: 1, Limit: 1}); err != nil || len(pg.Changes) != 1 || pg.Changes[0].UserID != b.ID || pg.Size != 3 {
		t.Fatalf("Plan(page 2) = %+v, %v", pg, err)
	}
	if _, err := f.engine.ConfirmPlan(f.ctx, dir, "d1"); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("confirm by the connection = %v", err)
	}
	// A running sync holds the lock: the confirmation waits for it.
	_, release, err := ad.Lock(f.ctx, "acme", "ldap-sync/ldap")
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		released <- time.Now()
		release()
	}()
	if _, err := f.engine.ConfirmPlan(f.ctx, provision.Origin{TenantID: "acme", Actor: "admin@acme"}, "d1"); err != nil {
		t.Fatal(err)
	}
	if done, at := time.Now(), <-released; done.Before(at) {
		t.Fatal("the confirmation did not wait for the sync lock")
	}
	if u, _ := f.engine.GetUser(f.ctx, admin, a.ID); u.Active {
		t.Error("a is still active")
	}
	if u, _ := f.engine.GetUser(f.ctx, admin, b.ID); u.Active {
		t.Error("b is still active")
	}
	if u, _ := f.engine.GetUser(f.ctx, admin, c.ID); !u.Active {
		t.Error("the plan deactivated a user another connection owns")
	}
	evs := f.events("acme", 0)
	if ev := evs[len(evs)-1]; ev.Kind != provision.UserDeactivated || ev.ConnectionID != "ldap" || ev.Actor != "admin@acme" {
		t.Fatalf("last event = %+v", ev)
	}
	if _, err := f.engine.Plan(f.ctx, "acme", "d1", provision.Page{}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the plan is still held: %v", err)
	}
	if err := ad.DropDeactivations(f.ctx, "acme", "ldap"); err != nil {
		t.Fatalf("dropping nothing = %v", err)
	}
}
