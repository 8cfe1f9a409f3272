package ldap

import (
	"context"
	"time"

	"github.com/idprov/idprov/provision"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics. A Syncer records, through the OpenTelemetry metric API of its
// engine's MeterProvider (provision.Config.MeterProvider; no-op until the
// host installs one), under the meter "github.com/idprov/idprov/ldap":
//
//	idprov.ldap.sync.duration  histogram, s: one sync (full or incremental), per
//	                           tenant, connection, mode and outcome (ok, held, error)
//	idprov.ldap.state.size     gauge, By: the Syncer's compact directory state
//	                           after a sync, per tenant, connection and memory:
//	                           "heap" (Go heap) or "mapped" (kept off the heap,
//	                           so not in runtime.MemStats: see the package
//	                           doc on the memory a sync holds)
//
// Held deactivation plans count in the engine's idprov.plans.held (kind
// "deactivations").

const meterName = "github.com/idprov/idprov/ldap"

// observe records one sync that started at start and ended with rep and
// err. Syncs are rare (one per interval), so the instruments are looked
// up each time rather than kept: the SDK hands back the same ones.
func (s *Syncer) observe(ctx context.Context, start time.Time, rep *Report, err error) {
	mp := provision.AdapterOf(s.eng).MeterProvider()
	if mp == nil {
		return
	}
	meter := mp.Meter(meterName)
	outcome, mode := "ok", "unknown"
	d := time.Since(start)
	if rep != nil {
		mode = string(rep.Mode)
		if rep.Duration > 0 {
			d = rep.Duration
		}
		if rep.Held != nil {
			outcome = "held"
		}
	}
	if err != nil {
		outcome = "error"
	}
	attrs := metric.WithAttributes(
		attribute.String("tenant", s.cfg.TenantID), attribute.String("connection", s.cfg.ConnectionID),
		attribute.String("mode", mode), attribute.String("outcome", outcome))
	if h, e := meter.Float64Histogram("idprov.ldap.sync.duration", metric.WithUnit("s"),
		metric.WithDescription("How long one LDAP sync (full or incremental) took."),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)); e == nil {
		h.Record(ctx, d.Seconds(), attrs)
	}
	s.mu.Lock()
	var heap, mapped int64
	if s.cache != nil {
		heap, mapped = s.cache.size()
	}
	s.mu.Unlock()
	if g, e := meter.Int64Gauge("idprov.ldap.state.size", metric.WithUnit("By"),
		metric.WithDescription("The LDAP Syncer's directory state, on the Go heap and mapped off it.")); e == nil {
		conn := []attribute.KeyValue{attribute.String("tenant", s.cfg.TenantID), attribute.String("connection", s.cfg.ConnectionID)}
		g.Record(ctx, heap, metric.WithAttributes(append(conn, attribute.String("memory", "heap"))...))
		g.Record(ctx, mapped, metric.WithAttributes(append(conn, attribute.String("memory", "mapped"))...))
	}
}
