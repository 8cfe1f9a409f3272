package ldap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
)

// Push says whether Run keeps a persistent search open to the server.
type Push string

// The push settings.
const (
	// PushAuto makes Run keep an RFC 4533 refreshAndPersist search open
	// between full syncs when the connection's incremental mode is
	// syncrepl (OpenLDAP, 389 Directory Server): the server sends each
	// change as it is made, and it is applied at once. A dropped
	// connection is reopened with a backoff (Config.ReconnectMin to
	// ReconnectMax), refreshing from the stored cookie. Other modes poll
	// every Config.Interval.
	PushAuto Push = ""
	// PushOff makes Run poll every Config.Interval.
	PushOff Push = "off"
)

// The values of Status.Mode.
const (
	// StatusPoll: Run syncs every Config.Interval (no persistent search
	// is open: push is off, the server cannot push, or a persistent
	// search is being reopened).
	StatusPoll = "poll"
	// StatusPersist: an RFC 4533 refreshAndPersist search is open;
	// changes are applied as the server sends them.
	StatusPersist = "refreshAndPersist"
)

// Status is what Run is doing for the connection now.
type Status struct {
	// Mode is StatusPersist while a persistent search is open and
	// refreshed, StatusPoll otherwise.
	Mode string
	// Since is when the open persistent search finished its refresh.
	Since time.Time `json:",omitzero"`
	// Changes counts the changes applied through persistent searches.
	Changes int
	// Reconnects counts the persistent searches reopened after one
	// failed; LastError is the failure.
	Reconnects int
	LastError  string `json:",omitempty"`
}

// pushStatus is the Syncer's Status, guarded.
type pushStatus struct {
	mu sync.Mutex
	st Status
}

func (p *pushStatus) update(fn func(*Status)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.st)
}

// Status reports whether Run holds a persistent search open (changes
// arrive as they are made) or polls.
func (s *Syncer) Status() Status {
	s.status.mu.Lock()
	defer s.status.mu.Unlock()
	st := s.status.st
	if st.Mode == "" {
		st.Mode = StatusPoll
	}
	return st
}

// errFullDue ends a persistent search for the periodic full sync, and
// errNoPush says the connection cannot push (its cursor is not syncrepl).
var (
	errFullDue = errors.New("ldap: the periodic full sync is due")
	errNoPush  = errors.New("ldap: the connection's incremental mode is not syncrepl")
)

// lockRetry is how soon a replica tries again to open the persistent
// search another replica holds: it takes over within this (and the
// lock's lease) when that replica dies.
const lockRetry = 15 * time.Second

// persist keeps a refreshAndPersist search open for as long as it can,
// reopening it with a backoff when it fails. It returns when ctx ends,
// and when a round must run first, with how long to wait for it: 0 (a
// full sync is due, the cursor is unusable, an AD notification fired),
// lockRetry (another replica holds the connection) or Config.Interval
// (the server cannot push).
func (s *Syncer) persist(ctx context.Context) time.Duration {
	backoff := s.cfg.ReconnectMin
	for {
		opened, err := s.session(ctx)
		if ctx.Err() != nil {
			return 0
		}
		var rs *resyncError
		switch {
		case errors.Is(err, errNoPush):
			// Active Directory: change notification wakes a DirSync pass.
			if s.notify(ctx) {
				return 0
			}
			return s.cfg.Interval
		case errors.Is(err, provision.ErrLocked):
			return min(s.cfg.Interval, lockRetry)
		case errors.Is(err, errFullDue), errors.Is(err, errRefreshRequired), errors.As(err, &rs):
			return 0
		case errors.Is(err, errNoNotify):
			return s.cfg.Interval
		case errors.Is(err, errYield):
			// Sync, SyncChanges or Confirm runs: reopen after it.
			s.status.update(func(st *Status) { st.Mode, st.Since = StatusPoll, time.Time{} })
			for s.callers.Load() > 0 {
				select {
				case <-ctx.Done():
					return 0
				case <-time.After(20 * time.Millisecond):
				}
			}
			continue
		}
		s.status.update(func(st *Status) {
			st.Mode, st.Since = StatusPoll, time.Time{}
			st.Reconnects++
			st.LastError = err.Error()
		})
		s.log().WarnContext(ctx, "ldap: persistent search failed; reopening", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err, "in", backoff)
		if s.cfg.OnReport != nil {
			s.cfg.OnReport(nil, err)
		}
		if opened {
			backoff = s.cfg.ReconnectMin
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.ReconnectMax)
	}
}

// errYield ends a persistent search for a call of Sync, SyncChanges or
// Confirm on the same Syncer, which needs the connection's lock.
var errYield = errors.New("ldap: the persistent search yields to a sync or a confirmation")

// session is the persistent search a Syncer's Run holds open.
type session struct {
	mu     sync.Mutex
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// enter registers a session; stop ends its registration. It fails with
// errYield while a call of Sync, SyncChanges or Confirm waits.
func (s *Syncer) enter(ctx context.Context) (context.Context, func(), error) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	s.sess.mu.Lock()
	s.sess.cancel, s.sess.done = cancel, done
	s.sess.mu.Unlock()
	stop := func() {
		s.sess.mu.Lock()
		if s.sess.done == done {
			s.sess.cancel, s.sess.done = nil, nil
		}
		s.sess.mu.Unlock()
		cancel(nil)
		close(done)
	}
	if s.callers.Load() > 0 {
		stop()
		return nil, nil, errYield
	}
	return ctx, stop, nil
}

// yield ends the Syncer's persistent search, if one is open, and keeps
// Run from reopening it until the returned func is called: Sync,
// SyncChanges, Confirm and Discard need the connection's lock that it
// holds.
func (s *Syncer) yield(ctx context.Context) func() {
	s.callers.Add(1)
	s.sess.mu.Lock()
	cancel, done := s.sess.cancel, s.sess.done
	s.sess.mu.Unlock()
	if cancel != nil {
		cancel(errYield)
		// The search ends promptly, unless this is called from within it
		// (from Config.OnReport): then the caller finds the lock taken.
		select {
		case <-done:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	return func() { s.callers.Add(-1) }
}

// recentPushed drops the persistent search's deactivations older than
// Config.Interval and counts the rest; the caller holds s.mu.
func (s *Syncer) recentPushed() int {
	cut := s.cfg.Now().Add(-s.cfg.Interval)
	i := 0
	for i < len(s.pushed) && s.pushed[i].Before(cut) {
		i++
	}
	s.pushed = s.pushed[i:]
	return len(s.pushed)
}

// stream names the two persistent searches of a session.
type stream int

const (
	userStream stream = iota
	groupStream
)

// syncEvent is one message of a persistent search, or its end (err).
type syncEvent struct {
	stream stream
	msg    syncMsg
	err    error
}

// streamState is the refresh state of one persistent search.
type streamState struct {
	refreshing   bool
	present      map[string]bool
	presentPhase bool
}

// batch is what a session gathered since its last commit.
type batch struct {
	r             *run
	next          cursor
	users, groups []*goldap.Entry
	gone, goneGrp []string
	changedGroups map[string]bool
	changes       int  // entries and deletes
	dirty         bool // something to store (a change or a cookie)
}

// session opens one refreshAndPersist search per base (users, groups)
// from the stored cookies on one connection, under the connection's lock,
// and applies what they send until one fails, the lock is lost, or a full
// sync is due. opened says the refresh completed.
func (s *Syncer) session(ctx context.Context) (opened bool, err error) {
	switch s.cfg.Incremental {
	case IncrementalAuto, IncrementalSyncrepl:
	case IncrementalDirSync, IncrementalUSNChanged:
		return false, errNoPush
	default:
		return false, errNoNotify
	}
	// A connection that cannot push needs no lock to say so: the other
	// replicas are not kept waiting for it.
	if cur, err := s.loadCursor(ctx); err != nil {
		return false, err
	} else if cur != nil && cur.Mode != ModeSyncrepl {
		return false, errNoPush
	}
	ctx, stop, err := s.enter(ctx)
	if err != nil {
		return false, err
	}
	defer stop()
	held, release, err := s.lock(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	ctx = held
	defer func() {
		if err != nil && ctx.Err() != nil && context.Cause(ctx) != nil {
			err = context.Cause(ctx)
		}
	}()
	s.mu.Lock()
	cur, err := s.loadCursor(ctx)
	if err == nil && cur != nil && cur.Mode != ModeSyncrepl {
		err = errNoPush
	}
	if err == nil {
		s.warm(ctx, cur)
		if why := s.unusable(cur); why != "" {
			err = &resyncError{why}
		}
	}
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	due := cur.LastFull.Add(s.cfg.FullInterval).Sub(s.cfg.Now())
	if due <= 0 {
		return false, errFullDue
	}
	fullTimer := time.NewTimer(due)
	defer fullTimer.Stop()

	c, err := s.dial(ctx)
	if err != nil {
		return false, err
	}
	defer c.close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan syncEvent, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	m := s.cfg.Mapping
	open := func(st stream, q search, cookie []byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := goldap.NewSearchRequest(q.base, q.scope, goldap.NeverDerefAliases, 0, 0, false, q.filter, q.attrs, nil)
			r := c.c.Syncrepl(sctx, req, 64, goldap.SyncRequestModeRefreshAndPersist, cookie, false)
			for r.Next() {
				select {
				case events <- syncEvent{stream: st, msg: c.decodeSync(r)}:
				case <-sctx.Done():
					return
				}
			}
			err := r.Err()
			switch {
			case goldap.IsErrorWithCode(err, goldap.LDAPResultSyncRefreshRequired):
				err = errRefreshRequired
			case err != nil:
				err = fmt.Errorf("ldap: persistent search of %q: %w", q.base, err)
			default:
				err = fmt.Errorf("%w: the server ended the persistent search of %q", ErrIncomplete, q.base)
			}
			select {
			case events <- syncEvent{stream: st, err: err}:
			case <-sctx.Done():
			}
		}()
	}
	states := map[stream]*streamState{userStream: {refreshing: true, present: map[string]bool{}}}
	open(userStream, search{base: s.cfg.UserBaseDN, scope: s.cfg.scope, filter: s.cfg.userFilter, attrs: m.userAttributes()}, cur.UserCookie)
	if s.cfg.GroupBaseDN != "" {
		states[groupStream] = &streamState{refreshing: true, present: map[string]bool{}}
		open(groupStream, search{base: s.cfg.GroupBaseDN, scope: s.cfg.scope, filter: s.cfg.groupFilter, attrs: m.groupAttributes()}, cur.GroupCookie)
	}
	refreshing := func() bool {
		for _, st := range states {
			if st.refreshing {
				return true
			}
		}
		return false
	}
	b := s.newBatch(cur)
	for {
		var ev syncEvent
		select {
		case <-ctx.Done():
			return opened, ctx.Err()
		case <-fullTimer.C:
			return opened, errFullDue
		case ev = <-events:
		}
		// Take what else has arrived, so that a burst is one commit.
		for n := 0; ; n++ {
			if ev.err != nil {
				return opened, ev.err
			}
			if err := s.take(ctx, c, b, states[ev.stream], ev); err != nil {
				return opened, err
			}
			more := false
			if n < s.cfg.PageSize {
				select {
				case ev = <-events:
					more = true
				default:
				}
			}
			if !more {
				break
			}
		}
		if refreshing() {
			continue
		}
		first := !opened
		if first {
			opened = true
			s.status.update(func(st *Status) { st.Mode, st.Since, st.LastError = StatusPersist, s.cfg.Now(), "" })
		}
		if !b.dirty {
			continue
		}
		if err := s.commitBatch(ctx, c, cur, b, first); err != nil {
			return opened, err
		}
		*cur = b.next
		b = s.newBatch(cur)
	}
}

func (s *Syncer) newBatch(cur *cursor) *batch {
	rep := s.newReport(ModePersist, false)
	s.mu.Lock()
	r := s.newRun(rep, s.cache)
	s.mu.Unlock()
	r.touched = map[string]bool{}
	return &batch{r: r, next: *cur, changedGroups: map[string]bool{}}
}

// take adds one message to the batch. Entries are applied a page at a
// time; at the end of a refresh, the ids a present phase did not list
// are gone.
func (s *Syncer) take(ctx context.Context, c *conn, b *batch, st *streamState, ev syncEvent) error {
	msg := ev.msg
	if len(msg.cookie) > 0 {
		if ev.stream == userStream {
			b.next.UserCookie = msg.cookie
		} else {
			b.next.GroupCookie = msg.cookie
		}
		b.dirty = true
	}
	if msg.entry != nil {
		if ev.stream == userStream {
			b.users = append(b.users, msg.entry)
		} else {
			b.groups = append(b.groups, msg.entry)
		}
	}
	if ev.stream == userStream {
		b.gone = append(b.gone, msg.deleted...)
	} else {
		b.goneGrp = append(b.goneGrp, msg.deleted...)
	}
	b.changes += len(msg.deleted)
	if msg.entry != nil || len(msg.deleted) > 0 {
		b.dirty = true
	}
	if st.refreshing {
		for _, id := range msg.present {
			st.present[id] = true
		}
		st.presentPhase = st.presentPhase || msg.presentPhase
	}
	if len(b.users)+len(b.groups) >= s.cfg.PageSize || (st.refreshing && msg.refreshDone) {
		if err := s.applyEntries(ctx, c, b); err != nil {
			return err
		}
	}
	if st.refreshing && msg.refreshDone {
		st.refreshing = false
		if st.presentPhase && !msg.refreshDeletes {
			s.omitted(b, ev.stream, st.present)
		}
		st.present = nil
	}
	return nil
}

// omitted adds the known ids a completed present phase did not list (nor
// send) to the batch's deletes.
func (s *Syncer) omitted(b *batch, st stream, present map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == userStream {
		if len(present)+len(b.r.touched) == 0 {
			b.r.rep.NotSwept = "the refresh listed no entries"
			return
		}
		b.r.rep.Swept = true
		s.cache.eachUser(func(id string) {
			if !present[id] && !b.r.touched[id] {
				b.gone = append(b.gone, id)
				b.dirty = true
			}
		})
		return
	}
	if len(present)+len(b.changedGroups) == 0 {
		return
	}
	for id := range s.cache.groups {
		if !present[id] && !b.changedGroups[id] {
			b.goneGrp = append(b.goneGrp, id)
			b.dirty = true
		}
	}
}

// applyEntries applies the batch's pending user entries and reads its
// pending group entries.
func (s *Syncer) applyEntries(ctx context.Context, c *conn, b *batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b.users) > 0 {
		b.r.rep.Entries += len(b.users)
		b.changes += len(b.users)
		if err := b.r.users(ctx, b.users); err != nil {
			return err
		}
		b.users = b.users[:0]
	}
	if len(b.groups) > 0 {
		b.changes += len(b.groups)
		if err := b.r.readGroups(ctx, c, b.groups, b.changedGroups); err != nil {
			return err
		}
		b.groups = b.groups[:0]
	}
	return nil
}

// commitBatch applies the rest of the batch and stores its cursor.
// The first batch of a session (its refresh) is reported even when it
// changed nothing: a reopened search is healthy again.
func (s *Syncer) commitBatch(ctx context.Context, c *conn, cur *cursor, b *batch, first bool) error {
	if err := s.applyEntries(ctx, c, b); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.commit(ctx, b.r, cur, &b.next, b.gone, b.goneGrp, b.changedGroups)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if b.changes == 0 && !first {
		return nil // a new cookie only
	}
	s.status.update(func(st *Status) { st.Changes += b.changes })
	if s.cfg.OnReport != nil {
		s.cfg.OnReport(b.r.rep, nil)
	}
	return nil
}
