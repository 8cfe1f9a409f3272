package ldap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
)

// Syncer syncs one LDAP connection of a tenant into the Engine. It is
// safe for concurrent use; syncs of one Syncer run one at a time, and the
// Engine's lock keeps syncs of the same connection on other replicas out.
type Syncer struct {
	cfg         *config
	eng         *provision.Engine
	origin      provision.Origin
	fingerprint string

	mu    sync.Mutex
	cache *dirCache // the directory as of the stored cursor; nil when cold
	// deleted is the stale state deleted since the cursor was last
	// stored, orphans the state of cursors whose store failed (under
	// mu; see cursor.Stale).
	deleted map[staleState]bool
	orphans []staleState

	// status is what Run does; sess the persistent search it holds
	// open, which callers (of Sync, SyncChanges, Confirm) end.
	status  pushStatus
	sess    session
	callers atomic.Int32
	// pushed holds when the persistent search's recent deactivations
	// were applied (under mu): they count against the thresholds for
	// one Config.Interval.
	pushed []time.Time
	// prog is the running sync's progress (Progress); nil when none runs.
	prog atomic.Pointer[progress]

	// afterUserPage, when set (by tests), runs after each page of users.
	afterUserPage func()
	// beforeSyncrepl, when set (by tests), runs before an incremental
	// syncrepl refresh; its error replaces the refresh's.
	beforeSyncrepl func() error
	// dialClient, when set (by tests), replaces dialing: it returns a
	// connected, bound client (a fake of go-ldap's Client).
	dialClient func(context.Context) (goldap.Client, error)
}

// NewSyncer validates cfg and returns a Syncer. It checks the filters
// (goldap.CompileFilter), the DNs and the URL, and that the tenant
// declares the connection with kind provision.KindLDAP; it does not
// connect.
func NewSyncer(cfg Config) (*Syncer, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Syncer{
		cfg:         c,
		eng:         c.Engine,
		origin:      provision.Origin{TenantID: c.TenantID, ConnectionID: c.ConnectionID, Actor: "ldap-sync"},
		fingerprint: fingerprintOf(c),
	}, nil
}

func (s *Syncer) log() *slog.Logger { return s.cfg.Logger }

func (s *Syncer) lockName() string { return "ldap-sync/" + s.cfg.ConnectionID }

// lock takes the connection's lock, or fails with provision.ErrLocked.
// The work under the lock runs with held, which ends when the lock is
// released or lost.
func (s *Syncer) lock(ctx context.Context) (held context.Context, release func(), err error) {
	held, release, err = provision.AdapterOf(s.eng).Lock(ctx, s.cfg.TenantID, s.lockName())
	if err != nil {
		return nil, nil, fmt.Errorf("ldap: sync of %s/%s: %w", s.cfg.TenantID, s.cfg.ConnectionID, err)
	}
	return held, release, nil
}

// lockWait takes the connection's lock, waiting while another holds it.
func (s *Syncer) lockWait(ctx context.Context) (held context.Context, release func(), err error) {
	for {
		held, release, err := s.lock(ctx)
		if !errors.Is(err, provision.ErrLocked) {
			return held, release, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Syncer) newReport(m Mode, dry bool) *Report {
	return &Report{TenantID: s.cfg.TenantID, ConnectionID: s.cfg.ConnectionID, Mode: m, DryRun: dry, Started: s.cfg.Now()}
}

// Sync runs a full sync: it reads every user and group entry in scope,
// creates, updates, deactivates and reactivates users and groups through
// the Engine, and deactivates the users this connection owns whose entries
// are gone, when the search completed and found entries. Deactivations
// crossing the threshold are held (Report.Held). It fails with
// provision.ErrLocked when a sync of the connection runs elsewhere.
//
// An error may come with a partial Report: what was applied before it.
// Nothing is swept then.
func (s *Syncer) Sync(ctx context.Context) (rep *Report, err error) {
	defer s.yield(ctx)()
	ctx, release, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func(start time.Time) { s.observe(ctx, start, rep, err) }(time.Now())
	return s.syncFull(ctx, false, "")
}

// Plan reports what Sync would do now, applying nothing: the users it
// would create, update, deactivate and reactivate, the groups, and
// whether the deactivations would be held.
func (s *Syncer) Plan(ctx context.Context) (*Report, error) {
	return s.syncFull(ctx, true, "")
}

// SyncChanges runs an incremental sync: the changes since the previous
// sync, by syncrepl or modifyTimestamp (Config.Incremental). It runs a full
// sync instead when there is no usable cursor (first sync, configuration
// changed, cookie expired: e-syncRefreshRequired) or when the directory
// state stored with the cursor cannot be read; Report.FullReason says
// why. A Syncer that has not seen the directory since the cursor was
// stored (a restart, a sync on another replica) loads that state and
// continues incrementally.
func (s *Syncer) SyncChanges(ctx context.Context) (rep *Report, err error) {
	defer s.yield(ctx)()
	ctx, release, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func(start time.Time) { s.observe(ctx, start, rep, err) }(time.Now())
	return s.syncChanges(ctx)
}

// run is the state of one sync.
type run struct {
	s     *Syncer
	rep   *Report
	cache *dirCache
	dry   bool
	prog  *progress // nil for a Plan and a persistent search's batch

	mu      sync.Mutex
	deact   []deactivation
	enabled map[string]bool // users seen enabled (to unhold; incremental)
	touched map[string]bool // ids of the entries applied (incremental)
	noID    int
	stamp   time.Time // highest modifyTimestamp seen
}

func (s *Syncer) newRun(rep *Report, cache *dirCache) *run {
	return &run{s: s, rep: rep, cache: cache, dry: rep.DryRun, prog: s.tracking(rep), enabled: map[string]bool{}}
}

// syncFull is Sync and Plan.
func (s *Syncer) syncFull(ctx context.Context, dry bool, why string) (*Report, error) {
	if !dry {
		s.mu.Lock()
		defer s.mu.Unlock()
		defer s.track(ModeFull)()
	}
	return s.full(ctx, dry, why)
}

// full runs a full sync; the caller holds s.mu unless dry.
func (s *Syncer) full(ctx context.Context, dry bool, why string) (*Report, error) {
	rep := s.newReport(ModeFull, dry)
	rep.FullReason = why
	defer func() { rep.Duration = s.cfg.Now().Sub(rep.Started) }()
	prog := s.tracking(rep)
	prog.update(func(p *Progress) { p.Mode, p.Full, p.Phase = ModeFull, true, PhaseStarting })
	c, err := s.dial(ctx)
	if err != nil {
		return rep, err
	}
	defer c.close()

	mode := ModeFull
	var cur cursor
	if !dry {
		switch s.cfg.Incremental {
		case IncrementalSyncrepl:
			mode = ModeSyncrepl
		case IncrementalModifyTimestamp:
			mode = ModeModifyTimestamp
		case IncrementalDirSync:
			mode = ModeDirSync
		case IncrementalUSNChanged:
			mode = ModeUSNChanged
		case IncrementalAuto:
			dse, err := c.rootDSE(ctx)
			if err != nil {
				return rep, err
			}
			switch {
			case dse.supports(goldap.ControlTypeSyncRequest):
				mode = ModeSyncrepl
			case dse.supports(goldap.ControlTypeDirSync):
				mode = ModeDirSync
			default:
				mode = ModeModifyTimestamp
			}
		}
		if mode == ModeDirSync || mode == ModeUSNChanged {
			// Take the cursor before reading, so that changes made
			// during the read are replayed by the next incremental sync.
			if mode, err = s.adCursor(ctx, c, rep, mode, &cur); err != nil {
				return rep, err
			}
		}
		if mode == ModeSyncrepl {
			// Take the cookies before reading, so that changes made
			// during the read are replayed by the next incremental sync.
			if cur.UserCookie, err = c.syncCookie(ctx, s.cfg.UserBaseDN); err != nil {
				return rep, err
			}
			if s.cfg.GroupBaseDN != "" {
				if cur.GroupCookie, err = c.syncCookie(ctx, s.cfg.GroupBaseDN); err != nil {
					return rep, err
				}
			}
		}
	}
	start := s.cfg.Now()
	if !dry {
		// The new cache replaces the old one when the sync is stored;
		// letting go of the old one now keeps one directory's state in
		// memory, not two. The empty one matches no cursor, so after a
		// failed sync the next incremental one loads the stored state.
		s.cache = newDirCache()
	}
	r := s.newRun(rep, newDirCache())
	userQuery := search{base: s.cfg.UserBaseDN, scope: s.cfg.scope, filter: s.cfg.userFilter, attrs: s.cfg.Mapping.userAttributes()}
	prog.phase(PhaseUsers)
	err = c.pagedSearch(ctx, userQuery, func(entries []*goldap.Entry) error {
		rep.Entries += len(entries)
		prog.read(len(entries))
		if err := r.users(ctx, entries); err != nil {
			return err
		}
		if s.afterUserPage != nil {
			s.afterUserPage()
		}
		return nil
	})
	if err != nil {
		rep.NotSwept = "the user search did not complete: " + err.Error()
		return rep, err
	}
	userStamp := r.stamp
	r.stamp = time.Time{}
	if s.cfg.GroupBaseDN != "" {
		groupQuery := search{base: s.cfg.GroupBaseDN, scope: s.cfg.scope, filter: s.cfg.groupFilter, attrs: s.cfg.Mapping.groupAttributes(), pageSize: 1, next: groupPages(s.cfg.Mapping.DNMembers)}
		prog.phase(PhaseGroups)
		err = c.pagedSearch(ctx, groupQuery, func(entries []*goldap.Entry) error {
			return r.readGroups(ctx, c, entries, nil)
		})
		if err != nil {
			rep.NotSwept = "the group search did not complete: " + err.Error()
			return rep, err
		}
		prog.phase(PhaseApplying)
		if err := r.applyGroups(ctx, nil, true); err != nil {
			return rep, err
		}
	}
	prog.phase(PhaseApplying)
	rep.Referrals = int(c.referrals.Load())
	owned, err := r.sweep(ctx)
	if err != nil {
		return rep, err
	}
	if err := s.settle(ctx, rep, r.deact, owned, 0, true); err != nil {
		return rep, err
	}
	if dry {
		return rep, nil
	}
	cur.Mode = mode
	cur.LastFull = s.cfg.Now().UTC()
	cur.Owned = owned - rep.Deactivated
	if mode == ModeModifyTimestamp {
		cur.UserStamp = nextStamp(time.Time{}, userStamp, start)
		cur.GroupStamp = nextStamp(time.Time{}, r.stamp, start)
	}
	prev, err := s.loadCursor(ctx)
	if err != nil {
		return rep, err
	}
	if prev != nil {
		// The state prev names is stale once cur is stored.
		cur.Stale = slices.Clone(prev.Stale)
		if prev.StateGen != "" {
			cur.Stale = append(cur.Stale, staleOf(prev))
		}
	}
	if err := s.saveState(ctx, r.cache, &cur); err != nil {
		return rep, err
	}
	token, err := s.saveCursor(ctx, &cur)
	if err != nil {
		return rep, err
	}
	r.cache.token = token
	s.cache = r.cache
	rep.Duration = s.cfg.Now().Sub(rep.Started)
	s.log().InfoContext(ctx, rep.String())
	return rep, nil
}

// stampMargin is how far behind the client's clock at the start of a
// sync the next modifyTimestamp poll starts: it absorbs clock skew and
// changes made while the sync read.
const stampMargin = 5 * time.Minute

// nextStamp is the next modifyTimestamp cursor: the newest timestamp
// seen, but never later than the start of the sync minus the margin, and
// never earlier than the previous cursor.
func nextStamp(prev, seen, start time.Time) time.Time {
	next := seen
	if limit := start.Add(-stampMargin); next.After(limit) {
		next = limit
	}
	if next.Before(prev) {
		next = prev
	}
	return next.UTC()
}

// users applies a batch of user entries with the configured workers.
func (r *run) users(ctx context.Context, entries []*goldap.Entry) error {
	workers := min(r.s.cfg.Workers, len(entries))
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(entries) || ctx.Err() != nil {
					return
				}
				if err := r.user(ctx, entries[i]); err != nil {
					errs[w] = err
					cancel()
					return
				}
				r.prog.applied()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// user maps and applies one user entry. Only a failure that makes the
// sync's outcome unreliable (the store, the context) is returned; an entry
// that cannot be applied is skipped with its reason.
func (r *run) user(ctx context.Context, e *goldap.Entry) error {
	m := r.s.cfg.Mapping
	r.noteStamp(e)
	id := m.entryID(e)
	if id == "" {
		r.mu.Lock()
		r.noID++
		r.rep.skip(e.DN, "", "no "+m.ID+" attribute (is it readable by the bind account?)")
		r.mu.Unlock()
		return nil
	}
	dn := dnKey(e.DN)
	uid := ""
	if m.MemberUIDAttribute != "" {
		uid = e.GetEqualFoldAttributeValue(m.MemberUIDAttribute)
	}
	if r.touched != nil {
		r.mu.Lock()
		r.touched[id] = true
		r.mu.Unlock()
	}
	ident, err := m.identity(r.s.cfg.ConnectionID, id, e, r.s.cfg.Now())
	if err != nil {
		r.cache.putUser(id, dn, uid, "")
		r.mu.Lock()
		r.rep.skip(e.DN, id, err.Error())
		r.mu.Unlock()
		return nil
	}
	userID, err := r.apply(ctx, e.DN, ident)
	r.cache.putUser(id, dn, uid, userID)
	return err
}

func (r *run) noteStamp(e *goldap.Entry) {
	v := e.GetEqualFoldAttributeValue("modifyTimestamp")
	if v == "" {
		return
	}
	t, err := ber.ParseGeneralizedTime([]byte(v))
	if err != nil {
		return
	}
	r.mu.Lock()
	if t.After(r.stamp) {
		r.stamp = t
	}
	r.mu.Unlock()
}

// apply provisions one identity and returns the user's id ("" when it was
// skipped). A disabled entry whose user is active is not deactivated here:
// it joins the run's deactivations, which the threshold sees first.
func (r *run) apply(ctx context.Context, dn string, ident provision.Identity) (string, error) {
	eng, o := r.s.eng, r.s.origin
	opts := provision.ProvisionOptions{Create: true, Update: true, SetActive: true, DryRun: r.dry}
	var held *deactivation
	if !ident.User.Active {
		dry := opts
		dry.DryRun = true
		u, res, err := eng.ProvisionIdentity(ctx, o, ident, dry)
		if err == nil && res == provision.Deactivated {
			held = &deactivation{UserID: u.ID, ExternalID: ident.ExternalID, UserName: u.UserName, Reason: "disabled"}
			ident.User.Active = true
		}
	}
	u, res, err := eng.ProvisionIdentity(ctx, o, ident, opts)
	if err != nil {
		if reason, ok := skipReason(err); ok {
			r.mu.Lock()
			r.rep.skip(dn, ident.ExternalID, reason)
			r.mu.Unlock()
			return "", nil
		}
		return "", fmt.Errorf("ldap: apply %s: %w", dn, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch res {
	case provision.Created:
		r.rep.Created++
	case provision.Updated:
		r.rep.Updated++
	case provision.Linked:
		r.rep.Linked++
	case provision.Reactivated:
		r.rep.Reactivated++
	case provision.Deactivated:
		r.rep.Deactivated++
	default:
		if held == nil {
			r.rep.Unchanged++
		}
	}
	if held != nil {
		if res == provision.Updated {
			r.rep.Updated++
		}
		r.deact = append(r.deact, *held)
	} else if u.Active && r.touched != nil {
		r.enabled[u.ID] = true
	}
	return u.ID, nil
}

// skipReason says why an engine error skips an entry rather than failing
// the sync: the entry's data, not the store, is at fault.
func skipReason(err error) (string, bool) {
	var ce *provision.ConflictError
	var oe *provision.OwnerError
	switch {
	case errors.As(err, &ce):
		if ce.Owner != "" {
			return fmt.Sprintf("%s %q is taken by a user owned by %q", ce.Field, ce.Value, ce.Owner), true
		}
		return fmt.Sprintf("%s %q is taken", ce.Field, ce.Value), true
	case errors.As(err, &oe):
		return fmt.Sprintf("owned by %q", oe.Owner), true
	case errors.Is(err, provision.ErrDeprovisioned):
		return "the user was deleted or deprovisioned in the application: " + err.Error(), true
	case errors.Is(err, provision.ErrHeld):
		// A replace of members that drops many waits for the host's
		// confirmation (Engine.ConfirmPlan); the sync goes on.
		return err.Error(), true
	case errors.Is(err, provision.ErrInvalid), errors.Is(err, provision.ErrForbidden), errors.Is(err, provision.ErrNotFound):
		return err.Error(), true
	}
	return "", false
}

// sweep finds the users this connection owns whose entries a complete
// full sync did not see, and returns the number of active users the
// connection owns. It never sweeps after zero entries or entries without
// an id.
func (r *run) sweep(ctx context.Context) (int, error) {
	rep := r.rep
	switch {
	case rep.Entries == 0:
		rep.NotSwept = "the user search returned no entries"
	case r.noID > 0:
		rep.NotSwept = fmt.Sprintf("%d entries had no %s", r.noID, r.s.cfg.Mapping.ID)
	}
	owned := 0
	var missing []provision.User
	applied := r.cache.appliedUsers() // the users applied in this run
	err := provision.AdapterOf(r.s.eng).EachOwnedUser(ctx, r.s.origin, func(u provision.User) error {
		if !u.Active {
			return nil
		}
		owned++
		if !applied(u.ID) {
			missing = append(missing, u)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ldap: sweep: %w", err)
	}
	if rep.NotSwept != "" {
		if len(missing) > 0 {
			r.s.log().WarnContext(ctx, "ldap: not sweeping", "tenant", r.s.cfg.TenantID, "connection", r.s.cfg.ConnectionID, "reason", rep.NotSwept, "unseen", len(missing))
		}
		return owned, nil
	}
	rep.Swept = true
	for _, u := range missing {
		full, err := r.s.eng.GetUser(ctx, r.s.origin, u.ID)
		if err != nil {
			if errors.Is(err, provision.ErrNotFound) {
				continue
			}
			return 0, fmt.Errorf("ldap: sweep: %w", err)
		}
		if full.ExternalID != "" {
			r.cache.mu.Lock()
			seen := r.cache.hasUser(full.ExternalID)
			r.cache.mu.Unlock()
			if seen {
				continue // its entry is there but could not be applied
			}
		}
		r.deact = append(r.deact, deactivation{UserID: u.ID, ExternalID: full.ExternalID, UserName: u.UserName, Reason: "gone"})
	}
	return owned, nil
}

// readGroups completes the ranged member values of group entries and
// records them in the run's cache (and their ids in changed, when set).
func (r *run) readGroups(ctx context.Context, c *conn, entries []*goldap.Entry, changed map[string]bool) error {
	m := r.s.cfg.Mapping
	for _, e := range entries {
		if err := c.completeRanges(ctx, e, m.DNMembers); err != nil {
			return err
		}
		r.readGroup(e)
		if changed != nil {
			if id := m.entryID(e); id != "" {
				changed[id] = true
			}
		}
	}
	return nil
}

// readGroup records a group entry in the run's cache.
func (r *run) readGroup(e *goldap.Entry) {
	m := r.s.cfg.Mapping
	r.noteStamp(e)
	r.rep.Groups.Entries++
	r.prog.readGroup()
	id := m.entryID(e)
	if id == "" {
		r.rep.Groups.Skipped++
		r.rep.skip(e.DN, "", "group without "+m.ID)
		return
	}
	g := &groupRec{id: id, dn: dnKey(e.DN), name: strings.TrimSpace(e.GetEqualFoldAttributeValue(m.GroupName))}
	for _, a := range m.DNMembers {
		for _, v := range e.GetEqualFoldAttributeValues(a) {
			// uniqueMember may carry an optional #'0101'B uid suffix.
			if i := strings.LastIndex(v, "#'"); i > 0 && strings.HasSuffix(v, "'B") {
				v = v[:i]
			}
			g.memberDNs = append(g.memberDNs, dnHash(dnKey(v)))
		}
	}
	for _, a := range m.UIDMembers {
		for _, v := range e.GetEqualFoldAttributeValues(a) {
			g.memberUIDs = append(g.memberUIDs, uidHash(strings.TrimSpace(v)))
		}
	}
	r.cache.putGroup(g)
}
