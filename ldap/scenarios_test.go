package ldap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
)

// TestSyncreplPresentPhase runs without a session log: slapd answers an
// old cookie with the ids of every live entry, and the missing ones are
// the deletes.
func TestSyncreplPresentPhase(t *testing.T) {
	e := newEnv(t, ldaptest.Options{SessionLog: -1})
	a := e.addUser("ann", "Ann", "A", nil)
	b := e.addUser("ben", "Ben", "B", nil)
	e.addUser("cat", "Cat", "C", nil)
	s := e.syncer(func(c *Config) { c.Incremental = IncrementalSyncrepl; c.MaxDeactivationShare = 1 })
	e.sync(s)
	e.srv.Replace(t, a, map[string][]string{"title": {"CTO"}})
	benID := e.user(b).ID
	e.srv.Delete(t, b)
	rep := e.changes(s)
	eq(t, "mode", rep.Mode, ModeSyncrepl)
	eq(t, "swept by the present phase", rep.Swept, true)
	e.expect(rep, counts{updated: 1, deactivated: 1})
	eq(t, "ben active", e.userByID(benID).Active, false)

	// No change: an empty refresh keeps the old cookie and changes nothing.
	cur, _ := s.loadCursor(e.ctx)
	rep = e.changes(s)
	e.expect(rep, counts{})
	next, _ := s.loadCursor(e.ctx)
	eq(t, "cookie kept", string(next.UserCookie), string(cur.UserCookie))
}

// TestMove covers moves inside the base (an update) and out of it (gone).
func TestMove(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	e.srv.Add(t, "ou=contractors,"+e.srv.PeopleDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"contractors"}})
	e.srv.Add(t, "ou=former,"+e.srv.BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"former"}})
	dan := e.addUser("dan", "Dan", "D", nil)
	eve := e.addUser("eve", "Eve", "E", nil)
	e.addUser("fay", "Fay", "F", nil)
	g := e.addGroup("staff", dan, eve)
	s := e.syncer(func(c *Config) { c.MaxDeactivationShare = 1 })
	e.sync(s)
	danID, eveID := e.user(dan).ID, e.user(eve).ID

	e.srv.Rename(t, dan, "uid=dan", "ou=contractors,"+e.srv.PeopleDN)
	e.srv.Rename(t, eve, "uid=eve", "ou=former,"+e.srv.BaseDN)
	rep := e.changes(s)
	eq(t, "dan moved inside: same user, active", []any{e.userByID(danID).Active, rep.Created}, []any{true, 0})
	eq(t, "eve moved out of the base: deactivated", e.userByID(eveID).Active, false)
	eq(t, "staff: eve left the scope", e.members(e.srv.EntryUUID(t, g)), []string{"dan"})

	// A full sync agrees, and changes nothing more.
	rep = e.sync(s)
	e.expect(rep, counts{unchanged: 2})
}

// TestNestedGroups resolves nested groupOfNames with a cycle, a
// groupOfUniqueNames and a posixGroup.
func TestNestedGroups(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	u1 := e.addUser("u1", "U", "One", nil)
	u2 := e.addUser("u2", "U", "Two", nil)
	u3 := e.addUser("u3", "U", "Three", nil)
	e.addUser("u4", "U", "Four", nil)
	// all -> eng -> (backend -> all: a cycle), u1
	all := e.addGroup("all", u3)
	backend := e.addGroup("backend", u2, all)
	eng := e.addGroup("eng", u1, backend)
	e.srv.AddValues(t, all, "member", eng)
	uniq := e.groupDN("uniq")
	e.srv.Add(t, uniq, map[string][]string{"objectClass": {"groupOfUniqueNames"}, "cn": {"uniq"}, "uniqueMember": {u1 + "#'0101'B", strings.ToUpper(u2)}})
	posix := e.groupDN("posix")
	e.srv.Add(t, posix, map[string][]string{"objectClass": {"posixGroup"}, "cn": {"posix"}, "gidNumber": {"5000"}, "memberUid": {"u3", "U4", "nobody"}})
	s := e.syncer(nil)
	rep := e.sync(s)
	if rep.Groups.Cycles == 0 {
		t.Fatalf("no cycle reported: %+v", rep.Groups)
	}
	want := map[string][]string{
		all: {"u1", "u2", "u3"}, backend: {"u1", "u2", "u3"}, eng: {"u1", "u2", "u3"},
		uniq: {"u1", "u2"}, posix: {"u3", "u4"},
	}
	for dn, names := range want {
		eq(t, dn, e.members(e.srv.EntryUUID(t, dn)), names)
	}

	// Break the cycle and change a nested group: the parents follow.
	e.srv.DeleteValues(t, all, "member", eng)
	e.srv.AddValues(t, all, "member", e.userDN("u4"))
	rep = e.changes(s)
	eq(t, "all", e.members(e.srv.EntryUUID(t, all)), []string{"u3", "u4"})
	eq(t, "backend", e.members(e.srv.EntryUUID(t, backend)), []string{"u2", "u3", "u4"})
	eq(t, "eng", e.members(e.srv.EntryUUID(t, eng)), []string{"u1", "u2", "u3", "u4"})

	// A group deleted in the directory is deleted in the application.
	e.srv.Delete(t, posix)
	posixGroups := func() int {
		gs, _, err := e.eng.ListGroups(e.ctx, provision.Origin{TenantID: tenant}, provision.Query{Page: provision.Page{Limit: 100}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range gs {
			if g.DisplayName == "posix" {
				n++
			}
		}
		return n
	}
	rep = e.changes(s)
	eq(t, "groups deleted", rep.Groups.Deleted, 1)
	eq(t, "posix groups left", posixGroups(), 0)
}

// TestHeldPlan: deactivations past the thresholds are held while creates
// and updates go on, Plan shows them without applying anything, and
// the engine's ConfirmPlan applies them.
func TestHeldPlan(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	var dns []string
	for i := range 10 {
		dns = append(dns, e.addUser(fmt.Sprintf("p%02d", i), "P", fmt.Sprint(i), nil))
	}
	s := e.syncer(nil) // defaults: 500 and 20 %
	e.sync(s)

	// Three of ten deleted (30 % > 20 %), one added, one changed.
	for _, dn := range dns[:3] {
		e.srv.Delete(t, dn)
	}
	e.addUser("new", "New", "Hire", nil)
	e.srv.Replace(t, dns[5], map[string][]string{"title": {"Lead"}})

	plan, err := s.Plan(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.DryRun || plan.Created != 1 || plan.Updated != 1 || plan.Held == nil || plan.Held.Size != 3 {
		t.Fatalf("plan: %v held=%+v", plan, plan.Held)
	}
	eq(t, "nothing applied by Plan", e.events(provision.UserCreated), 10)

	rep := e.sync(s)
	if rep.Held == nil || rep.Held.Size != 3 || rep.Deactivated != 0 || rep.Created != 1 || rep.Updated != 1 {
		t.Fatalf("sync: %v held=%+v", rep, rep.Held)
	}
	eq(t, "plan id matches the dry run's", rep.Held.ID, plan.Held.ID)
	if !strings.Contains(rep.Held.Summary, "20%") {
		t.Fatalf("summary %q", rep.Held.Summary)
	}
	eq(t, "deactivated events while held", e.events(provision.UserDeactivated), 0)
	held, err := e.heldPlan()
	if err != nil || held.ID != rep.Held.ID || held.Kind != provision.PlanDeactivations || len(held.Changes) != 3 || held.Changes[0].Op != "deactivate" || held.Changes[0].Reason != "gone" {
		t.Fatalf("held plan: %+v %v", held, err)
	}
	// Syncing again holds the same plan.
	rep2 := e.sync(s)
	eq(t, "same plan", rep2.Held.ID, rep.Held.ID)
	// An incremental sync leaves the plan alone.
	e.changes(s)

	if err := e.confirm("nope"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("ConfirmPlan(wrong id) = %v", err)
	}
	if _, err := e.eng.ConfirmPlan(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, rep.Held.ID); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("ConfirmPlan by the connection itself = %v", err)
	}
	if err := e.confirm(rep.Held.ID); err != nil {
		t.Fatal(err)
	}
	eq(t, "deactivated events", e.events(provision.UserDeactivated), 3)
	if _, err := e.heldPlan(); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("plan still held: %v", err)
	}
	rep = e.sync(s)
	if rep.Held != nil || rep.Deactivated != 0 {
		t.Fatalf("after confirm: %v", rep)
	}

	// The count threshold: two deletes with MaxDeactivations 1.
	s2 := e.syncer(func(c *Config) { c.MaxDeactivations = 1; c.MaxDeactivationShare = -1 })
	e.sync(s2)
	e.srv.Delete(t, dns[3])
	e.srv.Delete(t, dns[4])
	rep = e.changes(s2)
	if rep.Held == nil || !strings.Contains(rep.Held.Summary, "limit of 1") {
		t.Fatalf("count threshold: %v %+v", rep, rep.Held)
	}
	if err := e.eng.DiscardPlan(e.ctx, provision.Origin{TenantID: tenant, Actor: "admin"}, rep.Held.ID); err != nil {
		t.Fatal(err)
	}
	// The next full sync holds them again.
	rep = e.sync(s2)
	if rep.Held == nil || rep.Held.Size != 2 {
		t.Fatalf("held again: %v", rep)
	}
	// A disabled entry counts too, and one deactivation is never held.
	s3 := e.syncer(nil)
	e.srv.Replace(t, dns[6], map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	rep = e.sync(s3) // 3 of 8 now: held
	if rep.Held == nil || rep.Held.Size != 3 {
		t.Fatalf("disabled held: %v %+v", rep, rep.Held)
	}
	if err := e.confirm(rep.Held.ID); err != nil {
		t.Fatal(err)
	}
	e.srv.Delete(t, dns[7])
	rep = e.changes(s3)
	eq(t, "a single deactivation applies", []any{rep.Deactivated, rep.Held == nil}, []any{1, true})
}

// TestNoSweepWithoutEntries: a search returning zero entries (a filter
// that matches nothing, a base emptied) deactivates nobody.
func TestNoSweepWithoutEntries(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	e.addUser("gil", "Gil", "G", nil)
	e.addUser("hal", "Hal", "H", nil)
	e.sync(e.syncer(nil))
	s := e.syncer(func(c *Config) {
		c.UserFilter = "(&(objectClass=inetOrgPerson)(uid=nobody))"
		c.MaxDeactivationShare = -1
	})
	rep := e.sync(s)
	if rep.Swept || rep.Deactivated != 0 || rep.NotSwept == "" {
		t.Fatalf("zero entries swept: %v (%s)", rep, rep.NotSwept)
	}
	eq(t, "deactivated events", e.events(provision.UserDeactivated), 0)
}

// TestSCIMUsersUntouched: the sweep and the thresholds count only the
// users this connection owns; an entry whose userName a SCIM user holds is
// skipped with its reason.
func TestSCIMUsersUntouched(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	scim := provision.Origin{TenantID: tenant, ConnectionID: scimConn}
	for _, n := range []string{"sam", "sue", "sid"} {
		if _, err := e.eng.CreateUser(e.ctx, scim, provision.User{UserName: n, ExternalID: "okta-" + n, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	e.addUser("ivy", "Ivy", "I", nil)
	jon := e.addUser("jon", "Jon", "J", nil)
	e.addUser("sam", "Sam", "Clash", nil) // sam is SCIM's
	s := e.syncer(func(c *Config) { c.MaxDeactivationShare = 1 })
	rep := e.sync(s)
	e.expect(rep, counts{created: 2, skipped: 1})
	if !strings.Contains(rep.Skips[0].Reason, `owned by "okta"`) {
		t.Fatalf("skip reason %q", rep.Skips[0].Reason)
	}
	e.srv.Delete(t, jon)
	rep = e.sync(s)
	eq(t, "only jon deactivated", rep.Deactivated, 1)
	users, _, err := e.eng.ListUsers(e.ctx, provision.Origin{TenantID: tenant}, provision.Query{Page: provision.Page{Limit: 100}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Owner == scimConn && !u.Active {
			t.Fatalf("SCIM user %s deactivated", u.UserName)
		}
	}
}

// TestKilledMidSync: slapd dies in the middle of a full sync: the sync
// fails, and nobody is deactivated, although most entries were not read.
func TestKilledMidSync(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	for i := range 40 {
		e.addUser(fmt.Sprintf("k%02d", i), "K", fmt.Sprint(i), nil)
	}
	s := e.syncer(nil)
	e.sync(s)
	pages := 0
	s.afterUserPage = func() {
		pages++
		if pages == 2 {
			e.srv.Kill()
		}
	}
	rep, err := s.Sync(e.ctx)
	if err == nil {
		t.Fatalf("Sync succeeded after slapd was killed: %v", rep)
	}
	if rep.Swept || rep.Deactivated != 0 {
		t.Fatalf("swept after a failed search: %v", rep)
	}
	eq(t, "deactivated events", e.events(provision.UserDeactivated), 0)
	s.afterUserPage = nil
	e.srv.Restart(t)
	rep = e.sync(s)
	e.expect(rep, counts{unchanged: 40})
}

// TestCancel: cancelling the context stops a sync promptly.
func TestCancel(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	for i := range 30 {
		e.addUser(fmt.Sprintf("c%02d", i), "C", fmt.Sprint(i), nil)
	}
	s := e.syncer(nil)
	ctx, cancel := context.WithCancel(e.ctx)
	s.afterUserPage = func() { cancel(); time.Sleep(10 * time.Millisecond) }
	start := time.Now()
	rep, err := s.Sync(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 2*time.Second || rep.Entries > 14 {
		t.Fatalf("not prompt: %v after %s", rep, time.Since(start))
	}
}

// TestRefreshRequired: e-syncRefreshRequired drops the cookie and runs a
// full sync.
func TestRefreshRequired(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	e.addUser("kim", "Kim", "K", nil)
	s := e.syncer(func(c *Config) { c.Incremental = IncrementalSyncrepl })
	e.sync(s)
	var once atomic.Bool
	s.beforeSyncrepl = func() error {
		if once.CompareAndSwap(false, true) {
			return errRefreshRequired
		}
		return nil
	}
	rep := e.changes(s)
	eq(t, "mode", rep.Mode, ModeFull)
	if !strings.Contains(rep.FullReason, "e-syncRefreshRequired") {
		t.Fatalf("reason %q", rep.FullReason)
	}
	eq(t, "next round is incremental", e.changes(s).Mode, ModeSyncrepl)

	// A restarted Syncer (cold cache) continues from the stored state
	// and cookie.
	s2 := e.syncer(func(c *Config) { c.Incremental = IncrementalSyncrepl })
	eq(t, "cold syncer", e.changes(s2).Mode, ModeSyncrepl)
	// ... and so does the first one, whose cache is stale.
	eq(t, "stale syncer", e.changes(s).Mode, ModeSyncrepl)
}

// TestTLS syncs over ldaps:// and StartTLS with a test CA, and refuses a
// server it cannot verify.
func TestTLS(t *testing.T) {
	e := newEnv(t, ldaptest.Options{TLS: true})
	e.addUser("lia", "Lia", "L", nil)
	for name, mod := range map[string]func(*Config){
		"ldaps":    func(c *Config) { c.URL = e.srv.LDAPSURL; c.InsecurePlaintext = false; c.TLSConfig = e.srv.TLSConfig() },
		"starttls": func(c *Config) { c.StartTLS = true; c.InsecurePlaintext = false; c.TLSConfig = e.srv.TLSConfig() },
	} {
		t.Run(name, func(t *testing.T) {
			rep := e.sync(e.syncer(mod))
			if rep.Created+rep.Unchanged != 1 {
				t.Fatalf("%v", rep)
			}
		})
	}
	t.Run("unverified", func(t *testing.T) {
		for _, url := range []string{e.srv.LDAPSURL, e.srv.URL} {
			s := e.syncer(func(c *Config) {
				c.URL = url
				c.StartTLS = strings.HasPrefix(url, "ldap:")
				c.InsecurePlaintext = false
			})
			if _, err := s.Sync(e.ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("%s: err = %v, want a certificate error", url, err)
			}
		}
	})
}

// TestRun: the background loop applies changes, holds the lock so that a
// second replica skips its rounds, and stops when ctx ends.
func TestRun(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	e.addUser("mo", "Mo", "M", nil)
	reports := make(chan *Report, 100)
	mk := func() *Syncer {
		return e.syncer(func(c *Config) {
			c.Interval = 50 * time.Millisecond
			c.OnReport = func(r *Report, err error) {
				if err != nil {
					t.Errorf("round: %v", err)
					return
				}
				reports <- r
			}
		})
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 2)
	go func() { done <- mk().Run(ctx) }()
	go func() { done <- mk().Run(ctx) }()
	first := <-reports
	eq(t, "first round", first.Mode, ModeFull)
	e.addUser("ned", "Ned", "N", nil)
	deadline := time.After(20 * time.Second)
	for created := first.Created; created < 2; {
		select {
		case r := <-reports:
			created += r.Created
		case <-deadline:
			t.Fatal("the change was not synced")
		}
	}
	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop")
		}
	}
	eq(t, "created events (no double create by two replicas)", e.events(provision.UserCreated), 2)
}
