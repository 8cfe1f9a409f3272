package scim

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics. The handler records through the OpenTelemetry metric API, on
// the engine's MeterProvider (provision.Config.MeterProvider or the otel
// global), under the meter "github.com/idprov/idprov/scim":
//
//	idprov.scim.requests  counter, {request}: per tenant, connection (the directory), method and status
//	idprov.scim.duration  histogram, s: the same requests' durations, per tenant, connection and status class
type scimMetrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newSCIMMetrics(mp metric.MeterProvider) *scimMetrics {
	meter := mp.Meter("github.com/idprov/idprov/scim")
	m := &scimMetrics{}
	m.requests, _ = meter.Int64Counter("idprov.scim.requests", metric.WithUnit("{request}"),
		metric.WithDescription("SCIM requests answered, by directory, method and status."))
	m.duration, _ = meter.Float64Histogram("idprov.scim.duration", metric.WithUnit("s"),
		metric.WithDescription("SCIM request durations, by directory and status class."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	return m
}

// request records one answered request. A request refused before its
// directory was known counts with empty tenant and connection.
// Without a MeterProvider (the instruments disabled) it builds no
// attribute set.
func (m *scimMetrics) request(ctx context.Context, tenant, connection, method string, status int, d time.Duration) {
	reqs, dur := m.requests.Enabled(ctx), m.duration.Enabled(ctx)
	if !reqs && !dur {
		return
	}
	dir := []attribute.KeyValue{attribute.String("tenant", tenant), attribute.String("connection", connection)}
	if reqs {
		m.requests.Add(ctx, 1, metric.WithAttributes(append(dir, attribute.String("method", method), attribute.Int("status", status))...))
	}
	if dur {
		m.duration.Record(ctx, d.Seconds(), metric.WithAttributes(append(dir, attribute.String("class", strconv.Itoa(status/100)+"xx"))...))
	}
}
