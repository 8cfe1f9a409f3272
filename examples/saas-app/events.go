package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
)

// eventsFeature serves the tenants' event logs with a cursor, and delivers
// them to webhooks:
//
//	GET /events?after=N&limit=M[&tenant=ID]   (Authorization: Bearer <events-token>)
//
// answers {"events": [...], "next": <seq to pass as after next time>},
// oldest first. With -webhook-url every event is also POSTed there, signed
// with the printed webhook-secret (see package provision/webhook), and
// GET /webhook/status[?tenant=ID] shows the delivery state. The tenant is
// the -tenant one unless ?tenant= names another; -config tenants declare
// their webhook in "webhook".
//
//	go run ./examples/saas-app -webhook-url http://127.0.0.1:9000/hook
//
// It prints "events: <URL>", "events-token: <token>" and, with a webhook,
// "webhook-secret: <secret>".
type eventsFeature struct {
	token         string
	webhookURL    string
	webhookSecret string
	wh            *webhook.Webhook

	mu sync.Mutex
	// hooks are the tenants' webhook endpoints; declared are those the
	// flags and -config declare (registered tenants add theirs).
	hooks    map[string]webhook.Endpoint
	declared map[string]bool
}

func (f *eventsFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "events-token", "", "bearer token of GET /events and GET /webhook/status (default: a random one kept in the store, printed)")
	fs.StringVar(&f.webhookURL, "webhook-url", "", "URL to POST the tenant's events to, signed; empty: no webhook")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "", "secret of the webhook signatures (default: a random one, printed)")
}

func (f *eventsFeature) setup(a *app) error {
	if f.webhookURL != "" && f.webhookSecret == "" {
		s, err := webhook.NewSecret()
		if err != nil {
			return err
		}
		f.webhookSecret = s
	}
	f.hooks = map[string]webhook.Endpoint{}
	f.declared = map[string]bool{}
	defer func() {
		for id := range f.hooks {
			f.declared[id] = true
		}
	}()
	if f.webhookURL != "" {
		f.hooks[a.Tenants[0].ID] = webhook.Endpoint{URL: f.webhookURL, Secret: f.webhookSecret}
	}
	for _, t := range a.Tenants {
		wc := t.Conf.Webhook
		if wc == nil || wc.URL == "" {
			continue
		}
		if _, ok := f.hooks[t.ID]; ok {
			continue // the -webhook-url flag wins
		}
		if wc.Secret == "" {
			return fmt.Errorf("-config: tenant %s: a webhook needs a secret (webhook.NewSecret makes one)", t.ID)
		}
		f.hooks[t.ID] = webhook.Endpoint{URL: wc.URL, Secret: wc.Secret}
	}
	return nil
}

// tenantOf is the ?tenant= of r, by default the -tenant one: a declared
// or registered tenant.
func tenantOf(r *http.Request, a *app) (string, bool) {
	id := r.URL.Query().Get("tenant")
	if id == "" {
		return a.Tenants[0].ID, true
	}
	_, err := a.Engine.Tenant(r.Context(), id)
	return id, err == nil
}

func (f *eventsFeature) start(ctx context.Context, a *app) error {
	if f.token == "" { // kept in the store, like the admin and SCIM tokens
		tok, err := keptToken(ctx, a, "saas-app:events-token", "events token")
		if err != nil {
			return err
		}
		f.token = tok
	}
	a.Mux.HandleFunc("GET /events", f.authorized(func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := tenantOf(r, a)
		if !ok {
			http.Error(w, "no such tenant", http.StatusNotFound)
			return
		}
		f.serveEvents(w, r, a.Engine, tenant)
	}))
	fmt.Fprintf(a.Stdout, "events: %s/events\n", a.BaseURL)
	fmt.Fprintf(a.Stdout, "events-token: %s\n", f.token)
	a.admin.events = f
	f.mu.Lock()
	hooks := maps.Clone(f.hooks)
	f.mu.Unlock()
	wh, err := webhook.New(webhook.Config{
		Engine:    a.Engine,
		Endpoints: hooks,
		Logger:    a.Log,
	})
	if err != nil {
		return fmt.Errorf("-webhook-url: %w", err)
	}
	f.wh = wh
	go func() {
		if err := wh.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			a.Log.Error("saas-app: webhook stopped", "err", err)
		}
	}()
	a.Mux.HandleFunc("GET /webhook/status", f.authorized(func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := tenantOf(r, a)
		if _, hooked := f.endpoint(tenant); !ok || !hooked {
			http.Error(w, "no webhook for this tenant", http.StatusNotFound)
			return
		}
		st, err := wh.Status(r.Context(), tenant)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeEventsJSON(w, st)
	}))
	if f.webhookURL != "" {
		fmt.Fprintf(a.Stdout, "webhook-secret: %s\n", f.webhookSecret)
	}
	return nil
}

// endpoint returns the tenant's webhook endpoint.
func (f *eventsFeature) endpoint(tenantID string) (webhook.Endpoint, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.hooks[tenantID]
	return ep, ok
}

func (f *eventsFeature) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(f.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="events"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// eventPage is the answer of GET /events.
type eventPage struct {
	Events []provision.Event `json:"events"`
	// Next is the after of the next call: the last Seq returned, or the
	// after given when there was nothing new.
	Next int64 `json:"next"`
}

func (f *eventsFeature) serveEvents(w http.ResponseWriter, r *http.Request, e *provision.Engine, tenant string) {
	q := r.URL.Query()
	after, limit := int64(0), 100
	var err error
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			http.Error(w, "after must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 1000 {
			http.Error(w, "limit must be an integer from 1 to 1000", http.StatusBadRequest)
			return
		}
	}
	evs, err := e.Events(r.Context(), tenant, after, limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page := eventPage{Events: evs, Next: after}
	if len(evs) > 0 {
		page.Next = evs[len(evs)-1].Seq
	}
	if page.Events == nil {
		page.Events = []provision.Event{}
	}
	writeEventsJSON(w, page)
}

func writeEventsJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
