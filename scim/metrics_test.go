package scim_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

func TestRequestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e := newEnv(t, func(_ *scim.Config, p *provision.Config) { p.MeterProvider = mp })
	e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@example.com"}`), 201, "create")
	e.must(e.do(acmeOkta, "GET", "/Users/nope", ""), 404, "get")
	e.must(e.do(acmeEntra, "GET", "/Users/nope", ""), 404, "get")
	e.do("bad-token", "GET", "/Users", "")

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var durations uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != "idprov.scim.requests" {
					continue
				}
				for _, p := range d.DataPoints {
					ten, _ := p.Attributes.Value("tenant")
					conn, _ := p.Attributes.Value("connection")
					meth, _ := p.Attributes.Value("method")
					st, _ := p.Attributes.Value("status")
					got[ten.Emit()+"/"+conn.Emit()+" "+meth.Emit()+" "+st.Emit()] += p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name == "idprov.scim.duration" {
					for _, p := range d.DataPoints {
						durations += p.Count
					}
				}
			}
		}
	}
	want := map[string]int64{"acme/okta POST 201": 1, "acme/okta GET 404": 1, "acme/entra GET 404": 1, "/ GET 401": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("requests %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if durations != 4 {
		t.Errorf("duration observations = %d, want 4", durations)
	}
}
