package ldap

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
)

// pushEnv runs a Syncer's Run with an interval of an hour: anything that
// reaches the store within seconds was pushed, not polled.
type pushEnv struct {
	*env
	s       *Syncer
	mu      sync.Mutex
	reports []*Report
	errs    []error
}

func startPush(t *testing.T, e *env, mod func(*Config)) *pushEnv {
	t.Helper()
	p := &pushEnv{env: e}
	p.s = e.syncer(func(c *Config) {
		c.Interval = time.Hour
		c.FullInterval = 24 * time.Hour
		c.ReconnectMin = 100 * time.Millisecond
		c.ReconnectMax = 500 * time.Millisecond
		c.OnReport = func(r *Report, err error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				p.errs = append(p.errs, err)
				return
			}
			p.reports = append(p.reports, r)
		}
		if mod != nil {
			mod(c)
		}
	})
	runUntilEnd(t, e.ctx, p.s)
	p.waitPersist(t)
	return p
}

func (p *pushEnv) waitPersist(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for p.s.Status().Mode != StatusPersist {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not open a persistent search: %+v (errors %v)", p.s.Status(), p.errors())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *pushEnv) errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

func (p *pushEnv) modes() []Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Mode
	for _, r := range p.reports {
		out = append(out, r.Mode)
	}
	return out
}

// within waits up to d for ok.
func within(t *testing.T, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func (e *env) lookup(id string) (provision.User, error) {
	return e.eng.UserByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, id)
}

// TestPush: with refreshAndPersist, a lock, a delete, a rename and a
// group change each reach the store within 2 s, while the poll interval
// is an hour.
func TestPush(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	ann := e.addUser("ann", "Ann", "A", nil)
	bob := e.addUser("bob", "Bob", "B", nil)
	cy := e.addUser("cy", "Cy", "C", nil)
	eng := e.addGroup("eng", ann)
	// Two deactivations of three users cross the default share: not what
	// this test is about (TestPushThreshold is).
	p := startPush(t, e, func(c *Config) { c.MaxDeactivationShare = -1 })
	eq(t, "first round", p.modes(), []Mode{ModeFull})
	annID, bobID, cyID := e.srv.EntryUUID(t, ann), e.srv.EntryUUID(t, bob), e.srv.EntryUUID(t, cy)
	engID := e.srv.EntryUUID(t, eng)

	e.srv.Replace(t, ann, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	d := within(t, 2*time.Second, "lock", func() bool { u, err := e.lookup(annID); return err == nil && !u.Active })
	t.Logf("lock: %s", d)

	e.srv.Delete(t, bob)
	d = within(t, 2*time.Second, "delete", func() bool { u, err := e.lookup(bobID); return err == nil && !u.Active })
	t.Logf("delete: %s", d)

	e.srv.Rename(t, cy, "uid=cyrus", "")
	d = within(t, 2*time.Second, "rename", func() bool { u, err := e.lookup(cyID); return err == nil && u.UserName == "cyrus" })
	t.Logf("rename: %s", d)

	e.srv.AddValues(t, eng, "member", e.userDN("cyrus"))
	d = within(t, 2*time.Second, "group change", func() bool { return slices.Contains(e.members(engID), "cyrus") })
	t.Logf("group change: %s", d)

	// A user added and then put into a new group.
	dee := e.addUser("dee", "Dee", "D", nil)
	ops := e.addGroup("ops", dee)
	opsID := e.srv.EntryUUID(t, ops)
	within(t, 2*time.Second, "new group", func() bool {
		_, err := e.eng.GroupByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, opsID)
		return err == nil && slices.Equal(e.members(opsID), []string{"dee"})
	})
	eq(t, "status", p.s.Status().Mode, StatusPersist)
	for _, m := range p.modes()[1:] {
		if m != ModePersist {
			t.Fatalf("a round after the first ran as %s (polling?): %v", m, p.modes())
		}
	}
	if errs := p.errors(); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	// The cookie was stored as it advanced: a SyncChanges now (which
	// ends and reopens the persistent search) finds nothing new.
	rep := e.changes(p.s)
	eq(t, "incremental after push", []any{rep.Mode, rep.Entries, rep.Created, rep.Deactivated}, []any{ModeSyncrepl, 0, 0, 0})
	p.waitPersist(t)
}

// TestPushServerRestart: slapd killed mid-persist and restarted: the
// search is reopened from the stored cookie, the changes made meanwhile
// arrive, and the outage deactivates no one.
func TestPushServerRestart(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	var dns []string
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		dns = append(dns, e.addUser(u, "U", u, nil))
	}
	p := startPush(t, e, func(c *Config) { c.MaxDeactivationShare = -1 })
	ids := make([]string, len(dns))
	for i, dn := range dns {
		ids[i] = e.srv.EntryUUID(t, dn)
	}
	e.srv.Kill()
	within(t, 5*time.Second, "drop noticed", func() bool { return p.s.Status().Mode == StatusPoll })
	time.Sleep(300 * time.Millisecond) // a few failed reconnects
	e.srv.Restart(t)
	// Changes made before the search is reopened arrive by its refresh.
	e.srv.Replace(t, dns[0], map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	e.addUser("u5", "U", "u5", nil)
	p.waitPersist(t)
	within(t, 3*time.Second, "lock after restart", func() bool { u, err := e.lookup(ids[0]); return err == nil && !u.Active })
	within(t, 3*time.Second, "add after restart", func() bool {
		_, err := e.lookup(e.srv.EntryUUID(t, e.userDN("u5")))
		return err == nil
	})
	// And changes made after.
	e.srv.Delete(t, dns[1])
	within(t, 2*time.Second, "delete after restart", func() bool { u, err := e.lookup(ids[1]); return err == nil && !u.Active })
	for _, id := range ids[2:] {
		if u, err := e.lookup(id); err != nil || !u.Active {
			t.Fatalf("user %s after the outage: %+v, %v", id, u, err)
		}
	}
	if st := p.s.Status(); st.Reconnects == 0 {
		t.Fatalf("status %+v: no reconnect counted", st)
	}
	if len(p.errors()) == 0 {
		t.Fatal("the failed search was not reported")
	}
	for _, m := range p.modes()[1:] {
		if m == ModeFull {
			t.Fatalf("the outage caused a full sync: %v", p.modes())
		}
	}
}

// TestPushThreshold: deletes pushed one by one count against the
// deactivation threshold together: a mass delete is held as with
// polling, while a single offboarding applies at once.
func TestPushThreshold(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	var dns []string
	for i := range 10 {
		dns = append(dns, e.addUser(fmt.Sprintf("t%d", i), "T", fmt.Sprint(i), nil))
	}
	p := startPush(t, e, nil)
	ids := make([]string, len(dns))
	for i, dn := range dns {
		ids[i] = e.srv.EntryUUID(t, dn)
	}
	e.srv.Delete(t, dns[0]) // one offboarding: applied at once
	within(t, 2*time.Second, "delete", func() bool { u, err := e.lookup(ids[0]); return err == nil && !u.Active })
	for _, dn := range dns[1:4] { // with the first, above 20 % of the 9 left
		e.srv.Delete(t, dn)
	}
	within(t, 2*time.Second, "held", func() bool {
		h, err := e.heldPlan()
		return err == nil && len(h.Changes) == 3
	})
	for _, id := range ids[1:] {
		if u, err := e.lookup(id); err != nil || !u.Active {
			t.Fatalf("user %s deactivated past the threshold: %+v %v", id, u, err)
		}
	}
	// The engine confirms while the persistent search runs.
	h, _ := e.heldPlan()
	if err := e.confirm(h.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[1:4] {
		if u, _ := e.lookup(id); u.Active {
			t.Fatalf("user %s still active after Confirm", id)
		}
	}
	p.waitPersist(t)
}

// TestPushPresentPhase: without a session log slapd refreshes a reopened
// search with a present phase (every live id): the entry deleted while
// the search was down is found by omission, and no one else is touched.
func TestPushPresentPhase(t *testing.T) {
	e := newEnv(t, ldaptest.Options{SessionLog: -1})
	var dns []string
	for i := range 6 {
		dns = append(dns, e.addUser(fmt.Sprintf("p%d", i), "P", fmt.Sprint(i), nil))
	}
	eng := e.addGroup("eng", dns[0], dns[1])
	p := startPush(t, e, func(c *Config) { c.MaxDeactivationShare = -1 })
	ids := make([]string, len(dns))
	for i, dn := range dns {
		ids[i] = e.srv.EntryUUID(t, dn)
	}
	engID := e.srv.EntryUUID(t, eng)
	e.srv.Kill()
	within(t, 5*time.Second, "drop noticed", func() bool { return p.s.Status().Mode == StatusPoll })
	e.srv.Restart(t)
	e.srv.Delete(t, dns[1])
	p.waitPersist(t)
	within(t, 3*time.Second, "delete found by omission", func() bool { u, err := e.lookup(ids[1]); return err == nil && !u.Active })
	within(t, 3*time.Second, "group without the deleted member", func() bool { return slices.Equal(e.members(engID), []string{"p0"}) })
	for i, id := range ids {
		if i == 1 {
			continue
		}
		if u, err := e.lookup(id); err != nil || !u.Active {
			t.Fatalf("user %s after the present phase: %+v, %v", id, u, err)
		}
	}
	// And push goes on.
	e.srv.Replace(t, dns[2], map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	within(t, 2*time.Second, "lock after the present phase", func() bool { u, err := e.lookup(ids[2]); return err == nil && !u.Active })
}

// TestPushFailover: two replicas of a connection; one holds the
// persistent search (and the lock), the other waits. When the first
// stops, the second opens the search and changes keep arriving.
func TestPushFailover(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	ann := e.addUser("ann", "Ann", "A", nil)
	bob := e.addUser("bob", "Bob", "B", nil)
	mk := func() (*Syncer, context.CancelFunc, chan error) {
		s := e.syncer(func(c *Config) { c.Interval = 300 * time.Millisecond; c.MaxDeactivationShare = -1 })
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, cancel, done
	}
	a, stopA, doneA := mk()
	b, stopB, doneB := mk()
	defer func() { stopA(); stopB(); <-doneA; <-doneB }()
	var first, second *Syncer
	var stopFirst context.CancelFunc
	within(t, 10*time.Second, "one replica pushes", func() bool {
		switch {
		case a.Status().Mode == StatusPersist:
			first, second, stopFirst = a, b, stopA
		case b.Status().Mode == StatusPersist:
			first, second, stopFirst = b, a, stopB
		}
		return first != nil
	})
	eq(t, "the other polls", second.Status().Mode, StatusPoll)
	annID, bobID := e.srv.EntryUUID(t, ann), e.srv.EntryUUID(t, bob)
	e.srv.Replace(t, ann, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	within(t, 2*time.Second, "lock via the first", func() bool { u, err := e.lookup(annID); return err == nil && !u.Active })
	stopFirst()
	within(t, 10*time.Second, "the second takes over", func() bool { return second.Status().Mode == StatusPersist })
	e.srv.Replace(t, bob, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
	within(t, 2*time.Second, "lock via the second", func() bool { u, err := e.lookup(bobID); return err == nil && !u.Active })
}
