package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
	"github.com/idprov/idprov/store/memstore"
)

const secret = "whsec_test_secret_0123456789"

var testTenants = []provision.Tenant{
	{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}},
	{ID: "globex", Connections: []provision.Connection{{ID: "entra", Kind: provision.KindSCIM}}},
}

var origins = map[string]provision.Origin{
	"acme":   {TenantID: "acme", ConnectionID: "okta"},
	"globex": {TenantID: "globex", ConnectionID: "entra"},
}

// clock is a settable clock safe for concurrent use: real time plus an
// offset the test advances.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func newEngine(t testing.TB, store provision.Store, now func() time.Time, logger *slog.Logger) *provision.Engine {
	t.Helper()
	e, err := provision.NewEngine(provision.Config{Store: store, Tenants: testTenants, PollInterval: 20 * time.Millisecond, Now: now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func createUsers(t testing.TB, e *provision.Engine, tenant string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := e.CreateUser(context.Background(), origins[tenant], provision.User{UserName: fmt.Sprintf("user%d", i), Active: true}); err != nil {
			t.Error(err)
			return
		}
	}
}

// run starts wh.Run until the test ends.
func run(t testing.TB, wh *webhook.Webhook) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wh.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	})
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// action is what the receiver does with one request.
type action int

const (
	accept  action = iota
	fail500        // answer 500
	drop           // close the connection without an answer
	hang           // answer nothing until the client gives up
	slow           // accept after a delay below the client's timeout
)

// receiver is a webhook endpoint that verifies every request and records
// the events it accepted, per tenant, in arrival order.
type receiver struct {
	t      testing.TB
	now    func() time.Time
	decide func(tenant string, seq int64) action

	mu       sync.Mutex
	accepted map[string][]int64
	requests int
	inflight map[string]int
	overlap  string
	received map[int64]time.Time // seq of tenant acme -> arrival
}

func newReceiver(t testing.TB, now func() time.Time, decide func(string, int64) action) *receiver {
	if now == nil {
		now = time.Now
	}
	return &receiver{t: t, now: now, decide: decide, accepted: map[string][]int64{}, inflight: map[string]int{}, received: map[int64]time.Time{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, rc.now(), time.Minute); err != nil {
		rc.t.Errorf("receiver: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev provision.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("receiver: %v", err)
		return
	}
	if r.Header.Get("Idprov-Tenant") != ev.TenantID || r.Header.Get("Idprov-Event-Seq") != strconv.FormatInt(ev.Seq, 10) ||
		r.Header.Get("Content-Type") != "application/json" || "/"+ev.TenantID != r.URL.Path {
		rc.t.Errorf("receiver: headers %v for event %d of %s at %s", r.Header, ev.Seq, ev.TenantID, r.URL.Path)
	}
	rc.mu.Lock()
	rc.requests++
	rc.inflight[ev.TenantID]++
	if rc.inflight[ev.TenantID] > 1 {
		rc.overlap = fmt.Sprintf("two deliveries of tenant %s at once (seq %d)", ev.TenantID, ev.Seq)
	}
	rc.mu.Unlock()
	// leave ends the request before the sender can see an answer, so a
	// next request that follows the answer never counts as an overlap.
	leave := func() {
		rc.mu.Lock()
		rc.inflight[ev.TenantID]--
		rc.mu.Unlock()
	}
	act := accept
	if rc.decide != nil {
		act = rc.decide(ev.TenantID, ev.Seq)
	}
	switch act {
	case fail500:
		leave()
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case drop:
		leave()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case hang:
		<-r.Context().Done()
		leave()
		return
	case slow:
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
	leave()
	rc.mu.Lock()
	rc.accepted[ev.TenantID] = append(rc.accepted[ev.TenantID], ev.Seq)
	if _, ok := rc.received[ev.Seq]; !ok && ev.TenantID == "acme" {
		rc.received[ev.Seq] = time.Now()
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) got(tenant string) []int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]int64(nil), rc.accepted[tenant]...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

// distinct is how many different events the tenant got.
func (rc *receiver) distinct(tenant string) int {
	seen := map[int64]bool{}
	for _, s := range rc.got(tenant) {
		seen[s] = true
	}
	return len(seen)
}

// checkInOrder fails unless seqs holds 1..n, each at least once, and never
// an event before all the earlier ones arrived: at least once, in order,
// no gaps. It returns the number of redeliveries.
func checkInOrder(t testing.TB, tenant string, seqs []int64, n int) int {
	t.Helper()
	var high int64
	for i, s := range seqs {
		if s > high+1 {
			t.Fatalf("%s: event %d arrived before event %d (arrivals %v)", tenant, s, high+1, seqs[:i+1])
		}
		high = max(high, s)
	}
	if high != int64(n) {
		t.Fatalf("%s: got events up to %d, want %d", tenant, high, n)
	}
	return len(seqs) - n
}

func newWebhook(t testing.TB, cfg webhook.Config, url string) *webhook.Webhook {
	t.Helper()
	cfg.Endpoints = map[string]webhook.Endpoint{}
	for _, tn := range testTenants {
		cfg.Endpoints[tn.ID] = webhook.Endpoint{URL: url + "/" + tn.ID, Secret: secret}
	}
	wh, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func TestNewValidatesConfig(t *testing.T) {
	e := newEngine(t, memstore.New(), nil, nil)
	good := webhook.Endpoint{URL: "https://hooks.example/idprov", Secret: secret}
	for _, tc := range []struct {
		name string
		cfg  webhook.Config
	}{
		{"no engine", webhook.Config{}},
		{"negative timeout", webhook.Config{Engine: e, Timeout: -1}},
		{"negative backoff", webhook.Config{Engine: e, MinBackoff: -1}},
		{"max below min", webhook.Config{Engine: e, MinBackoff: time.Minute, MaxBackoff: time.Second}},
		{"relative URL", webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{"acme": {URL: "/hook", Secret: secret}}}},
		{"ftp URL", webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{"acme": {URL: "ftp://x/hook", Secret: secret}}}},
		{"short secret", webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{"acme": {URL: good.URL, Secret: "short"}}}},
		{"empty tenant", webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{"": good}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhook.New(tc.cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	wh, err := webhook.New(webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{"acme": good}})
	if err != nil {
		t.Fatal(err)
	}
	if ep, ok := wh.Endpoint("acme"); !ok || ep != good {
		t.Fatalf("Endpoint = %v, %v", ep, ok)
	}
	wh.RemoveEndpoint("acme")
	if _, ok := wh.Endpoint("acme"); ok {
		t.Fatal("RemoveEndpoint kept it")
	}
}

// TestFlakyReceiverGetsEverythingInOrder: a receiver that answers 500,
// drops connections, hangs past the timeout and answers slowly still gets
// every event of every tenant, at least once, in order.
func TestFlakyReceiverGetsEverythingInOrder(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	rc := newReceiver(t, nil, func(string, int64) action {
		mu.Lock()
		defer mu.Unlock()
		switch p := rng.IntN(100); {
		case p < 40:
			return accept
		case p < 55:
			return fail500
		case p < 70:
			return drop
		case p < 78:
			return hang
		default:
			return slow
		}
	})
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := newEngine(t, memstore.New(), nil, nil)
	wh := newWebhook(t, webhook.Config{Engine: e, Timeout: 150 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, srv.URL)
	const n = 60
	createUsers(t, e, "acme", 0, n/2) // some before the webhook runs,
	run(t, wh)
	var wg sync.WaitGroup // the rest while it runs
	wg.Go(func() { createUsers(t, e, "acme", n/2, n/2) })
	wg.Go(func() { createUsers(t, e, "globex", 0, n) })
	wg.Wait()
	waitFor(t, "every event", 60*time.Second, func() bool { return rc.distinct("acme") == n && rc.distinct("globex") == n })
	for _, tenant := range []string{"acme", "globex"} {
		dups := checkInOrder(t, tenant, rc.got(tenant), n)
		t.Logf("%s: %d events, %d redelivered", tenant, n, dups)
	}
	t.Logf("%d requests for %d events", rc.count(), 2*n)
	if rc.overlap != "" {
		t.Log("(overlaps come from hung requests the client gave up on)")
	}
	// The receiver may have an event whose answer the sender did not see
	// (it timed out): wait for the sender's acknowledgements too.
	for _, tenant := range []string{"acme", "globex"} {
		waitFor(t, tenant+"'s cursor", 30*time.Second, func() bool {
			st, err := wh.Status(context.Background(), tenant)
			return err == nil && !st.Failing && st.Cursor == n
		})
	}
}

// TestReceiverDownForAnHourLosesNothing: the endpoint refuses connections
// for an hour (by the clock of the engine), while events keep coming; the
// webhook backs off without a hot loop, reports the failure, and delivers
// everything in order once the endpoint listens again.
func TestReceiverDownForAnHourLosesNothing(t *testing.T) {
	var clk clock
	rc := newReceiver(t, clk.now, nil)
	// Reserve an address, then leave it closed: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var attempts atomic.Int64
	client := &http.Client{Transport: countingTransport{&attempts, http.DefaultTransport}}
	e := newEngine(t, memstore.New(), clk.now, nil)
	wh := newWebhook(t, webhook.Config{Engine: e, Client: client, Now: clk.now, Timeout: time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, "http://"+addr)
	run(t, wh)
	start := time.Now()
	for i := range 30 { // an event every two minutes for an hour
		createUsers(t, e, "acme", i, 1)
		clk.advance(2 * time.Minute)
		time.Sleep(10 * time.Millisecond)
	}
	down := time.Since(start)
	st, err := wh.Status(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Failing || st.Suspended || st.Cursor != 0 || st.LastSeq != 30 || st.FailingSeq != 1 ||
		!strings.Contains(st.LastError, "connection refused") || clk.now().Sub(st.FailingSince) < 55*time.Minute {
		t.Fatalf("status while down = %+v (now %v)", st, clk.now())
	}
	// Backoff capped at 50ms (jittered to 25..50ms) over the downtime, for
	// two tenants: no hot loop.
	if n, limit := attempts.Load(), int64(2*(down/(25*time.Millisecond))+10); n > limit {
		t.Fatalf("%d attempts in %v of downtime (limit %d): a hot loop", n, down, limit)
	}
	t.Logf("%d attempts in %v of downtime; status %+v", attempts.Load(), down, st)

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: rc}
	go srv.Serve(ln)
	defer srv.Close()
	waitFor(t, "the backlog", 10*time.Second, func() bool { return rc.distinct("acme") == 30 && rc.distinct("globex") == 0 })
	if dups := checkInOrder(t, "acme", rc.got("acme"), 30); dups != 0 {
		t.Fatalf("%d redeliveries to a receiver that never failed a request", dups)
	}
	// The cursor is stored after the receiver answers: wait for it.
	waitFor(t, "the cursor", 10*time.Second, func() bool {
		st, err = wh.Status(context.Background(), "acme")
		return err == nil && st.Cursor == 30
	})
	if err != nil || st.Failing || st.Cursor != 30 {
		t.Fatalf("status after recovery = %+v, %v", st, err)
	}
}

type countingTransport struct {
	n    *atomic.Int64
	next http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPermanentlyFailingEndpointIsReportedAndSuspended: an endpoint that
// always answers 410 is retried with backoff, reported (status and slog),
// suspended after SuspendAfter, and does not hold up another tenant.
func TestPermanentlyFailingEndpointIsReportedAndSuspended(t *testing.T) {
	var clk clock
	var fixed atomic.Bool
	rc := newReceiver(t, clk.now, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/acme" && !fixed.Load() {
			http.Error(w, "this endpoint is gone", http.StatusGone)
			return
		}
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var logs lockedBuffer
	e := newEngine(t, memstore.New(), clk.now, slog.New(slog.NewJSONHandler(&logs, nil)))
	wh := newWebhook(t, webhook.Config{Engine: e, Now: clk.now, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, SuspendAfter: 6 * time.Hour}, srv.URL)
	run(t, wh)
	createUsers(t, e, "acme", 0, 3)
	createUsers(t, e, "globex", 0, 3)
	waitFor(t, "globex's events", 10*time.Second, func() bool { return rc.distinct("globex") == 3 })
	waitFor(t, "acme's failures", 10*time.Second, func() bool {
		st, err := wh.Status(context.Background(), "acme")
		return err == nil && st.Attempts >= 3
	})
	clk.advance(7 * time.Hour)
	var st provision.ConsumerStatus
	waitFor(t, "the suspension", 10*time.Second, func() bool {
		var err error
		st, err = wh.Status(context.Background(), "acme")
		return err == nil && st.Suspended
	})
	var se *webhook.StatusError
	_ = se
	if !st.Failing || st.FailingSeq != 1 || st.Cursor != 0 || st.LastSeq != 3 || !strings.Contains(st.LastError, "410") ||
		!strings.Contains(st.LastError, "this endpoint is gone") || st.FailingSince.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	if l := logs.String(); !strings.Contains(l, "consumer suspended") || !strings.Contains(l, `"attempts"`) {
		t.Fatalf("logs do not report the suspension:\n%s", l)
	}
	// Suspended: no more attempts.
	before := st.Attempts
	time.Sleep(100 * time.Millisecond)
	if st, _ := wh.Status(context.Background(), "acme"); st.Attempts != before {
		t.Fatalf("a suspended endpoint was retried: %d attempts, then %d", before, st.Attempts)
	}
	fixed.Store(true)
	if err := wh.Resume(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "acme's events after Resume", 10*time.Second, func() bool { return rc.distinct("acme") == 3 })
	checkInOrder(t, "acme", rc.got("acme"), 3)
}

// TestStatusErrorIsReturned checks what Deliver returns for a non-2xx
// answer and for a tenant without an endpoint.
func TestDeliverErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		default:
			http.Error(w, strings.Repeat("x", 1000), http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	e := newEngine(t, memstore.New(), nil, nil)
	wh, err := webhook.New(webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{
		"acme":   {URL: srv.URL + "/hook", Secret: secret},
		"globex": {URL: srv.URL + "/redirect", Secret: secret},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = wh.Deliver(ctx, provision.Event{Seq: 1, TenantID: "acme", Kind: provision.UserCreated})
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || len(se.Body) > 210 {
		t.Fatalf("Deliver to a 503 = %v", err)
	}
	if err := wh.Deliver(ctx, provision.Event{Seq: 1, TenantID: "globex"}); !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("Deliver to a redirect = %v (redirects must not be followed)", err)
	}
	if err := wh.Deliver(ctx, provision.Event{Seq: 1, TenantID: "initech"}); err == nil {
		t.Fatal("Deliver to a tenant without endpoint succeeded")
	}
}
