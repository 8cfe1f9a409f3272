package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// collect returns the data points of the named metric, as int64 sums,
// int64 gauges or float64 histogram counts, by their consumer or kind
// attribute.
func collect(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes.ToSlice())] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes.ToSlice())] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes.ToSlice())] += float64(p.Count)
				}
			}
		}
	}
	return out
}

func label(kvs []attribute.KeyValue) string {
	s := ""
	for _, kv := range kvs {
		if s != "" {
			s += ","
		}
		s += string(kv.Key) + "=" + kv.Value.Emit()
	}
	return s
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: tenants(), MeterProvider: mp, PollInterval: 10 * time.Millisecond,
		HoldMemberDrops: provision.DropLimit{Count: 2, Share: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if provision.AdapterOf(e).MeterProvider() != mp {
		t.Error("MeterProvider is not the configured one")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range []string{"ada", "bob", "eve"} {
		u := ada()
		u.UserName, u.Emails, u.ExternalID = name, nil, "ext-"+name
		if _, err := e.CreateUser(ctx, okta, u); err != nil {
			t.Fatal(err)
		}
	}
	// Before any consumer ran: no backlog point yet.
	if got := collect(t, reader, "idprov.consumer.backlog"); len(got) != 0 {
		t.Errorf("backlog before a consumer ran = %v", got)
	}
	// A consumer that fails its first event once, then accepts all.
	failed := false
	got := make(chan provision.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.Consume(ctx, "hooks", func(ctx context.Context, ev provision.Event) error {
			if !failed {
				failed = true
				return errors.New("endpoint down")
			}
			got <- ev
			return nil
		}, provision.ConsumeOptions{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	}()
	for range 3 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("events not delivered")
		}
	}
	eventually := func(name string, want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := collect(t, reader, name)
			if v, ok := m["consumer=hooks"]; ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v, want %v for hooks", name, m, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	eventually("idprov.consumer.failures", 1)
	eventually("idprov.consumer.lag", 3) // observations: one per accepted event
	eventually("idprov.consumer.backlog", 0)
	// A replace of members that drops both is held: one plan.
	var ids []string
	for _, u := range []string{"m1", "m2"} {
		mu := ada()
		mu.UserName, mu.Emails, mu.ExternalID = u, nil, "ext-"+u
		created, err := e.CreateUser(ctx, okta, mu)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.ID)
	}
	g, err := e.CreateGroup(ctx, okta, provision.Group{DisplayName: "Held"}, ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.UpdateGroup(ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: nil}); !errors.Is(err, provision.ErrHeld) {
		t.Fatalf("ReplaceMembers dropping both = %v, want ErrHeld", err)
	}
	if m := collect(t, reader, "idprov.plans.held"); m["kind=members"] != 1 {
		t.Errorf("plans held = %v, want 1 members plan", m)
	}
	cancel()
	<-done
	if m := collect(t, reader, "idprov.consumer.backlog"); len(m) != 0 {
		t.Errorf("backlog after the consumer stopped = %v, want no point", m)
	}
}
