package ldap

import (
	"sync"
	"time"
)

// Phase is what a running sync is doing (Progress.Phase).
type Phase string

// The phases of a sync.
const (
	// PhaseStarting: connecting, loading the cursor and the stored
	// directory state.
	PhaseStarting Phase = "starting"
	// PhaseUsers: reading user entries and applying them page by page.
	PhaseUsers Phase = "users"
	// PhaseGroups: reading group entries.
	PhaseGroups Phase = "groups"
	// PhaseApplying: applying groups and deactivations, storing the
	// cursor (a Confirm is all this phase).
	PhaseApplying Phase = "applying"
)

// Progress is how far the running sync of a Syncer has got (Syncer.Progress).
type Progress struct {
	// Mode is the kind of sync, as far as known: empty while an
	// incremental sync starts, ModeFull once one turns into a full sync.
	Mode Mode
	// Full says the sync reads every entry in scope.
	Full bool
	// Phase is what the sync does now.
	Phase Phase
	// Started is when the sync began, by Config.Now.
	Started time.Time
	// Entries and GroupEntries count the user and group entries read so
	// far; Applied the user entries, groups and deactivations applied
	// (or skipped).
	Entries      int
	GroupEntries int
	Applied      int
	// Rate is the entries (users and groups) read per second since
	// Started.
	Rate float64
}

// progress is the running sync's Progress, guarded. A nil *progress (a
// Plan, a persistent search's batch) records nothing.
type progress struct {
	mu sync.Mutex
	p  Progress
}

func (p *progress) update(fn func(*Progress)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.p)
}

func (p *progress) phase(ph Phase) { p.update(func(p *Progress) { p.Phase = ph }) }
func (p *progress) read(n int)     { p.update(func(p *Progress) { p.Entries += n }) }
func (p *progress) readGroup()     { p.update(func(p *Progress) { p.GroupEntries++ }) }
func (p *progress) applied()       { p.update(func(p *Progress) { p.Applied++ }) }

// track records that a sync of mode m starts (the caller holds s.mu), and
// returns the func that records its end.
func (s *Syncer) track(m Mode) func() {
	p := &progress{p: Progress{Mode: m, Full: m == ModeFull, Phase: PhaseStarting, Started: s.cfg.Now()}}
	s.prog.Store(p)
	return func() { s.prog.CompareAndSwap(p, nil) }
}

// tracking is the progress a sync reporting to rep records to: none for a
// Plan or a persistent search's batch.
func (s *Syncer) tracking(rep *Report) *progress {
	if rep.DryRun || rep.Mode == ModePersist {
		return nil
	}
	return s.prog.Load()
}

// Progress reports how far the running sync (a Sync, a SyncChanges, a
// round of Run, a Confirm) has got, and false when none runs. A Plan and
// the changes a persistent search applies are not reported. The Report of
// the sync, when it ends, has the totals.
func (s *Syncer) Progress() (Progress, bool) {
	p := s.prog.Load()
	if p == nil {
		return Progress{}, false
	}
	p.mu.Lock()
	out := p.p
	p.mu.Unlock()
	if d := s.cfg.Now().Sub(out.Started).Seconds(); d > 0 {
		out.Rate = float64(out.Entries+out.GroupEntries) / d
	}
	return out, true
}
