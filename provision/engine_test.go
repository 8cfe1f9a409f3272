package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// fixture is an engine over a fresh memstore with two tenants: acme (a SCIM
// directory "okta", a second directory "entra", a SAML connection "sso"
// paired with okta, an LDAP source "ldap") and globex (one directory).
type fixture struct {
	t      *testing.T
	ctx    context.Context
	store  *memstore.Store
	engine *provision.Engine
	clock  time.Time
}

var (
	okta   = provision.Origin{TenantID: "acme", ConnectionID: "okta", Actor: "okta", RequestID: "r1"}
	entra  = provision.Origin{TenantID: "acme", ConnectionID: "entra"}
	sso    = provision.Origin{TenantID: "acme", ConnectionID: "sso"}
	dir    = provision.Origin{TenantID: "acme", ConnectionID: "ldap"}
	admin  = provision.Origin{TenantID: "acme"}
	globex = provision.Origin{TenantID: "globex", ConnectionID: "scim"}
)

func tenants() []provision.Tenant {
	return []provision.Tenant{
		{
			ID:              "acme",
			VerifiedDomains: []string{"acme.test"},
			Connections: []provision.Connection{
				{ID: "okta", Kind: provision.KindSCIM},
				{ID: "entra", Kind: provision.KindSCIM},
				{ID: "sso", Kind: provision.KindSAML, Match: []provision.MatchRule{provision.MatchPairedExternalID, provision.MatchEmail}, PairedWith: "okta"},
				{ID: "ldap", Kind: provision.KindLDAP},
			},
		},
		{ID: "globex", Connections: []provision.Connection{{ID: "scim", Kind: provision.KindSCIM}}},
	}
}

func newFixture(t *testing.T, mod ...func(*provision.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), store: memstore.New(), clock: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	cfg := provision.Config{Store: f.store, Tenants: tenants(), Now: func() time.Time { return f.clock }}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := provision.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.engine = e
	return f
}

// events returns the tenant's events after seq, as "kind" strings plus the
// events themselves.
func (f *fixture) events(tenant string, after int64) []provision.Event {
	f.t.Helper()
	evs, err := f.engine.Events(f.ctx, tenant, after, 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

func (f *fixture) lastSeq(tenant string) int64 {
	f.t.Helper()
	n, err := f.store.LastSeq(f.ctx, tenant)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func kinds(evs []provision.Event) []provision.EventKind {
	out := make([]provision.EventKind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

func (f *fixture) expectEvents(tenant string, after int64, want ...provision.EventKind) []provision.Event {
	f.t.Helper()
	evs := f.events(tenant, after)
	if diff := cmp.Diff(want, kinds(evs)); diff != "" {
		f.t.Fatalf("events after %d (-want +got):\n%s", after, diff)
	}
	return evs
}

func ada() provision.User {
	return provision.User{
		UserName:   "ada@acme.test",
		ExternalID: "00u-ada",
		Name:       provision.Name{GivenName: "Ada", FamilyName: "Lovelace"},
		Emails:     []provision.Email{{Value: "ada@acme.test", Type: "work", Primary: true}},
		Active:     true,
	}
}

func (f *fixture) create(o provision.Origin, u provision.User) provision.User {
	f.t.Helper()
	out, err := f.engine.CreateUser(f.ctx, o, u)
	if err != nil {
		f.t.Fatalf("CreateUser(%s): %v", u.UserName, err)
	}
	return out
}

func TestLifecycleScenarios(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx

	// Onboarding.
	u := f.create(okta, ada())
	if u.ID == "" || u.Version != 1 || u.Owner != "okta" || u.ExternalID != "00u-ada" || !u.Active {
		t.Fatalf("created user = %+v", u)
	}
	evs := f.expectEvents("acme", 0, provision.UserCreated)
	if evs[0].Seq != 1 || evs[0].User.ID != u.ID || evs[0].ConnectionID != "okta" || evs[0].RequestID != "r1" || !evs[0].Time.Equal(f.clock) {
		t.Fatalf("user.created event = %+v", evs[0])
	}

	// A name change: the event carries the previous value.
	seq := f.lastSeq("acme")
	u2, err := f.engine.UpdateUser(ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Name.FamilyName = "King"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if u2.Version != 2 || u2.Name.FamilyName != "King" {
		t.Fatalf("updated user = %+v", u2)
	}
	evs = f.expectEvents("acme", seq, provision.UserUpdated)
	if diff := cmp.Diff([]string{"name.familyName"}, evs[0].Fields); diff != "" {
		t.Fatalf("fields (-want +got):\n%s", diff)
	}
	if evs[0].PreviousUser.Name.FamilyName != "Lovelace" || evs[0].User.Name.FamilyName != "King" {
		t.Fatalf("previous/after = %q/%q", evs[0].PreviousUser.Name.FamilyName, evs[0].User.Name.FamilyName)
	}

	// A promotion: a new title and a new group.
	seq = f.lastSeq("acme")
	if _, err := f.engine.UpdateUser(ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Title = "Head of Engineering"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	g, err := f.engine.CreateGroup(ctx, okta, provision.Group{DisplayName: "Admins", ExternalID: "00g-admins"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, mc, err := f.engine.UpdateGroup(ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{u.ID}})
	if added := mc.Added; err != nil || !slices.Equal(added, []string{u.ID}) {
		t.Fatalf("AddMembers = %v, %v", added, err)
	}
	evs = f.expectEvents("acme", seq, provision.UserUpdated, provision.GroupCreated, provision.GroupMembersAdded)
	if !slices.Equal(evs[2].Members, []string{u.ID}) || evs[2].Group.ID != g.ID {
		t.Fatalf("members_added = %+v", evs[2])
	}

	// Offboarding: deactivation, then deletion.
	seq = f.lastSeq("acme")
	if _, err := f.engine.DeactivateUser(ctx, okta, u.ID); err != nil {
		t.Fatal(err)
	}
	evs = f.expectEvents("acme", seq, provision.UserDeactivated)
	if evs[0].User.Active || !evs[0].PreviousUser.Active {
		t.Fatalf("deactivated event = %+v", evs[0])
	}
	got, err := f.engine.GetUser(ctx, okta, u.ID)
	if err != nil || got.Active {
		t.Fatalf("a deactivated user is still readable and inactive: %+v, %v", got, err)
	}

	// Rehire: the same person comes back.
	seq = f.lastSeq("acme")
	if _, err := f.engine.ReactivateUser(ctx, okta, u.ID); err != nil {
		t.Fatal(err)
	}
	f.expectEvents("acme", seq, provision.UserReactivated)

	// Offboarding for good: deleting an active member emits the
	// deactivation, the deletion and the membership removal, in order.
	seq = f.lastSeq("acme")
	if err := f.engine.DeleteUser(ctx, okta, u.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	evs = f.expectEvents("acme", seq, provision.UserDeactivated, provision.UserDeleted, provision.GroupMembersRemoved)
	if !slices.Equal(evs[2].Members, []string{u.ID}) {
		t.Fatalf("members_removed = %+v", evs[2])
	}
	if _, err := f.engine.GetUser(ctx, okta, u.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("GetUser after delete = %v, want ErrNotFound", err)
	}
	if _, total, _ := f.engine.ListMembers(ctx, okta, g.ID, provision.Page{Limit: 10}); total != 0 {
		t.Fatalf("group still has %d members", total)
	}

	// Sequence numbers are gapless.
	all := f.events("acme", 0)
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
}

func TestNoOpChangesNothing(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	seq := f.lastSeq("acme")
	got, err := f.engine.UpdateUser(f.ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Name.GivenName = "Ada" // the same value
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != u.Version {
		t.Fatalf("version bumped by a no-op: %d -> %d", u.Version, got.Version)
	}
	// A full replace with the same data (a periodic PUT) is free too.
	if got, err = f.engine.ReplaceUser(f.ctx, okta, u.ID, provision.Precondition{}, ada()); err != nil || got.Version != u.Version {
		t.Fatalf("ReplaceUser with same data = v%d, %v", got.Version, err)
	}
	if _, err := f.engine.DeactivateUser(f.ctx, okta, u.ID); err != nil {
		t.Fatal(err)
	}
	seq2 := f.lastSeq("acme")
	if _, err := f.engine.DeactivateUser(f.ctx, okta, u.ID); err != nil {
		t.Fatal(err)
	}
	if f.lastSeq("acme") != seq2 || seq2 != seq+1 {
		t.Fatalf("no-op changes emitted events: seq %d -> %d -> %d", seq, seq2, f.lastSeq("acme"))
	}
}

func TestRetriedCreateNamesExisting(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	seq := f.lastSeq("acme")
	again := ada()
	again.UserName = "ADA@acme.test" // userName compares case-insensitively
	_, err := f.engine.CreateUser(f.ctx, okta, again)
	var retried *provision.ConflictError
	if !errors.As(err, &retried) || retried.ExistingID != u.ID || !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("retried create = %v, want a *ConflictError naming %s", err, u.ID)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("a retried create emitted events")
	}
	// Without an externalId, a second create is a conflict (RFC 7644 409).
	plain := provision.User{UserName: "bob@acme.test", Active: true}
	f.create(okta, plain)
	_, err = f.engine.CreateUser(f.ctx, okta, plain)
	var ce *provision.ConflictError
	if !errors.As(err, &ce) || ce.Field != "userName" || !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("duplicate create = %v, want a userName ConflictError", err)
	}
}

func TestCreateOfDeactivatedUserRehires(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	if _, err := f.engine.DeactivateUser(f.ctx, okta, u.ID); err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	back := ada()
	back.Title = "Returning Engineer"
	got := f.create(okta, back)
	if got.ID != u.ID || !got.Active || got.Title != "Returning Engineer" {
		t.Fatalf("rehire create = %+v", got)
	}
	evs := f.expectEvents("acme", seq, provision.UserReactivated)
	if !slices.Contains(evs[0].Fields, "title") || !slices.Contains(evs[0].Fields, "active") {
		t.Fatalf("reactivation fields = %v", evs[0].Fields)
	}
	// Another directory creating the same userName gets a conflict naming
	// the owner.
	_, err := f.engine.CreateUser(f.ctx, entra, provision.User{UserName: "ada@acme.test", ExternalID: "e-1", Active: true})
	var ce *provision.ConflictError
	if !errors.As(err, &ce) || ce.Owner != "okta" {
		t.Fatalf("create by another directory = %v, want a conflict naming okta", err)
	}
}

func TestUnknownAndForeignMembersChangeNothing(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	foreign := f.create(globex, provision.User{UserName: "gus@globex.test", Active: true})
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Eng"}, []string{u.ID})
	if err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	for _, ids := range [][]string{{"nope"}, {foreign.ID}, {u.ID, foreign.ID}} {
		_, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids, Remove: nil})
		var me *provision.MembersError
		if !errors.As(err, &me) || !errors.Is(err, provision.ErrInvalid) {
			t.Fatalf("AddMembers(%v) = %v, want a MembersError", ids, err)
		}
		if _, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: nil, Remove: ids}); !errors.As(err, &me) {
			t.Fatalf("RemoveMembers(%v) = %v, want a MembersError", ids, err)
		}
		if _, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids}); !errors.As(err, &me) {
			t.Fatalf("ReplaceMembers(%v) = %v, want a MembersError", ids, err)
		}
	}
	if _, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Ops"}, []string{foreign.ID}); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("CreateGroup with a foreign member = %v", err)
	}
	members, total, _ := f.engine.ListMembers(f.ctx, okta, g.ID, provision.Page{Limit: 10})
	if total != 1 || members[0] != u.ID {
		t.Fatalf("members = %v", members)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("refused membership changes emitted events")
	}
	// Idempotent adds and removes emit nothing.
	if _, mc, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{u.ID}}); err != nil || len(mc.Added) != 0 {
		t.Fatalf("re-add = %v, %v", mc.Added, err)
	}
	other := f.create(okta, provision.User{UserName: "bob@acme.test", Active: true})
	if _, mc, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Remove: []string{other.ID}}); err != nil || len(mc.Removed) != 0 {
		t.Fatalf("remove of a non-member = %v, %v", mc.Removed, err)
	}
	if f.lastSeq("acme") != seq+1 { // bob's creation only
		t.Fatalf("idempotent membership changes emitted events: %v", kinds(f.events("acme", seq)))
	}
	// ReplaceMembers computes the difference.
	_, mc, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: []string{other.ID}})
	if err != nil || !slices.Equal(mc.Added, []string{other.ID}) || !slices.Equal(mc.Removed, []string{u.ID}) {
		t.Fatalf("ReplaceMembers = %+v, %v", mc, err)
	}
}

func TestTombstone(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	if err := f.engine.DeleteUser(f.ctx, okta, u.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if err := f.engine.DeleteUser(f.ctx, okta, u.ID, provision.Precondition{}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("second delete = %v, want ErrNotFound", err)
	}
	if _, err := f.engine.UpdateUser(f.ctx, okta, u.ID, provision.Precondition{}, func(*provision.User) error { return nil }); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("update of a tombstone = %v", err)
	}
	// The link is kept: a login through the paired SAML connection is
	// refused as deprovisioned, not treated as a new person.
	if _, err := f.store.GetLink(f.ctx, "acme", provision.ResourceUser, "okta", "00u-ada"); err != nil {
		t.Fatalf("link of the tombstone: %v", err)
	}
	seq := f.lastSeq("acme")
	_, _, err := f.engine.ProvisionIdentity(f.ctx, sso, provision.Identity{ExternalID: "00u-ada", User: ada()}, provision.ProvisionOptions{Create: true, Update: true})
	if !errors.Is(err, provision.ErrDeprovisioned) {
		t.Fatalf("JIT of a deleted user = %v, want ErrDeprovisioned", err)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("a refused login emitted events")
	}
	// The userName is free again, and the list does not show the tombstone.
	users, total, err := f.engine.ListUsers(f.ctx, okta, provision.Query{Page: provision.Page{Limit: 10}})
	if err != nil || total != 0 || len(users) != 0 {
		t.Fatalf("ListUsers = %v, %d, %v", users, total, err)
	}
	nu := ada()
	nu.ExternalID = "00u-ada-2"
	n := f.create(okta, nu)
	if n.ID == u.ID {
		t.Fatal("the tombstone came back")
	}
}

func TestOwnership(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	// An LDAP-owned user: no directory may adopt or change it.
	lu, _, err := f.engine.ProvisionIdentity(ctx, dir, provision.Identity{ExternalID: "uuid-1", User: provision.User{UserName: "lin@acme.test", Active: true}}, provision.ProvisionOptions{Create: true, Update: true, SetActive: true})
	if err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	_, err = f.engine.UpdateUser(ctx, okta, lu.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "x"; return nil })
	var oe *provision.OwnerError
	if !errors.As(err, &oe) || oe.Owner != "ldap" || !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("directory write to an LDAP user = %v", err)
	}
	if _, err := f.engine.DeactivateUser(ctx, okta, lu.ID); !errors.As(err, &oe) {
		t.Fatalf("directory deactivation of an LDAP user = %v", err)
	}
	if err := f.engine.DeleteUser(ctx, okta, lu.ID, provision.Precondition{}); !errors.As(err, &oe) {
		t.Fatalf("directory delete of an LDAP user = %v", err)
	}
	if _, err := f.engine.CreateUser(ctx, okta, provision.User{UserName: "LIN@acme.test", ExternalID: "00u-lin", Active: true}); !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("directory create over an LDAP user = %v", err)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("refused writes emitted events")
	}
	// A JIT-created user is adopted by the SCIM directory that creates it.
	ju, res, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "saml-sub-1", User: provision.User{UserName: "jo@acme.test", Active: true}}, provision.ProvisionOptions{Create: true})
	if err != nil || res != provision.Created || ju.Owner != "sso" {
		t.Fatalf("JIT create = %+v, %s, %v", ju, res, err)
	}
	adopted := f.create(okta, provision.User{UserName: "jo@acme.test", ExternalID: "00u-jo", Active: true, Title: "Analyst"})
	if adopted.ID != ju.ID || adopted.Owner != "okta" || adopted.Title != "Analyst" {
		t.Fatalf("adopted = %+v", adopted)
	}
	evs := f.events("acme", f.lastSeq("acme")-1)
	if evs[0].Kind != provision.UserUpdated || !slices.Contains(evs[0].Fields, "owner") {
		t.Fatalf("adoption event = %+v", evs[0])
	}
	// Now the SAML connection no longer owns it: logins resolve it but do
	// not overwrite the directory's data.
	seq = f.lastSeq("acme")
	got, res, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "saml-sub-1", User: provision.User{UserName: "jo@acme.test", Active: true, Title: "Stale"}}, provision.ProvisionOptions{Update: true})
	if err != nil || got.ID != ju.ID || got.Title != "Analyst" || res != provision.Unchanged {
		t.Fatalf("JIT update of a directory user = %+v, %s, %v", got, res, err)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("a non-owner login wrote")
	}
	// Admin calls may do anything; a connection declared nowhere cannot.
	if _, err := f.engine.DeactivateUser(ctx, admin, lu.ID); err != nil {
		t.Fatalf("admin deactivation = %v", err)
	}
	if _, err := f.engine.GetUser(ctx, provision.Origin{TenantID: "acme", ConnectionID: "ghost"}, lu.ID); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("unknown connection = %v", err)
	}
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Eng"}, []string{u.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.GetUser(f.ctx, globex, u.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("cross-tenant GetUser = %v", err)
	}
	if _, err := f.engine.UpdateUser(f.ctx, globex, u.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "x"; return nil }); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("cross-tenant UpdateUser = %v", err)
	}
	if err := f.engine.DeleteUser(f.ctx, globex, u.ID, provision.Precondition{}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("cross-tenant DeleteUser = %v", err)
	}
	if _, err := f.engine.GetGroup(f.ctx, globex, g.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("cross-tenant GetGroup = %v", err)
	}
	if _, _, err := f.engine.UpdateGroup(f.ctx, globex, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: nil}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("cross-tenant AddMembers = %v", err)
	}
	users, total, err := f.engine.ListUsers(f.ctx, globex, provision.Query{Page: provision.Page{Limit: 10}})
	if err != nil || total != 0 || len(users) != 0 {
		t.Fatalf("globex sees %d users", total)
	}
	// The same userName in another tenant is fine.
	f.create(globex, ada())
	if _, err := f.engine.GetUser(f.ctx, provision.Origin{TenantID: "initech"}, u.ID); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("unknown tenant = %v", err)
	}
}

func TestVersionConflicts(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	// A pinned version that does not match is refused, not retried.
	_, err := f.engine.UpdateUser(f.ctx, okta, u.ID, provision.Precondition{Version: u.Version + 1}, func(u *provision.User) error { u.Title = "x"; return nil })
	if !errors.Is(err, provision.ErrVersionConflict) {
		t.Fatalf("pinned mismatch = %v", err)
	}
	if err := f.engine.DeleteUser(f.ctx, okta, u.ID, provision.Precondition{Version: 7}); !errors.Is(err, provision.ErrVersionConflict) {
		t.Fatalf("pinned delete = %v", err)
	}
	// Unpinned concurrent writers all land, none lost: each increments a
	// counter attribute.
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.engine.UpdateUser(f.ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error {
				var c int
				if raw, ok := u.Attributes["counter"]; ok {
					if err := json.Unmarshal(raw, &c); err != nil {
						return err
					}
				}
				if u.Attributes == nil {
					u.Attributes = map[string]json.RawMessage{}
				}
				u.Attributes["counter"] = json.RawMessage(strconv.Itoa(c + 1))
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.engine.GetUser(f.ctx, okta, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Attributes["counter"]) != strconv.Itoa(n) || got.Version != u.Version+n {
		t.Fatalf("after %d concurrent increments: counter %s, version %d", n, got.Attributes["counter"], got.Version)
	}
}

// conflictingStore makes UpdateUser fail with a version conflict while
// left is positive, as a concurrent writer on another replica would.
type conflictingStore struct {
	provision.Store
	left *atomic.Int32
}

func (s conflictingStore) UpdateUser(ctx context.Context, u provision.User, v int64) (provision.User, error) {
	if s.left.Add(-1) >= 0 {
		return provision.User{}, fmt.Errorf("simulated: %w", provision.ErrVersionConflict)
	}
	return s.Store.UpdateUser(ctx, u, v)
}

func (s conflictingStore) Atomically(ctx context.Context, fn func(context.Context, provision.Store) error) error {
	return s.Store.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		return fn(ctx, conflictingStore{Store: tx, left: s.left})
	})
}

func TestVersionConflictRetry(t *testing.T) {
	left := new(atomic.Int32)
	st := conflictingStore{Store: memstore.New(), left: left}
	e, err := provision.NewEngine(provision.Config{Store: st, Tenants: tenants()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := e.CreateUser(ctx, okta, ada())
	if err != nil {
		t.Fatal(err)
	}
	left.Store(3)
	got, err := e.UpdateUser(ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "CTO"; return nil })
	if err != nil || got.Title != "CTO" || left.Load() != -1 {
		t.Fatalf("unpinned update after 3 conflicts = %+v, %v (left %d)", got, err, left.Load())
	}
	left.Store(1)
	_, err = e.UpdateUser(ctx, okta, u.ID, provision.Precondition{Version: got.Version}, func(u *provision.User) error { u.Title = "CEO"; return nil })
	if !errors.Is(err, provision.ErrVersionConflict) || left.Load() != 0 {
		t.Fatalf("pinned update = %v (left %d), want one attempt and ErrVersionConflict", err, left.Load())
	}
	// Many more conflicts than MaxRetries (8): still retried, within the
	// patience of a few seconds.
	left.Store(40)
	if got, err = e.UpdateUser(ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "COO"; return nil }); err != nil || got.Title != "COO" {
		t.Fatalf("unpinned update after 40 conflicts = %+v, %v", got, err)
	}
	// Endless: ErrUnavailable after the patience, never
	// ErrVersionConflict (the caller asked for no version).
	left.Store(1 << 30)
	start := time.Now()
	_, err = e.UpdateUser(ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "CEO"; return nil })
	if !errors.Is(err, provision.ErrUnavailable) || errors.Is(err, provision.ErrVersionConflict) {
		t.Fatalf("endless conflicts = %v, want ErrUnavailable (and not ErrVersionConflict) after the retry bound", err)
	}
	if d := time.Since(start); d < 4*time.Second || d > 15*time.Second {
		t.Errorf("endless conflicts gave up after %v, want about 5s", d)
	}
}
