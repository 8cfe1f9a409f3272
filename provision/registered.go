package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNoRegistry is the error of a registry call (PutTenant,
// PutConnection, ...) on an engine whose Store has no Registry.
var ErrNoRegistry = errors.New("provision: the store has no Registry: tenants are declared configuration only")

// ErrDeclared is the error of a registry write to a tenant that the host
// declared (Config.Tenants): a declared tenant is changed by
// the host's configuration, never through the registry.
var ErrDeclared = errors.New("provision: the tenant is declared by the host's configuration")

// DomainError is a verified domain another tenant has claimed. It
// matches ErrAlreadyExists.
type DomainError struct {
	Domain string
	// Owner is the tenant that holds the domain.
	Owner string
}

// Error names the domain.
func (e *DomainError) Error() string {
	return fmt.Sprintf("provision: domain %q is verified by another tenant", e.Domain)
}

// Is matches ErrAlreadyExists.
func (e *DomainError) Is(target error) bool { return target == ErrAlreadyExists }

// registry is the engine's view of the Store's Registry: a cache of the
// registered tenants read so far, refreshed from the revision feed at
// most every followEvery (and at once when FollowRegistry hears a notification).
type registry struct {
	store       Registry
	sealer      *sealer
	followEvery time.Duration

	mu      sync.Mutex
	tenants map[string]*regEntry
	// seen is the latest revision seen in the feed per tenant, so that a
	// load that raced a change is not cached over it.
	seen map[string]int64
	// tokens caches token hash -> connection for registered tenants.
	tokens   map[TokenHash]tokenKey
	rev      int64
	checked  time.Time
	started  bool
	inflight chan struct{}
	// watchers are woken after a refresh that saw changes.
	watch chan struct{}
}

type regEntry struct {
	t   *Tenant // nil: known not to be registered
	rev int64
}

type tokenKey struct{ tenant, conn string }

// negativeCap bounds the cache of tenant ids known not to exist (URLs
// carry tenant ids an attacker chooses).
const negativeCap = 10000

func newRegistry(r Registry, s *sealer, every time.Duration) *registry {
	return &registry{
		store: r, sealer: s, followEvery: every,
		tenants: map[string]*regEntry{}, seen: map[string]int64{}, tokens: map[TokenHash]tokenKey{},
		watch: make(chan struct{}),
	}
}

// tenantDoc is a registered tenant as the engine encodes it in
// TenantRecord.Body: secrets sealed, never in clear.
type tenantDoc struct {
	Name            string          `json:"name,omitempty"`
	VerifiedDomains []string        `json:"verifiedDomains,omitempty"`
	RelinkOnRehire  bool            `json:"relinkOnRehire,omitempty"`
	AccessRules     []AccessRule    `json:"accessRules,omitempty"`
	Webhook         *webhookDoc     `json:"webhook,omitempty"`
	Connections     []connectionDoc `json:"connections,omitempty"`
}

type webhookDoc struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"` // sealed
}

type connectionDoc struct {
	Connection
	// LDAPBindPassword and LDAPClientKey are the sealed
	// LDAP.BindPassword and LDAP.TLSClientKey.
	LDAPBindPassword string `json:"ldapBindPassword,omitempty"`
	LDAPClientKey    string `json:"ldapClientKey,omitempty"`
}

func aadOf(tenant, conn, field string) string { return tenant + "\x00" + conn + "\x00" + field }

func (r *registry) encode(t Tenant) (TenantRecord, error) {
	doc := tenantDoc{Name: t.Name, VerifiedDomains: t.VerifiedDomains, RelinkOnRehire: t.RelinkOnRehire, AccessRules: t.AccessRules}
	if t.Webhook != nil {
		sealed, err := r.sealer.seal(t.Webhook.Secret.Reveal(), aadOf(t.ID, "", "webhook.secret"))
		if err != nil {
			return TenantRecord{}, fmt.Errorf("provision: tenant %q webhook secret: %w", t.ID, err)
		}
		doc.Webhook = &webhookDoc{URL: t.Webhook.URL, Secret: sealed}
	}
	rec := TenantRecord{TenantID: t.ID, Domains: t.VerifiedDomains}
	for _, c := range t.Connections {
		cd := connectionDoc{Connection: cloneConnection(c)}
		if cd.LDAP != nil && !cd.LDAP.BindPassword.IsZero() {
			sealed, err := r.sealer.seal(cd.LDAP.BindPassword.Reveal(), aadOf(t.ID, c.ID, "ldap.bindPassword"))
			if err != nil {
				return TenantRecord{}, fmt.Errorf("provision: tenant %q connection %q bind password: %w", t.ID, c.ID, err)
			}
			cd.LDAPBindPassword = sealed
			cd.LDAP.BindPassword = Secret{}
		}
		if cd.LDAP != nil && !cd.LDAP.TLSClientKey.IsZero() {
			sealed, err := r.sealer.seal(cd.LDAP.TLSClientKey.Reveal(), aadOf(t.ID, c.ID, "ldap.tlsClientKey"))
			if err != nil {
				return TenantRecord{}, fmt.Errorf("provision: tenant %q connection %q client key: %w", t.ID, c.ID, err)
			}
			cd.LDAPClientKey = sealed
			cd.LDAP.TLSClientKey = Secret{}
		}
		if c.SCIM != nil {
			for _, h := range c.SCIM.TokenHashes {
				rec.Tokens = append(rec.Tokens, TokenRef{Hash: h, ConnectionID: c.ID})
			}
		}
		doc.Connections = append(doc.Connections, cd)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return TenantRecord{}, fmt.Errorf("provision: encode tenant %q: %w", t.ID, err)
	}
	rec.Body = body
	return rec, nil
}

func (r *registry) decode(rec TenantRecord) (*Tenant, error) {
	var doc tenantDoc
	if err := json.Unmarshal(rec.Body, &doc); err != nil {
		return nil, fmt.Errorf("provision: decode registered tenant %q: %w", rec.TenantID, err)
	}
	t := &Tenant{
		ID: rec.TenantID, Name: doc.Name, VerifiedDomains: doc.VerifiedDomains, RelinkOnRehire: doc.RelinkOnRehire,
		AccessRules: doc.AccessRules, Version: rec.Version, Registered: true,
	}
	if doc.Webhook != nil {
		clear, err := r.sealer.open(doc.Webhook.Secret, aadOf(t.ID, "", "webhook.secret"))
		if err != nil {
			return nil, fmt.Errorf("provision: tenant %q webhook secret: %w", t.ID, err)
		}
		t.Webhook = &WebhookSettings{URL: doc.Webhook.URL, Secret: NewSecret(clear)}
	}
	for _, cd := range doc.Connections {
		c := cd.Connection
		if cd.LDAPBindPassword != "" && c.LDAP != nil {
			clear, err := r.sealer.open(cd.LDAPBindPassword, aadOf(t.ID, c.ID, "ldap.bindPassword"))
			if err != nil {
				return nil, fmt.Errorf("provision: tenant %q connection %q bind password: %w", t.ID, c.ID, err)
			}
			c.LDAP.BindPassword = NewSecret(clear)
		}
		if cd.LDAPClientKey != "" && c.LDAP != nil {
			clear, err := r.sealer.open(cd.LDAPClientKey, aadOf(t.ID, c.ID, "ldap.tlsClientKey"))
			if err != nil {
				return nil, fmt.Errorf("provision: tenant %q connection %q client key: %w", t.ID, c.ID, err)
			}
			c.LDAP.TLSClientKey = NewSecret(clear)
		}
		t.Connections = append(t.Connections, c)
	}
	access, err := compileRules(t.AccessRules)
	if err != nil {
		return nil, fmt.Errorf("provision: registered tenant %q: %w", t.ID, err)
	}
	t.access = access
	return t, nil
}

func cloneConnection(c Connection) Connection {
	c.Match = slices.Clone(c.Match)
	c.Domains = slices.Clone(c.Domains)
	if c.SCIM != nil {
		s := *c.SCIM
		s.TokenHashes = slices.Clone(s.TokenHashes)
		c.SCIM = &s
	}
	if c.SAML != nil {
		s := *c.SAML
		c.SAML = &s
	}
	if c.LDAP != nil {
		s := *c.LDAP
		c.LDAP = &s
	}
	if c.JIT != nil {
		s := *c.JIT
		s.AllowedEmailDomains = slices.Clone(s.AllowedEmailDomains)
		c.JIT = &s
	}
	return c
}

func cloneTenant(t *Tenant) Tenant {
	c := *t
	c.Connections = make([]Connection, len(t.Connections))
	for i, cn := range t.Connections {
		c.Connections[i] = cloneConnection(cn)
	}
	c.VerifiedDomains = slices.Clone(t.VerifiedDomains)
	c.AccessRules = slices.Clone(t.AccessRules)
	if t.Webhook != nil {
		w := *t.Webhook
		c.Webhook = &w
	}
	return c
}

// refresh applies the revision feed to the cache when it was last read
// more than followEvery ago (or force), so that a change made by another
// engine is seen within followEvery. One refresh runs at a time; callers
// arriving meanwhile wait for it.
func (r *registry) refresh(ctx context.Context, now time.Time, force bool) error {
	r.mu.Lock()
	for {
		if !force && r.started && now.Sub(r.checked) < r.followEvery {
			r.mu.Unlock()
			return nil
		}
		if r.inflight == nil {
			break
		}
		wait := r.inflight
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		if force {
			// The refresh that ran meanwhile may have started before the
			// change the caller wants to see: run one more.
			force = false
			r.mu.Lock()
			if r.inflight == nil {
				break
			}
			continue
		}
		r.mu.Lock()
	}
	done := make(chan struct{})
	r.inflight = done
	after := r.rev
	first := !r.started
	r.mu.Unlock()

	var changes []RegistryChange
	var err error
	if first {
		// Nothing is cached yet: follow from the current revision on,
		// without reading the feed of every tenant.
		after, err = r.store.RegistryRev(ctx)
	}
	for err == nil {
		var page []RegistryChange
		page, err = r.store.RegistryChanges(ctx, after, 1000)
		if err != nil {
			break
		}
		changes = append(changes, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Rev
	}

	r.mu.Lock()
	r.inflight = nil
	close(done)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("provision: follow the registry: %w", err)
	}
	if first && after > r.rev {
		r.rev = after
	}
	r.started, r.checked = true, now
	for _, c := range changes {
		r.applyLocked(c.TenantID, c.Rev)
		if c.Rev > r.rev {
			r.rev = c.Rev
		}
	}
	var wake chan struct{}
	if len(changes) > 0 && !first {
		wake = r.watch
		r.watch = make(chan struct{})
	}
	r.mu.Unlock()
	if wake != nil {
		close(wake)
	}
	return nil
}

// applyLocked forgets what the cache holds of tenant id older than rev.
func (r *registry) applyLocked(id string, rev int64) {
	if rev > r.seen[id] {
		r.seen[id] = rev
	}
	e, ok := r.tenants[id]
	if !ok || (e.t != nil && e.rev >= rev) {
		return
	}
	delete(r.tenants, id)
	if e.t == nil {
		return
	}
	// Only the forgotten tenant's own hashes are cached for it: drop
	// those, at a cost that does not grow with the number of tenants.
	for _, c := range e.t.Connections {
		if c.SCIM == nil {
			continue
		}
		for _, h := range c.SCIM.TokenHashes {
			if r.tokens[h].tenant == id {
				delete(r.tokens, h)
			}
		}
	}
}

// get returns the registered tenant id (nil when it is not registered).
func (r *registry) get(ctx context.Context, id string, now time.Time) (*Tenant, error) {
	if err := r.refresh(ctx, now, false); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if e, ok := r.tenants[id]; ok {
		r.mu.Unlock()
		return e.t, nil
	}
	revAtStart := r.rev
	r.mu.Unlock()
	rec, err := r.store.GetTenantRecord(ctx, id)
	var t *Tenant
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("provision: read registered tenant %q: %w", id, err)
	default:
		if t, err = r.decode(rec); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t != nil && rec.Rev >= r.seen[id] {
		r.tenants[id] = &regEntry{t: t, rev: rec.Rev}
		for _, c := range t.Connections {
			if c.SCIM != nil {
				for _, h := range c.SCIM.TokenHashes {
					r.tokens[h] = tokenKey{t.ID, c.ID}
				}
			}
		}
	} else if t == nil && r.seen[id] <= revAtStart {
		if len(r.tenants) >= negativeCap {
			for k, e := range r.tenants {
				if e.t == nil {
					delete(r.tenants, k)
					break
				}
			}
		}
		r.tenants[id] = &regEntry{}
	}
	return t, nil
}

// forget drops what the cache holds of tenant id (after a local write).
func (r *registry) forget(id string, rev int64) {
	r.mu.Lock()
	r.applyLocked(id, rev)
	r.mu.Unlock()
}

// registryChanged tells the engine that the registry changed (a
// PostgreSQL NOTIFY on the store's registry channel, say): it reads the
// revision feed at once instead of at its next check, so that every
// engine sees a change within milliseconds. Without calls to it, an
// engine sees another's change within Config.FollowInterval.
func (e *Engine) registryChanged(ctx context.Context) error {
	if e.reg == nil {
		return nil
	}
	return e.reg.refresh(ctx, e.now(), true)
}

// lookupTenant returns the declared tenant id, else the registered one.
func (e *Engine) lookupTenant(ctx context.Context, id string) (*Tenant, error) {
	e.mu.RLock()
	t, ok := e.tenants[id]
	e.mu.RUnlock()
	if ok {
		return t, nil
	}
	if e.reg != nil && id != "" {
		t, err := e.reg.get(ctx, id, e.now())
		if err != nil {
			return nil, err
		}
		if t != nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownTenant, id)
}

// Tenant returns the tenant with id: declared by the host, or registered
// in the Store's Registry (read through the engine's cache, which follows
// changes made by every engine within Config.FollowInterval).
func (e *Engine) Tenant(ctx context.Context, id string) (Tenant, error) {
	t, err := e.lookupTenant(ctx, id)
	if err != nil {
		return Tenant{}, err
	}
	return cloneTenant(t), nil
}

// Connection returns connection connID of tenant tenantID.
func (e *Engine) Connection(ctx context.Context, tenantID, connID string) (Connection, error) {
	t, err := e.lookupTenant(ctx, tenantID)
	if err != nil {
		return Connection{}, err
	}
	for _, c := range t.Connections {
		if c.ID == connID {
			return cloneConnection(c), nil
		}
	}
	return Connection{}, fmt.Errorf("%w: tenant %q has no connection %q", ErrNotFound, tenantID, connID)
}

// ConnectionByToken returns the tenant and the SCIM connection whose
// SCIMSettings.TokenHashes hold hash, among the declared tenants and the
// registered ones (an indexed lookup, then the engine's cache: its cost
// does not grow with the number of tenants). An unknown hash, a disabled
// connection or a connection deleted meanwhile is ErrNotFound.
func (e *Engine) ConnectionByToken(ctx context.Context, hash TokenHash) (tenantID, connectionID string, err error) {
	e.mu.RLock()
	k, ok := e.declaredTokens[hash]
	e.mu.RUnlock()
	if !ok && e.reg != nil {
		if err := e.reg.refresh(ctx, e.now(), false); err != nil {
			return "", "", err
		}
		e.reg.mu.Lock()
		k, ok = e.reg.tokens[hash]
		e.reg.mu.Unlock()
		if !ok {
			k.tenant, k.conn, err = e.reg.store.ConnectionByTokenHash(ctx, hash)
			if errors.Is(err, ErrNotFound) {
				return "", "", fmt.Errorf("%w: no connection has this token", ErrNotFound)
			}
			if err != nil {
				return "", "", fmt.Errorf("provision: token lookup: %w", err)
			}
		}
	}
	if k.tenant == "" {
		return "", "", fmt.Errorf("%w: no connection has this token", ErrNotFound)
	}
	// The tenant as the engine knows it now decides: a connection
	// deleted, disabled or rotated since is refused.
	t, err := e.lookupTenant(ctx, k.tenant)
	if err != nil {
		if errors.Is(err, ErrUnknownTenant) {
			return "", "", fmt.Errorf("%w: no connection has this token", ErrNotFound)
		}
		return "", "", err
	}
	for _, c := range t.Connections {
		if c.ID == k.conn && c.Kind == KindSCIM && !c.Disabled && c.SCIM != nil && slices.Contains(c.SCIM.TokenHashes, hash) {
			return t.ID, c.ID, nil
		}
	}
	return "", "", fmt.Errorf("%w: no connection has this token", ErrNotFound)
}

// TenantByDomain returns the tenant that verified the e-mail domain
// (declared or registered), ErrNotFound when none did.
func (e *Engine) TenantByDomain(ctx context.Context, domain string) (string, error) {
	domain = normalizeDomain(domain)
	e.mu.RLock()
	id, ok := e.declaredDomains[domain]
	e.mu.RUnlock()
	if ok {
		return id, nil
	}
	if e.reg != nil {
		id, err := e.reg.store.TenantByDomain(ctx, domain)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("provision: domain lookup: %w", err)
		}
	}
	return "", fmt.Errorf("%w: no tenant verified domain %q", ErrNotFound, domain)
}

// Discover is home realm discovery: given the e-mail address a person
// typed, the tenant that verified its domain and that tenant's enabled
// connections of kind whose Domains cover it (the domain or a parent of
// it), in the tenant's order. No tenant: ErrNotFound. A tenant with no
// such connection: the tenant and none.
func (e *Engine) Discover(ctx context.Context, email string, kind ConnectionKind) (Tenant, []Connection, error) {
	domain := domainOf(email)
	if domain == "" {
		return Tenant{}, nil, &ValidationError{Field: "email", Reason: fmt.Sprintf("%q is not an e-mail address", email)}
	}
	var tid string
	var err error
	for d := domain; d != ""; d = parentDomain(d) {
		if tid, err = e.TenantByDomain(ctx, d); err == nil {
			break
		}
		if !errors.Is(err, ErrNotFound) {
			return Tenant{}, nil, err
		}
	}
	if tid == "" {
		return Tenant{}, nil, err
	}
	t, err := e.Tenant(ctx, tid)
	if err != nil {
		return Tenant{}, nil, err
	}
	return t, t.ConnectionsFor(email, kind), nil
}

// ConnectionsFor returns the tenant's enabled connections of kind whose
// Domains cover the address's domain, which must be one of the tenant's
// VerifiedDomains (or below one): an address elsewhere has none.
func (t Tenant) ConnectionsFor(email string, kind ConnectionKind) []Connection {
	domain := domainOf(email)
	if domain == "" || !coveredBy(domain, t.VerifiedDomains) {
		return nil
	}
	var out []Connection
	for _, c := range t.Connections {
		if c.Kind == kind && !c.Disabled && coveredBy(domain, c.Domains) {
			out = append(out, cloneConnection(c))
		}
	}
	return out
}

func domainOf(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return ""
	}
	return normalizeDomain(email[at+1:])
}

func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")), ".")
}

func parentDomain(d string) string {
	i := strings.IndexByte(d, '.')
	if i < 0 {
		return ""
	}
	p := d[i+1:]
	if !strings.Contains(p, ".") {
		return "" // never a bare top-level domain
	}
	return p
}

// coveredBy reports whether domain is one of domains or below one.
func coveredBy(domain string, domains []string) bool {
	for _, d := range domains {
		d = normalizeDomain(d)
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// declaredDomainOwner returns the declared tenant holding domain, or "".
func (e *Engine) declaredDomainOwner(domain string) string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.declaredDomains[normalizeDomain(domain)]
}
