// Package jit provisions users just in time, from what an identity
// provider says about a person when they log in. It is protocol-neutral:
// package saml maps a SAML assertion to a provision.Identity and calls it,
// and a host with its own SAML or OpenID Connect code can call it too.
//
// A Provisioner reads the just-in-time switches of each login connection
// from the engine (provision.Connection.JIT: create users, update them on
// every login, the allowed e-mail domains, whether the login may assign
// roles) and hands the identity to the provision.Engine, which resolves it in one transaction: through the
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
//	// acme's connection: {ID: "okta-saml", Kind: provision.KindSAML,
//	//	JIT: &provision.JITSettings{Create: true, Update: true,
//	//		AllowedEmailDomains: []string{"acme.example"}}}
//	p, err := jit.New(jit.Config{Engine: engine})
//	...
//	user, err := p.Provision(ctx, "acme", "okta-saml", identity)
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
	"strings"

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
// and the refusal was already logged and audited (provision.Adapter.Refuse),
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

// settings are a login connection's just-in-time switches, normalized.
type settings struct {
	Create, Update, Roles bool
	AllowedEmailDomains   []string
}

// Config configures a Provisioner.
type Config struct {
	// Engine applies the identities. Required.
	Engine *provision.Engine
	// Logger receives refusals and failures. Nil discards them (the
	// engine's Audit hook still gets every refusal).
	Logger *slog.Logger
}

// Provisioner provisions users from logins. It is safe for concurrent
// use.
type Provisioner struct {
	engine *provision.Engine
	log    *slog.Logger
}

// New validates cfg and returns a Provisioner.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Engine == nil {
		return nil, errors.New("jit: Config.Engine is required")
	}
	p := &Provisioner{engine: cfg.Engine, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return p, nil
}

// settings returns the JIT settings of the engine's connection c (declared
// or registered). A SAML connection without JITSettings only links and
// matches: it neither creates nor updates; a connection of another kind
// without them is no login connection.
func (p *Provisioner) settings(ctx context.Context, tenantID, connectionID string) (settings, bool, error) {
	pc, err := p.engine.Connection(ctx, tenantID, connectionID)
	if errors.Is(err, provision.ErrNotFound) || errors.Is(err, provision.ErrUnknownTenant) {
		return settings{}, false, nil
	}
	if err != nil {
		return settings{}, false, err
	}
	if pc.JIT == nil && pc.Kind != provision.KindSAML {
		return settings{}, false, nil
	}
	var s settings
	if j := pc.JIT; j != nil {
		s.Create, s.Update, s.Roles = j.Create, j.Update, j.Roles
		for _, d := range j.AllowedEmailDomains {
			s.AllowedEmailDomains = append(s.AllowedEmailDomains, strings.TrimPrefix(strings.TrimSpace(d), "@"))
		}
	}
	return s, true, nil
}

// Provision resolves the person who logged in through the tenant's
// connection connectionID to the tenant's user, creating or updating it as
// the connection's JITSettings allow, and returns the active user to start
// a session for.
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
func (p *Provisioner) Provision(ctx context.Context, tenantID, connectionID string, id provision.Identity) (provision.User, error) {
	o := provision.Origin{TenantID: tenantID, ConnectionID: connectionID, Actor: "jit"}
	s, ok, err := p.settings(ctx, tenantID, connectionID)
	if err != nil {
		return provision.User{}, fmt.Errorf("jit: settings of %s/%s: %w", tenantID, connectionID, err)
	}
	if !ok {
		return provision.User{}, p.refuse(ctx, o, ErrUnknownConnection, "no just-in-time settings for the connection", nil)
	}
	if id.ConnectionID == "" {
		id.ConnectionID = connectionID
	}
	if id.ConnectionID != connectionID {
		return provision.User{}, p.refuse(ctx, o, ErrInvalidIdentity, fmt.Sprintf("identity of connection %q given for connection %q", id.ConnectionID, connectionID), nil)
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
	p.log.InfoContext(ctx, "jit: login provisioned", "tenant", tenantID, "connection", connectionID, "user", u.ID, "result", string(res))
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
