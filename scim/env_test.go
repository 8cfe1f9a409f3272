package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
	"github.com/idprov/idprov/store/memstore"
)

// The directories of the test environment and their bearer tokens.
const (
	acmeOkta   = "acme-okta-token"
	acmeEntra  = "acme-entra-token"
	globexOkta = "globex-okta-token"
)

// env is a SCIM handler on memstore mounted under /scim/v2/ on an
// http.ServeMux, behind a real HTTP server, with two tenants: acme (an
// Okta and an Entra directory) and globex (Okta).
type env struct {
	t      *testing.T
	engine *provision.Engine
	store  provision.Store
	srv    *httptest.Server
	h      http.Handler
	base   string
	logs   *syncBuffer
	cursor map[string]int64

	mu        sync.Mutex
	passwords []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type envOption func(*scim.Config, *provision.Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	st := memstore.New()
	return newEnvStore(t, st, opts...)
}

func newEnvStore(t testing.TB, st provision.Store, opts ...envOption) *env {
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pcfg := provision.Config{
		Store:  st,
		Logger: log,
		Tenants: []provision.Tenant{
			{ID: "acme", Connections: []provision.Connection{
				{ID: "okta", Kind: provision.KindSCIM},
				{ID: "entra", Kind: provision.KindSCIM},
			}},
			{ID: "globex", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}},
		},
	}
	tokens, err := scim.NewTokenSet(
		scim.Directory{TenantID: "acme", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken(acmeOkta)}},
		scim.Directory{TenantID: "acme", ConnectionID: "entra", TokenHashes: []scim.TokenHash{scim.HashToken(acmeEntra)}},
		scim.Directory{TenantID: "globex", ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken(globexOkta)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{logs: logs, store: st, cursor: map[string]int64{}}
	if tt, ok := t.(*testing.T); ok {
		e.t = tt
	}
	cfg := scim.Config{
		Authenticator: tokens,
		Logger:        log,
		SetPassword: func(ctx context.Context, o provision.Origin, userID, password string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.passwords = append(e.passwords, o.TenantID+"/"+o.ConnectionID+"/"+userID+"="+password)
			return nil
		},
	}
	for _, o := range opts {
		o(&cfg, &pcfg)
	}
	e.engine, err = provision.NewEngine(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine = e.engine
	h, err := scim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL + "/scim/v2"
	return e
}

// resp is an HTTP answer with its JSON body decoded.
type resp struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r resp) str(path ...string) string {
	v := r.get(path...)
	s, _ := v.(string)
	return s
}

// get walks the body by keys and list indexes ("emails", "0", "value").
func (r resp) get(path ...string) any {
	return walk(r.body, path...)
}

func walk(v any, path ...string) any {
	for _, p := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[p]
		case []any:
			i := 0
			for _, ch := range p {
				i = i*10 + int(ch-'0')
			}
			if i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func (e *env) do(token, method, path, body string, header ...string) resp {
	e.t.Helper()
	return doReq(e.t, e.base, token, method, path, body, header...)
}

func doReq(t testing.TB, base, token, method, path, body string, header ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	raw, _ := io.ReadAll(hr.Body)
	r := resp{status: hr.StatusCode, header: hr.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %q", method, path, raw)
		}
	}
	if ct := hr.Header.Get("Content-Type"); len(raw) > 0 && ct != "application/scim+json" {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return r
}

// must checks the status of r.
func (e *env) must(r resp, status int, what string) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.raw)
	}
	return r
}

// mustError checks that r is a SCIM error with status and scimType.
func (e *env) mustError(r resp, status int, scimType, what string) {
	e.t.Helper()
	e.must(r, status, what)
	if r.get("schemas", "0") != "urn:ietf:params:scim:api:messages:2.0:Error" || r.str("status") != itoa(status) {
		e.t.Fatalf("%s: not a SCIM error body: %s", what, r.raw)
	}
	if r.str("scimType") != scimType {
		e.t.Fatalf("%s: scimType %q, want %q; body %s", what, r.str("scimType"), scimType, r.raw)
	}
	if d := r.str("detail"); strings.Contains(d, "provision: ") || strings.HasPrefix(d, "scim: ") || strings.HasPrefix(d, "filter: ") {
		e.t.Fatalf("%s: Go error text in the body: %s", what, r.raw)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// events returns the tenant's events since the last call, as
// "kind:fields|members".
func (e *env) events(tenant string) []provision.Event {
	e.t.Helper()
	evs, err := e.engine.Events(context.Background(), tenant, e.cursor[tenant], 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(evs) > 0 {
		e.cursor[tenant] = evs[len(evs)-1].Seq
	}
	return evs
}

func kinds(evs []provision.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, string(ev.Kind))
	}
	return out
}

func (e *env) wantEvents(tenant string, want ...string) []provision.Event {
	e.t.Helper()
	evs := e.events(tenant)
	got := kinds(evs)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		e.t.Fatalf("events of %s = %v, want %v", tenant, got, want)
	}
	return evs
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

var errEOF = io.EOF
