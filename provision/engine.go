package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Config configures an Engine. Store is required; every other field has a
// default.
type Config struct {
	// Store persists users, groups, members and links. Required.
	Store Store
	// Tenants are declared up front, as configuration; tenants that change
	// at run time are registered (PutTenant).
	Tenants []Tenant
	// Logger receives the engine's diagnostics. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now. Times are stored in UTC.
	Now func() time.Time
	// OnChange, when set, runs inside the transaction of every change, with
	// the transaction's Store, so the host's own writes commit (or roll
	// back) together with the directory change. An error aborts the change.
	OnChange func(ctx context.Context, tx Store, c Change) error
	// Audit, when set, receives refusals (a login denied, a write refused)
	// that change nothing and so have no Event.
	Audit func(ctx context.Context, r Refusal)
	// MaxRetries is how many times, at least, a change that met a version
	// conflict is retried when the caller did not pin a version; retries
	// go on, with jittered backoff, until 5s have passed, and the change
	// then fails with ErrUnavailable (never ErrVersionConflict, which
	// only a pinned version gets). Default 8.
	MaxRetries int
	// ScanLimit bounds how many resources a filter the store cannot answer
	// from an index may scan. Default 10,000.
	ScanLimit int
	// PollInterval is how often Consume looks for new events when nothing
	// woke it. Default 1s.
	PollInterval time.Duration
	// MeterProvider receives the engine's metrics (see metrics.go's
	// list). Nil means the OpenTelemetry global, a no-op until the host
	// installs one.
	MeterProvider metric.MeterProvider
	// EventRetention is how long Purge keeps events. Default 30 days.
	EventRetention time.Duration
	// TombstoneRetention is how long Purge keeps deleted users (and the
	// personal data in their events). Default 30 days.
	TombstoneRetention time.Duration
	// HoldMemberDrops is when a replace of a group's members (a SCIM
	// "replace members", an LDAP group sync) is held for confirmation
	// instead of applied. The zero value holds a replace that removes at
	// least 100 members and more than half of the group.
	HoldMemberDrops DropLimit
	// SecretKeys seal the secrets of registered tenants (LDAP bind
	// passwords, webhook secrets) with AES-256-GCM before the Registry
	// stores them. The first key seals new writes; every key listed opens
	// what it sealed, so a rotation puts the new key first and keeps the
	// old one until every tenant was written again. Without keys a
	// registry write that carries a secret fails with ErrNoSecretKey.
	SecretKeys []SecretKey
	// FollowInterval bounds how long a change another engine made to the
	// Registry takes to reach this one when no RegistryWatcher tells it:
	// the engine reads the registry's revision feed at most this often,
	// and only while it serves requests. Default 500ms.
	FollowInterval time.Duration
}

// Refusal is a request the engine or an adapter refused without changing
// anything: it goes to slog and Config.Audit, not to the event log.
type Refusal struct {
	Time   time.Time
	Origin Origin
	// Action is what was attempted ("jit.login", "user.update", ...).
	Action string
	// Reason says why it was refused, for an administrator.
	Reason string
	// Err is the error the caller got.
	Err error
}

// Engine applies lifecycle intents (create, update, deactivate, reactivate,
// delete, membership changes) from every adapter to the Store, in one
// transaction per intent together with its events. It is the only writer.
// An Engine is safe for concurrent use.
type Engine struct {
	store    Store
	searcher Searcher
	events   EventLog
	kv       KV
	locker   Locker
	reg      *registry

	log          *slog.Logger
	now          func() time.Time
	onChange     func(context.Context, Store, Change) error
	audit        func(context.Context, Refusal)
	maxRetries   int
	scanLimit    int
	pollInterval time.Duration

	eventRetention     time.Duration
	tombstoneRetention time.Duration
	memberDrops        DropLimit

	followEvery time.Duration

	mu      sync.RWMutex
	tenants map[string]*Tenant
	// declaredTokens and declaredDomains index the declared tenants' SCIM
	// token hashes and verified domains.
	declaredTokens  map[TokenHash]tokenKey
	declaredDomains map[string]string
	wake            chan struct{}
	// subs are the best-effort subscribers (Consume without an EventLog).
	subs map[*subscriber]struct{}

	localLocks *localLocker
	localKV    *localKV

	metrics *metrics

	// tenantSet changes whenever a tenant is added or removed (under mu),
	// so that consumers rebuild their set of live tenants only then.
	tenantSet uint64

	// hub tells running consumers which tenants have new events, and
	// remembers the consumer names seen (events.go).
	hub consumerHub
}

// NewEngine validates cfg and returns an Engine. It detects the Store's
// optional capabilities once, and logs a warning for each one it lacks.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("provision: Config.Store is required")
	}
	e := &Engine{
		store:              cfg.Store,
		log:                cfg.Logger,
		now:                cfg.Now,
		onChange:           cfg.OnChange,
		audit:              cfg.Audit,
		maxRetries:         cfg.MaxRetries,
		scanLimit:          cfg.ScanLimit,
		pollInterval:       cfg.PollInterval,
		eventRetention:     cfg.EventRetention,
		tombstoneRetention: cfg.TombstoneRetention,
		tenants:            map[string]*Tenant{},
		declaredTokens:     map[TokenHash]tokenKey{},
		declaredDomains:    map[string]string{},
		followEvery:        cfg.FollowInterval,
		wake:               make(chan struct{}),
		subs:               map[*subscriber]struct{}{},
		localLocks:         newLocalLocker(),
		localKV:            newLocalKV(),
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.metrics = newMetrics(cfg.MeterProvider)
	if e.now == nil {
		e.now = time.Now
	}
	if e.maxRetries < 0 || e.scanLimit < 0 || e.pollInterval < 0 || e.eventRetention < 0 || e.tombstoneRetention < 0 || e.followEvery < 0 {
		return nil, errors.New("provision: Config.MaxRetries, ScanLimit, PollInterval, FollowInterval and the retentions must not be negative")
	}
	if e.followEvery == 0 {
		e.followEvery = 500 * time.Millisecond
	}
	seal, err := newSealer(cfg.SecretKeys)
	if err != nil {
		return nil, err
	}
	if e.eventRetention == 0 {
		e.eventRetention = defaultRetention
	}
	if e.tombstoneRetention == 0 {
		e.tombstoneRetention = defaultRetention
	}
	e.memberDrops = cfg.HoldMemberDrops
	if e.memberDrops == (DropLimit{}) {
		e.memberDrops = DropLimit{Count: 100, Share: 0.5}
	}
	if e.memberDrops.Share < 0 || e.memberDrops.Share > 1 {
		return nil, errors.New("provision: Config.HoldMemberDrops.Share must be between 0 and 1")
	}
	if e.maxRetries == 0 {
		e.maxRetries = 8
	}
	if e.scanLimit == 0 {
		e.scanLimit = 10000
	}
	if e.pollInterval == 0 {
		e.pollInterval = time.Second
	}
	e.searcher, _ = cfg.Store.(Searcher)
	e.events, _ = cfg.Store.(EventLog)
	e.kv, _ = cfg.Store.(KV)
	e.locker, _ = cfg.Store.(Locker)
	if r, ok := cfg.Store.(Registry); ok {
		e.reg = newRegistry(r, seal, e.followEvery)
	}
	if e.events == nil {
		e.log.Warn("provision: the store has no EventLog: events are best-effort, delivered only to consumers running in this process")
	}
	if e.kv == nil {
		e.log.Warn("provision: the store has no KV: replay cache, cursors and plans are kept in process memory, not shared by replicas")
	}
	if e.locker == nil {
		e.log.Warn("provision: the store has no Locker: locks are local to this process")
	}
	for _, t := range cfg.Tenants {
		if err := e.setTenant(t); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// setTenant declares t (Config.Tenants), or replaces the tenant with the
// same ID. It records nothing.
func (e *Engine) setTenant(t Tenant) error {
	if err := validateTenant(t); err != nil {
		return err
	}
	t.Connections = slices.Clone(t.Connections)
	t.VerifiedDomains = slices.Clone(t.VerifiedDomains)
	access, err := compileRules(t.AccessRules)
	if err != nil {
		return err
	}
	t.AccessRules, t.access = slices.Clone(t.AccessRules), access
	for i := range t.Connections {
		t.Connections[i] = cloneConnection(t.Connections[i])
	}
	t.Version, t.Registered = 0, false
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range t.VerifiedDomains {
		if owner, ok := e.declaredDomains[normalizeDomain(d)]; ok && owner != t.ID {
			return &DomainError{Domain: normalizeDomain(d), Owner: owner}
		}
	}
	for _, c := range t.Connections {
		if c.SCIM == nil {
			continue
		}
		for _, h := range c.SCIM.TokenHashes {
			if k, ok := e.declaredTokens[h]; ok && k.tenant != t.ID {
				return &ValidationError{Field: "connection.scim.tokenHashes", Reason: fmt.Sprintf("connection %q of tenant %q shares a token with tenant %q", c.ID, t.ID, k.tenant)}
			}
		}
	}
	if old, ok := e.tenants[t.ID]; ok {
		if !slices.EqualFunc(old.AccessRules, t.AccessRules, sameRule) {
			e.log.Warn("provision: a declared tenant keeps the tenant's access rules; change them with PlanAccessRules and ConfirmPlan", "tenant", t.ID)
		}
		t.AccessRules, t.access = old.AccessRules, old.access
	} else {
		e.tenantSet++
	}
	e.unindexLocked(t.ID)
	e.tenants[t.ID] = &t
	for _, d := range t.VerifiedDomains {
		e.declaredDomains[normalizeDomain(d)] = t.ID
	}
	for _, c := range t.Connections {
		if c.SCIM != nil {
			for _, h := range c.SCIM.TokenHashes {
				e.declaredTokens[h] = tokenKey{t.ID, c.ID}
			}
		}
	}
	return nil
}

func (e *Engine) unindexLocked(id string) {
	old, ok := e.tenants[id]
	if !ok {
		return
	}
	for _, d := range old.VerifiedDomains {
		if e.declaredDomains[normalizeDomain(d)] == id {
			delete(e.declaredDomains, normalizeDomain(d))
		}
	}
	for _, c := range old.Connections {
		if c.SCIM != nil {
			for _, h := range c.SCIM.TokenHashes {
				if e.declaredTokens[h].tenant == id {
					delete(e.declaredTokens, h)
				}
			}
		}
	}
}

// removeTenant forgets the declared tenant: every later call for it fails
// with ErrUnknownTenant (unless it is registered). Its data stays in the
// Store.
func (e *Engine) removeTenant(id string) {
	e.mu.Lock()
	e.unindexLocked(id)
	delete(e.tenants, id)
	e.tenantSet++
	e.mu.Unlock()
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func validateTenant(t Tenant) error {
	if t.ID == "" {
		return &ValidationError{Field: "tenant.id", Reason: "required"}
	}
	seen := map[string]bool{}
	for _, c := range t.Connections {
		switch {
		case c.ID == "":
			return &ValidationError{Field: "connection.id", Reason: "required"}
		case c.ID == APIConnection:
			return &ValidationError{Field: "connection.id", Reason: fmt.Sprintf("%q is reserved for the admin API", APIConnection)}
		case seen[c.ID]:
			return &ValidationError{Field: "connection.id", Reason: fmt.Sprintf("%q is declared twice in tenant %q", c.ID, t.ID)}
		}
		seen[c.ID] = true
		switch c.Kind {
		case KindSCIM, KindSAML, KindLDAP:
		default:
			return &ValidationError{Field: "connection.kind", Reason: fmt.Sprintf("connection %q has unknown kind %q", c.ID, c.Kind)}
		}
		for _, m := range c.Match {
			switch m {
			case MatchNone, MatchUserName, MatchEmail:
			case MatchPairedExternalID:
				if c.PairedWith == "" {
					return &ValidationError{Field: "connection.pairedWith", Reason: fmt.Sprintf("connection %q matches on a paired externalId but names no PairedWith", c.ID)}
				}
			default:
				return &ValidationError{Field: "connection.match", Reason: fmt.Sprintf("connection %q has unknown match rule %q", c.ID, m)}
			}
		}
		if c.JIT != nil {
			for _, d := range c.JIT.AllowedEmailDomains {
				if !validDomain(normalizeDomain(d)) {
					return &ValidationError{Field: "connection.jit.allowedEmailDomains", Reason: fmt.Sprintf("connection %q: %q is not a domain name", c.ID, d)}
				}
			}
		}
	}
	for _, c := range t.Connections {
		if c.PairedWith != "" && !seen[c.PairedWith] {
			return &ValidationError{Field: "connection.pairedWith", Reason: fmt.Sprintf("connection %q is paired with undeclared connection %q", c.ID, c.PairedWith)}
		}
	}
	return nil
}

// scope is what every call resolves first: the tenant and the calling
// connection (a pseudo-connection of KindAPI for admin calls).
type scope struct {
	origin Origin
	tenant *Tenant
	conn   Connection
}

func (s scope) isAdmin() bool { return s.conn.Kind == KindAPI }

func (e *Engine) scope(ctx context.Context, o Origin) (scope, error) {
	t, err := e.lookupTenant(ctx, o.TenantID)
	if err != nil {
		return scope{}, err
	}
	id := o.connection()
	o.ConnectionID = id
	if id == APIConnection {
		return scope{origin: o, tenant: t, conn: Connection{ID: APIConnection, Kind: KindAPI}}, nil
	}
	for _, c := range t.Connections {
		if c.ID == id {
			if c.Disabled {
				return scope{}, fmt.Errorf("%w: connection %q of tenant %q is disabled", ErrForbidden, id, t.ID)
			}
			return scope{origin: o, tenant: t, conn: c}, nil
		}
	}
	return scope{}, fmt.Errorf("%w: tenant %q has no connection %q", ErrForbidden, t.ID, id)
}

func (s scope) connectionByID(id string) (Connection, bool) {
	if id == APIConnection {
		return Connection{ID: APIConnection, Kind: KindAPI}, true
	}
	for _, c := range s.tenant.Connections {
		if c.ID == id {
			return c, true
		}
	}
	return Connection{}, false
}

// mayWrite decides whether the calling connection may change a resource
// owned by owner; adopt is true when the write also moves ownership to the
// caller.
func (s scope) mayWrite(owner string) (adopt bool, err error) {
	if owner == s.conn.ID || s.isAdmin() {
		return false, nil
	}
	oc, known := s.connectionByID(owner)
	if !known {
		// The owning connection is no longer declared: its resources are
		// orphans that a directory may adopt.
		oc = Connection{ID: owner, Kind: KindAPI}
	}
	var ok bool
	if s.tenant.Adopt != nil {
		ok = s.tenant.Adopt(s.conn, oc)
	} else {
		ok = s.conn.Kind == KindSCIM && (oc.Kind == KindSAML || oc.Kind == KindAPI)
	}
	if !ok {
		return false, &OwnerError{Owner: owner, Writer: s.conn.ID}
	}
	return true, nil
}

func (s scope) matchRules() []MatchRule {
	if len(s.conn.Match) > 0 {
		return s.conn.Match
	}
	switch {
	case s.conn.Kind == KindSCIM:
		return []MatchRule{MatchUserName}
	case s.conn.Kind == KindSAML && s.conn.PairedWith != "":
		// SCIM and SSO from the same identity provider: the login's
		// subject is the directory's externalId.
		return []MatchRule{MatchPairedExternalID}
	}
	return nil
}

// recorder collects the changes of one transaction.
type recorder struct {
	changes []Change
}

func (r *recorder) add(c Change) { r.changes = append(r.changes, c) }

// atomically runs fn in one Store transaction together with the OnChange
// hook and the events of the changes fn recorded, retrying version
// conflicts unless pinned (at least Config.MaxRetries times and for
// conflictPatience; then ErrUnavailable, not ErrVersionConflict).
func (e *Engine) atomically(ctx context.Context, s scope, pinned bool, fn func(ctx context.Context, tx Store, rec *recorder) error) error {
	var appended []Event
	var committed []Change
	var err error
	start := time.Now()
	for attempt := 0; ; attempt++ {
		appended, committed = nil, nil
		err = e.store.Atomically(ctx, func(ctx context.Context, tx Store) error {
			rec := &recorder{}
			if err := fn(ctx, tx, rec); err != nil {
				return err
			}
			if len(rec.changes) == 0 {
				return nil
			}
			if e.onChange != nil {
				for _, c := range rec.changes {
					if err := e.onChange(ctx, tx, c); err != nil {
						return fmt.Errorf("provision: OnChange: %w", err)
					}
				}
			}
			evs := make([]Event, 0, len(rec.changes))
			now := e.now().UTC()
			for _, c := range rec.changes {
				evs = append(evs, eventOf(c, now))
			}
			if el, ok := tx.(EventLog); ok {
				out, err := el.AppendEvents(ctx, s.tenant.ID, evs)
				if err != nil {
					return fmt.Errorf("provision: append events: %w", err)
				}
				evs = out
			}
			appended, committed = evs, rec.changes
			return nil
		})
		if err == nil || pinned || !errors.Is(err, ErrVersionConflict) {
			break
		}
		if attempt >= e.maxRetries && time.Since(start) >= conflictPatience {
			// The caller asked for no version: not a conflict for it.
			err = fmt.Errorf("provision: the resource kept changing for %v (%d attempts; %v): %w", time.Since(start).Round(time.Millisecond), attempt+1, err, ErrUnavailable)
			break
		}
		e.log.DebugContext(ctx, "provision: retrying after a version conflict", "tenant", s.tenant.ID, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(conflictBackoff(attempt)):
		}
	}
	if err != nil {
		return err
	}
	if len(committed) > 0 {
		e.afterCommit(appended)
	}
	return nil
}

func eventOf(c Change, now time.Time) Event {
	ev := Event{
		Kind:          c.Kind,
		TenantID:      c.Origin.TenantID,
		ConnectionID:  c.Origin.ConnectionID,
		Actor:         c.Origin.Actor,
		RequestID:     c.Origin.RequestID,
		Time:          now,
		Fields:        c.Fields,
		User:          c.UserAfter,
		Group:         c.GroupAfter,
		PreviousUser:  c.UserBefore,
		PreviousGroup: c.GroupBefore,
		Members:       c.Members,
		Connection:    c.Connection,
	}
	if ev.User != nil {
		u := cloneUser(*ev.User)
		u.ExternalID = ""
		ev.User = &u
	}
	if ev.PreviousUser != nil {
		u := cloneUser(*ev.PreviousUser)
		u.ExternalID = ""
		ev.PreviousUser = &u
	}
	return ev
}

func (e *Engine) refuse(ctx context.Context, o Origin, action, reason string, err error) {
	e.log.InfoContext(ctx, "provision: refused", "tenant", o.TenantID, "connection", o.ConnectionID, "action", action, "reason", reason)
	if e.audit != nil {
		e.audit(ctx, Refusal{Time: e.now().UTC(), Origin: o, Action: action, Reason: reason, Err: err})
	}
}
