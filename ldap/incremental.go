package ldap

import (
	"context"
	"errors"
	"fmt"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
)

// errRefreshRequired is the server's e-syncRefreshRequired (4096): the
// cookie is too old; a full sync takes over.
var errRefreshRequired = errors.New("ldap: the server requires a full refresh (e-syncRefreshRequired)")

// nothing matches no entry: a syncrepl refresh with it returns only a
// cookie, the server's current state.
const nothing = "(&(objectClass=*)(!(objectClass=*)))"

// syncCookie returns a syncrepl cookie for the server's current state,
// without reading any entry.
func (c *conn) syncCookie(ctx context.Context, base string) ([]byte, error) {
	res, err := c.syncrepl(ctx, search{base: base, scope: c.cfg.scope, filter: nothing, attrs: []string{"1.1"}}, nil, func([]*goldap.Entry) error { return nil })
	if err != nil {
		return nil, err
	}
	if len(res.cookie) == 0 {
		return nil, fmt.Errorf("%w: the server sent no syncrepl cookie for %q", ErrIncomplete, base)
	}
	return res.cookie, nil
}

// syncResult is what a syncrepl refresh reported besides the entries.
type syncResult struct {
	cookie []byte
	// deleted are the ids the server said were deleted (delete phase).
	deleted []string
	// present are the ids the server listed as unchanged (present
	// phase); presentPhase says there was one: every id neither present
	// nor sent is deleted.
	present      map[string]bool
	presentPhase bool
}

// syncrepl runs an RFC 4533 refreshOnly search from cookie, handing the
// added and modified entries (renames and moves arrive as adds with the
// same id) to fn in batches. It fails with errRefreshRequired when the
// server answers e-syncRefreshRequired, and with ErrIncomplete when the
// refresh ends without its sync done control. The stream is abandoned when
// the server sends nothing for Config.RequestTimeout.
func (c *conn) syncrepl(ctx context.Context, q search, cookie []byte, fn func([]*goldap.Entry) error) (syncResult, error) {
	res := syncResult{present: map[string]bool{}}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(time.Hour, cancel)
	defer idle.Stop()
	req := goldap.NewSearchRequest(q.base, q.scope, goldap.NeverDerefAliases, 0, 0, false, q.filter, q.attrs, nil)
	r := c.c.Syncrepl(sctx, req, 64, goldap.SyncRequestModeRefreshOnly, cookie, false)
	batch := make([]*goldap.Entry, 0, c.cfg.PageSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := fn(batch)
		batch = make([]*goldap.Entry, 0, c.cfg.PageSize)
		return err
	}
	setCookie := func(b []byte) {
		if len(b) > 0 {
			res.cookie = b
		}
	}
	done := false
	for {
		idle.Reset(c.cfg.RequestTimeout)
		more := r.Next()
		idle.Stop()
		if !more {
			break
		}
		msg := c.decodeSync(r)
		setCookie(msg.cookie)
		res.deleted = append(res.deleted, msg.deleted...)
		for _, id := range msg.present {
			res.present[id] = true
		}
		if msg.presentPhase {
			res.presentPhase = true
		}
		if msg.done {
			done = true
			if msg.refreshDeletes {
				// The refresh ended in the delete phase: no id is
				// deleted by omission.
				res.presentPhase = false
			}
		}
		if msg.entry != nil {
			batch = append(batch, msg.entry)
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return res, err
				}
			}
		}
	}
	err := r.Err()
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case goldap.IsErrorWithCode(err, goldap.LDAPResultSyncRefreshRequired):
		return res, errRefreshRequired
	case goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject):
		return res, fmt.Errorf("%w: syncrepl of %q: %w", ErrBaseDN, q.base, err)
	case err != nil:
		return res, fmt.Errorf("ldap: syncrepl of %q: %w", q.base, err)
	case sctx.Err() != nil:
		return res, fmt.Errorf("%w: syncrepl of %q: no answer within %s", ErrIncomplete, q.base, c.cfg.RequestTimeout)
	case !done:
		return res, fmt.Errorf("%w: syncrepl of %q ended without its sync done control", ErrIncomplete, q.base)
	}
	return res, flush()
}

// syncMsg is one message of a syncrepl search, decoded.
type syncMsg struct {
	// entry was added or modified (a rename or a move too), with its id
	// attribute.
	entry *goldap.Entry
	// deleted and present list ids the server said were deleted, or are
	// unchanged (present phase); presentPhase says a present phase is
	// under way.
	deleted, present []string
	presentPhase     bool
	// cookie is the new cookie, if the message carried one.
	cookie []byte
	// refreshDone says the refresh phase of a refreshAndPersist search
	// ended (a sync info message with refreshDone), done that a
	// refreshOnly search ended (the sync done control); refreshDeletes
	// that it ended in the delete phase: no id is deleted by omission.
	refreshDone, done, refreshDeletes bool
}

// decodeSync decodes the message r holds.
func (c *conn) decodeSync(r goldap.Response) syncMsg {
	var msg syncMsg
	ctls := r.Controls()
	if e := r.Entry(); e != nil {
		st, _ := goldap.FindControl(ctls, goldap.ControlTypeSyncState).(*goldap.ControlSyncState)
		if st == nil {
			return msg
		}
		id := canonicalID(st.EntryUUID.String())
		msg.cookie = st.Cookie
		switch st.State {
		case goldap.SyncStateAdd, goldap.SyncStateModify:
			if c.cfg.Mapping.entryID(e) == "" {
				e.Attributes = append(e.Attributes, &goldap.EntryAttribute{Name: c.cfg.Mapping.ID, Values: []string{id}})
			}
			msg.entry = e
		case goldap.SyncStateDelete:
			msg.deleted = []string{id}
		case goldap.SyncStatePresent:
			msg.present = []string{id}
			msg.presentPhase = true
		}
		return msg
	}
	for _, ctl := range ctls {
		switch v := ctl.(type) {
		case *goldap.ControlSyncInfo:
			switch {
			case v.NewCookie != nil:
				msg.cookie = v.NewCookie.Cookie
			case v.RefreshDelete != nil:
				msg.cookie = v.RefreshDelete.Cookie
				if v.RefreshDelete.RefreshDone {
					msg.refreshDone, msg.refreshDeletes = true, true
				}
			case v.RefreshPresent != nil:
				msg.cookie = v.RefreshPresent.Cookie
				msg.presentPhase = true
				msg.refreshDone = v.RefreshPresent.RefreshDone
			case v.SyncIdSet != nil:
				msg.cookie = v.SyncIdSet.Cookie
				for _, u := range v.SyncIdSet.SyncUUIDs {
					id := canonicalID(u.String())
					if v.SyncIdSet.RefreshDeletes {
						msg.deleted = append(msg.deleted, id)
					} else {
						msg.present = append(msg.present, id)
						msg.presentPhase = true
					}
				}
			}
		case *goldap.ControlSyncDone:
			msg.done = true
			msg.cookie = v.Cookie
			msg.refreshDeletes = v.RefreshDeletes
		}
	}
	return msg
}

// syncChanges is SyncChanges without the lock.
func (s *Syncer) syncChanges(ctx context.Context) (*Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.track("")()
	cur, err := s.loadCursor(ctx)
	if err != nil {
		return nil, err
	}
	s.warm(ctx, cur)
	why := s.unusable(cur)
	if why == "" {
		rep, err := s.incremental(ctx, cur)
		var rs *resyncError
		switch {
		case errors.Is(err, errRefreshRequired):
			why = "the server asked for a full refresh (e-syncRefreshRequired)"
		case errors.As(err, &rs):
			why = rs.reason
		default:
			return rep, err
		}
	}
	return s.full(ctx, false, why)
}

// unusable says why cur cannot start an incremental sync ("" when it
// can).
func (s *Syncer) unusable(cur *cursor) string {
	switch {
	case s.cfg.Incremental == IncrementalNone:
		return "Config.Incremental is none"
	case cur == nil:
		return "no cursor yet"
	case cur.Fingerprint != s.fingerprint:
		return "the configuration changed"
	case s.cache == nil || s.cache.token != cur.Token:
		return "this Syncer has not seen the directory since the cursor was stored, and the stored directory state is missing or unreadable"
	case cur.Mode == ModeSyncrepl && (len(cur.UserCookie) == 0 || (s.cfg.GroupBaseDN != "" && len(cur.GroupCookie) == 0)):
		return "no syncrepl cookie"
	case cur.Mode == ModeDirSync && len(cur.DirSyncCookie) == 0:
		return "no DirSync cookie"
	case cur.Mode != ModeSyncrepl && cur.Mode != ModeModifyTimestamp && cur.Mode != ModeDirSync && cur.Mode != ModeUSNChanged:
		return "the cursor has no incremental mode"
	}
	return ""
}

// incremental applies the changes since cur.
func (s *Syncer) incremental(ctx context.Context, cur *cursor) (*Report, error) {
	rep := s.newReport(cur.Mode, false)
	defer func() { rep.Duration = s.cfg.Now().Sub(rep.Started) }()
	c, err := s.dial(ctx)
	if err != nil {
		return rep, err
	}
	defer c.close()
	start := s.cfg.Now()
	r := s.newRun(rep, s.cache)
	r.touched = map[string]bool{}
	r.prog.update(func(p *Progress) { p.Mode, p.Phase = cur.Mode, PhaseUsers })
	m := s.cfg.Mapping
	userQuery := search{base: s.cfg.UserBaseDN, scope: s.cfg.scope, filter: s.cfg.userFilter, attrs: m.userAttributes()}
	groupQuery := search{base: s.cfg.GroupBaseDN, scope: s.cfg.scope, filter: s.cfg.groupFilter, attrs: m.groupAttributes(), pageSize: 1, next: groupPages(m.DNMembers)}
	users := func(entries []*goldap.Entry) error {
		rep.Entries += len(entries)
		r.prog.read(len(entries))
		if err := r.users(ctx, entries); err != nil {
			return err
		}
		if s.afterUserPage != nil {
			s.afterUserPage()
		}
		return nil
	}
	changedGroups := map[string]bool{}
	groups := func(entries []*goldap.Entry) error {
		r.prog.phase(PhaseGroups)
		return r.readGroups(ctx, c, entries, changedGroups)
	}
	next := *cur
	var gone, goneGroups []string
	switch cur.Mode {
	case ModeSyncrepl:
		if s.beforeSyncrepl != nil {
			if err := s.beforeSyncrepl(); err != nil {
				return rep, err
			}
		}
		ures, err := c.syncrepl(ctx, userQuery, cur.UserCookie, users)
		if err != nil {
			return rep, err
		}
		gone = ures.deleted
		if ures.presentPhase {
			if len(ures.present)+len(r.touched) == 0 {
				rep.NotSwept = "the refresh listed no entries"
			} else {
				rep.Swept = true
				s.cache.eachUser(func(id string) {
					if !ures.present[id] && !r.touched[id] {
						gone = append(gone, id)
					}
				})
			}
		}
		if len(ures.cookie) > 0 {
			next.UserCookie = ures.cookie
		}
		if s.cfg.GroupBaseDN != "" {
			gres, err := c.syncrepl(ctx, groupQuery, cur.GroupCookie, groups)
			if err != nil {
				return rep, err
			}
			goneGroups = gres.deleted
			if gres.presentPhase && len(gres.present)+len(changedGroups) > 0 {
				for id := range s.cache.groups {
					if !gres.present[id] && !changedGroups[id] {
						goneGroups = append(goneGroups, id)
					}
				}
			}
			if len(gres.cookie) > 0 {
				next.GroupCookie = gres.cookie
			}
		}
	case ModeModifyTimestamp:
		q := userQuery
		q.filter = "(&" + s.cfg.userFilter + "(modifyTimestamp>=" + generalizedTime(cur.UserStamp) + "))"
		if err := c.pagedSearch(ctx, q, users); err != nil {
			return rep, err
		}
		next.UserStamp = nextStamp(cur.UserStamp, r.stamp, start)
		r.stamp = time.Time{}
		if s.cfg.GroupBaseDN != "" {
			q := groupQuery
			q.filter = "(&" + s.cfg.groupFilter + "(modifyTimestamp>=" + generalizedTime(cur.GroupStamp) + "))"
			if err := c.pagedSearch(ctx, q, groups); err != nil {
				return rep, err
			}
			next.GroupStamp = nextStamp(cur.GroupStamp, r.stamp, start)
		}
		rep.NotSwept = "modifyTimestamp polling cannot see deletes: the periodic full sync sweeps"
	case ModeDirSync, ModeUSNChanged:
		ch := adChanges{c: c, r: r, userQuery: userQuery, groupQuery: groupQuery, users: users, groups: groups, changedGroups: changedGroups}
		if gone, goneGroups, err = s.adIncremental(ctx, &ch, cur, &next); err != nil {
			return rep, err
		}
	}
	rep.Referrals = int(c.referrals.Load())
	if err := s.commit(ctx, r, cur, &next, gone, goneGroups, changedGroups); err != nil {
		return rep, err
	}
	return rep, nil
}

// commit completes an incremental sync whose entries r applied: it
// deactivates the users of the ids gone, deletes the groups gone, applies
// the changed groups (and those whose members changed), settles the
// deactivations against the threshold from cur, and stores next as the
// cursor.
func (s *Syncer) commit(ctx context.Context, r *run, cur, next *cursor, gone, goneGroups []string, changedGroups map[string]bool) error {
	rep := r.rep
	r.prog.phase(PhaseApplying)
	if err := r.deleted(ctx, gone); err != nil {
		return err
	}
	for _, id := range goneGroups {
		s.cache.dropGroup(id)
		g, err := s.eng.GroupByExternalID(ctx, s.origin, id)
		if errors.Is(err, provision.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ldap: deleted group %s: %w", id, err)
		}
		if g.Owner == s.cfg.ConnectionID {
			if err := r.deleteGroup(ctx, g.ID); err != nil {
				return err
			}
		}
	}
	if s.cfg.GroupBaseDN != "" {
		if err := r.applyGroups(ctx, changedGroups, false); err != nil {
			return err
		}
	}
	prior := 0
	if rep.Mode == ModePersist {
		prior = s.recentPushed()
	}
	if err := s.settle(ctx, rep, r.deact, max(cur.Owned, 1), prior, false); err != nil {
		return err
	}
	if rep.Mode == ModePersist && rep.Held == nil {
		now := s.cfg.Now()
		for range dedupeDeactivations(r.deact) {
			s.pushed = append(s.pushed, now)
		}
	}
	if err := s.unhold(ctx, r.enabled); err != nil {
		return err
	}
	next.Owned = max(0, cur.Owned+rep.Created+rep.Reactivated-rep.Deactivated)
	if err := s.saveDirty(ctx, s.cache, next); err != nil {
		return err
	}
	token, err := s.saveCursor(ctx, next)
	if err != nil {
		return err
	}
	s.cache.token = token
	rep.Duration = s.cfg.Now().Sub(rep.Started)
	s.log().InfoContext(ctx, rep.String())
	return nil
}

// deleted turns ids reported deleted (or gone from a present phase) into
// deactivations of the users this connection owns; ids it does not know
// are ignored (syncrepl reports entries that left the filter, and groups
// touched by referential integrity, as deleted).
func (r *run) deleted(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if r.touched[id] {
			continue // deleted, then added again in the same refresh
		}
		r.cache.dropUser(id)
		u, err := r.s.eng.UserByExternalID(ctx, r.s.origin, id)
		if errors.Is(err, provision.ErrNotFound) {
			r.rep.IgnoredDeletes++
			continue
		}
		if err != nil {
			return fmt.Errorf("ldap: deleted entry %s: %w", id, err)
		}
		if u.Owner != r.s.cfg.ConnectionID {
			r.rep.IgnoredDeletes++
			continue
		}
		if u.Active {
			r.deact = append(r.deact, deactivation{UserID: u.ID, ExternalID: id, UserName: u.UserName, Reason: "deleted"})
		}
	}
	return nil
}
