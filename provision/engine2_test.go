package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func TestOnChangeRunsInTheTransaction(t *testing.T) {
	var seen []provision.EventKind
	fail := false
	f := newFixture(t, func(c *provision.Config) {
		c.OnChange = func(ctx context.Context, tx provision.Store, ch provision.Change) error {
			if fail {
				return errors.New("host table is full")
			}
			// The change is visible inside the transaction.
			if ch.UserAfter != nil {
				if _, err := tx.GetUser(ctx, ch.UserAfter.TenantID, ch.UserAfter.ID); err != nil {
					return err
				}
			}
			seen = append(seen, ch.Kind)
			return nil
		}
	})
	u := f.create(okta, ada())
	if !slices.Equal(seen, []provision.EventKind{provision.UserCreated}) {
		t.Fatalf("OnChange saw %v", seen)
	}
	fail = true
	seq := f.lastSeq("acme")
	_, err := f.engine.UpdateUser(f.ctx, okta, u.ID, provision.Precondition{}, func(u *provision.User) error { u.Title = "x"; return nil })
	if err == nil {
		t.Fatal("a failing OnChange did not abort the change")
	}
	got, _ := f.engine.GetUser(f.ctx, okta, u.ID)
	if got.Title != "" || got.Version != u.Version || f.lastSeq("acme") != seq {
		t.Fatalf("an aborted change left traces: %+v, seq %d", got, f.lastSeq("acme"))
	}
	if _, err := f.engine.CreateUser(f.ctx, okta, provision.User{UserName: "bob@acme.test", Active: true}); err == nil {
		t.Fatal("create went through a failing OnChange")
	}
	if _, err := f.store.UserByUserName(f.ctx, "acme", "bob@acme.test"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("an aborted create was stored: %v", err)
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t)
	bad := []provision.User{
		{UserName: ""},
		{UserName: "  "},
		{UserName: " ada "},
		{UserName: "a\x00b"},
		{UserName: "ada", Emails: []provision.Email{{Value: "a@x", Primary: true}, {Value: "b@x", Primary: true}}},
		{UserName: "ada", Emails: []provision.Email{{Value: ""}}},
		{UserName: "ada", Attributes: map[string]json.RawMessage{"x": json.RawMessage("{not json")}},
	}
	for _, u := range bad {
		_, err := f.engine.CreateUser(f.ctx, okta, u)
		var ve *provision.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("CreateUser(%+v) = %v, want a ValidationError", u, err)
		}
	}
	if _, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{}, nil); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("CreateGroup without displayName = %v", err)
	}
	if f.lastSeq("acme") != 0 {
		t.Fatal("invalid input changed something")
	}
	for _, tn := range []provision.Tenant{
		{},
		{ID: "x", Connections: []provision.Connection{{ID: "api", Kind: provision.KindSCIM}}},
		{ID: "x", Connections: []provision.Connection{{ID: "a", Kind: "smtp"}}},
		{ID: "x", Connections: []provision.Connection{{ID: "a", Kind: provision.KindSCIM}, {ID: "a", Kind: provision.KindSAML}}},
		{ID: "x", Connections: []provision.Connection{{ID: "a", Kind: provision.KindSAML, Match: []provision.MatchRule{provision.MatchPairedExternalID}}}},
		{ID: "x", Connections: []provision.Connection{{ID: "a", Kind: provision.KindSAML, PairedWith: "nope"}}},
	} {
		if err := provision.SetTenant(f.engine, tn); !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("SetTenant(%+v) = %v, want ErrInvalid", tn, err)
		}
	}
	if _, err := provision.NewEngine(provision.Config{}); err == nil {
		t.Error("NewEngine without a Store succeeded")
	}
}

func TestGroups(t *testing.T) {
	f := newFixture(t)
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Sales", ExternalID: "00g-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	// A retried create returns the existing group.
	again, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "sales", ExternalID: "00g-1"}, nil)
	if err != nil || again.ID != g.ID || f.lastSeq("acme") != seq {
		t.Fatalf("retried group create = %+v, %v", again, err)
	}
	// The same name from the same owner is a conflict; from another owner
	// it is fine.
	var ce *provision.ConflictError
	if _, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "SALES"}, nil); !errors.As(err, &ce) || ce.Field != "displayName" {
		t.Fatalf("duplicate displayName = %v", err)
	}
	if _, err := f.engine.CreateGroup(f.ctx, entra, provision.Group{DisplayName: "Sales"}, nil); err != nil {
		t.Fatalf("same displayName, other owner = %v", err)
	}
	// Rename: a group.updated event with the previous name.
	seq = f.lastSeq("acme")
	r, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Mutate: func(g *provision.Group) error { g.DisplayName = "Sales EMEA"; return nil }})
	if err != nil || r.Version != 2 || r.ExternalID != "00g-1" {
		t.Fatalf("rename = %+v, %v", r, err)
	}
	evs := f.expectEvents("acme", seq, provision.GroupUpdated)
	if evs[0].PreviousGroup.DisplayName != "Sales" || evs[0].Group.DisplayName != "Sales EMEA" {
		t.Fatalf("group.updated = %+v", evs[0])
	}
	// Another directory may not touch it.
	if _, _, err := f.engine.UpdateGroup(f.ctx, entra, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: nil}); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("foreign directory member change = %v", err)
	}
	seq = f.lastSeq("acme")
	if err := f.engine.DeleteGroup(f.ctx, okta, g.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	f.expectEvents("acme", seq, provision.GroupDeleted)
	if _, err := f.engine.GetGroup(f.ctx, okta, g.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("GetGroup after delete = %v", err)
	}
}

func TestProvisionIdentity(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	jitOpts := provision.ProvisionOptions{Create: true, Update: true}

	// A SCIM-created user is found on first SSO through the pairing, and
	// linked.
	scimUser := f.create(okta, ada())
	got, res, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "00u-ada", User: ada()}, jitOpts)
	if err != nil || got.ID != scimUser.ID || res != provision.Linked {
		t.Fatalf("paired first login = %+v, %s, %v", got, res, err)
	}
	if l, err := f.store.GetLink(ctx, "acme", provision.ResourceUser, "sso", "00u-ada"); err != nil || l.ResourceID != scimUser.ID {
		t.Fatalf("link = %+v, %v", l, err)
	}
	// Returning: through the link.
	got, res, err = f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "00u-ada", User: ada()}, jitOpts)
	if err != nil || got.ID != scimUser.ID || res != provision.Unchanged {
		t.Fatalf("returning login = %+v, %s, %v", got, res, err)
	}

	// Matching by e-mail only in a verified domain.
	f.create(okta, provision.User{UserName: "eve", Emails: []provision.Email{{Value: "eve@acme.test"}}, Active: true})
	f.create(okta, provision.User{UserName: "mal", Emails: []provision.Email{{Value: "mal@evil.test"}}, Active: true})
	if _, res, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "s-eve", User: provision.User{UserName: "eve2", Emails: []provision.Email{{Value: "EVE@acme.test"}}, Active: true}}, jitOpts); err != nil || res != provision.Linked {
		t.Fatalf("e-mail match in a verified domain = %s, %v", res, err)
	}
	if _, res, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "s-mal", User: provision.User{UserName: "mal2", Emails: []provision.Email{{Value: "mal@evil.test"}}, Active: true}}, jitOpts); err != nil || res != provision.Created {
		t.Fatalf("e-mail outside the verified domains must not match: %s, %v", res, err)
	}

	// Creation off: nothing found is ErrNotFound, nothing written.
	seq := f.lastSeq("acme")
	if _, _, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "s-new", User: provision.User{UserName: "new", Active: true}}, provision.ProvisionOptions{}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("no creation = %v", err)
	}
	// A deactivated user is refused and left as it is.
	if _, err := f.engine.DeactivateUser(ctx, okta, scimUser.ID); err != nil {
		t.Fatal(err)
	}
	seq = f.lastSeq("acme")
	if _, _, err := f.engine.ProvisionIdentity(ctx, sso, provision.Identity{ExternalID: "00u-ada", User: ada()}, jitOpts); !errors.Is(err, provision.ErrDeprovisioned) {
		t.Fatalf("deactivated login = %v", err)
	}
	if f.lastSeq("acme") != seq {
		t.Fatal("a refused login wrote")
	}

	// An LDAP source owns its users: it deactivates and reactivates them.
	ldapOpts := provision.ProvisionOptions{Create: true, Update: true, SetActive: true}
	lin := provision.User{UserName: "lin", Active: true}
	lu, res, err := f.engine.ProvisionIdentity(ctx, dir, provision.Identity{ExternalID: "uuid-lin", User: lin}, ldapOpts)
	if err != nil || res != provision.Created {
		t.Fatal(res, err)
	}
	lin.Active = false
	if _, res, err = f.engine.ProvisionIdentity(ctx, dir, provision.Identity{ExternalID: "uuid-lin", User: lin}, ldapOpts); err != nil || res != provision.Deactivated {
		t.Fatalf("LDAP disable = %s, %v", res, err)
	}
	lin.Active = true
	lin.Title = "Back"
	back, res, err := f.engine.ProvisionIdentity(ctx, dir, provision.Identity{ExternalID: "uuid-lin", User: lin}, ldapOpts)
	if err != nil || res != provision.Reactivated || back.ID != lu.ID || back.Title != "Back" {
		t.Fatalf("LDAP re-enable = %+v, %s, %v", back, res, err)
	}
	// An identity without an external id is refused.
	if _, _, err := f.engine.ProvisionIdentity(ctx, dir, provision.Identity{User: lin}, ldapOpts); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("no external id = %v", err)
	}
}

func TestConcurrentFirstLoginsMakeOneUser(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, _, err := f.engine.ProvisionIdentity(f.ctx, sso, provision.Identity{ExternalID: "s-1", User: provision.User{UserName: "kim", Active: true}}, provision.ProvisionOptions{Create: true})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- u.ID
		}()
	}
	wg.Wait()
	close(ids)
	var first string
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Fatalf("two users for one identity: %s, %s", first, id)
		}
	}
	f.expectEvents("acme", 0, provision.UserCreated)
}

func TestConsumeResumesFromItsCursor(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond })
	for _, n := range []string{"a", "b", "c"} {
		f.create(okta, provision.User{UserName: n, Active: true})
	}
	got := make(chan provision.Event, 100)
	run := func(stopAfter int) {
		ctx, cancel := context.WithCancel(f.ctx)
		defer cancel()
		var seen atomic.Int64 // tenants are delivered in parallel
		done := make(chan error, 1)
		go func() {
			done <- f.engine.Consume(ctx, "sessions", func(ctx context.Context, ev provision.Event) error {
				got <- ev
				if seen.Add(1) == int64(stopAfter) {
					cancel()
				}
				return nil
			})
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Consume = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Consume did not stop")
		}
	}
	run(3)
	f.create(okta, provision.User{UserName: "d", Active: true})
	f.create(globex, provision.User{UserName: "e", Active: true})
	run(2)
	close(got)
	var seqs []string
	for ev := range got {
		seqs = append(seqs, ev.TenantID+":"+ev.User.UserName)
	}
	want := []string{"acme:a", "acme:b", "acme:c", "acme:d", "globex:e"}
	// Tenants are delivered in parallel: order holds within a tenant.
	slices.SortStableFunc(seqs, func(a, b string) int {
		return strings.Compare(a[:strings.IndexByte(a, ':')], b[:strings.IndexByte(b, ':')])
	})
	if !slices.Equal(seqs, want) {
		t.Fatalf("delivered %v, want %v (each once, in order)", seqs, want)
	}
}

func TestConsumeRetriesAFailingHandler(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.PollInterval = 10 * time.Millisecond })
	f.create(okta, provision.User{UserName: "a", Active: true})
	f.create(okta, provision.User{UserName: "b", Active: true})
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	var order []string
	failures := 2
	err := f.engine.Consume(ctx, "webhook", func(ctx context.Context, ev provision.Event) error {
		if ev.User.UserName == "a" && failures > 0 {
			failures--
			return errors.New("receiver down")
		}
		order = append(order, ev.User.UserName)
		if len(order) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || !slices.Equal(order, []string{"a", "b"}) {
		t.Fatalf("Consume = %v, order %v", err, order)
	}
}

func TestPurge(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	if err := f.engine.DeleteUser(f.ctx, okta, u.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.engine.Purge(f.ctx, "acme")
	if err != nil || res.Users != 0 {
		t.Fatalf("early purge = %+v, %v", res, err)
	}
	f.clock = f.clock.Add(31 * 24 * time.Hour)
	fresh := f.create(okta, provision.User{UserName: "new", Active: true})
	res, err = f.engine.Purge(f.ctx, "acme")
	if err != nil || res.Users != 1 || res.Events == 0 {
		t.Fatalf("purge = %+v, %v", res, err)
	}
	if _, err := f.store.GetUser(f.ctx, "acme", u.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("purged user still stored: %v", err)
	}
	evs := f.events("acme", 0)
	if len(evs) != 1 || evs[0].User.ID != fresh.ID {
		t.Fatalf("events after purge = %v", kinds(evs))
	}
}

func TestPatchGroupIsAtomic(t *testing.T) {
	f := newFixture(t)
	u := f.create(okta, ada())
	if _, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Taken"}, nil); err != nil {
		t.Fatal(err)
	}
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "Eng"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	// A rename that conflicts refuses the membership change with it.
	_, _, err = f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{
		Mutate: func(g *provision.Group) error { g.DisplayName = "taken"; return nil },
		Add:    []string{u.ID},
	})
	if !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("conflicting patch = %v", err)
	}
	if ok, _ := f.store.IsMember(f.ctx, "acme", g.ID, u.ID); ok || f.lastSeq("acme") != seq {
		t.Fatal("a refused patch applied its membership change")
	}
	got, mc, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{
		Mutate: func(g *provision.Group) error { g.DisplayName = "Engineering"; return nil },
		Add:    []string{u.ID},
	})
	if err != nil || got.DisplayName != "Engineering" || !slices.Equal(mc.Added, []string{u.ID}) {
		t.Fatalf("patch = %+v, %+v, %v", got, mc, err)
	}
	f.expectEvents("acme", seq, provision.GroupUpdated, provision.GroupMembersAdded)
}

func TestRehirePolicy(t *testing.T) {
	for _, relink := range []bool{false, true} {
		t.Run(fmt.Sprintf("relink=%v", relink), func(t *testing.T) {
			f := newFixture(t)
			tn := tenants()[0]
			tn.RelinkOnRehire = relink
			if err := provision.SetTenant(f.engine, tn); err != nil {
				t.Fatal(err)
			}
			u := f.create(okta, ada())
			if _, err := f.engine.DeactivateUser(f.ctx, okta, u.ID); err != nil {
				t.Fatal(err)
			}
			seq := f.lastSeq("acme")
			again := ada()
			again.ExternalID = "00u-ada-recreated"
			got, err := f.engine.CreateUser(f.ctx, okta, again)
			if !relink {
				if !errors.Is(err, provision.ErrAlreadyExists) || f.lastSeq("acme") != seq {
					t.Fatalf("create under a new external id without the policy = %v", err)
				}
				return
			}
			if err != nil || got.ID != u.ID || !got.Active || got.ExternalID != "00u-ada-recreated" {
				t.Fatalf("relinked rehire = %+v, %v", got, err)
			}
			f.expectEvents("acme", seq, provision.UserReactivated)
			if _, err := f.store.GetLink(f.ctx, "acme", provision.ResourceUser, "okta", "00u-ada"); !errors.Is(err, provision.ErrNotFound) {
				t.Fatalf("the old link survived: %v", err)
			}
			if l, err := f.store.GetLink(f.ctx, "acme", provision.ResourceUser, "okta", "00u-ada-recreated"); err != nil || l.ResourceID != u.ID {
				t.Fatalf("new link = %+v, %v", l, err)
			}
		})
	}
}

func TestReplaceMembersThatDropsManyIsHeld(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 200 {
		ids = append(ids, f.create(okta, provision.User{UserName: fmt.Sprintf("u%03d", i), Active: true}).ID)
	}
	g, err := f.engine.CreateGroup(f.ctx, okta, provision.Group{DisplayName: "All"}, ids)
	if err != nil {
		t.Fatal(err)
	}
	// Dropping 99 of 200 is applied; dropping 150 of 200 is held.
	if _, mc, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[99:]}); err != nil || len(mc.Removed) != 99 {
		t.Fatalf("replace dropping 99 = %d removed, %v", len(mc.Removed), err)
	}
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: ids[:99]}); err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq("acme")
	_, _, err = f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[150:]})
	var he *provision.HeldError
	if !errors.As(err, &he) || !errors.Is(err, provision.ErrHeld) || he.Removing != 150 || he.Members != 200 {
		t.Fatalf("replace dropping 150 of 200 = %v", err)
	}
	if _, total, _ := f.engine.ListMembers(f.ctx, okta, g.ID, provision.Page{}); total != 200 || f.lastSeq("acme") != seq {
		t.Fatalf("a held replace changed something: %d members", total)
	}
	// The identity provider's retry finds the same plan.
	_, _, err = f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[150:]})
	var again *provision.HeldError
	if !errors.As(err, &again) || again.PlanID != he.PlanID {
		t.Fatalf("retry = %v, want plan %s", err, he.PlanID)
	}
	// Only an admin call confirms; it applies as the directory.
	if _, err := f.engine.ConfirmPlan(f.ctx, okta, he.PlanID); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("confirm by the directory = %v", err)
	}
	p, err := f.engine.ConfirmPlan(f.ctx, provision.Origin{TenantID: "acme", Actor: "admin@acme"}, he.PlanID)
	if err != nil || p.Kind != provision.PlanMembers || p.Size != 150 {
		t.Fatalf("confirm = %+v, %v; want 150 removals", p, err)
	}
	if _, n, _ := f.engine.ListMembers(f.ctx, okta, g.ID, provision.Page{}); n != 50 {
		t.Fatalf("after confirming, %d members, want 50", n)
	}
	evs := f.expectEvents("acme", seq, provision.GroupMembersRemoved)
	if evs[0].ConnectionID != "okta" || evs[0].Actor != "admin@acme" {
		t.Fatalf("confirmed event = %+v", evs[0])
	}
	// Now the directory's retry is a no-op, and the plan is gone.
	if _, _, err := f.engine.UpdateGroup(f.ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: ids[150:]}); err != nil {
		t.Fatalf("retry after confirmation = %v", err)
	}
	if _, err := f.engine.ConfirmPlan(f.ctx, admin, he.PlanID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a plan confirmed twice: %v", err)
	}
	// The limit is configurable, and a negative Count never holds.
	f2 := newFixture(t, func(c *provision.Config) { c.HoldMemberDrops = provision.DropLimit{Count: -1} })
	u := f2.create(okta, ada())
	g2, _ := f2.engine.CreateGroup(f2.ctx, okta, provision.Group{DisplayName: "G"}, []string{u.ID})
	if _, _, err := f2.engine.UpdateGroup(f2.ctx, okta, g2.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: nil}); err != nil {
		t.Fatalf("with holding off = %v", err)
	}
}
