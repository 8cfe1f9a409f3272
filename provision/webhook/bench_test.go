package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
	"github.com/idprov/idprov/store/memstore"
)

// The figures of the README: events delivered per second to a loopback
// receiver, and latency from commit to receipt.
//
//	go test -run '^$' -bench 'Webhook' -benchtime 2000x ./provision/webhook

type benchStore struct {
	name string
	open func(b *testing.B) provision.Store
}

var benchStores = []benchStore{
	{"memstore", func(b *testing.B) provision.Store { return memstore.New() }},
	{"sqlite", func(b *testing.B) provision.Store { return openSQLite(b, filepath.Join(b.TempDir(), "idprov.db"), 0) }},
}

func benchEngine(b *testing.B, st provision.Store, tenants int) (*provision.Engine, []string) {
	var ts []provision.Tenant
	var ids []string
	for i := range tenants {
		id := fmt.Sprintf("t%02d", i)
		ids = append(ids, id)
		ts = append(ts, provision.Tenant{ID: id, Connections: []provision.Connection{{ID: "scim", Kind: provision.KindSCIM}}})
	}
	e, err := provision.NewEngine(provision.Config{Store: st, Tenants: ts, PollInterval: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	return e, ids
}

// countingReceiver verifies nothing (the signature costs are on the
// sender) and counts events; onEvent sees each decoded event.
func countingReceiver(onEvent func(provision.Event)) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 0) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev provision.Event
		if json.Unmarshal(body, &ev) == nil {
			onEvent(ev)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// BenchmarkWebhookThroughput delivers a backlog of b.N events, spread over
// 1 or 8 tenants, and reports events per second.
func BenchmarkWebhookThroughput(b *testing.B) {
	for _, bs := range benchStores {
		for _, tenants := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/tenants=%d", bs.name, tenants), func(b *testing.B) {
				e, ids := benchEngine(b, bs.open(b), tenants)
				for i := range b.N {
					o := provision.Origin{TenantID: ids[i%len(ids)], ConnectionID: "scim"}
					if _, err := e.CreateUser(context.Background(), o, provision.User{UserName: fmt.Sprint("u", i), Active: true}); err != nil {
						b.Fatal(err)
					}
				}
				var got atomic.Int64
				all := make(chan struct{})
				srv := countingReceiver(func(provision.Event) {
					if got.Add(1) == int64(b.N) {
						close(all)
					}
				})
				defer srv.Close()
				eps := map[string]webhook.Endpoint{}
				for _, id := range ids {
					eps[id] = webhook.Endpoint{URL: srv.URL, Secret: secret}
				}
				wh, err := webhook.New(webhook.Config{Engine: e, Endpoints: eps})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				b.ResetTimer()
				start := time.Now()
				go wh.Run(ctx)
				<-all
				el := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkWebhookLatency commits one event at a time and waits for the
// receiver to get it, and reports the median and 99th percentile of the
// time from the event's commit (Event.Time, taken in the transaction) to
// its receipt.
func BenchmarkWebhookLatency(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			e, ids := benchEngine(b, bs.open(b), 1)
			var mu sync.Mutex
			var lat []time.Duration
			got := make(chan struct{}, 1)
			srv := countingReceiver(func(ev provision.Event) {
				mu.Lock()
				lat = append(lat, time.Since(ev.Time))
				mu.Unlock()
				got <- struct{}{}
			})
			defer srv.Close()
			wh, err := webhook.New(webhook.Config{Engine: e, Endpoints: map[string]webhook.Endpoint{ids[0]: {URL: srv.URL, Secret: secret}}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go wh.Run(ctx)
			o := provision.Origin{TenantID: ids[0], ConnectionID: "scim"}
			b.ResetTimer()
			for i := range b.N {
				if _, err := e.CreateUser(context.Background(), o, provision.User{UserName: fmt.Sprint("u", i), Active: true}); err != nil {
					b.Fatal(err)
				}
				<-got
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
