package saml

import (
	"errors"
	"net/http"

	crewsaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
)

// UserIDAttribute is the session attribute SessionProvider adds with the
// provisioned user's ID (samlsp.AttributeFromContext(ctx, UserIDAttribute)).
// An attribute of that name sent by the IdP is dropped.
const UserIDAttribute = "urn:idprov:user-id"

// SessionProvider adapts just-in-time provisioning to a host that keeps
// samlsp.Middleware for one tenant's connection. It wraps the middleware's
// SessionProvider: CreateSession maps the assertion, provisions the user
// and only then creates the session, with the user's ID in it
// (UserIDAttribute); GetSession refuses a session whose user is no longer
// active, so a deactivated user's session stops working.
//
//	m, _ := samlsp.New(opts)
//	m.ServiceProvider.AuthnNameIDFormat = crewsaml.PersistentNameIDFormat
//	m.ServiceProvider.ReplayCache = saml.NewReplayCache(engine, "acme", "okta-saml")
//	m.Session = &saml.SessionProvider{Next: m.Session, Engine: engine, JIT: p, TenantID: "acme", ConnectionID: "okta-saml"}
//
// A refusal makes CreateSession fail, and the middleware's OnError answers
// (samlsp.DefaultOnError: 403, no detail).
type SessionProvider struct {
	// Next is the wrapped provider (samlsp's cookie sessions). Required.
	Next samlsp.SessionProvider
	// Engine checks users on GetSession and receives refusals. Required.
	Engine *provision.Engine
	// JIT provisions the users. Required.
	JIT *jit.Provisioner
	// TenantID and ConnectionID name the connection. Required.
	TenantID     string
	ConnectionID string
	// Mapping maps the assertions; the zero Mapping is DefaultMapping.
	Mapping Mapping
}

var _ samlsp.SessionProvider = (*SessionProvider)(nil)

// CreateSession provisions the assertion's user, then creates the session.
func (s *SessionProvider) CreateSession(w http.ResponseWriter, r *http.Request, a *crewsaml.Assertion) error {
	ctx := r.Context()
	o := provision.Origin{TenantID: s.TenantID, ConnectionID: s.ConnectionID, Actor: "saml"}
	id, err := MapAssertion(a, s.Mapping)
	if err != nil {
		provision.AdapterOf(s.Engine).Refuse(ctx, o, "saml.acs", err.Error(), err)
		return err
	}
	id.ConnectionID = s.ConnectionID
	user, err := s.JIT.Provision(ctx, s.TenantID, s.ConnectionID, id)
	if err != nil {
		return err
	}
	for i := range a.AttributeStatements {
		attrs := a.AttributeStatements[i].Attributes[:0]
		for _, at := range a.AttributeStatements[i].Attributes {
			if at.Name != UserIDAttribute && at.FriendlyName != UserIDAttribute {
				attrs = append(attrs, at)
			}
		}
		a.AttributeStatements[i].Attributes = attrs
	}
	a.AttributeStatements = append(a.AttributeStatements, crewsaml.AttributeStatement{Attributes: []crewsaml.Attribute{{
		Name: UserIDAttribute, Values: []crewsaml.AttributeValue{{Value: user.ID}},
	}}})
	return s.Next.CreateSession(w, r, a)
}

// DeleteSession deletes the session.
func (s *SessionProvider) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	return s.Next.DeleteSession(w, r)
}

// GetSession returns the session if its user is still active; otherwise
// samlsp.ErrNoSession, which sends the browser to log in again.
func (s *SessionProvider) GetSession(r *http.Request) (samlsp.Session, error) {
	sess, err := s.Next.GetSession(r)
	if err != nil {
		return nil, err
	}
	sa, ok := sess.(samlsp.SessionWithAttributes)
	if !ok {
		return nil, errors.New("saml: the session has no attributes to find its user")
	}
	uid := sa.GetAttributes().Get(UserIDAttribute)
	if uid == "" {
		return nil, samlsp.ErrNoSession
	}
	u, err := s.Engine.GetUser(r.Context(), provision.Origin{TenantID: s.TenantID}, uid)
	if errors.Is(err, provision.ErrNotFound) || (err == nil && !u.Active) {
		return nil, samlsp.ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	return sess, nil
}
