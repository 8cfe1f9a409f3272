package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

// Endpoint is where a tenant's events go.
type Endpoint struct {
	// URL receives a POST per event. It must be an absolute http or https
	// URL.
	URL string
	// Secret keys the HMAC of SignatureHeader; at least 16 characters
	// (NewSecret makes one).
	Secret string
}

func (ep Endpoint) validate() error {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return fmt.Errorf("webhook: endpoint URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: endpoint URL %q must be an absolute http or https URL", ep.URL)
	}
	if len(ep.Secret) < 16 {
		return errors.New("webhook: endpoint secret must be at least 16 characters")
	}
	return nil
}

// Config configures a Webhook. Engine is required; every other field has a
// default.
type Config struct {
	// Engine is the engine whose events are delivered; its Store should
	// have the EventLog capability for durable delivery. Required.
	Engine *provision.Engine
	// Name is the consumer name, under which the cursors and the failure
	// state are stored: keep it stable across deploys. Default "webhook".
	Name string
	// Endpoints are the tenants' endpoints, by tenant ID; more can be set
	// with SetEndpoint. Tenants without one get no delivery (their events
	// wait in the log, subject to the event retention).
	Endpoints map[string]Endpoint
	// Client sends the requests. Nil means a client that does not follow
	// redirects (a 3xx answer is a failure).
	Client *http.Client
	// Timeout bounds each attempt, response included. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between retries of a
	// failing event (doubling, with jitter). Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// SuspendAfter is how long an endpoint may fail without one success
	// before its delivery is suspended (see Resume). Zero means 72h;
	// negative means never (retry at MaxBackoff forever).
	SuspendAfter time.Duration
	// Parallelism is how many tenants are delivered at once. Default 8.
	Parallelism int
	// Logger receives the delivery diagnostics. Nil discards them (the
	// engine logs failures and suspensions with its own logger).
	Logger *slog.Logger
	// Now is the clock of the signature timestamps. Nil means time.Now.
	Now func() time.Time
}

// Webhook delivers each tenant's events, in order, as signed JSON POSTs
// to the tenant's Endpoint. It is a durable consumer of the engine
// (provision.Engine.Consume): at least once, in Seq order per tenant,
// one replica at a time per tenant, resuming after a restart where the
// last acknowledged event was. Safe for concurrent use.
type Webhook struct {
	engine  *provision.Engine
	name    string
	client  *http.Client
	timeout time.Duration
	opts    provision.ConsumeOptions
	log     *slog.Logger
	now     func() time.Time

	mu        sync.RWMutex
	endpoints map[string]Endpoint
	// ids caches the sorted tenant ids of endpoints (nil: rebuild), so
	// that the consumer's poll finds the same slice while nothing changed.
	ids []string
}

// New validates cfg and returns a Webhook. Call Run to deliver.
func New(cfg Config) (*Webhook, error) {
	if cfg.Engine == nil {
		return nil, errors.New("webhook: Config.Engine is required")
	}
	if cfg.Timeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.Parallelism < 0 {
		return nil, errors.New("webhook: Config.Timeout, MinBackoff, MaxBackoff and Parallelism must not be negative")
	}
	w := &Webhook{
		engine:    cfg.Engine,
		name:      cfg.Name,
		client:    cfg.Client,
		timeout:   cfg.Timeout,
		log:       cfg.Logger,
		now:       cfg.Now,
		endpoints: map[string]Endpoint{},
	}
	if w.name == "" {
		w.name = "webhook"
	}
	if w.client == nil {
		w.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if w.timeout == 0 {
		w.timeout = 10 * time.Second
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	suspend := cfg.SuspendAfter
	switch {
	case suspend == 0:
		suspend = 72 * time.Hour
	case suspend < 0:
		suspend = 0
	}
	par := cfg.Parallelism
	if par == 0 {
		par = 8
	}
	w.opts = provision.ConsumeOptions{
		Parallelism:  par,
		MinBackoff:   cfg.MinBackoff,
		MaxBackoff:   cfg.MaxBackoff,
		SuspendAfter: suspend,
		Tenants:      w.tenants,
	}
	if w.opts.MinBackoff == 0 {
		w.opts.MinBackoff = time.Second
	}
	if w.opts.MaxBackoff == 0 {
		w.opts.MaxBackoff = max(5*time.Minute, w.opts.MinBackoff)
	}
	if w.opts.MaxBackoff < w.opts.MinBackoff {
		return nil, fmt.Errorf("webhook: Config.MaxBackoff %v is below MinBackoff %v", w.opts.MaxBackoff, w.opts.MinBackoff)
	}
	for tenant, ep := range cfg.Endpoints {
		if err := w.SetEndpoint(tenant, ep); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// SetEndpoint sets the tenant's endpoint, replacing any other. A new
// endpoint gets the events after the consumer's stored cursor for the
// tenant: the whole retained log the first time.
func (w *Webhook) SetEndpoint(tenantID string, ep Endpoint) error {
	if tenantID == "" {
		return errors.New("webhook: tenant ID is required")
	}
	if err := ep.validate(); err != nil {
		return fmt.Errorf("%w (tenant %q)", err, tenantID)
	}
	w.mu.Lock()
	if _, ok := w.endpoints[tenantID]; !ok {
		w.ids = nil
	}
	w.endpoints[tenantID] = ep
	w.mu.Unlock()
	return nil
}

// RemoveEndpoint stops the tenant's delivery; its cursor is kept.
func (w *Webhook) RemoveEndpoint(tenantID string) {
	w.mu.Lock()
	delete(w.endpoints, tenantID)
	w.ids = nil
	w.mu.Unlock()
}

// Endpoint returns the tenant's endpoint.
func (w *Webhook) Endpoint(tenantID string) (Endpoint, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	ep, ok := w.endpoints[tenantID]
	return ep, ok
}

// tenants returns the tenants with an endpoint, sorted: the same slice
// while none is added or removed (see provision.ConsumeOptions.Tenants).
func (w *Webhook) tenants() []string {
	w.mu.RLock()
	ids := w.ids
	w.mu.RUnlock()
	if ids != nil {
		return ids
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ids == nil {
		w.ids = make([]string, 0, len(w.endpoints))
		for t := range w.endpoints {
			w.ids = append(w.ids, t)
		}
		slices.Sort(w.ids)
	}
	return w.ids
}

// Run delivers events until ctx ends, and then returns ctx's error. Run it
// on every replica: the engine's Locker lets one at a time deliver a
// tenant.
func (w *Webhook) Run(ctx context.Context) error {
	return w.engine.Consume(ctx, w.name, w.Deliver, w.opts)
}

// Status returns the tenant's delivery state: cursor, backlog and, while
// the endpoint fails, the attempts, the last error and since when. A host
// shows it to the tenant's administrator and alerts on Failing.
func (w *Webhook) Status(ctx context.Context, tenantID string) (provision.ConsumerStatus, error) {
	return w.engine.ConsumerStatus(ctx, w.name, tenantID)
}

// Resume clears the tenant's failure state, a suspension included: the
// pending event is retried at the next poll. Call it when the tenant says
// the endpoint is fixed.
func (w *Webhook) Resume(ctx context.Context, tenantID string) error {
	return w.engine.ResumeConsumer(ctx, w.name, tenantID)
}

// StatusError is a delivery answered with a status other than 2xx.
type StatusError struct {
	StatusCode int
	// Body is the start of the response body.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("webhook: endpoint answered %d", e.StatusCode)
	}
	return fmt.Sprintf("webhook: endpoint answered %d: %s", e.StatusCode, e.Body)
}

// Deliver POSTs one event to its tenant's endpoint, signed, within
// Config.Timeout, and returns nil when the endpoint answered 2xx. Run
// calls it; it is exported for hosts that drive delivery themselves.
//
// The request has Content-Type application/json, the event as its body,
// SignatureHeader, and Idprov-Tenant and Idprov-Event-Seq (the receiver's
// deduplication key).
func (w *Webhook) Deliver(ctx context.Context, ev provision.Event) error {
	ep, ok := w.Endpoint(ev.TenantID)
	if !ok {
		return fmt.Errorf("webhook: tenant %q has no endpoint", ev.TenantID)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: encode event: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "idprov-webhook/1")
	req.Header.Set(SignatureHeader, Sign(ep.Secret, w.now(), body))
	req.Header.Set("Idprov-Tenant", ev.TenantID)
	req.Header.Set("Idprov-Event-Seq", strconv.FormatInt(ev.Seq, 10))
	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: post event %d of tenant %q: %w", ev.Seq, ev.TenantID, err)
	}
	defer resp.Body.Close()
	// Read a little of the body, so the connection can be reused and an
	// error can say what the endpoint said.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{StatusCode: resp.StatusCode, Body: snippet(head)}
	}
	w.log.DebugContext(ctx, "webhook: delivered", "tenant", ev.TenantID, "seq", ev.Seq, "kind", ev.Kind, "status", resp.StatusCode, "duration", time.Since(start))
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return s
}
