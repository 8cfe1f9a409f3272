package saml

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	crewsaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/idprov/idprov/provision"
)

// URLs are the endpoints of one SAML connection, to give its IdP (the
// entity ID and the ACS URL) and to send people to (the login).
type URLs struct {
	// MetadataURL is the SP metadata URL, which is also the entity ID
	// (the audience the IdP must address).
	MetadataURL string `json:"metadataURL"`
	// ACSURL is the assertion consumer service URL.
	ACSURL string `json:"acsURL"`
	// LoginURL starts a login through this connection.
	LoginURL string `json:"loginURL"`
}

// ConnectionURLs returns the endpoints of a connection the Handler
// resolves from the engine (one of KindSAML with SAMLSettings):
// {BaseURL}/saml/{tenant}/{connection}/metadata, .../login and .../acs.
// Each connection has its own entity ID and ACS URL, so an assertion made
// for one is refused at every other, also within one tenant.
func (h *Handler) ConnectionURLs(tenantID, connectionID string) URLs {
	return URLs{
		MetadataURL: h.connURL(tenantID, connectionID, "metadata").String(),
		ACSURL:      h.connURL(tenantID, connectionID, "acs").String(),
		LoginURL:    h.connURL(tenantID, connectionID, "login").String(),
	}
}

func (h *Handler) connURL(tenantID, connectionID, leaf string) *url.URL {
	u := *h.base
	u.Path = h.basePath + "/saml/" + tenantID + "/" + connectionID + "/" + leaf
	return &u
}

// ValidateSettings checks a SAML connection's settings as the Handler
// will use them: exactly one of IDPMetadataURL (an absolute http or https
// URL) and IDPMetadataXML (IdP metadata that parses, with an entity ID
// and an SSO endpoint), and a Mapping that names a preset of Mappings (or
// is empty, the default mapping). A refusal is a
// *provision.ValidationError naming the field (it matches
// provision.ErrInvalid), for an admin API to answer 400.
func ValidateSettings(s provision.SAMLSettings) error {
	bad := func(field, reason string) error {
		return &provision.ValidationError{Field: "saml." + field, Reason: reason}
	}
	switch {
	case s.IDPMetadataURL == "" && s.IDPMetadataXML == "":
		return bad("idpMetadataURL", "the IdP metadata is required (idpMetadataURL or idpMetadataXML)")
	case s.IDPMetadataURL != "" && s.IDPMetadataXML != "":
		return bad("idpMetadataXML", "give the IdP metadata as a URL or as XML, not both")
	}
	if s.IDPMetadataURL != "" {
		u, err := url.Parse(s.IDPMetadataURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return bad("idpMetadataURL", fmt.Sprintf("%q is not an absolute http(s) URL", s.IDPMetadataURL))
		}
	}
	if s.IDPMetadataXML != "" {
		if _, err := parseIDPMetadata([]byte(s.IDPMetadataXML)); err != nil {
			return bad("idpMetadataXML", err.Error())
		}
	}
	if _, err := mappingNamed(s.Mapping); err != nil {
		return bad("mapping", err.Error())
	}
	return nil
}

// mappingNamed returns the preset of Mappings named name; "" is the
// default mapping.
func mappingNamed(name string) (Mapping, error) {
	if name == "" {
		return DefaultMapping(), nil
	}
	m, ok := Mappings()[strings.ToLower(name)]
	if !ok {
		names := make([]string, 0, 8)
		for n := range Mappings() {
			names = append(names, n)
		}
		slices.Sort(names)
		return Mapping{}, fmt.Errorf("unknown mapping preset %q (one of %s)", name, strings.Join(names, ", "))
	}
	return m, nil
}

// maxMetadataBytes bounds an IdP metadata document.
const maxMetadataBytes = 10 << 20

// parseIDPMetadata parses IdP metadata (an EntityDescriptor, or an
// EntitiesDescriptor holding one IdP) and checks that it can be used.
func parseIDPMetadata(b []byte) (*crewsaml.EntityDescriptor, error) {
	if len(b) > maxMetadataBytes {
		return nil, fmt.Errorf("the IdP metadata is larger than %d bytes", maxMetadataBytes)
	}
	ed, err := samlsp.ParseMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("the IdP metadata does not parse: %w", err)
	}
	if ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("the IdP metadata has no entity ID or no IDPSSODescriptor")
	}
	return ed, nil
}

// connKey names a connection resolved from the engine.
type connKey struct{ tenant, conn string }

// served is the Handler's state of one connection resolved from the
// engine: the settings its ServiceProvider was built from, and its IdP
// metadata (metadata.go).
type served struct {
	key connKey

	// mu serializes the comparison with the engine's settings, the first
	// metadata load and rebuilds. Refreshes fetch without it
	// (md.refreshing).
	mu       sync.Mutex
	settings provision.SAMLSettings
	// c is the connection in use; nil until metadata was loaded.
	c  *conn
	md metadataState
}

// errNoConnection is a connection the engine does not serve (unknown,
// deleted, disabled, not SAML or without SAMLSettings).
var errNoConnection = errors.New("saml: no such SAML connection")

// errUnavailable wraps a failure to make a connection usable (its IdP
// metadata could not be loaded, the store failed): 503.
var errUnavailable = errors.New("saml: connection unavailable")

// errIdPMetadata is a connection whose IdP metadata could not be fetched
// (it matches errUnavailable too).
var errIdPMetadata = errors.New("saml: no IdP metadata")

// resolve returns the connection tenantID/connectionID as the engine has
// it now, building (or rebuilding, when its settings changed) its
// ServiceProvider and loading its IdP metadata as needed.
func (h *Handler) resolve(ctx context.Context, tenantID, connectionID string) (*conn, error) {
	if !pathSegment(tenantID) || !pathSegment(connectionID) {
		return nil, errNoConnection
	}
	key := connKey{tenantID, connectionID}
	pc, err := h.engine.Connection(ctx, tenantID, connectionID)
	if errors.Is(err, provision.ErrNotFound) || errors.Is(err, provision.ErrUnknownTenant) {
		h.forget(key)
		return nil, errNoConnection
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if pc.Kind != provision.KindSAML || pc.SAML == nil || pc.Disabled {
		h.forget(key)
		return nil, errNoConnection
	}
	s := h.entry(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings != *pc.SAML {
		if err := ValidateSettings(*pc.SAML); err != nil {
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		if s.settings.IDPMetadataURL != pc.SAML.IDPMetadataURL || s.settings.IDPMetadataXML != pc.SAML.IDPMetadataXML {
			s.md = metadataState{}
		}
		s.settings, s.c = *pc.SAML, nil
	}
	if s.md.desc == nil {
		if err := h.loadMetadata(ctx, s); err != nil {
			return nil, err
		}
	}
	if s.c == nil {
		if s.c, err = h.build(s); err != nil {
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
	}
	h.maybeRefresh(s)
	return s.c, nil
}

// build makes the connection's ServiceProvider from its settings and its
// metadata. s.mu is held.
func (h *Handler) build(s *served) (*conn, error) {
	m, err := mappingNamed(s.settings.Mapping)
	if err != nil {
		return nil, err
	}
	sp := h.newServiceProvider(h.connURL(s.key.tenant, s.key.conn, "metadata"), h.connURL(s.key.tenant, s.key.conn, "acs"),
		s.md.desc, s.settings.AllowIDPInitiated, !s.settings.InsecureAllowSHA1)
	return &conn{
		Connection: Connection{
			TenantID: s.key.tenant, ConnectionID: s.key.conn, IDPMetadata: s.md.desc,
			Mapping: m, AllowIDPInitiated: s.settings.AllowIDPInitiated, InsecureAllowSHA1: s.settings.InsecureAllowSHA1,
		},
		sp: sp,
	}, nil
}

func pathSegment(s string) bool { return s != "" && !strings.ContainsAny(s, "/?#%") }

func (h *Handler) entry(key connKey) *served {
	h.smu.Lock()
	defer h.smu.Unlock()
	s, ok := h.served[key]
	if !ok {
		s = &served{key: key}
		h.served[key] = s
	}
	return s
}

func (h *Handler) lookupServed(key connKey) (*served, bool) {
	h.smu.Lock()
	defer h.smu.Unlock()
	s, ok := h.served[key]
	return s, ok
}

func (h *Handler) forget(key connKey) {
	h.smu.Lock()
	delete(h.served, key)
	h.smu.Unlock()
}

// connOf returns the connection a request resolved: the one its path
// names with {connection} (resolve ran before), else the tenant's
// connection set with SetConnection.
func (h *Handler) connOf(r *http.Request) (*conn, bool) {
	id := r.PathValue("connection")
	if id == "" {
		return h.conn(r.PathValue("tenant"))
	}
	s, ok := h.lookupServed(connKey{r.PathValue("tenant"), id})
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c, s.c != nil
}

func (h *Handler) connectionRoutes() {
	h.mux.HandleFunc("GET "+h.basePath+"/saml/{tenant}/{connection}/metadata", h.serveConnMetadata)
	h.mux.HandleFunc("GET "+h.basePath+"/saml/{tenant}/{connection}/login", h.resolved(h.serveLogin))
	h.mux.HandleFunc("POST "+h.basePath+"/saml/{tenant}/{connection}/acs", h.resolved(h.serveACS))
	h.mux.HandleFunc("GET "+h.basePath+"/saml/login", h.serveDiscover)
}

// resolved resolves the request's {tenant}/{connection} before next
// serves it: an unknown, deleted or disabled connection answers 404, one
// whose IdP metadata could not be loaded 503.
func (h *Handler) resolved(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenantID, connID := r.PathValue("tenant"), r.PathValue("connection")
		if _, err := h.resolve(r.Context(), tenantID, connID); err != nil {
			h.resolveError(w, r, err)
			return
		}
		next(w, r)
	}
}

// resolveError answers a failed resolve: 404 for a connection the Handler
// does not serve, else 503.
func (h *Handler) resolveError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNoConnection) {
		h.errorPage(w, r, http.StatusNotFound)
		return
	}
	h.log.ErrorContext(r.Context(), "saml: connection unavailable", "tenant", r.PathValue("tenant"), "connection", r.PathValue("connection"), "error", err)
	h.errorPage(w, r, http.StatusServiceUnavailable)
}

// serveConnMetadata serves /saml/{tenant}/{connection}/metadata. The SP
// metadata does not depend on the IdP's: it is served while the IdP
// metadata cannot be fetched, so that an admin can set the IdP up.
func (h *Handler) serveConnMetadata(w http.ResponseWriter, r *http.Request) {
	tenantID, connID := r.PathValue("tenant"), r.PathValue("connection")
	_, err := h.resolve(r.Context(), tenantID, connID)
	switch {
	case err == nil:
		h.serveMetadata(w, r)
	case errors.Is(err, errIdPMetadata):
		h.writeMetadata(w, r, tenantID, h.newServiceProvider(h.connURL(tenantID, connID, "metadata"), h.connURL(tenantID, connID, "acs"), nil, false, true))
	default:
		h.resolveError(w, r, err)
	}
}

// servedConnections are the tenant's SAML connections the Handler
// resolves from the engine: enabled, with SAMLSettings.
func servedConnections(t provision.Tenant) []provision.Connection {
	var out []provision.Connection
	for _, c := range t.Connections {
		if c.Kind == provision.KindSAML && c.SAML != nil && !c.Disabled && pathSegment(c.ID) {
			out = append(out, c)
		}
	}
	return out
}

// tenantLevel serves a /saml/{tenant}/... URL: with legacy for the
// connection set with SetConnection (as before connections were data),
// else with next for the tenant as the engine has it (unknown: 404).
func (h *Handler) tenantLevel(legacy http.HandlerFunc, next func(http.ResponseWriter, *http.Request, provision.Tenant)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenantID := r.PathValue("tenant")
		if _, ok := h.conn(tenantID); ok {
			legacy(w, r)
			return
		}
		t, err := h.engine.Tenant(r.Context(), tenantID)
		switch {
		case errors.Is(err, provision.ErrUnknownTenant) || errors.Is(err, provision.ErrNotFound):
			h.errorPage(w, r, http.StatusNotFound)
		case err != nil:
			h.log.ErrorContext(r.Context(), "saml: tenant lookup", "tenant", tenantID, "error", err)
			h.errorPage(w, r, http.StatusServiceUnavailable)
		default:
			next(w, r, t)
		}
	}
}

// onlyMetadata serves /saml/{tenant}/metadata for a tenant without a
// connection set with SetConnection: its only SAML connection's; with
// none or several, 404.
func (h *Handler) onlyMetadata(w http.ResponseWriter, r *http.Request, t provision.Tenant) {
	cs := servedConnections(t)
	if len(cs) != 1 {
		h.errorPage(w, r, http.StatusNotFound)
		return
	}
	r.SetPathValue("connection", cs[0].ID)
	h.serveConnMetadata(w, r)
}
