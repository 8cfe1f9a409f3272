// Package saml signs users in with SAML 2.0 and provisions them just in
// time. It is glue on github.com/crewjam/saml (v0.6.3): one crewjam
// ServiceProvider per tenant's SAML connection, each with its own entity
// ID and ACS URL under the tenant's path, so an assertion made for one
// tenant is refused at every other:
//
//	{BaseURL}/saml/{tenant}/metadata   the SP metadata to give the IdP
//	{BaseURL}/saml/{tenant}/login      starts a login (?return_to=/path)
//	{BaseURL}/saml/{tenant}/acs        the assertion consumer service
//
// The tenant comes from the URL path only, never from RelayState, an
// attribute or an e-mail domain. The ACS parses and validates the response
// with crewjam (signature, issuer, audience, recipient, destination, time
// bounds, InResponseTo), checks it against the replay cache (always on,
// kept in the engine's KV so every replica shares it), maps the assertion
// to a provision.Identity (MapAssertion, with presets per IdP), hands it to
// the jit.Provisioner, and then calls Config.OnLogin with the user, for the
// host to start its session. A refusal, whatever its cause, answers the
// browser a generic error, changes nothing, and goes to slog and the
// engine's audit hook with the precise reason.
//
// Connections as data: a provision.Connection of KindSAML that carries
// SAMLSettings (declared, or registered with Engine.PutConnection) is
// resolved from the engine on each request, with no SetConnection, under
// its own entity ID and ACS URL (ConnectionURLs):
//
//	{BaseURL}/saml/{tenant}/{connection}/metadata|login|acs
//	{BaseURL}/saml/{tenant}/login?email=ada@globex.example   home realm discovery
//	{BaseURL}/saml/login?email=ada@globex.example            finds the tenant too
//
// Discovery routes by the connections' Domains among the tenant's
// verified domains only (a chooser page when two match). IdP metadata
// given by URL is fetched, refreshed daily and after a signature failure,
// and kept when a refresh fails (MetadataStatus). ValidateSettings checks
// SAMLSettings for an admin API. The tenant-level URLs above keep serving
// the connection set with SetConnection.
//
// Logins request a persistent NameID; an assertion whose only subject is
// a transient NameID is refused. IdP-initiated logins are refused unless
// the connection enables them (they are prone to login CSRF). Signatures
// made with SHA-1 are refused unless the connection sets
// InsecureAllowSHA1.
//
// What an unauthenticated ACS request costs is bounded before its
// signature is checked: the body (Config.MaxResponseBytes, 413 past it),
// a response naming no XML signature is refused unparsed, and at most
// Config.MaxConcurrentParses responses are parsed at once (503 with
// Retry-After past a short wait).
//
// NewSetup is the guided setup a customer's IT admin follows through a
// setup link (provision.Engine.CreateSetupLink): the IdP's steps, the
// metadata checked on the spot, and a test sign-in through the ACS that
// creates nothing and shows the identity mapped (LastTestResult).
//
// Hosts that keep samlsp.Middleware use SessionProvider and
// NewReplayCache instead of Handler. Package samltest is an IdP for tests.
package saml

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	crewsaml "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
)

// Connection is one tenant's SAML connection: the IdP it trusts and how
// its assertions map to identities. A tenant has at most one here (its
// URLs carry only the tenant); a provision.Connection that carries
// SAMLSettings needs none, and a tenant may have several (ConnectionURLs).
type Connection struct {
	// TenantID and ConnectionID name the connection, as declared to the
	// engine (a provision.Connection of KindSAML) and to the jit
	// Provisioner. Required.
	TenantID     string
	ConnectionID string
	// IDPMetadata is the IdP's metadata (samlsp.ParseMetadata or
	// FetchMetadata): its entity ID, signing certificates and SSO URL.
	// Required.
	IDPMetadata *crewsaml.EntityDescriptor
	// Mapping maps the assertions; the zero Mapping is DefaultMapping.
	Mapping Mapping
	// AllowIDPInitiated accepts unsolicited responses (no InResponseTo),
	// whose RelayState may name a local path to go to. Off by default.
	AllowIDPInitiated bool
	// InsecureAllowSHA1 accepts responses signed with a SHA-1 based
	// algorithm (RSA-SHA1 or a SHA-1 digest), for an old IdP (ADFS 2.0,
	// or an ADFS relying party trust still set to SHA-1) that cannot sign
	// with SHA-256. SHA-1 is refused by default: the refusal's reason says
	// so. Turn it on only for the connection that needs it, and off again
	// once the IdP signs with SHA-256.
	InsecureAllowSHA1 bool
}

// Login is a successful login, handed to Config.OnLogin.
type Login struct {
	TenantID     string
	ConnectionID string
	// User is the provisioned, active user.
	User provision.User
	// Identity is what the assertion said, as mapped.
	Identity provision.Identity
	// Assertion is the validated assertion.
	Assertion *crewsaml.Assertion
	// ReturnTo is the local path to send the browser to: the login's
	// return_to, an IdP-initiated RelayState that is a local path, or "/".
	ReturnTo string
	// SessionNotOnOrAfter is when the IdP wants the session to end; zero
	// when it did not say.
	SessionNotOnOrAfter time.Time
}

// Config configures a Handler.
type Config struct {
	// Engine holds the replay cache and tracked requests (its KV) and
	// receives refusals. Required.
	Engine *provision.Engine
	// JIT provisions the users. Every connection needs settings there.
	// Required.
	JIT *jit.Provisioner
	// BaseURL is the absolute URL under which the host serves Handler,
	// e.g. "https://app.example.com" (the Handler then answers
	// /saml/{tenant}/...). Required.
	BaseURL string
	// Key and Certificate are the SP's key pair, published in the
	// metadata and used to decrypt encrypted assertions (an RSA key). Both
	// or neither.
	Key         crypto.Signer
	Certificate *x509.Certificate
	// Connections are the tenants' SAML connections. More can be set
	// with SetConnection.
	Connections []Connection
	// OnLogin starts the host's session for a login and answers the
	// browser (typically a cookie and a redirect to l.ReturnTo). Required.
	OnLogin func(w http.ResponseWriter, r *http.Request, l Login)
	// ErrorPage answers a refused or failed request with its status: 403
	// refused, 404 unknown tenant, 413 response larger than
	// MaxResponseBytes, 503 busy or the store unavailable. It must not
	// reveal why a response was refused; on a 403, RefusalOf(r) says what
	// the person can do about it (a deactivated account, another e-mail
	// domain) when the response itself was valid. Nil writes a plain
	// "Single sign-on failed." with the status (a short reason for 413
	// and 503).
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int)
	// Logger receives refusals and failures. Nil discards them.
	Logger *slog.Logger
	// Clock, when set, is the time source of the crewjam
	// ServiceProviders (tests).
	Clock *dsig.Clock
	// RequestMaxAge is how long a started login may take. Default 10m.
	RequestMaxAge time.Duration
	// MaxResponseBytes bounds the ACS request body; a larger one is
	// answered 413 before it is read or parsed. Default
	// DefaultMaxResponseBytes (256 KiB): a signed response of Entra ID or
	// Okta with 150 groups posts about 45 KB; raise it for an IdP that
	// sends more than about 1,500 groups.
	MaxResponseBytes int64
	// HTTPClient fetches the IdP metadata of connections that give an
	// IDPMetadataURL. Nil is a client with a 10 s timeout. A host whose
	// tenants' admins enter these URLs may restrict where it dials.
	HTTPClient *http.Client
	// Now is the time source of metadata refreshes; nil is time.Now.
	Now func() time.Time
	// MaxConcurrentParses bounds how many ACS responses are parsed and
	// verified at once, whatever the number of requests: a request past
	// it waits up to a second for its turn, then is answered 503 with
	// Retry-After. Default 2 × GOMAXPROCS, at least 4.
	MaxConcurrentParses int
}

// Handler serves the SAML endpoints of every tenant. It is safe for
// concurrent use.
type Handler struct {
	engine    *provision.Engine
	jit       *jit.Provisioner
	base      *url.URL
	basePath  string
	key       crypto.Signer
	cert      *x509.Certificate
	onLogin   func(http.ResponseWriter, *http.Request, Login)
	errorPage func(http.ResponseWriter, *http.Request, int)
	log       *slog.Logger
	clock     *dsig.Clock
	maxAge    time.Duration
	maxBytes  int64
	parses    chan struct{} // a semaphore of MaxConcurrentParses slots
	mux       *http.ServeMux

	mu    sync.RWMutex
	conns map[string]*conn // by tenant

	// Connections resolved from the engine (connections.go).
	client *http.Client
	now    func() time.Time
	smu    sync.Mutex
	served map[connKey]*served
}

type conn struct {
	Connection
	sp *crewsaml.ServiceProvider
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("saml: Config.Engine is required")
	case cfg.JIT == nil:
		return nil, errors.New("saml: Config.JIT is required")
	case cfg.OnLogin == nil:
		return nil, errors.New("saml: Config.OnLogin is required")
	case (cfg.Key == nil) != (cfg.Certificate == nil):
		return nil, errors.New("saml: Config.Key and Certificate go together")
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || !base.IsAbs() || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("saml: Config.BaseURL %q must be an absolute URL without query", cfg.BaseURL)
	}
	h := &Handler{
		engine: cfg.Engine, jit: cfg.JIT, base: base, basePath: base.Path,
		key: cfg.Key, cert: cfg.Certificate,
		onLogin: cfg.OnLogin, errorPage: cfg.ErrorPage, log: cfg.Logger, clock: cfg.Clock,
		maxAge: cfg.RequestMaxAge, maxBytes: cfg.MaxResponseBytes,
		conns:  map[string]*conn{},
		client: cfg.HTTPClient, now: cfg.Now, served: map[connKey]*served{},
	}
	if h.client == nil {
		h.client = &http.Client{Timeout: 10 * time.Second}
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.maxAge <= 0 {
		h.maxAge = 10 * time.Minute
	}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultMaxResponseBytes
	}
	n := cfg.MaxConcurrentParses
	if n <= 0 {
		n = max(4, 2*runtime.GOMAXPROCS(0))
	}
	h.parses = make(chan struct{}, n)
	if h.errorPage == nil {
		h.errorPage = func(w http.ResponseWriter, _ *http.Request, status int) {
			switch status {
			case http.StatusRequestEntityTooLarge:
				http.Error(w, "Single sign-on failed: the identity provider's response is larger than this service accepts.", status)
			case http.StatusServiceUnavailable:
				http.Error(w, "Single sign-on is busy; try again in a moment.", status)
			default:
				http.Error(w, "Single sign-on failed.", status)
			}
		}
	}
	for _, c := range cfg.Connections {
		if err := h.SetConnection(c); err != nil {
			return nil, err
		}
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET "+h.basePath+"/saml/{tenant}/metadata", h.tenantLevel(h.serveMetadata, h.onlyMetadata))
	h.mux.HandleFunc("GET "+h.basePath+"/saml/{tenant}/login", h.tenantLevel(h.serveLogin, h.discoverIn))
	h.mux.HandleFunc("POST "+h.basePath+"/saml/{tenant}/acs", h.serveACS)
	h.connectionRoutes()
	return h, nil
}

// SetConnection adds or replaces the tenant's SAML connection. The engine
// must know the tenant and the connection (of KindSAML), whose JITSettings
// say what a login may create and update.
func (h *Handler) SetConnection(c Connection) error {
	if c.TenantID == "" || c.ConnectionID == "" {
		return errors.New("saml: Connection.TenantID and ConnectionID are required")
	}
	if strings.ContainsAny(c.TenantID, "/?#%") {
		return fmt.Errorf("saml: tenant id %q cannot be a path segment", c.TenantID)
	}
	if c.IDPMetadata == nil || c.IDPMetadata.EntityID == "" || len(c.IDPMetadata.IDPSSODescriptors) == 0 {
		return fmt.Errorf("saml: connection %s/%s: IDPMetadata with an entity ID and an IDPSSODescriptor is required", c.TenantID, c.ConnectionID)
	}
	t, err := h.engine.Tenant(context.Background(), c.TenantID)
	if err != nil {
		return fmt.Errorf("saml: %w", err)
	}
	known := false
	for _, pc := range t.Connections {
		if pc.ID == c.ConnectionID && pc.Kind == provision.KindSAML {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("saml: tenant %q declares no SAML connection %q", c.TenantID, c.ConnectionID)
	}
	sp := h.newServiceProvider(h.url(c.TenantID, "metadata"), h.url(c.TenantID, "acs"), c.IDPMetadata, c.AllowIDPInitiated, !c.InsecureAllowSHA1)
	h.mu.Lock()
	h.conns[c.TenantID] = &conn{Connection: c, sp: sp}
	h.mu.Unlock()
	return nil
}

// RemoveConnection removes the tenant's SAML connection: its endpoints
// answer 404 from then on.
func (h *Handler) RemoveConnection(tenantID string) {
	h.mu.Lock()
	delete(h.conns, tenantID)
	h.mu.Unlock()
}

// newServiceProvider is the crewjam ServiceProvider of one connection,
// whose entity ID is its metadata URL.
func (h *Handler) newServiceProvider(metadata, acs *url.URL, idp *crewsaml.EntityDescriptor, allowIDPInitiated, rejectSHA1 bool) *crewsaml.ServiceProvider {
	return &crewsaml.ServiceProvider{
		EntityID:                         metadata.String(),
		Key:                              h.key,
		Certificate:                      h.cert,
		MetadataURL:                      *metadata,
		AcsURL:                           *acs,
		IDPMetadata:                      idp,
		AuthnNameIDFormat:                crewsaml.PersistentNameIDFormat,
		AllowIDPInitiated:                allowIDPInitiated,
		AssertionConsumerServiceBindings: []string{crewsaml.HTTPPostBinding},
		Clock:                            h.clock,
		DefaultRedirectURI:               "/",
		RejectSHA1Signatures:             rejectSHA1,
	}
}

// ServiceProvider returns a copy of the tenant's crewjam ServiceProvider.
func (h *Handler) ServiceProvider(tenantID string) (crewsaml.ServiceProvider, bool) {
	c, ok := h.conn(tenantID)
	if !ok {
		return crewsaml.ServiceProvider{}, false
	}
	return *c.sp, true
}

func (h *Handler) conn(tenantID string) (*conn, bool) {
	h.mu.RLock()
	c, ok := h.conns[tenantID]
	h.mu.RUnlock()
	return c, ok
}

func (h *Handler) url(tenantID, leaf string) *url.URL {
	u := *h.base
	u.Path = h.basePath + "/saml/" + tenantID + "/" + leaf
	return &u
}

// MetadataURL is the tenant's SP metadata URL, which is also its entity ID.
func (h *Handler) MetadataURL(tenantID string) string { return h.url(tenantID, "metadata").String() }

// ACSURL is the tenant's assertion consumer service URL.
func (h *Handler) ACSURL(tenantID string) string { return h.url(tenantID, "acs").String() }

// LoginURL is the URL that starts a login for the tenant.
func (h *Handler) LoginURL(tenantID string) string { return h.url(tenantID, "login").String() }

// ServeHTTP serves the metadata, login and ACS endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request) {
	c, ok := h.connOf(r)
	if !ok {
		h.errorPage(w, r, http.StatusNotFound)
		return
	}
	h.writeMetadata(w, r, c.TenantID, c.sp)
}

// writeMetadata answers the SP metadata of sp.
func (h *Handler) writeMetadata(w http.ResponseWriter, r *http.Request, tenantID string, sp *crewsaml.ServiceProvider) {
	b, err := xml.MarshalIndent(sp.Metadata(), "", "  ")
	if err != nil {
		h.log.ErrorContext(r.Context(), "saml: metadata", "tenant", tenantID, "error", err)
		h.errorPage(w, r, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(b)
}

// DefaultMaxResponseBytes is the default Config.MaxResponseBytes: 256 KiB,
// about six times what Entra ID or Okta post for a user in 150 groups.
const DefaultMaxResponseBytes = 256 << 10

const cookiePrefix = "idprov_saml_"

func requestKey(conn, id string) string { return "saml/request/" + conn + "/" + id }

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func isToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// localPath returns p if it is a path on this site ("/x", not "//host" or
// "/\host"), else "".
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return ""
	}
	u, err := url.Parse(p)
	if err != nil || u.IsAbs() || u.Host != "" {
		return ""
	}
	return p
}

func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := h.connOf(r)
	if !ok {
		h.errorPage(w, r, http.StatusNotFound)
		return
	}
	returnTo := localPath(r.URL.Query().Get("return_to"))
	if returnTo == "" {
		returnTo = "/"
	}
	redirect, err := h.startLogin(ctx, w, c, returnTo)
	if errors.Is(err, errTracking) {
		h.errorPage(w, r, http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		h.errorPage(w, r, http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, redirect, http.StatusFound)
}

// errTracking is the error of startLogin when the KV cannot keep the
// started request.
var errTracking = errors.New("saml: the started sign-in cannot be tracked")

// startLogin makes an authentication request through c, tracks it in the
// KV with returnTo (a local path, or testMarker for a test sign-in),
// binds it to the browser with a cookie, and returns the IdP URL to send
// the browser to.
func (h *Handler) startLogin(ctx context.Context, w http.ResponseWriter, c *conn, returnTo string) (string, error) {
	sso := c.sp.GetSSOBindingLocation(crewsaml.HTTPRedirectBinding)
	if sso == "" {
		h.log.ErrorContext(ctx, "saml: the IdP metadata has no HTTP-Redirect SSO endpoint", "tenant", c.TenantID, "connection", c.ConnectionID)
		return "", errors.New("the IdP metadata has no HTTP-Redirect single sign-on URL")
	}
	req, err := c.sp.MakeAuthenticationRequest(sso, crewsaml.HTTPRedirectBinding, crewsaml.HTTPPostBinding)
	if err != nil {
		h.log.ErrorContext(ctx, "saml: authentication request", "tenant", c.TenantID, "error", err)
		return "", fmt.Errorf("saml: authentication request: %w", err)
	}
	if err := provision.AdapterOf(h.engine).KVSet(ctx, c.TenantID, requestKey(c.ConnectionID, req.ID), []byte(returnTo), h.maxAge); err != nil {
		h.log.ErrorContext(ctx, "saml: tracking the request", "tenant", c.TenantID, "error", err)
		return "", fmt.Errorf("%w: %w", errTracking, err)
	}
	relay := randomToken()
	redirect, err := req.Redirect(relay, c.sp)
	if err != nil {
		h.log.ErrorContext(ctx, "saml: authentication request", "tenant", c.TenantID, "error", err)
		return "", fmt.Errorf("saml: authentication request: %w", err)
	}
	http.SetCookie(w, h.trackingCookie(c, relay, req.ID, int(h.maxAge/time.Second)))
	return redirect.String(), nil
}

// trackingCookie binds a started login to the browser. The IdP posts to
// the ACS cross-site, so over HTTPS it is SameSite=None (and Secure). Its
// path is the connection's ACS.
func (h *Handler) trackingCookie(c *conn, relay, value string, maxAge int) *http.Cookie {
	secure := h.base.Scheme == "https"
	site := http.SameSiteLaxMode
	if secure {
		site = http.SameSiteNoneMode
	}
	return &http.Cookie{
		Name: cookiePrefix + relay, Value: value, Path: c.sp.AcsURL.Path,
		MaxAge: maxAge, HttpOnly: true, Secure: secure, SameSite: site,
	}
}

// replayFunc is the replay cache of one ACS request, in the engine's KV.
type replayFunc func(id string, expiresAt time.Time) error

func (f replayFunc) Consume(id string, expiresAt time.Time) error { return f(id, expiresAt) }

func consumeOnce(ctx context.Context, e *provision.Engine, tenantID, connectionID, id string, expiresAt time.Time) error {
	// Keep the id at least a few minutes whatever the clocks say: ids are
	// random, keeping them longer costs little.
	ttl := max(time.Until(expiresAt), 10*time.Minute)
	ttl = min(ttl, 24*time.Hour)
	ok, err := provision.AdapterOf(e).KVInsert(ctx, tenantID, "saml/replay/"+connectionID+"/"+id, []byte{1}, ttl)
	if err != nil {
		return fmt.Errorf("saml: replay cache: %w", err)
	}
	if !ok {
		return crewsaml.ErrAssertionReplayed
	}
	return nil
}

// NewReplayCache returns a crewjam AssertionReplayCache kept in the
// engine's KV under the tenant, for hosts that keep samlsp.Middleware: set
// it as ServiceProvider.ReplayCache. Every replica sharing the Store
// shares it.
func NewReplayCache(e *provision.Engine, tenantID, connectionID string) crewsaml.AssertionReplayCache {
	return replayFunc(func(id string, expiresAt time.Time) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return consumeOnce(ctx, e, tenantID, connectionID, id, expiresAt)
	})
}

// refusal reasons by crewjam error kind, for the audit trail.
var errKinds = []struct {
	err  error
	name string
}{
	{crewsaml.ErrAssertionReplayed, "replayed"},
	{crewsaml.ErrInvalidSignature, "invalid signature"},
	{crewsaml.ErrUntrustedCertificate, "untrusted certificate"},
	{crewsaml.ErrCertificateNotValidNow, "certificate not valid now"},
	{crewsaml.ErrExpired, "expired"},
	{crewsaml.ErrNotYetValid, "not yet valid"},
	{crewsaml.ErrIssuerMismatch, "issuer mismatch"},
	{crewsaml.ErrDestinationMismatch, "destination or recipient mismatch"},
	{crewsaml.ErrRequestIDMismatch, "request id mismatch"},
	{crewsaml.ErrAudienceMismatch, "audience mismatch"},
	{crewsaml.ErrMalformedMessage, "malformed message"},
	{crewsaml.ErrMissingElement, "missing element"},
	{crewsaml.ErrDecryptionFailed, "decryption failed"},
	{crewsaml.ErrUnsupported, "unsupported"},
}

// sha1Refused is the text of crewjam's refusal of a SHA-1 signature
// (RejectSHA1Signatures); its error value is not exported.
const sha1Refused = "SHA-1 based signature algorithms are not accepted"

func reasonOf(err error) string {
	kind := "invalid response"
	if strings.Contains(reasonDetail(err), sha1Refused) {
		return "SHA-1 signature refused (the IdP must sign with RSA-SHA256; Connection.InsecureAllowSHA1 accepts SHA-1 for an old IdP): " + reasonDetail(err)
	}
	for _, k := range errKinds {
		if errors.Is(err, k.err) {
			kind = k.name
			break
		}
	}
	var bad crewsaml.ErrBadStatus
	if errors.As(err, &bad) {
		kind = "IdP status " + bad.Status
	}
	return kind + ": " + reasonDetail(err)
}

// reasonDetail is the private detail of a crewjam error.
func reasonDetail(err error) string {
	var ire *crewsaml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		return ire.PrivateErr.Error()
	}
	return err.Error()
}

func originOf(c *conn) provision.Origin {
	return provision.Origin{TenantID: c.TenantID, ConnectionID: c.ConnectionID, Actor: "saml"}
}

// refuse records a refusal (unless jit already did) and answers the
// browser a generic error (ErrorPage may read RefusalOf).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, c *conn, reason string, err error) {
	h.refuseLogin(w, r, c, reason, err, "")
}

// refuseLogin is refuse for a verified login of userName.
func (h *Handler) refuseLogin(w http.ResponseWriter, r *http.Request, c *conn, reason string, err error, userName string) {
	var re *jit.RefusedError
	if !errors.As(err, &re) {
		provision.AdapterOf(h.engine).Refuse(r.Context(), originOf(c), "saml.acs", reason, err)
	}
	h.errorPage(w, withRefusal(r, c, reason, err, userName), http.StatusForbidden)
}

// refuseOrTest refuses a response, and for a test sign-in shows why on
// the setup page.
func (h *Handler) refuseOrTest(w http.ResponseWriter, r *http.Request, c *conn, test bool, reason string, err error) {
	if !test {
		h.refuse(w, r, c, reason, err)
		return
	}
	provision.AdapterOf(h.engine).Refuse(r.Context(), originOf(c), "saml.acs", "test sign-in: "+reason, err)
	h.finishTest(w, r, c, nil, "The IdP's response was refused: "+reason)
}

func (h *Handler) serveACS(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenantID := r.PathValue("tenant")
	c, ok := h.connOf(r)
	if !ok {
		h.log.InfoContext(ctx, "saml: ACS post for an unknown tenant", "tenant", tenantID)
		h.errorPage(w, r, http.StatusNotFound)
		return
	}
	if !h.admit(w, r, c) {
		return
	}

	// The started login this response may answer: named by RelayState,
	// bound to this browser by its cookie, issued by us (in the KV).
	var requestID, returnTo string
	test := false
	if relay := r.PostForm.Get("RelayState"); isToken(relay) {
		if ck, err := r.Cookie(cookiePrefix + relay); err == nil && ck.Value != "" {
			if v, err := provision.AdapterOf(h.engine).KVGet(ctx, c.TenantID, requestKey(c.ConnectionID, ck.Value)); err == nil {
				requestID, returnTo = ck.Value, string(v)
				test = returnTo == testMarker
			}
			http.SetCookie(w, h.trackingCookie(c, relay, "", -1))
		}
	}
	var ids []string
	if requestID != "" {
		ids = append(ids, requestID)
	}
	if c.AllowIDPInitiated {
		ids = append(ids, "")
	}

	sp := *c.sp
	sp.ReplayCache = replayFunc(func(id string, exp time.Time) error {
		return consumeOnce(ctx, h.engine, c.TenantID, c.ConnectionID, id, exp)
	})
	a, err := h.parse(&sp, r, ids)
	if errors.Is(err, errBusy) || errors.Is(err, ctx.Err()) && ctx.Err() != nil {
		h.busy(w, r, c)
		return
	}
	if nc := h.refreshAfter(ctx, c, err); nc != nil {
		// The IdP's metadata changed (a certificate rotation): validate again.
		c, sp.IDPMetadata = nc, nc.sp.IDPMetadata
		a, err = h.parse(&sp, r, ids)
		if errors.Is(err, errBusy) || errors.Is(err, ctx.Err()) && ctx.Err() != nil {
			h.busy(w, r, c)
			return
		}
	}
	if err != nil {
		h.refuseOrTest(w, r, c, test, reasonOf(err), err)
		return
	}
	if a.Issuer.Value != c.IDPMetadata.EntityID { // crewjam checked it; belt and braces
		h.refuseOrTest(w, r, c, test, fmt.Sprintf("issuer mismatch: %q", a.Issuer.Value), crewsaml.ErrIssuerMismatch)
		return
	}
	if requestID != "" {
		if err := provision.AdapterOf(h.engine).KVDelete(ctx, c.TenantID, requestKey(c.ConnectionID, requestID)); err != nil {
			h.log.WarnContext(ctx, "saml: forgetting a tracked request", "error", err)
		}
	}
	id, err := MapAssertion(a, c.Mapping)
	if err != nil {
		h.refuseOrTest(w, r, c, test, err.Error(), err)
		return
	}
	id.ConnectionID = c.ConnectionID
	if test {
		h.finishTest(w, r, c, &id, "")
		return
	}
	user, err := h.jit.Provision(ctx, c.TenantID, c.ConnectionID, id)
	if err != nil {
		var re *jit.RefusedError
		if errors.As(err, &re) {
			h.refuseLogin(w, r, c, re.Reason, err, id.User.UserName)
			return
		}
		h.log.ErrorContext(ctx, "saml: provisioning failed", "tenant", c.TenantID, "error", err)
		h.errorPage(w, r, http.StatusServiceUnavailable)
		return
	}
	if returnTo == "" {
		returnTo = "/"
		if c.AllowIDPInitiated && requestID == "" {
			if p := localPath(r.PostForm.Get("RelayState")); p != "" {
				returnTo = p
			}
		}
	}
	l := Login{TenantID: c.TenantID, ConnectionID: c.ConnectionID, User: user, Identity: id, Assertion: a, ReturnTo: returnTo}
	for _, st := range a.AuthnStatements {
		if st.SessionNotOnOrAfter != nil && (l.SessionNotOnOrAfter.IsZero() || st.SessionNotOnOrAfter.Before(l.SessionNotOnOrAfter)) {
			l.SessionNotOnOrAfter = *st.SessionNotOnOrAfter
		}
	}
	h.log.InfoContext(ctx, "saml: login", "tenant", c.TenantID, "connection", c.ConnectionID, "user", user.ID, "assertion", a.ID)
	h.onLogin(w, r, l)
}
