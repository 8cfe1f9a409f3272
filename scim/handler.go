package scim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

// Config configures a SCIM handler. Engine is required; every other field
// has a default.
type Config struct {
	// Engine applies every change and answers every read. Required.
	Engine *provision.Engine
	// Authenticator maps a bearer token to its directory (tenant and SCIM
	// connection). Nil means the engine's connections: a token is valid
	// when a SCIM connection of a declared or registered tenant lists its
	// hash in SCIMSettings.TokenHashes (registered ones are looked up by
	// hash in the Store's Registry, so tokens made on one replica work on
	// every other). A *TokenSet lets a host keep the hashes itself.
	Authenticator Authenticator
	// BaseURL, when set, is the absolute URL the handler is mounted at
	// ("https://app.example.com/scim/v2"): meta.location and Location
	// headers are then absolute. Empty means relative locations.
	BaseURL string
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	// Default 1 MiB.
	MaxBodyBytes int64
	// MaxResults is the largest page a list returns; a larger count is
	// clamped to it, not refused. Default 100.
	MaxResults int
	// RateLimit bounds the request rate of each directory; requests past
	// it are answered 429 with Retry-After. The zero value sets no limit.
	RateLimit RateLimit
	// RetryAfter is the Retry-After of a 503 answered when the Store is
	// unavailable. Default 30 seconds.
	RetryAfter time.Duration
	// StrictTypes refuses (400) the dialect forms Microsoft Entra ID sends
	// against the schema: "True"/"False" strings for booleans and a bare
	// string for the enterprise manager. By default they are accepted and
	// normalized, for this handler only.
	StrictTypes bool
	// SetPassword, when set, receives the password an identity provider
	// sets on a user (on create, replace or patch), once, after the change
	// committed. idprov never stores, returns or logs it. Without it a
	// password sent is dropped. An error answers the request 500 (the
	// identity provider retries).
	SetPassword func(ctx context.Context, o provision.Origin, userID, password string) error
	// Bulk bounds POST /Bulk; the bounds are advertised in
	// /ServiceProviderConfig.
	Bulk BulkLimits
	// RequestLog keeps each directory's recent requests and responses,
	// redacted, for the host's support tooling (Handler.RequestLog,
	// Handler.Health).
	RequestLog RequestLogConfig
	// Logger receives the handler's diagnostics (never tokens, passwords
	// or request bodies). Nil discards them.
	Logger *slog.Logger
	// Now is the clock of the rate limiter and the request log. Nil means
	// time.Now.
	Now func() time.Time
}

// BulkLimits bound a Bulk request (RFC 7644 section 3.7); a request past
// them is answered 413. The zero value means the defaults.
type BulkLimits struct {
	// MaxOperations is the most operations one request may hold. Default
	// 1000.
	MaxOperations int
	// MaxPayloadSize is the largest Bulk request body, in bytes (it
	// replaces MaxBodyBytes for /Bulk). Default 1 MiB.
	MaxPayloadSize int
}

// RateLimit is a token bucket per directory.
type RateLimit struct {
	// PerSecond is the sustained number of requests per second a directory
	// may make; 0 means no limit.
	PerSecond float64
	// Burst is how many requests may come at once. Default: PerSecond
	// rounded up, at least 1.
	Burst int
}

// The schema URNs the handler knows.
const (
	userURN       = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupURN      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	patchOpURN    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

const defaultMaxBody = 1 << 20

// Handler is the SCIM 2.0 server: an http.Handler the host mounts under
// any prefix with http.StripPrefix, so that it sees paths such as
// "/Users/{id}". Besides serving, it tells the host how each directory is
// doing: RequestLog and Health. Make one with New.
type Handler struct {
	engine      *provision.Engine
	auth        Authenticator
	server      elimity.Server
	log         *slog.Logger
	maxBody     int64
	maxResults  int
	retryAfter  time.Duration
	strict      bool
	setPassword func(ctx context.Context, o provision.Origin, userID, password string) error
	limiter     *limiter
	baseURL     string
	bulk        BulkLimits
	spc         []byte
	logCfg      RequestLogConfig
	logs        *logStore
	now         func() time.Time
	metrics     *scimMetrics

	userSchema, groupSchema, enterpriseSchema schema.Schema
	// userPatch and groupPatch are the schemas PATCH operations are
	// validated against (see servePatch).
	userPatch, groupPatch *patchSchemas
	// noFast lets elimity answer every PATCH and POST (tests compare).
	noFast bool
}

// New validates cfg and returns the SCIM handler. It builds one
// elimity-com/scim Server for this handler only, with no process-wide
// settings, so handlers with different configurations live side by side.
func New(cfg Config) (*Handler, error) {
	if cfg.Engine == nil {
		return nil, errors.New("scim: Config.Engine is required")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxResults < 0 || cfg.RetryAfter < 0 || cfg.RateLimit.PerSecond < 0 || cfg.RateLimit.Burst < 0 ||
		cfg.Bulk.MaxOperations < 0 || cfg.Bulk.MaxPayloadSize < 0 || cfg.RequestLog.MaxAge < 0 || cfg.RequestLog.MaxBodyBytes < 0 {
		return nil, errors.New("scim: Config limits must not be negative")
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || !u.IsAbs() {
			return nil, errors.New("scim: Config.BaseURL must be an absolute URL")
		}
	}
	auth := cfg.Authenticator
	if auth == nil {
		auth = engineAuth{cfg.Engine}
	}
	h := &Handler{
		engine:           cfg.Engine,
		auth:             auth,
		log:              cfg.Logger,
		maxBody:          cfg.MaxBodyBytes,
		maxResults:       cfg.MaxResults,
		retryAfter:       cfg.RetryAfter,
		strict:           cfg.StrictTypes,
		setPassword:      cfg.SetPassword,
		baseURL:          strings.TrimRight(cfg.BaseURL, "/"),
		bulk:             cfg.Bulk,
		logCfg:           cfg.RequestLog,
		now:              cfg.Now,
		userSchema:       schema.CoreUserSchema(),
		groupSchema:      schema.CoreGroupSchema(),
		enterpriseSchema: schema.ExtensionEnterpriseUser(),
	}
	h.userPatch = newPatchSchemas(h.userSchema, h.enterpriseSchema)
	h.groupPatch = newPatchSchemas(h.groupSchema)
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody == 0 {
		h.maxBody = defaultMaxBody
	}
	if h.maxResults == 0 {
		h.maxResults = 100
	}
	if h.retryAfter == 0 {
		h.retryAfter = 30 * time.Second
	}
	if h.now == nil {
		h.now = time.Now
	}
	if cfg.RateLimit.PerSecond > 0 {
		h.limiter = newLimiter(cfg.RateLimit, h.now)
	}
	if h.bulk.MaxOperations == 0 {
		h.bulk.MaxOperations = 1000
	}
	if h.bulk.MaxPayloadSize == 0 {
		h.bulk.MaxPayloadSize = 1 << 20
	}
	h.logCfg = h.logCfg.withDefaults()
	h.logs = newLogStore(h.logCfg)
	h.metrics = newSCIMMetrics(provision.AdapterOf(cfg.Engine).MeterProvider())
	h.spc = h.serviceProviderConfig()
	spc := &elimity.ServiceProviderConfig{
		DocumentationURI: optional.NewString("https://github.com/idprov/idprov#scim-quick-start"),
		AuthenticationSchemes: []elimity.AuthenticationScheme{{
			Type:        elimity.AuthenticationTypeOauthBearerToken,
			Name:        "OAuth Bearer Token",
			Description: "Authentication with a long-lived bearer token per SCIM directory.",
			SpecURI:     optional.NewString("https://www.rfc-editor.org/info/rfc6750"),
			Primary:     true,
		}},
		MaxResults:       h.maxResults,
		SupportFiltering: true,
		SupportPatch:     true,
	}
	opts := []elimity.ServerOption{elimity.WithLogger(elimityLogger{h.log}), elimity.WithRootQueryHandler(rootHandler{h})}
	if cfg.BaseURL != "" {
		opts = append(opts, elimity.WithBaseURL(cfg.BaseURL))
	}
	srv, err := elimity.NewServer(&elimity.ServerArgs{
		ServiceProviderConfig: spc,
		ResourceTypes: []elimity.ResourceType{
			{
				ID:          optional.NewString("User"),
				Name:        "User",
				Description: optional.NewString("User Account"),
				Endpoint:    "/Users",
				Schema:      h.userSchema,
				SchemaExtensions: []elimity.SchemaExtension{
					{Schema: h.enterpriseSchema},
				},
				Handler: userHandler{h},
			},
			{
				ID:          optional.NewString("Group"),
				Name:        "Group",
				Description: optional.NewString("Group"),
				Endpoint:    "/Groups",
				Schema:      h.groupSchema,
				Handler:     groupHandler{h},
			},
		},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("scim: %w", err)
	}
	h.server = srv
	return h, nil
}

// elimityLogger adapts slog to elimity's Logger.
type elimityLogger struct{ log *slog.Logger }

func (l elimityLogger) Error(args ...any) {
	if len(args) == 0 {
		return
	}
	msg, _ := args[0].(string)
	// Only the message: elimity's key/value pairs may carry resources.
	l.log.Error("scim: elimity: " + msg)
}

// endpoint is what the front found a request is for.
type endpoint uint8

const (
	epOther endpoint = iota
	epUsers
	epGroups
)

// route is a request path made canonical: endpoint names case-folded, the
// "/v2" prefix and trailing slashes dropped.
type route struct {
	path string
	ep   endpoint
	// item is set for "/Users/{id}" and "/Groups/{id}".
	item bool
	// search is set for "/.search", "/Users/.search" and "/Groups/.search".
	search bool
}

var endpointNames = map[string]string{
	"users":                  "Users",
	"groups":                 "Groups",
	"schemas":                "Schemas",
	"resourcetypes":          "ResourceTypes",
	"serviceproviderconfig":  "ServiceProviderConfig",
	"serviceproviderconfigs": "ServiceProviderConfig",
	"me":                     "Me",
	"bulk":                   "Bulk",
	".search":                ".search",
}

func kindOf(rt route) kind {
	if rt.ep == epGroups {
		return groupKind
	}
	return userKind
}

func parseRoute(p string) route {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) > 0 && strings.EqualFold(segs[0], "v2") {
		segs = segs[1:]
	}
	if len(segs) == 0 || segs[0] == "" {
		return route{path: "/"}
	}
	if name, ok := endpointNames[strings.ToLower(segs[0])]; ok {
		segs[0] = name
	}
	rt := route{}
	switch segs[0] {
	case "Users":
		rt.ep = epUsers
	case "Groups":
		rt.ep = epGroups
	}
	if len(segs) == 1 && segs[0] == ".search" {
		rt.search = true
	}
	if len(segs) == 2 && strings.EqualFold(segs[1], ".search") {
		segs[1] = ".search"
		rt.search = rt.ep != epOther
	} else if len(segs) == 2 && rt.ep != epOther {
		rt.item = true
	}
	if len(segs) > 2 && rt.ep != epOther {
		rt.ep = epOther // "/Users/a/b" is no endpoint: elimity answers 404
	}
	rt.path = "/" + strings.Join(segs, "/")
	return rt
}

// ServeHTTP implements http.Handler: the front. It authenticates, limits,
// normalizes the request and hands it to the elimity server, whose answer
// it then finishes (SCIM errors, list page sizes).
func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.URL.Path)
	st := &request{route: rt, start: h.now()}
	st.origin.RequestID = requestID(r)
	w := &logWriter{ResponseWriter: rw, status: http.StatusOK, max: h.logCfg.MaxBodyBytes}
	var body []byte
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("scim: panic while serving a request", "method", r.Method, "panic", fmt.Sprintf("%T", v))
			writeError(w, &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}, 0)
		}
		h.record(r, st, body, w)
	}()
	ctx := r.Context()
	w.Header().Set("X-Request-Id", st.origin.RequestID)

	dir, err := h.auth.Authenticate(ctx, bearerToken(r))
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scim"`)
			h.log.InfoContext(ctx, "scim: refused a request with a bad bearer token", "method", r.Method, "path", rt.path, "request_id", st.origin.RequestID)
			writeError(w, &scimError{status: http.StatusUnauthorized, detail: "The bearer token is missing or invalid."}, 0)
			return
		}
		h.log.ErrorContext(ctx, "scim: authenticator failed", "error", err.Error(), "request_id", st.origin.RequestID)
		writeError(w, &scimError{status: http.StatusServiceUnavailable, detail: "Authentication is unavailable; retry later."}, h.retryAfter)
		return
	}
	st.dir = dir
	st.origin.TenantID, st.origin.ConnectionID = dir.TenantID, dir.ConnectionID
	st.origin.Actor = actor(r)

	if h.limiter != nil {
		if ok, wait := h.limiter.allow(dirKey{dir.TenantID, dir.ConnectionID}); !ok {
			writeError(w, &scimError{status: http.StatusTooManyRequests, detail: "Too many requests for this directory; retry later."}, wait)
			return
		}
	}

	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		limit := h.maxBody
		if rt.path == "/Bulk" && r.Method == http.MethodPost {
			limit = int64(h.bulk.MaxPayloadSize)
		}
		if r.ContentLength > limit {
			writeError(w, tooLarge(limit), 0)
			return
		}
		body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, tooLarge(limit), 0)
				return
			}
			writeError(w, &scimError{status: http.StatusBadRequest, scimType: "invalidSyntax", detail: "The request body could not be read."}, 0)
			return
		}
	}
	h.serve(w, r, st, r.Method, body, r.URL.RawQuery)
}

// serve answers an authenticated request: the endpoints the front answers
// itself (/ServiceProviderConfig, /Bulk, the .search endpoints), else
// elimity's, after prepare. A Bulk operation comes here too.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, st *request, method string, body []byte, query string) {
	rt := st.route
	switch {
	case readOnly(rt.path) && method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, &scimError{status: http.StatusMethodNotAllowed, detail: "This endpoint is read-only: only GET is allowed."}, 0)
		return
	case rt.path == "/ServiceProviderConfig" && method == http.MethodGet:
		h.serveSPC(w)
		return
	case rt.path == "/Bulk":
		if method != http.MethodPost {
			writeError(w, &scimError{status: http.StatusMethodNotAllowed, detail: "Bulk requests are POSTed."}, 0)
			return
		}
		if st.inBulk {
			writeError(w, badValue("A Bulk operation cannot be a Bulk request."), 0)
			return
		}
		h.serveBulk(w, r, st, body)
		return
	case rt.search:
		if method != http.MethodPost {
			writeError(w, &scimError{status: http.StatusMethodNotAllowed, detail: "Searches are POSTed."}, 0)
			return
		}
		q, serr := h.prepareSearch(st, body)
		if serr != nil {
			writeError(w, serr, 0)
			return
		}
		// The search goes on as the equivalent GET.
		method, body, query = http.MethodGet, nil, q
		switch rt.ep {
		case epUsers:
			st.route.path = "/Users"
		case epGroups:
			st.route.path = "/Groups"
		default:
			st.route.path = "/"
		}
	default:
		if method == http.MethodGet {
			st.ifNoneMatch = r.Header.Get("If-None-Match")
		} else if rt.ep != epOther && query != "" {
			// attributes and excludedAttributes shape a write's answer too.
			if q, err := url.ParseQuery(query); err == nil {
				st.proj = parseProjection(q["attributes"], q["excludedAttributes"])
			}
		}
		if serr := h.prepare(st, method, &body, &query); serr != nil {
			writeError(w, serr, 0)
			return
		}
		if doc := st.patchDoc; doc != nil || st.resDoc != nil {
			switch {
			case h.noFast:
			case doc != nil && h.servePatch(w, r, st):
				return
			case doc == nil && method == http.MethodPost && h.serveCreate(w, r, st):
				return
			}
			if doc == nil {
				doc = st.resDoc
			}
			// elimity answers it, from the prepared body.
			b, err := json.Marshal(doc)
			if err != nil {
				writeError(w, badSyntax("The request body could not be read."), 0)
				return
			}
			body = b
		}
	}

	r2 := r.WithContext(context.WithValue(r.Context(), requestKey{}, st))
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = st.route.path, "", query
	r2.URL, r2.Method = &u, method
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	rec := &recorder{header: w.Header(), status: http.StatusOK}
	h.server.ServeHTTP(rec, r2)
	h.finish(w, rec, st)
}

// readOnly reports whether p is one of the discovery endpoints (RFC 7644
// section 4) or under one: they answer GET only.
func readOnly(p string) bool {
	for _, ep := range []string{"/ServiceProviderConfig", "/Schemas", "/ResourceTypes"} {
		if p == ep || strings.HasPrefix(p, ep+"/") {
			return true
		}
	}
	return false
}

func tooLarge(max int64) *scimError {
	return &scimError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("The request body is larger than %d bytes.", max)}
}

// prepare normalizes what elimity would refuse although Okta or Entra send
// it, and takes out what elimity would drop (extension attributes it does
// not know, the filter its parser cannot read).
func (h *Handler) prepare(st *request, method string, body *[]byte, query *string) *scimError {
	rt := st.route
	switch {
	case rt.ep == epUsers && !rt.item && method == http.MethodPost,
		rt.ep == epUsers && rt.item && method == http.MethodPut:
		return h.prepareResource(st, body, userKind)
	case rt.ep == epGroups && !rt.item && method == http.MethodPost,
		rt.ep == epGroups && rt.item && method == http.MethodPut:
		return h.prepareResource(st, body, groupKind)
	case rt.ep == epUsers && rt.item && method == http.MethodPatch:
		return h.preparePatch(st, body, userKind)
	case rt.ep == epGroups && rt.item && method == http.MethodPatch:
		return h.preparePatch(st, body, groupKind)
	case (rt.ep != epOther || rt.path == "/") && method == http.MethodGet:
		return h.prepareQuery(st, query)
	}
	return nil
}

// prepareQuery parses the filter with idprov's parser (which reads Entra's
// `emails[type eq "work"].value eq "x"` and filters mixing core and
// extension attributes, both of which elimity's validator refuses) and
// removes it from the query elimity sees; reads excludedAttributes.
func (h *Handler) prepareQuery(st *request, query *string) *scimError {
	q, err := url.ParseQuery(*query)
	if err != nil {
		return &scimError{status: http.StatusBadRequest, detail: "The query string is malformed."}
	}
	st.proj = parseProjection(q["attributes"], q["excludedAttributes"])
	if serr := st.setSort(q.Get("sortBy"), q.Get("sortOrder")); serr != nil {
		return serr
	}
	f, has := q["filter"]
	if !has {
		return nil
	}
	delete(q, "filter")
	*query = q.Encode()
	return h.setFilter(st, strings.TrimSpace(f[0]))
}

// setSort validates a sortBy and sortOrder.
func (st *request) setSort(sortBy, order string) *scimError {
	sortBy = strings.TrimSpace(sortBy)
	switch {
	case order == "" || strings.EqualFold(order, "ascending"):
	case strings.EqualFold(order, "descending"):
		st.descending = true
	default:
		return badValue(`sortOrder must be "ascending" or "descending".`)
	}
	if sortBy == "" {
		return nil
	}
	res := filter.Users
	if st.route.ep == epGroups {
		res = filter.Groups
	}
	if st.route.ep != epOther {
		a, err := filter.Resolve(res, sortBy)
		if err != nil || a.Path == "members.value" || a.Path == "members" {
			return badPath("sortBy names no attribute this server sorts by.")
		}
	}
	st.sortBy = sortBy
	return nil
}

// setFilter parses a filter with idprov's parser (which reads Entra's
// `emails[type eq "work"].value eq "x"` and filters mixing core and
// extension attributes, both of which elimity's validator refuses). For
// a root query it is parsed for users and for groups: a filter naming an
// attribute of one resource type only selects among that type.
func (h *Handler) setFilter(st *request, f string) *scimError {
	if f == "" {
		return nil
	}
	if st.route.ep == epOther {
		ue, uerr := filter.ParseFor(filter.Users, f)
		if uerr == nil {
			uerr = h.checkFilterAttrs(userKind, ue)
		}
		ge, gerr := filter.ParseFor(filter.Groups, f)
		if gerr == nil {
			gerr = h.checkFilterAttrs(groupKind, ge)
		}
		if uerr != nil && gerr != nil {
			return filterError(uerr)
		}
		st.root = &rootQuery{users: ue, groups: ge, skipUsers: uerr != nil, skipGroups: gerr != nil}
		return nil
	}
	res := filter.Users
	if st.route.ep == epGroups {
		res = filter.Groups
	}
	expr, err := filter.ParseFor(res, f)
	if err == nil {
		err = h.checkFilterAttrs(kindOf(st.route), expr)
	}
	if err != nil {
		return filterError(err)
	}
	st.filter = expr
	return nil
}

// undefinedAttrError is a filter naming an attribute that no schema of
// the resource type defines (RFC 7644 section 3.4.2.2: invalidFilter).
type undefinedAttrError struct{ attr string }

func (e *undefinedAttrError) Error() string {
	return "scim: the filter names an attribute no schema defines: " + e.attr
}

// checkFilterAttrs refuses a filter on an attribute that no schema of the
// resource type defines. The filter package resolves such a name to a
// Custom attribute (one kept in Attributes); those the resource's core
// schema defines (entitlements, x509Certificates) and those under an
// extension URN (custom extensions, unknown enterprise keys, kept as
// sent) are valid.
func (h *Handler) checkFilterAttrs(k kind, e filter.Expr) error {
	var bad string
	check := func(a filter.Attr) {
		if bad != "" || !a.Custom {
			return
		}
		if !h.defines(k, a.Key) {
			bad = a.Key
		}
	}
	filter.Walk(e, func(x filter.Expr) bool {
		switch x := x.(type) {
		case *filter.Compare:
			check(x.Attr)
		case *filter.ValuePath:
			check(x.Attr)
		}
		return bad == ""
	})
	if bad != "" {
		return &undefinedAttrError{attr: bad}
	}
	return nil
}

// defines reports whether key, an attribute name as a body or a filter
// writes it (plain or URN-qualified), is one a resource of kind k may
// hold: an attribute of its core schema, or any attribute under an
// extension URN.
func (h *Handler) defines(k kind, key string) bool {
	if !isURN(key) {
		_, ok := h.coreSchema(k).Attributes.ContainsAttribute(key)
		return ok
	}
	i := strings.LastIndexByte(key, ':')
	if strings.EqualFold(key[:i], h.coreURN(k)) {
		_, ok := h.coreSchema(k).Attributes.ContainsAttribute(key[i+1:])
		return ok
	}
	return true
}

func filterError(err error) *scimError {
	var se *filter.SyntaxError
	var ue *undefinedAttrError
	if errors.As(err, &ue) {
		return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: fmt.Sprintf("Invalid filter: no schema of this resource type defines the attribute %q.", ue.attr)}
	}
	if errors.As(err, &se) {
		return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: "Invalid filter: " + se.Msg + " (at byte " + strconv.Itoa(se.Pos) + ")."}
	}
	return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: "Invalid filter."}
}

// finish writes elimity's answer, or the error a resource handler chose
// (elimity turns some statuses, such as 503, into 500), and sets a list's
// itemsPerPage to the page's length (elimity writes the requested count).
func (h *Handler) finish(w http.ResponseWriter, rec *recorder, st *request) {
	if st.err != nil {
		writeError(w, st.err, st.err.retryAfter)
		return
	}
	body := rec.body.Bytes()
	switch {
	case st.status304 && rec.status == http.StatusOK:
		w.Header().Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	case st.body != nil && rec.status < 300:
		body = st.body
	}
	if len(body) > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(rec.status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// recorder buffers elimity's response so the front can finish it.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

type requestKey struct{}

// request is the per-request state the front hands to the resource
// handlers through the request's context (elimity passes them only the
// *http.Request).
type request struct {
	route  route
	dir    Directory
	origin provision.Origin
	start  time.Time

	// filter is the parsed filter of a list; sortBy and descending its
	// sort.
	filter     filter.Expr
	sortBy     string
	descending bool
	// proj is the response's projection (attributes, excludedAttributes).
	proj *projection
	// root holds the filters of a root query (GET / and POST /.search).
	root *rootQuery
	// ifNoneMatch is the GET's If-None-Match; status304 is set when it
	// matched.
	ifNoneMatch string
	status304   bool
	// body, when set, is the response body the front writes in place of
	// elimity's (resources and lists the handlers rendered).
	body []byte
	// resID is the id of the resource answered.
	resID string
	// extras holds what the front took out of a POST or PUT body.
	extras *extras
	// patchDoc is a PATCH body as preparePatch left it, decoded; resDoc a
	// POST or PUT body as prepareResource left it.
	patchDoc, resDoc map[string]any
	// customOps are the PATCH operations on attributes elimity does not
	// know, taken out of the body before elimity validated it.
	customOps []customOp
	// dropped are the request's attributes no schema of the resource
	// defines, which the front dropped.
	dropped []string
	// password is a password the front took out of a body or PATCH.
	password *string
	// isList and listed are set by a list: the page's length.
	isList bool
	listed int
	// inBulk is set for the operations of a Bulk request.
	inBulk bool
	// dialect signals seen in the request's body (see detectDialect).
	sawStringBool, sawUpperOp, sawLowerOp bool

	// err, when set, is the answer, whatever elimity made of it.
	err *scimError
}

func stateOf(r *http.Request) *request {
	st, _ := r.Context().Value(requestKey{}).(*request)
	if st == nil { // not through the front: a programming error
		st = &request{err: &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}}
	}
	return st
}

func bearerToken(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func actor(r *http.Request) string {
	ua := r.Header.Get("User-Agent")
	if len(ua) > 128 {
		ua = ua[:128]
	}
	if ua == "" || !printable(ua) {
		return "scim"
	}
	return "scim: " + ua
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
