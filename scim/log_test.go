package scim_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRequestLog(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *scim.Config, _ *provision.Config) {
		c.Now = clock.Now
		c.RequestLog = scim.RequestLogConfig{MaxEntries: 8, MaxAge: time.Hour, MaxBodyBytes: 300}
	})
	e.t = t
	h := e.h.(*scim.Handler)

	r := e.must(e.do(acmeOkta, "POST", "/Users", userBody("log@acme.test", `,"password":"hunter2-secret"`), "User-Agent", "Okta SCIM Client 1.0.0", "X-Request-Id", "corr-1"), 201, "create")
	id := r.str("id")
	if r.header.Get("X-Request-Id") != "corr-1" {
		t.Fatalf("X-Request-Id = %q", r.header.Get("X-Request-Id"))
	}
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+id, patch(`{"op":"replace","path":"password","value":"hunter3-secret"}`)), 200, "password patch")
	e.must(e.do(acmeOkta, "GET", "/Users/"+id, ""), 200, "get")
	e.mustError(e.do("not-a-token", "GET", "/Users", ""), 401, "", "bad token")

	log := h.RequestLog("acme", "okta")
	if len(log) != 3 {
		t.Fatalf("log has %d entries", len(log))
	}
	first := log[0]
	if first.CorrelationID != "corr-1" || first.Method != "POST" || first.Path != "/Users" || first.Status != 201 || first.Dialect != scim.DialectOkta || first.UserAgent != "Okta SCIM Client 1.0.0" {
		t.Fatalf("first entry = %+v", first)
	}
	if !strings.Contains(first.RequestBody, `"password":"[redacted]"`) || !first.Truncated || len(first.ResponseBody) != 300 {
		t.Fatalf("first entry bodies = %q / %q (truncated %v)", first.RequestBody, first.ResponseBody, first.Truncated)
	}
	for _, en := range log {
		all := en.RequestBody + en.ResponseBody + en.Query + strings.Join(mapValues(en.Header), " ")
		if strings.Contains(all, "hunter") || strings.Contains(all, acmeOkta) {
			t.Fatalf("a secret in the log: %+v", en)
		}
	}
	if log[1].Path != "/Users/"+id || !strings.Contains(log[1].RequestBody, `"value":"[redacted]"`) {
		t.Fatalf("password PATCH entry = %+v", log[1])
	}
	if un := h.RequestLog("", ""); len(un) != 1 || un[0].Status != 401 || un[0].Detail == "" {
		t.Fatalf("unauthenticated = %+v", un)
	}
	if h.RequestLog("globex", "okta") != nil {
		t.Fatal("another directory's log is not empty")
	}

	// The ring keeps MaxEntries; MaxAge drops old ones.
	for range 10 {
		e.must(e.do(acmeOkta, "GET", "/Users?count=1", ""), 200, "list")
	}
	if log := h.RequestLog("acme", "okta"); len(log) != 8 || log[7].Query != "count=1" {
		t.Fatalf("ring = %d entries", len(log))
	}
	clock.Add(2 * time.Hour)
	if log := h.RequestLog("acme", "okta"); len(log) != 0 {
		t.Fatalf("%d entries after MaxAge", len(log))
	}
	hl := h.Health("acme", "okta")
	if hl.Requests != 0 || hl.LastSuccess.IsZero() || hl.Dialect != scim.DialectOkta || hl.Warning != "" {
		t.Fatalf("health after an idle hour = %+v", hl)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestHealthAndDialects(t *testing.T) {
	e := newEnv(t)
	e.t = t
	h := e.h.(*scim.Handler)

	// Entra's default dialect: capitalized ops, string booleans.
	id := e.must(e.do(acmeEntra, "POST", "/Users", entraUser), 201, "create").str("id")
	e.must(e.do(acmeEntra, "PATCH", "/Users/"+id, patch(`{"op":"Replace","path":"active","value":"False"}`)), 200, "disable")
	if d := h.Health("acme", "entra").Dialect; d != scim.DialectEntra {
		t.Fatalf("dialect = %q", d)
	}
	// Five failures in a row: the quarantine warning.
	for range 5 {
		e.mustError(e.do(acmeEntra, "GET", "/Users?filter="+q(`userName eq`), ""), 400, "invalidFilter", "bad filter")
	}
	hl := h.Health("acme", "entra")
	if hl.ConsecutiveFailures != 5 || hl.Failures != 5 || hl.Requests != 7 || hl.LastFailureStatus != 400 || !strings.Contains(hl.LastFailureDetail, "filter") ||
		!strings.Contains(hl.Warning, "quarantine") || hl.LastSuccess.IsZero() {
		t.Fatalf("health = %+v", hl)
	}
	// 404 and 409 are part of the flows: no failure; a success resets.
	e.mustError(e.do(acmeEntra, "GET", "/Users/nope", ""), 404, "", "absent")
	e.must(e.do(acmeEntra, "GET", "/Users/"+id, ""), 200, "get")
	if hl := h.Health("acme", "entra"); hl.ConsecutiveFailures != 0 || hl.Warning != "" || hl.Failures != 5 {
		t.Fatalf("health after a success = %+v", hl)
	}

	// The aadOptscim062020 flag: an Entra User-Agent with lower-case ops
	// and booleans.
	e.must(e.do(acmeOkta, "PATCH", "/Users/"+e.must(e.do(acmeOkta, "POST", "/Users", userBody("f@acme.test", "")), 201, "user").str("id"),
		patch(`{"op":"replace","path":"active","value":false}`), "User-Agent", "Microsoft Azure AD SCIM client"), 200, "flagged")
	if d := h.Health("acme", "okta").Dialect; d != scim.DialectEntraFlag {
		t.Fatalf("flagged dialect = %q", d)
	}
	// OneLogin by its User-Agent; a later GET without a signal keeps it.
	e.must(e.do(globexOkta, "GET", "/Users", "", "User-Agent", "OneLogin SCIM"), 200, "onelogin")
	e.must(e.do(globexOkta, "GET", "/Users", "", "User-Agent", "curl/8"), 200, "generic")
	if d := h.Health("globex", "okta").Dialect; d != scim.DialectOneLogin {
		t.Fatalf("onelogin dialect = %q", d)
	}
	if n := len(h.Healths()); n != 3 {
		t.Fatalf("Healths has %d directories", n)
	}
	var _ http.Handler = h
}
