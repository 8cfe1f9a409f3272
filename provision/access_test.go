package provision_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/idprov/idprov/provision"
)

func roleList(u provision.User) []string {
	var out []string
	for _, r := range u.Roles {
		out = append(out, r.Value+"@"+r.Source)
	}
	return out
}

// accessFixture declares acme with rules: members of the Admins group are
// "admin", Finance people are "finance", heads of Finance also "approver".
func accessFixture(t *testing.T) (*fixture, provision.Group) {
	f := newFixture(t)
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Admins"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := tenants()[0]
	tn.AccessRules = []provision.AccessRule{
		{ID: "admins", GroupID: g.ID, Roles: []string{"admin"}},
		{ID: "finance", Filter: `department eq "Finance"`, Roles: []string{"finance"}},
		{ID: "approvers", Filter: `department eq "Finance" and title sw "Head"`, Roles: []string{"approver", "finance"}},
	}
	provision.RemoveTenant(f.engine, "acme")
	if err := provision.SetTenant(f.engine, tn); err != nil {
		t.Fatal(err)
	}
	return f, g
}

func (f *fixture) user(id string) provision.User {
	f.t.Helper()
	u, err := f.engine.GetUser(f.ctx, okta, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

func TestAccessMappingPromotion(t *testing.T) {
	f, admins := accessFixture(t)
	ctx := f.ctx
	u := ada()
	u.Department = "Finance"
	u.Roles = []provision.Role{{Value: "viewer"}}
	ada := f.create(okta, u)
	if diff := slices.Compare(roleList(ada), []string{"finance@rule:finance", "viewer@direct"}); diff != 0 {
		t.Fatalf("roles at creation = %v", roleList(ada))
	}
	// The promotion: a new title and membership of Admins, each in the
	// transaction of its change, with the previous roles in the event.
	seq := f.lastSeq("acme")
	if _, err := f.engine.UpdateUser(ctx, okta, ada.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Title = "Head of Finance"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{ada.ID}}); err != nil {
		t.Fatal(err)
	}
	evs := f.expectEvents("acme", seq, provision.UserUpdated, provision.GroupMembersAdded, provision.UserUpdated)
	if !slices.Contains(evs[0].Fields, "roles") || !slices.Contains(evs[0].Fields, "title") {
		t.Fatalf("title change fields = %v", evs[0].Fields)
	}
	if !slices.Equal(evs[2].Fields, []string{"roles"}) || evs[2].PreviousUser.HasRole("admin") || !evs[2].User.HasRole("admin") {
		t.Fatalf("membership role event = %+v", evs[2])
	}
	got := f.user(ada.ID)
	want := []string{"admin@rule:admins", "approver@rule:approvers", "finance@rule:finance", "viewer@direct"}
	if !slices.Equal(roleList(got), want) {
		t.Fatalf("roles after promotion = %v, want %v", roleList(got), want)
	}

	// Renaming the group changes nothing.
	seq = f.lastSeq("acme")
	if _, _, err := f.engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Mutate: func(g *provision.Group) error {
		g.DisplayName = "Super Admins"
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	f.expectEvents("acme", seq, provision.GroupUpdated)
	if !f.user(ada.ID).HasRole("admin") {
		t.Fatal("a group rename revoked a role")
	}

	// An attribute change moves the user between roles.
	if _, err := f.engine.UpdateUser(ctx, okta, ada.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Department = "Engineering"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := roleList(f.user(ada.ID)); !slices.Equal(got, []string{"admin@rule:admins", "viewer@direct"}) {
		t.Fatalf("roles after leaving Finance = %v", got)
	}

	// Removal revokes.
	if _, _, err := f.engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Remove: []string{ada.ID}}); err != nil {
		t.Fatal(err)
	}
	if f.user(ada.ID).HasRole("admin") {
		t.Fatal("removal from the group did not revoke admin")
	}

	// Deleting the group revokes what it granted.
	if _, _, err := f.engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{ada.ID}}); err != nil {
		t.Fatal(err)
	}
	if !f.user(ada.ID).HasRole("admin") {
		t.Fatal("re-adding did not grant admin")
	}
	if err := f.engine.DeleteGroup(ctx, okta, admins.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if f.user(ada.ID).HasRole("admin") {
		t.Fatal("deleting the group did not revoke admin")
	}
}

// A client that reads a user and writes it back whole (Okta's GET then
// PUT) echoes its mapped roles; they must not become direct grants.
func TestEchoedMappedRolesStayMapped(t *testing.T) {
	f, admins := accessFixture(t)
	u := f.create(okta, ada())
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{u.ID}}); err != nil {
		t.Fatal(err)
	}
	echo := f.user(u.ID)
	for i := range echo.Roles {
		echo.Roles[i].Source = "" // SCIM has no provenance
	}
	if _, err := f.engine.ReplaceUser(f.ctx, okta, u.ID, provision.Precondition{}, echo); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Remove: []string{u.ID}}); err != nil {
		t.Fatal(err)
	}
	if got := f.user(u.ID); got.HasRole("admin") {
		t.Fatalf("an echoed mapped role survived its revocation: %v", roleList(got))
	}
}

func TestNoRuleNoRole(t *testing.T) {
	f, _ := accessFixture(t)
	u := f.create(okta, provision.User{UserName: "nobody", Active: true})
	if len(u.Roles) != 0 {
		t.Fatalf("roles without a matching rule: %v", roleList(u))
	}
}

func TestAccessPlan(t *testing.T) {
	f, admins := accessFixture(t)
	ctx := f.ctx
	var ids []string
	for i := range 500 {
		dept := "Sales"
		if i%5 < 3 {
			dept = "Operations" // 300 of them
		}
		u := f.create(okta, provision.User{UserName: fmt.Sprintf("u%03d", i), Department: dept, Active: true})
		ids = append(ids, u.ID)
	}
	if _, _, err := f.engine.UpdateGroup(ctx, okta, admins.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids[:2]}); err != nil {
		t.Fatal(err)
	}
	// The proposed change: Operations becomes admin; the Admins group
	// grants "owner" instead of "admin".
	rules := []provision.AccessRule{
		{ID: "admins", GroupID: admins.ID, Roles: []string{"owner"}},
		{ID: "ops", Filter: `department eq "Operations"`, Roles: []string{"admin"}},
	}
	seq := f.lastSeq("acme")
	plan, err := f.engine.PlanAccessRules(ctx, "acme", rules)
	if err != nil {
		t.Fatal(err)
	}
	if f.lastSeq("acme") != seq || f.user(ids[1]).HasRole("owner") {
		t.Fatal("planning changed something")
	}
	plan, err = f.engine.Plan(ctx, "acme", plan.ID, provision.Page{Limit: 1000})
	if err != nil || plan.Kind != provision.PlanAccess || plan.Size != len(plan.Changes) {
		t.Fatalf("Plan = %+v, %v", plan, err)
	}
	gain, lose := map[string][]string{}, map[string][]string{}
	for _, c := range plan.Changes {
		switch c.Op {
		case "grant-role":
			gain[c.Role] = append(gain[c.Role], c.UserID)
		case "revoke-role":
			lose[c.Role] = append(lose[c.Role], c.UserID)
		default:
			t.Fatalf("an access plan's change %+v", c)
		}
	}
	var wantAdmins []string
	for i, id := range ids {
		if i%5 < 3 && i >= 2 {
			wantAdmins = append(wantAdmins, id)
		}
	}
	// ids[0] (Operations) and ids[1] (Operations) already are admins
	// through the group, so they neither gain nor lose admin.
	gained := slices.Sorted(slices.Values(gain["admin"]))
	if !slices.Equal(gained, slices.Sorted(slices.Values(wantAdmins))) || len(gained) != 298 {
		t.Fatalf("admin gained by %d users, want exactly the 298 Operations users outside Admins", len(gained))
	}
	if len(lose["admin"]) != 0 || !slices.Equal(gain["owner"], ids[:2]) || plan.Of != 500 {
		t.Fatalf("plan = admin lose %v, owner gain %v, users %d", lose["admin"], gain["owner"], plan.Of)
	}

	// A connection cannot confirm a plan; an admin call can.
	if _, err := f.engine.ConfirmPlan(ctx, okta, plan.ID); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("apply by a connection = %v", err)
	}
	if _, err := f.engine.ConfirmPlan(ctx, admin, plan.ID); err != nil {
		t.Fatal(err)
	}
	evs := f.events("acme", seq)
	if len(evs) != 300 { // 298 gain admin, 2 swap admin for owner
		t.Fatalf("applying emitted %d events, want 300", len(evs))
	}
	if u := f.user(ids[2]); !u.HasRole("admin") || u.HasRole("finance") {
		t.Fatalf("after apply, an Operations user has %v", roleList(u))
	}
	if u := f.user(ids[3]); len(u.Roles) != 0 {
		t.Fatalf("after apply, a Sales user has %v", roleList(u))
	}
	if _, err := f.engine.ConfirmPlan(ctx, admin, plan.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a plan applies twice: %v", err)
	}
	// The new rules govern later changes.
	late := f.create(okta, provision.User{UserName: "late", Department: "Operations", Active: true})
	if !late.HasRole("admin") {
		t.Fatal("a user created after the plan did not get the new rules")
	}
	if _, err := f.engine.PlanAccessRules(ctx, "acme", []provision.AccessRule{{ID: "x", Roles: []string{"r"}}}); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("a rule without a selector = %v", err)
	}
	if _, err := f.engine.PlanAccessRules(ctx, "acme", []provision.AccessRule{{ID: "x", Filter: "department eq", Roles: []string{"r"}}}); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("a rule with a bad filter = %v", err)
	}
}
