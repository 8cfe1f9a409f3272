package scim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// RequestLogConfig configures the per-directory request log and health.
// The zero value keeps the last 200 requests of each directory for 24
// hours, with bodies cut at 4 KiB.
type RequestLogConfig struct {
	// MaxEntries is how many requests are kept per directory. Default
	// 200; a negative value keeps none (Health is still tracked).
	MaxEntries int
	// MaxAge is how long an entry is kept. Default 24 hours.
	MaxAge time.Duration
	// MaxBodyBytes is how much of each request and response body is kept
	// (after redaction). Default 4096.
	MaxBodyBytes int
}

func (c RequestLogConfig) withDefaults() RequestLogConfig {
	if c.MaxEntries == 0 {
		c.MaxEntries = 200
	}
	if c.MaxEntries < 0 {
		c.MaxEntries = 0
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4096
	}
	return c
}

// Dialect is the SCIM client a directory's requests come from, detected
// from the User-Agent and the shape of the payloads.
type Dialect string

// The dialects the handler tells apart. Microsoft Entra ID's default
// dialect sends "True"/"False" strings and capitalized PATCH ops
// ("Replace"); with the aadOptscim062020 feature flag it sends booleans
// and lower-case ops.
const (
	DialectUnknown   Dialect = ""
	DialectGeneric   Dialect = "generic"
	DialectOkta      Dialect = "okta"
	DialectEntra     Dialect = "entra"
	DialectEntraFlag Dialect = "entra-aadOptscim062020"
	DialectOneLogin  Dialect = "onelogin"
)

// LogEntry is one request a directory made and the answer it got, with
// secrets redacted: the Authorization header is never kept, passwords in
// bodies are replaced by "[redacted]".
type LogEntry struct {
	// CorrelationID is the request's id, also sent back in the
	// X-Request-Id response header (and taken from the request's
	// X-Request-Id when it has one); the engine's events carry it as
	// RequestID.
	CorrelationID string
	Time          time.Time
	Duration      time.Duration
	TenantID      string
	ConnectionID  string
	Method        string
	// Path is the canonical endpoint path ("/Users/{id}"), Query the raw
	// query string.
	Path, Query string
	UserAgent   string
	// Header holds the request headers that matter for support:
	// Content-Type, If-Match, If-None-Match.
	Header      map[string]string
	Dialect     Dialect
	Status      int
	RequestBody string
	// ResponseBody is the response as sent, cut at MaxBodyBytes.
	ResponseBody string
	// Truncated is set when a body was cut.
	Truncated bool
	// Detail is the SCIM error detail of a failed request.
	Detail string
	// Dropped names the attributes of the request body that no schema of
	// the resource defines (a misspelt or unmapped attribute such as
	// "adreses"): they were dropped, not stored. Attributes under an
	// extension schema URN are kept, and never listed here.
	Dropped []string
}

// Failed reports whether the entry counts as a failure for Health: any
// answer of 400 or more except 404 (a lookup of an absent resource), 409
// (a uniqueness conflict) and 412 (a stale If-Match), which clients
// expect as part of their flows.
func (e LogEntry) Failed() bool { return failed(e.Status) }

func failed(status int) bool {
	return status >= 400 && status != http.StatusNotFound && status != http.StatusConflict && status != http.StatusPreconditionFailed
}

// Health is how a directory's provisioning is doing, from its recent
// requests.
type Health struct {
	TenantID, ConnectionID string
	// Dialect is the client detected from the directory's requests.
	Dialect Dialect
	// Requests and Failures count the requests of the last hour (at most
	// the last 256); ErrorRate is Failures/Requests.
	Requests, Failures int
	ErrorRate          float64
	// ConsecutiveFailures counts the failures since the last success.
	ConsecutiveFailures int
	LastRequest         time.Time
	LastSuccess         time.Time
	LastFailure         time.Time
	LastFailureStatus   int
	LastFailureDetail   string
	// Warning, when set, is a sentence for the administrator: requests
	// keep failing, and Microsoft Entra ID quarantines a provisioning job
	// whose requests keep failing.
	Warning string
}

const healthWindow = time.Hour

type outcome struct {
	t      time.Time
	failed bool
}

// entry is a LogEntry as kept: bodies as byte slices (shared with the
// response written), made strings when the host reads them.
type entry struct {
	LogEntry
	reqBody, respBody []byte
}

// dirLog is one directory's ring of entries and health counters.
type dirLog struct {
	entries []entry
	head    int // next slot when the ring is full
	full    bool

	outcomes [256]outcome
	nOut     int

	dialect                               Dialect
	consecutive                           int
	lastRequest, lastSuccess, lastFailure time.Time
	lastFailureStatus                     int
	lastFailureDetail                     string
}

type logStore struct {
	cfg  RequestLogConfig
	mu   sync.Mutex
	dirs map[dirKey]*dirLog
}

func newLogStore(cfg RequestLogConfig) *logStore {
	return &logStore{cfg: cfg, dirs: map[dirKey]*dirLog{}}
}

// logWriter captures the status and the start of the body of a response.
type logWriter struct {
	http.ResponseWriter
	status int
	max    int
	wrote  bool
	body   []byte
	cut    bool
}

func (w *logWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write keeps b itself when it fits (the handler writes each body once,
// from a slice it never reuses), else a copy of its start.
func (w *logWriter) Write(b []byte) (int, error) {
	w.wrote = true
	switch room := w.max - len(w.body); {
	case room <= 0:
		w.cut = w.cut || len(b) > 0
	case w.body == nil && len(b) <= room:
		w.body = b
	default:
		n := min(room, len(b))
		w.body = append(w.body[:len(w.body):len(w.body)], b[:n]...)
		w.cut = w.cut || n < len(b)
	}
	return w.ResponseWriter.Write(b)
}

// record adds the request to its directory's log and health.
func (h *Handler) record(r *http.Request, st *request, body []byte, w *logWriter) {
	now := h.now()
	ua := r.Header.Get("User-Agent")
	if len(ua) > 256 {
		ua = ua[:256]
	}
	if len(body) > 0 {
		st.sawStringBool = st.sawStringBool || bytes.Contains(body, []byte(`"True"`)) || bytes.Contains(body, []byte(`"False"`))
	}
	h.metrics.request(r.Context(), st.origin.TenantID, st.origin.ConnectionID, r.Method, w.status, now.Sub(st.start))
	e := LogEntry{
		CorrelationID: st.origin.RequestID,
		Time:          st.start,
		Duration:      now.Sub(st.start),
		TenantID:      st.origin.TenantID,
		ConnectionID:  st.origin.ConnectionID,
		Method:        r.Method,
		Path:          st.route.path,
		Query:         r.URL.RawQuery,
		UserAgent:     ua,
		Dialect:       detectDialect(ua, r.URL.RawQuery, st),
		Status:        w.status,
		Dropped:       st.dropped,
	}
	slices.Sort(st.dropped)
	if len(st.dropped) > 0 && w.status < 300 {
		h.log.InfoContext(r.Context(), "scim: dropped attributes that no schema of the resource defines", "tenant", st.origin.TenantID, "connection", st.origin.ConnectionID, "path", st.route.path, "attributes", st.dropped, "request_id", st.origin.RequestID)
	}
	if failed(w.status) && len(w.body) > 0 {
		var eb struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(w.body, &eb) == nil {
			e.Detail = eb.Detail
		}
	}
	keep := h.logCfg.MaxEntries > 0
	if keep {
		for _, k := range []string{"Content-Type", "If-Match", "If-None-Match"} {
			if v := r.Header.Get(k); v != "" {
				if e.Header == nil {
					e.Header = map[string]string{}
				}
				e.Header[k] = v
			}
		}
	}
	en := entry{LogEntry: e}
	if keep {
		var cut bool
		en.reqBody, cut = redactBody(body, h.logCfg.MaxBodyBytes)
		en.respBody = w.body
		en.Truncated = cut || w.cut
	}
	h.logs.add(en, keep, now)
}

func (s *logStore) add(e entry, keep bool, now time.Time) {
	k := dirKey{e.TenantID, e.ConnectionID}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirs[k]
	if d == nil {
		d = &dirLog{}
		s.dirs[k] = d
	}
	switch {
	case e.Dialect == DialectGeneric && d.dialect != DialectUnknown:
	case e.Dialect == DialectEntra && d.dialect == DialectEntraFlag:
	case e.Dialect != DialectUnknown:
		d.dialect = e.Dialect
	}
	if keep {
		if len(d.entries) < s.cfg.MaxEntries {
			d.entries = append(d.entries, e)
		} else {
			d.entries[d.head] = e
			d.head = (d.head + 1) % len(d.entries)
			d.full = true
		}
	}
	f := failed(e.Status)
	d.outcomes[d.nOut%len(d.outcomes)] = outcome{t: now, failed: f}
	d.nOut++
	d.lastRequest = now
	if f {
		d.consecutive++
		d.lastFailure, d.lastFailureStatus, d.lastFailureDetail = now, e.Status, e.Detail
	} else {
		d.consecutive = 0
		d.lastSuccess = now
	}
}

// RequestLog returns the kept requests of a directory, oldest first:
// at most RequestLogConfig.MaxEntries, none older than MaxAge. Requests
// refused for a missing or unknown bearer token belong to no directory:
// they are kept under the empty tenant and connection ids.
func (h *Handler) RequestLog(tenantID, connectionID string) []LogEntry {
	s := h.logs
	cutoff := h.now().Add(-s.cfg.MaxAge)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirs[dirKey{tenantID, connectionID}]
	if d == nil {
		return nil
	}
	out := make([]LogEntry, 0, len(d.entries))
	n := len(d.entries)
	for i := range n {
		e := d.entries[(d.head+i)%n]
		if !e.Time.Before(cutoff) {
			le := e.LogEntry
			le.RequestBody, le.ResponseBody = string(e.reqBody), string(e.respBody)
			out = append(out, le)
		}
	}
	return out
}

// Health returns how a directory is doing. A directory that made no
// request since the handler started has a zero Health but for its ids.
func (h *Handler) Health(tenantID, connectionID string) Health {
	s := h.logs
	now := h.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Health{TenantID: tenantID, ConnectionID: connectionID}
	d := s.dirs[dirKey{tenantID, connectionID}]
	if d == nil {
		return out
	}
	return d.health(out, now)
}

// Healths returns the Health of every directory that made a request
// since the handler started, and of the unauthenticated requests (empty
// ids) if any.
func (h *Handler) Healths() []Health {
	s := h.logs
	now := h.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Health, 0, len(s.dirs))
	for k, d := range s.dirs {
		out = append(out, d.health(Health{TenantID: k.tenant, ConnectionID: k.conn}, now))
	}
	return out
}

func (d *dirLog) health(out Health, now time.Time) Health {
	out.Dialect = d.dialect
	for i := range min(d.nOut, len(d.outcomes)) {
		o := d.outcomes[i]
		if now.Sub(o.t) > healthWindow {
			continue
		}
		out.Requests++
		if o.failed {
			out.Failures++
		}
	}
	if out.Requests > 0 {
		out.ErrorRate = float64(out.Failures) / float64(out.Requests)
	}
	out.ConsecutiveFailures = d.consecutive
	out.LastRequest, out.LastSuccess, out.LastFailure = d.lastRequest, d.lastSuccess, d.lastFailure
	out.LastFailureStatus, out.LastFailureDetail = d.lastFailureStatus, d.lastFailureDetail
	if d.consecutive >= 5 || (out.Requests >= 10 && out.ErrorRate >= 0.5) {
		switch d.dialect {
		case DialectEntra, DialectEntraFlag:
			out.Warning = "Most recent requests of this directory fail. Microsoft Entra ID puts a provisioning job whose requests keep failing in quarantine (it then provisions rarely, and stops after a few weeks): fix the cause, then restart provisioning in the Entra admin center."
		default:
			out.Warning = "Most recent requests of this directory fail; its identity provider may stop provisioning. See the request log for the answers it got."
		}
	}
	return out
}

// detectDialect names the client of a request from its User-Agent, its
// query (Entra's ?aadOptscim062020 flag rides on every request's URL) and
// what the front saw in its body. DialectUnknown means no signal.
func detectDialect(ua, query string, st *request) Dialect {
	l := strings.ToLower(ua)
	entraShape := st.sawStringBool || st.sawUpperOp
	switch {
	case strings.Contains(query, "aadOptscim062020"):
		return DialectEntraFlag // the Tenant URL Entra's flag is set on
	case strings.Contains(l, "okta"):
		return DialectOkta
	case strings.Contains(l, "onelogin"):
		return DialectOneLogin
	case strings.Contains(l, "azure") || strings.Contains(l, "microsoft") || strings.Contains(l, "entra") || strings.Contains(l, "aad"):
		if !entraShape && st.sawLowerOp {
			return DialectEntraFlag
		}
		return DialectEntra
	case entraShape:
		return DialectEntra // only Entra's default dialect sends these
	case ua != "":
		return DialectGeneric
	}
	return DialectUnknown
}

const redacted = "[redacted]"

// redactBody returns body with passwords replaced, cut at max bytes. Only
// a body that mentions a password is decoded; another one is kept as is
// (the request's body is never modified after it was read).
func redactBody(body []byte, max int) ([]byte, bool) {
	if len(body) == 0 {
		return nil, false
	}
	if mentionsPassword(body) {
		v, err := decodeJSON(body)
		if err != nil {
			return []byte("[redacted: a body that is not JSON and mentions a password]"), false
		}
		redactValue(v)
		body, _ = json.Marshal(v)
	}
	if len(body) > max {
		return bytes.Clone(body[:max]), true
	}
	return body, false
}

// mentionsPassword reports whether b holds "password" in any case,
// without allocating.
func mentionsPassword(b []byte) bool {
	const word = "password"
	for i := 0; i+len(word) <= len(b); i++ {
		if b[i]|0x20 != 'p' {
			continue
		}
		j := 1
		for j < len(word) && b[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// redactValue replaces in place every value under a key named password,
// and the value of a PATCH operation whose path is the password.
func redactValue(v any) {
	switch v := v.(type) {
	case map[string]any:
		isPasswordOp := false
		if p, _, ok := getFold(v, "path"); ok {
			if s, ok := p.(string); ok && (strings.EqualFold(s, "password") || hasSuffixFold(s, ":password")) {
				isPasswordOp = true
			}
		}
		for k, e := range v {
			if strings.EqualFold(k, "password") || (isPasswordOp && strings.EqualFold(k, "value")) {
				v[k] = redacted
				continue
			}
			redactValue(e)
		}
	case []any:
		for _, e := range v {
			redactValue(e)
		}
	}
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
