package ldap

import (
	"context"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// TestSyncDurationMetric: every sync is one data point of
// idprov.ldap.sync.duration on the engine's MeterProvider, with its mode
// and outcome.
func TestSyncDurationMetric(t *testing.T) {
	e := newEnv(t, ldaptest.Options{})
	reader := sdkmetric.NewManualReader()
	eng, err := provision.NewEngine(provision.Config{
		Store:         memstore.New(),
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Tenants:       []provision.Tenant{{ID: tenant, Connections: []provision.Connection{{ID: ldapConn, Kind: provision.KindLDAP}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	e.addUser("ada", "Ada", "Lovelace", nil)
	s := e.syncer(nil)
	e.sync(s)
	e.changes(s)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "idprov.ldap.sync.duration" {
				for _, p := range h.DataPoints {
					var kv []string
					for _, a := range p.Attributes.ToSlice() {
						kv = append(kv, string(a.Key)+"="+a.Value.AsString())
					}
					got[strings.Join(kv, ",")] += p.Count
				}
			}
		}
	}
	full := "connection=" + ldapConn + ",mode=full,outcome=ok,tenant=" + tenant
	if got[full] != 1 || len(got) != 2 {
		t.Fatalf("idprov.ldap.sync.duration points = %v, want one full sync and one incremental", got)
	}
	state := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "idprov.ldap.state.size" {
				for _, p := range g.DataPoints {
					where, _ := p.Attributes.Value("memory")
					state[where.AsString()] = p.Value
				}
			}
		}
	}
	// One user and no groups: a few kilobytes on the heap, nothing mapped.
	if len(state) != 2 || state["heap"] < 1000 || state["heap"] > 32<<10 || state["mapped"] != 0 {
		t.Fatalf("idprov.ldap.state.size = %v, want the heap's share and none mapped", state)
	}
}
