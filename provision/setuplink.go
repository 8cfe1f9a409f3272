package provision

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A setup link lets a customer's IT admin set up the connections of one
// tenant (SAML, SCIM, LDAP) without the host's own login: the host asks
// the engine for one (CreateSetupLink), sends its URL, and serves the
// guided setup pages of packages saml, scim and ldap behind it.
//
// The link's secret carries 256 random bits; the engine stores only its
// SHA-256 digest, in the Store's KV (or process memory without one):
//
//	tenant "" (no tenant has an empty ID), key "setup-link/<hex digest>":
//	    the SetupLink as JSON, kept until SetupLinkRetention after expiry
//	    so that an expired or revoked link is recognised as such;
//	tenant T, key "setup-link-id/<id>": the hex digest, to revoke by id.
//
// Everything done through a link is done with Actor "setup-link:<id>"
// (SetupLink.Actor), so the connection.* events it causes name it.

// MaxSetupLinkTTL is the longest a setup link may live.
const MaxSetupLinkTTL = 30 * 24 * time.Hour

// SetupLinkRetention is how long after its expiry a link is still
// recognised (and refused as expired or revoked rather than unknown).
const SetupLinkRetention = 7 * 24 * time.Hour

// ErrSetupLinkExpired is the error of a setup link used after its expiry.
// It matches ErrForbidden.
var ErrSetupLinkExpired = fmt.Errorf("%w: the setup link has expired", ErrForbidden)

// ErrSetupLinkRevoked is the error of a revoked setup link. It matches
// ErrForbidden.
var ErrSetupLinkRevoked = fmt.Errorf("%w: the setup link was revoked", ErrForbidden)

// SetupLink is a link that lets one tenant's IT admin set up some kinds of
// connections until it expires or is revoked. It never holds its secret.
type SetupLink struct {
	ID       string           `json:"id"`
	TenantID string           `json:"tenantId"`
	Kinds    []ConnectionKind `json:"kinds"`
	Created  time.Time        `json:"created"`
	Expires  time.Time        `json:"expires"`
	// Revoked is when the link was revoked; zero while it is not.
	Revoked time.Time `json:"revoked,omitzero"`
	// CreatedBy is the actor that asked for the link.
	CreatedBy string `json:"createdBy,omitempty"`
}

// Actor is the actor of everything done through the link:
// "setup-link:<id>".
func (l SetupLink) Actor() string { return "setup-link:" + l.ID }

// Allows reports whether the link may set up connections of kind k.
func (l SetupLink) Allows(k ConnectionKind) bool { return slices.Contains(l.Kinds, k) }

// Origin is the Origin of an action through the link on connection
// connID of its tenant.
func (l SetupLink) Origin(connID string) Origin {
	return Origin{TenantID: l.TenantID, ConnectionID: connID, Actor: l.Actor()}
}

const (
	setupLinkScope  = "" // the KV "tenant" of the digest index
	setupLinkPrefix = "setup-link/"
	setupLinkByID   = "setup-link-id/"
)

func setupLinkKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return setupLinkPrefix + hex.EncodeToString(sum[:])
}

// CreateSetupLink makes a link for registered tenant tenantID that allows
// setting up connections of the given kinds (KindSAML, KindSCIM,
// KindLDAP) for ttl (at most MaxSetupLinkTTL). It returns the link and
// its secret, which the engine does not keep: put it in the URL sent to
// the IT admin. A bad kind or ttl is a *ValidationError; an unknown tenant
// ErrUnknownTenant; a declared tenant ErrDeclared (its connections are
// the host's configuration).
func (e *Engine) CreateSetupLink(ctx context.Context, tenantID string, kinds []ConnectionKind, ttl time.Duration, actor string) (SetupLink, string, error) {
	if len(kinds) == 0 {
		return SetupLink{}, "", &ValidationError{Field: "kinds", Reason: "at least one of saml, scim, ldap is required"}
	}
	ks := make([]ConnectionKind, 0, len(kinds))
	for _, k := range kinds {
		switch k {
		case KindSAML, KindSCIM, KindLDAP:
		default:
			return SetupLink{}, "", &ValidationError{Field: "kinds", Reason: fmt.Sprintf("%q is not one of saml, scim, ldap", k)}
		}
		if !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	if ttl <= 0 || ttl > MaxSetupLinkTTL {
		return SetupLink{}, "", &ValidationError{Field: "expiresIn", Reason: fmt.Sprintf("%s is not between 0 and %s", ttl, MaxSetupLinkTTL)}
	}
	if e.isDeclared(tenantID) {
		return SetupLink{}, "", fmt.Errorf("provision: setup link for tenant %q: %w", tenantID, ErrDeclared)
	}
	t, err := e.Tenant(ctx, tenantID)
	if err != nil {
		return SetupLink{}, "", fmt.Errorf("provision: setup link for tenant %q: %w", tenantID, err)
	}
	if !t.Registered {
		return SetupLink{}, "", fmt.Errorf("provision: setup link for tenant %q: %w", tenantID, ErrDeclared)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	var id [8]byte
	_, _ = rand.Read(id[:])
	now := e.now().UTC().Truncate(time.Second)
	l := SetupLink{ID: hex.EncodeToString(id[:]), TenantID: t.ID, Kinds: ks, Created: now, Expires: now.Add(ttl), CreatedBy: actor}
	if err := e.putSetupLink(ctx, setupLinkKey(secret), l); err != nil {
		return SetupLink{}, "", err
	}
	e.log.InfoContext(ctx, "provision: setup link created", "tenant", t.ID, "link", l.ID, "kinds", ks, "expires", l.Expires, "actor", actor)
	return l, secret, nil
}

func (e *Engine) putSetupLink(ctx context.Context, key string, l SetupLink) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("provision: encode setup link: %w", err)
	}
	keep := l.Expires.Add(SetupLinkRetention).Sub(e.now())
	if err := e.kvSet(ctx, setupLinkScope, key, b, keep); err != nil {
		return fmt.Errorf("provision: store setup link: %w", err)
	}
	if err := e.kvSet(ctx, l.TenantID, setupLinkByID+l.ID, []byte(key), keep); err != nil {
		return fmt.Errorf("provision: store setup link: %w", err)
	}
	return nil
}

// SetupLinkBySecret returns the live link whose secret is secret. A link
// past its expiry is ErrSetupLinkExpired, a revoked one
// ErrSetupLinkRevoked (both with the link, so that a page can say which
// tenant and when); an unknown secret is ErrNotFound.
func (e *Engine) SetupLinkBySecret(ctx context.Context, secret string) (SetupLink, error) {
	if len(secret) < 32 || len(secret) > 128 {
		return SetupLink{}, fmt.Errorf("provision: setup link: %w", ErrNotFound)
	}
	b, err := e.kvGet(ctx, setupLinkScope, setupLinkKey(secret))
	if errors.Is(err, ErrNotFound) {
		return SetupLink{}, fmt.Errorf("provision: setup link: %w", ErrNotFound)
	}
	if err != nil {
		return SetupLink{}, fmt.Errorf("provision: setup link: %w", err)
	}
	var l SetupLink
	if err := json.Unmarshal(b, &l); err != nil {
		return SetupLink{}, fmt.Errorf("provision: decode setup link: %w", err)
	}
	switch {
	case !l.Revoked.IsZero():
		return l, ErrSetupLinkRevoked
	case !e.now().Before(l.Expires):
		return l, ErrSetupLinkExpired
	}
	return l, nil
}

// RevokeSetupLink revokes link id of tenant tenantID at once: it is
// refused from then on. An unknown id (or one of another tenant) is
// ErrNotFound; revoking twice is not an error.
func (e *Engine) RevokeSetupLink(ctx context.Context, tenantID, id, actor string) error {
	key, err := e.kvGet(ctx, tenantID, setupLinkByID+id)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("provision: setup link %q of tenant %q: %w", id, tenantID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("provision: revoke setup link: %w", err)
	}
	b, err := e.kvGet(ctx, setupLinkScope, string(key))
	if err != nil {
		return fmt.Errorf("provision: revoke setup link %q: %w", id, err)
	}
	var l SetupLink
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("provision: decode setup link: %w", err)
	}
	if l.TenantID != tenantID || l.ID != id {
		return fmt.Errorf("provision: setup link %q of tenant %q: %w", id, tenantID, ErrNotFound)
	}
	if !l.Revoked.IsZero() {
		return nil
	}
	l.Revoked = e.now().UTC()
	if err := e.putSetupLink(ctx, string(key), l); err != nil {
		return err
	}
	e.log.InfoContext(ctx, "provision: setup link revoked", "tenant", tenantID, "link", id, "actor", actor)
	return nil
}

type setupLinkCtxKey struct{}

// WithSetupLink returns a context carrying the setup link a request was
// resolved to, for the setup handlers of packages saml, scim and ldap;
// the host's middleware sets it after SetupLinkBySecret.
func WithSetupLink(ctx context.Context, l SetupLink) context.Context {
	return context.WithValue(ctx, setupLinkCtxKey{}, l)
}

// SetupLinkFrom returns the setup link of WithSetupLink.
func SetupLinkFrom(ctx context.Context) (SetupLink, bool) {
	l, ok := ctx.Value(setupLinkCtxKey{}).(SetupLink)
	return l, ok
}
