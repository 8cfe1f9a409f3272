package ldap

import (
	"fmt"
	"sync"
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestProgress: while a full and an incremental sync run against slapd,
// Progress reports the phase and the entries read and applied so far, page
// by page; once the sync ends it reports none, and the Report has the
// totals.
func TestProgress(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	var dns []string
	for i := range 30 {
		dns = append(dns, e.addUser(fmt.Sprintf("p%02d", i), "P", fmt.Sprint(i), nil))
	}
	e.addGroup("first", dns[:10]...)
	e.addGroup("second", dns[10:]...)
	s := e.syncer(func(c *Config) { c.Incremental = IncrementalSyncrepl })
	if p, ok := s.Progress(); ok {
		t.Fatalf("progress before any sync: %+v", p)
	}

	// observe runs fn while a goroutine polls Progress (for -race) and
	// returns what Progress said after each page of users.
	observe := func(fn func() *Report) (*Report, []Progress) {
		var seen []Progress
		s.afterUserPage = func() {
			p, ok := s.Progress()
			if !ok {
				t.Error("no progress during a sync")
			}
			seen = append(seen, p)
		}
		defer func() { s.afterUserPage = nil }()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					if p, ok := s.Progress(); ok && p.Entries > 30 {
						t.Errorf("progress beyond the directory: %+v", p)
					}
				}
			}
		}()
		rep := fn()
		close(stop)
		wg.Wait()
		if p, ok := s.Progress(); ok {
			t.Fatalf("progress after the sync: %+v", p)
		}
		return rep, seen
	}

	rep, seen := observe(func() *Report { return e.sync(s) })
	eq(t, "pages seen", len(seen), 5) // 30 entries, 7 a page
	for i, p := range seen {
		want := min(7*(i+1), 30)
		eq(t, fmt.Sprintf("page %d", i), []any{p.Mode, p.Full, p.Phase, p.Entries, p.Applied, p.GroupEntries}, []any{ModeFull, true, PhaseUsers, want, want, 0})
		if p.Started.IsZero() || p.Rate <= 0 {
			t.Fatalf("page %d: started %v, rate %v", i, p.Started, p.Rate)
		}
	}
	eq(t, "report entries", rep.Entries, seen[len(seen)-1].Entries)
	eq(t, "report", []int{rep.Entries, rep.Created, rep.Groups.Entries, rep.Groups.Created}, []int{30, 30, 2, 2})

	// Ten entries change: the incremental sync reads those.
	for _, dn := range dns[:10] {
		e.srv.Replace(t, dn, map[string][]string{"title": {"Changed"}})
	}
	rep, seen = observe(func() *Report { return e.changes(s) })
	eq(t, "mode", rep.Mode, ModeSyncrepl)
	eq(t, "pages seen", len(seen), 2)
	for i, p := range seen {
		want := min(7*(i+1), 10)
		eq(t, fmt.Sprintf("page %d", i), []any{p.Mode, p.Full, p.Phase, p.Entries, p.Applied}, []any{ModeSyncrepl, false, PhaseUsers, want, want})
	}
	eq(t, "report", []int{rep.Entries, rep.Updated}, []int{10, 10})
}
