// Package jit provisions users just in time, from what an identity
// provider says about a person when they log in. It is protocol-neutral:
// package saml maps a SAML assertion to a provision.Identity and calls it,
// and a host with its own SAML or OpenID Connect code can call it too.
//
// A Provisioner knows the just-in-time switches of each login connection
// (create users, update them on every login, the allowed e-mail domains,
// whether the login may assign roles) and hands the identity to the
// provision.Engine, which resolves it in one transaction: through the
// connection's Link (keyed on the stable subject, never on e-mail), else by
// the connection's match rules on first contact (provision.Connection.Match:
// a paired SCIM directory's externalId, the userName, or an e-mail address
// in a verified domain), else by creating the user when allowed.
//
// A deactivated or deleted user is refused with ErrDeprovisioned, and is
// neither updated nor reactivated: only the connection that owns the user
// (or an admin call) brings it back. Every refusal changes nothing, and is
// logged and handed to the engine's audit hook (provision.Config.Audit)
// with its reason.
//
//	p, err := jit.New(jit.Config{
//		Engine: engine,
//		Connections: []jit.Settings{{
//			TenantID: "acme", ConnectionID: "okta-saml",
//			Create: true, Update: true,
//			AllowedEmailDomains: []string{"acme.example"},
//		}},
//	})
//	...
//	user, err := p.Provision(ctx, jit.Connection{TenantID: "acme", ID: "okta-saml"}, identity)
//	if errors.Is(err, jit.ErrDeprovisioned) {
//		// show "your account is disabled"
//	}
package jit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/idprov/idprov/provision"
)

// ErrDeprovisioned is the refusal of a login whose identity resolves to a
// deactivated or deleted user. It is provision.ErrDeprovisioned itself, so
// errors.Is matches either name.
var ErrDeprovisioned = provision.ErrDeprovisioned

// Refusal kinds besides ErrDeprovisioned. A refused login's error matches
// one of them with errors.Is, and is a *RefusedError.
var (
	// ErrNoAccount: no user matched and the connection may not create one.
	ErrNoAccount = errors.New("jit: no account and creation is off")
	// ErrEmailDomain: the login's e-mail address is missing or outside the
	// connection's allowed domains.
	ErrEmailDomain = errors.New("jit: e-mail domain not allowed")
	// ErrNoSubject: the identity has no stable external id to key on.
	ErrNoSubject = errors.New("jit: no stable subject")
	// ErrUnknownConnection: the Provisioner has no settings for the
	// connection, or the engine does not know it (or it is disabled).
	ErrUnknownConnection = errors.New("jit: unknown connection")
	// ErrConflict: the identity would take a userName or link that
	// another user holds.
	ErrConflict = errors.New("jit: conflicts with an existing user")
	// ErrInvalidIdentity: the identity is missing a required attribute or
	// has a malformed one.
	ErrInvalidIdentity = errors.New("jit: invalid identity")
)

// RefusedError is a login the Provisioner refused. Nothing was changed,
// and the refusal was already logged and audited (provision.Engine.Refuse),
// so a caller must not report it again. Reason is for administrators;
// never show it to the browser.
type RefusedError struct {
	// Kind is one of the sentinels: ErrDeprovisioned, ErrNoAccount,
	// ErrEmailDomain, ErrNoSubject, ErrUnknownConnection, ErrConflict,
	// ErrInvalidIdentity.
	Kind error
	// Reason says why, for the audit trail.
	Reason string
	// Err is the underlying error, when there is one.
	Err error
}

// Error says why the login was refused.
func (e *RefusedError) Error() string { return "jit: login refused: " + e.Reason }

// Unwrap returns the kind and the underlying error, so errors.Is matches
// both (for ErrDeprovisioned, provision.ErrDeprovisioned too).
func (e *RefusedError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Connection names a login connection: a tenant and one of its
// connections.
type Connection struct {
	TenantID string
	ID       string
}

// Settings are the just-in-time switches of one login connection, for a
// host that declares them to the Provisioner (SetConnection). A
// connection that carries provision.JITSettings (a registered one) needs
// none: the Provisioner reads them from the engine. The first-contact
// match rule is the engine's: provision.Connection.Match and PairedWith
// of the same connection.
type Settings struct {
	// TenantID and ConnectionID name the connection. The engine must know
	// it (provision.Tenant.Connections). Required.
	TenantID     string
	ConnectionID string
	// Create lets a login create a user when no Link and no match rule
	// found one. When a SCIM directory manages the tenant, leave it off:
	// the directory creates, and logins only link and update.
	Create bool
	// Update writes the login's attributes to the user on every login (a
	// user another connection owns, such as a SCIM directory, is resolved
	// but never written).
	Update bool
	// AllowedEmailDomains, when not empty, refuses every login (new or
	// returning user) whose primary e-mail address is missing or outside
	// these domains (compared case-insensitively, exact domain).
	AllowedEmailDomains []string
	// Roles lets the login's roles become the user's direct roles
	// (provision.Role Source "direct"). Off: the login's roles are dropped
	// and an update leaves the user's roles as they are.
	Roles bool
}

// Config configures a Provisioner.
type Config struct {
	// Engine applies the identities. Required.
	Engine *provision.Engine
	// Connections are the login connections' settings. More can be set
	// with SetConnection.
	Connections []Settings
	// Logger receives refusals and failures. Nil discards them (the
	// engine's Audit hook still gets every refusal).
	Logger *slog.Logger
}

// Provisioner provisions users from logins. It is safe for concurrent
// use.
type Provisioner struct {
	engine *provision.Engine
	log    *slog.Logger

	mu    sync.RWMutex
	conns map[Connection]Settings
}

// New validates cfg and returns a Provisioner.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Engine == nil {
		return nil, errors.New("jit: Config.Engine is required")
	}
	p := &Provisioner{engine: cfg.Engine, log: cfg.Logger, conns: map[Connection]Settings{}}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, s := range cfg.Connections {
		if err := p.SetConnection(s); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// SetConnection declares the settings of a connection, or replaces them.
func (p *Provisioner) SetConnection(s Settings) error {
	if s.TenantID == "" || s.ConnectionID == "" {
		return errors.New("jit: Settings.TenantID and ConnectionID are required")
	}
	for i, d := range s.AllowedEmailDomains {
		d = strings.TrimPrefix(strings.TrimSpace(d), "@")
		if d == "" || strings.ContainsAny(d, "@ ") {
			return fmt.Errorf("jit: connection %q: invalid allowed e-mail domain %q", s.ConnectionID, s.AllowedEmailDomains[i])
		}
	}
	s.AllowedEmailDomains = slices.Clone(s.AllowedEmailDomains)
	for i, d := range s.AllowedEmailDomains {
		s.AllowedEmailDomains[i] = strings.TrimPrefix(strings.TrimSpace(d), "@")
	}
	p.mu.Lock()
	p.conns[Connection{TenantID: s.TenantID, ID: s.ConnectionID}] = s
	p.mu.Unlock()
	return nil
}

// RemoveConnection forgets a connection's settings: its logins are
// refused from then on.
func (p *Provisioner) RemoveConnection(c Connection) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Settings returns the settings declared for connection c with
// SetConnection (not those the engine's connection carries).
func (p *Provisioner) Settings(c Connection) (Settings, bool) {
	p.mu.RLock()
	s, ok := p.conns[c]
	p.mu.RUnlock()
	return s, ok
}

// settings returns c's settings: those declared with SetConnection, else
// the JIT settings of the engine's connection (a registered SAML
// connection carries them; one without JITSettings only links and
// matches: it neither creates nor updates).
func (p *Provisioner) settings(ctx context.Context, c Connection) (Settings, bool, error) {
	if s, ok := p.Settings(c); ok {
		return s, true, nil
	}
	pc, err := p.engine.Connection(ctx, c.TenantID, c.ID)
	if errors.Is(err, provision.ErrNotFound) || errors.Is(err, provision.ErrUnknownTenant) {
		return Settings{}, false, nil
	}
	if err != nil {
		return Settings{}, false, err
	}
	if pc.JIT == nil && pc.Kind != provision.KindSAML {
		return Settings{}, false, nil
	}
	s := Settings{TenantID: c.TenantID, ConnectionID: c.ID}
	if j := pc.JIT; j != nil {
		s.Create, s.Update, s.Roles = j.Create, j.Update, j.Roles
		for _, d := range j.AllowedEmailDomains {
			s.AllowedEmailDomains = append(s.AllowedEmailDomains, strings.TrimPrefix(strings.TrimSpace(d), "@"))
		}
	}
	return s, true, nil
}

// Provision resolves the person who logged in through connection c to the
// tenant's user, creating or updating it as c's settings allow, and
// returns the active user to start a session for.
//
// A refusal is a *RefusedError matching one of the sentinels
// (ErrDeprovisioned, ErrNoAccount, ErrEmailDomain, ErrNoSubject,
// ErrUnknownConnection, ErrConflict, ErrInvalidIdentity) with errors.Is;
// it changed nothing and was already logged and audited. Any other error
// is a failure (the store is unavailable, the context ended) and may be
// retried.
//
// Two first logins of the same person at once make one user: the engine's
// transaction and the store's uniqueness let one create, and the other is
// retried once and resolves through the Link the first one wrote.
func (p *Provisioner) Provision(ctx context.Context, c Connection, id provision.Identity) (provision.User, error) {
	o := provision.Origin{TenantID: c.TenantID, ConnectionID: c.ID, Actor: "jit"}
	s, ok, err := p.settings(ctx, c)
	if err != nil {
		return provision.User{}, fmt.Errorf("jit: settings of %s/%s: %w", c.TenantID, c.ID, err)
	}
	if !ok {
		return provision.User{}, p.refuse(ctx, o, ErrUnknownConnection, "no just-in-time settings for the connection", nil)
	}
	if id.ConnectionID == "" {
		id.ConnectionID = c.ID
	}
	if id.ConnectionID != c.ID {
		return provision.User{}, p.refuse(ctx, o, ErrInvalidIdentity, fmt.Sprintf("identity of connection %q given for connection %q", id.ConnectionID, c.ID), nil)
	}
	id.ExternalID = strings.TrimSpace(id.ExternalID)
	if id.ExternalID == "" {
		return provision.User{}, p.refuse(ctx, o, ErrNoSubject, "the login has no stable subject (external id)", nil)
	}
	if len(s.AllowedEmailDomains) > 0 {
		email := id.User.PrimaryEmail()
		if !domainAllowed(email, s.AllowedEmailDomains) {
			return provision.User{}, p.refuse(ctx, o, ErrEmailDomain, fmt.Sprintf("e-mail %q is not in the allowed domains %v", email, s.AllowedEmailDomains), nil)
		}
	}
	id.User.Active = true
	id.User.ID, id.User.Owner, id.User.ExternalID = "", "", ""
	if s.Roles {
		id.User.Roles = directRoles(id.User.Roles)
	} else {
		id.User.Roles = nil
	}
	opts := provision.ProvisionOptions{Create: s.Create, Update: s.Update, KeepRoles: !s.Roles}

	u, res, err := p.engine.ProvisionIdentity(ctx, o, id, opts)
	if err != nil && s.Create && errors.Is(err, provision.ErrAlreadyExists) && ctx.Err() == nil {
		// Another login of the same person may have created the user
		// (and its Link) between our lookup and our insert: resolve again.
		u, res, err = p.engine.ProvisionIdentity(ctx, o, id, opts)
	}
	if err != nil {
		return provision.User{}, p.classify(ctx, o, id, err)
	}
	p.log.InfoContext(ctx, "jit: login provisioned", "tenant", c.TenantID, "connection", c.ID, "user", u.ID, "result", string(res))
	return u, nil
}

// classify turns an engine error into a refusal (audited) or a failure.
func (p *Provisioner) classify(ctx context.Context, o provision.Origin, id provision.Identity, err error) error {
	switch {
	case errors.Is(err, provision.ErrDeprovisioned):
		// The engine has already logged and audited this refusal.
		return &RefusedError{Kind: ErrDeprovisioned, Reason: err.Error(), Err: err}
	case errors.Is(err, provision.ErrNotFound):
		return p.refuse(ctx, o, ErrNoAccount, "no user matched the identity and the connection may not create users", err)
	case errors.Is(err, provision.ErrAlreadyExists):
		return p.refuse(ctx, o, ErrConflict, err.Error(), err)
	case errors.Is(err, provision.ErrUnknownTenant), errors.Is(err, provision.ErrForbidden):
		return p.refuse(ctx, o, ErrUnknownConnection, err.Error(), err)
	case errors.Is(err, provision.ErrInvalid):
		return p.refuse(ctx, o, ErrInvalidIdentity, err.Error(), err)
	}
	p.log.ErrorContext(ctx, "jit: provisioning failed", "tenant", o.TenantID, "connection", o.ConnectionID, "error", err)
	return fmt.Errorf("jit: provision %s/%s: %w", o.TenantID, o.ConnectionID, err)
}

func (p *Provisioner) refuse(ctx context.Context, o provision.Origin, kind error, reason string, err error) error {
	r := &RefusedError{Kind: kind, Reason: reason, Err: err}
	provision.AdapterOf(p.engine).Refuse(ctx, o, "jit.login", reason, r)
	return r
}

func domainAllowed(email string, domains []string) bool {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return false
	}
	domain := email[at+1:]
	for _, d := range domains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// directRoles keeps the roles with a value, marked as direct.
func directRoles(in []provision.Role) []provision.Role {
	var out []provision.Role
	for _, r := range in {
		if strings.TrimSpace(r.Value) == "" {
			continue
		}
		r.Source = "direct"
		out = append(out, r)
	}
	return out
}
