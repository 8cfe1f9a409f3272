package provision

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics. The engine records through the OpenTelemetry metric API only:
// nothing is exported until the host installs a MeterProvider (in
// Config.MeterProvider, or as the otel global), and the instruments are
// no-ops until then. The instruments, all under the meter
// "github.com/idprov/idprov/provision":
//
//	idprov.consumer.backlog      gauge, {event}: events waiting, per consumer, as of its last poll
//	idprov.consumer.lag          histogram, s: from an event's commit to its acceptance, per consumer
//	idprov.consumer.failures     counter, {failure}: handler failures (a webhook endpoint failing), per consumer
//	idprov.consumer.suspensions  counter: tenants suspended, per consumer
//	idprov.plans.held            counter, {plan}: changes held as plans, per kind (members, access)
//
// The scim package adds idprov.scim.requests and idprov.scim.duration.

const meterName = "github.com/idprov/idprov/provision"

// metrics holds the engine's instruments and the running consumers the
// backlog gauge reads.
type metrics struct {
	mp          metric.MeterProvider
	lag         metric.Float64Histogram
	failures    metric.Int64Counter
	suspensions metric.Int64Counter
	held        metric.Int64Counter

	mu        sync.Mutex
	consumers map[*consumer]struct{}
}

func newMetrics(mp metric.MeterProvider) *metrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &metrics{mp: mp, consumers: map[*consumer]struct{}{}}
	meter := mp.Meter(meterName)
	// The API's instruments never fail to build (a broken SDK hands out
	// no-ops and reports through the otel error handler).
	m.lag, _ = meter.Float64Histogram("idprov.consumer.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from an event's commit to its acceptance by the consumer."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
	m.failures, _ = meter.Int64Counter("idprov.consumer.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Events a consumer's handler failed on (each attempt)."))
	m.suspensions, _ = meter.Int64Counter("idprov.consumer.suspensions", metric.WithUnit("{tenant}"),
		metric.WithDescription("Tenants whose delivery was suspended after failing too long."))
	m.held, _ = meter.Int64Counter("idprov.plans.held", metric.WithUnit("{plan}"),
		metric.WithDescription("Changes held as plans awaiting confirmation."))
	_, _ = meter.Int64ObservableGauge("idprov.consumer.backlog", metric.WithUnit("{event}"),
		metric.WithDescription("Events waiting for the consumer, over every tenant, as of its last poll."),
		metric.WithInt64Callback(m.observeBacklog))
	return m
}

func (m *metrics) observeBacklog(_ context.Context, o metric.Int64Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sums := map[string]int64{}
	for c := range m.consumers {
		if n := c.backlog.Load(); n >= 0 {
			sums[c.name] += n
		}
	}
	for name, n := range sums {
		o.Observe(n, metric.WithAttributes(attribute.String("consumer", name)))
	}
	return nil
}

func (m *metrics) running(c *consumer) (done func()) {
	c.backlog.Store(-1) // unknown until a poll with EventBacklog
	m.mu.Lock()
	m.consumers[c] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.consumers, c)
		m.mu.Unlock()
	}
}

func consumerAttr(name string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("consumer", name))
}

func (m *metrics) accepted(ctx context.Context, name string, ev Event, now time.Time) {
	if !ev.Time.IsZero() {
		m.lag.Record(ctx, max(now.Sub(ev.Time).Seconds(), 0), consumerAttr(name))
	}
}

func (m *metrics) failed(ctx context.Context, name string, suspended bool) {
	m.failures.Add(ctx, 1, consumerAttr(name))
	if suspended {
		m.suspensions.Add(ctx, 1, consumerAttr(name))
	}
}

func (m *metrics) planHeld(ctx context.Context, kind string) {
	m.held.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
}
