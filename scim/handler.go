package scim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Config configures a SCIM handler. Engine and Authenticator are required;
// every other field has a default.
type Config struct {
	// Engine applies every change and answers every read. Required.
	Engine *provision.Engine
	// Authenticator maps a bearer token to its directory (tenant and SCIM
	// connection). Required; a *TokenSet lets the host rotate tokens at
	// run time.
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
	// Logger receives the handler's diagnostics (never tokens, passwords
	// or request bodies). Nil discards them.
	Logger *slog.Logger
	// Now is the clock of the rate limiter. Nil means time.Now.
	Now func() time.Time
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

// handler is the SCIM 2.0 server NewHandler returns. The host mounts
// it under any prefix with http.StripPrefix, so that it sees paths such as
// "/Users/{id}".
type handler struct {
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

	userSchema, groupSchema, enterpriseSchema schema.Schema
}

// NewHandler validates cfg and returns the SCIM handler. It builds one
// elimity-com/scim Server for this handler only, with no process-wide
// settings, so handlers with different configurations live side by side.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Engine == nil {
		return nil, errors.New("scim: Config.Engine is required")
	}
	if cfg.Authenticator == nil {
		return nil, errors.New("scim: Config.Authenticator is required")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxResults < 0 || cfg.RetryAfter < 0 || cfg.RateLimit.PerSecond < 0 || cfg.RateLimit.Burst < 0 {
		return nil, errors.New("scim: Config limits must not be negative")
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || !u.IsAbs() {
			return nil, errors.New("scim: Config.BaseURL must be an absolute URL")
		}
	}
	h := &handler{
		engine:           cfg.Engine,
		auth:             cfg.Authenticator,
		log:              cfg.Logger,
		maxBody:          cfg.MaxBodyBytes,
		maxResults:       cfg.MaxResults,
		retryAfter:       cfg.RetryAfter,
		strict:           cfg.StrictTypes,
		setPassword:      cfg.SetPassword,
		userSchema:       schema.CoreUserSchema(),
		groupSchema:      schema.CoreGroupSchema(),
		enterpriseSchema: schema.ExtensionEnterpriseUser(),
	}
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
	if cfg.RateLimit.PerSecond > 0 {
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		h.limiter = newLimiter(cfg.RateLimit, now)
	}
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
	opts := []elimity.ServerOption{elimity.WithLogger(elimityLogger{h.log})}
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
	if len(segs) == 2 && strings.EqualFold(segs[1], ".search") {
		segs[1] = ".search"
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
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("scim: panic while serving a request", "method", r.Method, "panic", fmt.Sprintf("%T", v))
			writeError(w, &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}, 0)
		}
	}()
	rt := parseRoute(r.URL.Path)
	ctx := r.Context()
	st := &request{route: rt, start: time.Now()}
	st.origin.RequestID = requestID(r)
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

	var body []byte
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		if r.ContentLength > h.maxBody {
			writeError(w, tooLarge(h.maxBody), 0)
			return
		}
		body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, h.maxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, tooLarge(h.maxBody), 0)
				return
			}
			writeError(w, &scimError{status: http.StatusBadRequest, scimType: "invalidSyntax", detail: "The request body could not be read."}, 0)
			return
		}
	}

	query := r.URL.RawQuery
	if serr := h.prepare(st, r.Method, &body, &query); serr != nil {
		writeError(w, serr, 0)
		return
	}

	r2 := r.Clone(context.WithValue(ctx, requestKey{}, st))
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = rt.path, "", query
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	rec := &recorder{header: w.Header(), status: http.StatusOK}
	h.server.ServeHTTP(rec, r2)
	h.finish(w, rec, st)
}

func tooLarge(max int64) *scimError {
	return &scimError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("The request body is larger than %d bytes.", max)}
}

// prepare normalizes what elimity would refuse although Okta or Entra send
// it, and takes out what elimity would drop (extension attributes it does
// not know, the filter its parser cannot read).
func (h *handler) prepare(st *request, method string, body *[]byte, query *string) *scimError {
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
	case rt.ep != epOther && method == http.MethodGet:
		return h.prepareQuery(st, query)
	}
	return nil
}

// prepareQuery parses the filter with idprov's parser (which reads Entra's
// `emails[type eq "work"].value eq "x"` and filters mixing core and
// extension attributes, both of which elimity's validator refuses) and
// removes it from the query elimity sees; reads excludedAttributes.
func (h *handler) prepareQuery(st *request, query *string) *scimError {
	q, err := url.ParseQuery(*query)
	if err != nil {
		return &scimError{status: http.StatusBadRequest, detail: "The query string is malformed."}
	}
	for _, ex := range q["excludedAttributes"] {
		for a := range strings.SplitSeq(ex, ",") {
			if strings.EqualFold(strings.TrimSpace(a), "members") {
				st.excludeMembers = true
			}
		}
	}
	f := strings.TrimSpace(q.Get("filter"))
	if _, ok := q["filter"]; !ok {
		return nil
	}
	delete(q, "filter")
	*query = q.Encode()
	if f == "" {
		return nil
	}
	res := filter.Users
	if st.route.ep == epGroups {
		res = filter.Groups
	}
	expr, err := filter.ParseFor(res, f)
	if err != nil {
		var se *filter.SyntaxError
		if errors.As(err, &se) {
			return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: "Invalid filter: " + se.Msg + " (at byte " + strconv.Itoa(se.Pos) + ")."}
		}
		return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: "Invalid filter."}
	}
	st.filter = expr
	return nil
}

// finish writes elimity's answer, or the error a resource handler chose
// (elimity turns some statuses, such as 503, into 500), and sets a list's
// itemsPerPage to the page's length (elimity writes the requested count).
func (h *handler) finish(w http.ResponseWriter, rec *recorder, st *request) {
	if st.err != nil {
		writeError(w, st.err, st.err.retryAfter)
		return
	}
	body := rec.body.Bytes()
	if st.listed >= 0 && st.isList && rec.status == http.StatusOK {
		body = fixItemsPerPage(body, st.listed)
	}
	if len(body) > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(rec.status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// fixItemsPerPage rewrites the top-level itemsPerPage of a ListResponse.
// elimity marshals it from a map, so keys are sorted: "Resources" comes
// first and the last `"itemsPerPage":` is the top-level one (a key inside
// a resource can only appear before it).
func fixItemsPerPage(body []byte, n int) []byte {
	key := []byte(`"itemsPerPage":`)
	i := bytes.LastIndex(body, key)
	if i < 0 {
		return body
	}
	j := i + len(key)
	k := j
	for k < len(body) && body[k] >= '0' && body[k] <= '9' {
		k++
	}
	if k == j {
		return body
	}
	out := make([]byte, 0, len(body)+4)
	out = append(out, body[:j]...)
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, body[k:]...)
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

	// filter is the parsed filter of a list.
	filter         filter.Expr
	excludeMembers bool
	// extras holds what the front took out of a POST or PUT body.
	extras *extras
	// customOps are the PATCH operations on attributes elimity does not
	// know, taken out of the body before elimity validated it.
	customOps []customOp
	// password is a password the front took out of a body or PATCH.
	password *string
	// isList and listed are set by a list: the page's length.
	isList bool
	listed int

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
