package ldap

import (
	"fmt"
	"slices"
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestRestartIncremental: a new Syncer on the same store (a restarted
// process) continues from the stored cookie and directory state: its
// first sync reads only the changed entries, and still resolves group
// members it never read itself, nested groups included.
func TestRestartIncremental(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	a := e.addUser("a", "A", "A", nil)
	b := e.addUser("b", "B", "B", nil)
	c := e.addUser("c", "C", "C", nil)
	d := e.addUser("d", "D", "D", nil)
	for i := range 20 {
		e.addUser(fmt.Sprintf("x%02d", i), "X", fmt.Sprint(i), nil)
		e.addGroup(fmt.Sprintf("g%02d", i), a)
	}
	eng := e.addGroup("eng", a)
	all := e.addGroup("all", eng, b)
	engID, allID := e.srv.EntryUUID(t, eng), e.srv.EntryUUID(t, all)
	full := e.sync(e.syncer(nil))
	eq(t, "full read", []int{full.Entries, full.Groups.Entries}, []int{24, 22})
	eq(t, "all", e.members(allID), []string{"a", "b"})

	ee := e.addUser("e", "E", "E", nil)
	e.srv.AddValues(t, eng, "member", ee)
	e.srv.Rename(t, b, "uid=bee", "")
	e.srv.Delete(t, c)
	e.srv.Replace(t, d, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})

	restarted := e.syncer(nil)
	rep := e.changes(restarted)
	if rep.Mode != ModeSyncrepl || rep.FullReason != "" {
		t.Fatalf("first sync after restart: %s (%s)", rep.Mode, rep.FullReason)
	}
	// A full read would read 24 users and 22 groups.
	if rep.Entries > 3 || rep.Groups.Entries > 2 {
		t.Fatalf("first sync after restart read %d user and %d group entries: %s", rep.Entries, rep.Groups.Entries, rep)
	}
	eq(t, "deactivated (delete, lock)", rep.Deactivated, 2)
	eq(t, "eng", e.members(engID), []string{"a", "e"})
	eq(t, "all (nested)", e.members(allID), []string{"a", "bee", "e"})

	// A second restart, now under Run with push: its first round is
	// incremental too, and a change to a nested group reaches the parent.
	e.srv.DeleteValues(t, eng, "member", a)
	p := startPush(t, e, nil)
	if m := p.modes(); len(m) == 0 || m[0] != ModeSyncrepl {
		t.Fatalf("rounds after the second restart: %v", m)
	}
	eq(t, "all after the second restart", e.members(allID), []string{"bee", "e"})
	e.srv.AddValues(t, eng, "member", e.userDN("x03"))
	within(t, 2e9, "nested change by push", func() bool { return slices.Contains(e.members(allID), "x03") })
}
