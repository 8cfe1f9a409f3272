package saml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/provision"
)

// How IdP metadata given by URL is kept fresh.
const (
	// metadataMaxAge is the age after which the metadata is fetched
	// again (in the background; logins go on with the metadata in use).
	metadataMaxAge = 24 * time.Hour
	// refreshGap is the least time between two fetches of one
	// connection's metadata, whatever asks for them (signature failures
	// an attacker can cause, the daily refresh).
	refreshGap = 5 * time.Minute
	// firstFetchRetry is the least time between two attempts while a
	// connection has no metadata at all (its logins answer 503).
	firstFetchRetry = 30 * time.Second
	// fetchTimeout bounds one fetch, whatever Config.HTTPClient does.
	fetchTimeout = 30 * time.Second
)

// metadataState is the IdP metadata of one connection resolved from the
// engine.
type metadataState struct {
	desc       *crewsaml.EntityDescriptor // in use; nil: none yet
	raw        []byte                     // desc as fetched, to see changes
	loaded     time.Time                  // when desc was fetched or parsed
	attempted  time.Time                  // last fetch
	err        error                      // last fetch's failure
	refreshing bool                       // a background fetch runs
}

// MetadataStatus is the state of a connection's IdP metadata, for an
// admin page: a failed refresh keeps the last good metadata, and shows
// here (and in the log).
type MetadataStatus struct {
	// URL is the connection's IDPMetadataURL; empty when its metadata was
	// given as XML (or to SetConnection).
	URL string `json:"url,omitempty"`
	// EntityID is the IdP's entity ID in the metadata in use.
	EntityID string `json:"entityID,omitempty"`
	// Loaded is when the metadata in use was fetched (or parsed). Zero
	// when there is none: the connection's logins answer 503.
	Loaded time.Time `json:"loaded,omitzero"`
	// Attempted is the last fetch of URL.
	Attempted time.Time `json:"attempted,omitzero"`
	// LastError is why the last fetch (or the settings) failed; empty
	// when it succeeded.
	LastError string `json:"lastError,omitempty"`
	// CertificateExpiry is the earliest expiry among the IdP's signing
	// certificates in the metadata in use.
	CertificateExpiry time.Time `json:"certificateExpiry,omitzero"`
}

// MetadataStatus returns the state of the IdP metadata of a tenant's SAML
// connection, loading it first if no login did yet. A connection the
// Handler does not serve is provision.ErrNotFound.
func (h *Handler) MetadataStatus(ctx context.Context, tenantID, connectionID string) (MetadataStatus, error) {
	_, err := h.resolve(ctx, tenantID, connectionID)
	if errors.Is(err, errNoConnection) {
		if c, ok := h.conn(tenantID); ok && c.ConnectionID == connectionID {
			return MetadataStatus{EntityID: c.IDPMetadata.EntityID, CertificateExpiry: certificateExpiry(c.IDPMetadata)}, nil
		}
		return MetadataStatus{}, fmt.Errorf("%w: tenant %q has no SAML connection %q", provision.ErrNotFound, tenantID, connectionID)
	}
	s, ok := h.lookupServed(connKey{tenantID, connectionID})
	if !ok {
		return MetadataStatus{}, err // the store failed before the entry existed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := MetadataStatus{URL: s.settings.IDPMetadataURL, Loaded: s.md.loaded, Attempted: s.md.attempted}
	if s.md.desc != nil {
		st.EntityID, st.CertificateExpiry = s.md.desc.EntityID, certificateExpiry(s.md.desc)
	}
	switch {
	case s.md.err != nil:
		st.LastError = s.md.err.Error()
	case err != nil:
		st.LastError = err.Error()
	}
	return st, nil
}

// certificateExpiry is the earliest NotAfter of the IdP's signing
// certificates.
func certificateExpiry(ed *crewsaml.EntityDescriptor) time.Time {
	var first time.Time
	for _, cert := range signingCertificates(ed) {
		if first.IsZero() || cert.NotAfter.Before(first) {
			first = cert.NotAfter
		}
	}
	return first
}

// loadMetadata gives s its first metadata: the settings' XML, or a fetch
// of their URL. A failed fetch is logged and audited, and retried no
// sooner than firstFetchRetry. s.mu is held.
func (h *Handler) loadMetadata(ctx context.Context, s *served) error {
	if x := s.settings.IDPMetadataXML; x != "" {
		desc, err := parseIDPMetadata([]byte(x))
		if err != nil {
			return fmt.Errorf("%w: %w", errUnavailable, err)
		}
		s.md = metadataState{desc: desc, raw: []byte(x), loaded: h.now()}
		return nil
	}
	if s.md.err != nil && h.now().Sub(s.md.attempted) < firstFetchRetry {
		return fmt.Errorf("%w: %w: %w", errUnavailable, errIdPMetadata, s.md.err)
	}
	raw, desc, err := h.fetchMetadata(ctx, s.settings.IDPMetadataURL)
	h.applyFetch(ctx, s, raw, desc, err)
	if err != nil {
		provision.AdapterOf(h.engine).Refuse(ctx, provision.Origin{TenantID: s.key.tenant, ConnectionID: s.key.conn, Actor: "saml"},
			"saml.metadata", "the IdP metadata could not be fetched: "+err.Error(), err)
		return fmt.Errorf("%w: %w: %w", errUnavailable, errIdPMetadata, err)
	}
	return nil
}

// applyFetch records a fetch of s's metadata and reports whether the
// metadata in use changed (its ServiceProvider is then rebuilt). A
// failure keeps the metadata in use. s.mu is held.
func (h *Handler) applyFetch(ctx context.Context, s *served, raw []byte, desc *crewsaml.EntityDescriptor, err error) bool {
	now := h.now()
	s.md.attempted = now
	if err != nil {
		s.md.err = err
		if s.md.desc != nil {
			h.log.WarnContext(ctx, "saml: IdP metadata refresh failed; keeping the last good metadata",
				"tenant", s.key.tenant, "connection", s.key.conn, "loaded", s.md.loaded, "error", err)
		}
		return false
	}
	s.md.err, s.md.loaded = nil, now
	if s.md.desc != nil && bytes.Equal(raw, s.md.raw) {
		return false
	}
	old := s.md.desc
	s.md.desc, s.md.raw = desc, raw
	if old == nil {
		return true // resolve builds the connection
	}
	c, err := h.build(s)
	if err != nil { // the settings were validated: not expected
		h.log.ErrorContext(ctx, "saml: rebuilding the connection", "tenant", s.key.tenant, "connection", s.key.conn, "error", err)
		s.md.desc = old
		return false
	}
	s.c = c
	h.log.InfoContext(ctx, "saml: IdP metadata changed", "tenant", s.key.tenant, "connection", s.key.conn, "entityID", desc.EntityID)
	return true
}

// fetchMetadata GETs and parses IdP metadata.
func (h *Handler) fetchMetadata(ctx context.Context, u string) ([]byte, *crewsaml.EntityDescriptor, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("saml: IdP metadata URL: %w", err)
	}
	req.Header.Set("Accept", "application/samlmetadata+xml, application/xml;q=0.9, */*;q=0.1")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("saml: fetching the IdP metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("saml: fetching the IdP metadata %s: %s", u, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("saml: reading the IdP metadata %s: %w", u, err)
	}
	desc, err := parseIDPMetadata(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("saml: %s: %w", u, err)
	}
	return raw, desc, nil
}

// maybeRefresh starts a background fetch of s's metadata when it is older
// than metadataMaxAge. s.mu is held.
func (h *Handler) maybeRefresh(s *served) {
	u := s.settings.IDPMetadataURL
	now := h.now()
	if u == "" || s.md.refreshing || now.Sub(s.md.loaded) < metadataMaxAge || now.Sub(s.md.attempted) < refreshGap {
		return
	}
	s.md.refreshing = true
	go func() {
		ctx := context.Background()
		raw, desc, err := h.fetchMetadata(ctx, u)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.md.refreshing = false
		if s.settings.IDPMetadataURL == u { // else the settings changed meanwhile
			h.applyFetch(ctx, s, raw, desc, err)
		}
	}()
}

// refreshAfter fetches the metadata of c, a connection resolved from the
// engine whose IdP metadata has a URL, after err, a signature failure at
// its ACS: the IdP may have rotated its certificate. It returns the
// rebuilt connection when the metadata changed (the response is then
// validated again), nil otherwise. Fetches are at most one per
// refreshGap per connection.
func (h *Handler) refreshAfter(ctx context.Context, c *conn, err error) *conn {
	if err == nil || !(errors.Is(err, crewsaml.ErrInvalidSignature) || errors.Is(err, crewsaml.ErrUntrustedCertificate)) {
		return nil
	}
	s, ok := h.lookupServed(connKey{c.TenantID, c.ConnectionID})
	if !ok {
		return nil
	}
	s.mu.Lock()
	u := s.settings.IDPMetadataURL
	if s.c != c || u == "" || s.md.refreshing || h.now().Sub(s.md.attempted) < refreshGap {
		s.mu.Unlock()
		return nil
	}
	// Other requests go on with the metadata in use meanwhile.
	s.md.refreshing = true
	s.mu.Unlock()
	raw, desc, ferr := h.fetchMetadata(ctx, u)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.md.refreshing = false
	if s.settings.IDPMetadataURL != u {
		return nil // the settings changed meanwhile
	}
	changed := h.applyFetch(ctx, s, raw, desc, ferr)
	h.log.InfoContext(ctx, "saml: IdP metadata fetched after a signature failure", "tenant", c.TenantID, "connection", c.ConnectionID, "changed", changed)
	if !changed {
		return nil
	}
	return s.c
}
