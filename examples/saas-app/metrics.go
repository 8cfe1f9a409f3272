package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// metricsFeature installs an OpenTelemetry MeterProvider for the engine
// (and so the SCIM handler, the consumers, the webhook) and serves what
// it collected at /metrics in the Prometheus text format. The library
// records through the otel API only; the SDK and this small encoder are
// the app's choice (a host may use the otel Prometheus exporter, or OTLP,
// instead). Like a usual scrape target it needs no token: serve it on an
// internal listener in production (it names tenants and directories).
type metricsFeature struct {
	reader *sdkmetric.ManualReader
}

func (f *metricsFeature) flags(*flag.FlagSet) {}

func (f *metricsFeature) setup(a *app) error {
	f.reader = sdkmetric.NewManualReader()
	a.EngineConfig.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	return nil
}

func (f *metricsFeature) start(_ context.Context, a *app) error {
	a.Mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var rm metricdata.ResourceMetrics
		if err := f.reader.Collect(r.Context(), &rm); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		writePrometheus(bw, &rm)
		_ = bw.Flush()
	})
	fmt.Fprintf(a.Stdout, "metrics: %s/metrics\n", a.BaseURL)
	return nil
}

// writePrometheus writes rm in the Prometheus text exposition format:
// monotonic sums as counters (_total), other sums and gauges as gauges,
// histograms with cumulative _bucket, _sum and _count. Names get their
// dots replaced and a _seconds suffix for the unit "s".
func writePrometheus(w *bufio.Writer, rm *metricdata.ResourceMetrics) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			name := promName(m.Name)
			if m.Unit == "s" {
				name += "_seconds"
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				writeNumbers(w, name, m.Description, d.IsMonotonic, d.DataPoints)
			case metricdata.Sum[float64]:
				writeNumbers(w, name, m.Description, d.IsMonotonic, d.DataPoints)
			case metricdata.Gauge[int64]:
				writeNumbers(w, name, m.Description, false, d.DataPoints)
			case metricdata.Gauge[float64]:
				writeNumbers(w, name, m.Description, false, d.DataPoints)
			case metricdata.Histogram[float64]:
				fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, m.Description, name)
				for _, p := range d.DataPoints {
					var cum uint64
					for i, b := range p.Bounds {
						cum += p.BucketCounts[i]
						fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels(p.Attributes, "le", strconv.FormatFloat(b, 'g', -1, 64)), cum)
					}
					fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels(p.Attributes, "le", "+Inf"), p.Count)
					fmt.Fprintf(w, "%s_sum%s %g\n", name, labels(p.Attributes, "", ""), p.Sum)
					fmt.Fprintf(w, "%s_count%s %d\n", name, labels(p.Attributes, "", ""), p.Count)
				}
			}
		}
	}
}

func writeNumbers[N int64 | float64](w *bufio.Writer, name, help string, counter bool, points []metricdata.DataPoint[N]) {
	kind := "gauge"
	if counter {
		kind, name = "counter", name+"_total"
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	for _, p := range points {
		fmt.Fprintf(w, "%s%s %v\n", name, labels(p.Attributes, "", ""), p.Value)
	}
}

func promName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			return r
		}
		return '_'
	}, s)
}

// labels formats the attribute set, plus extra=value when extra is set,
// as {k="v",...} (empty when there are none), keys sorted.
func labels(set attribute.Set, extra, value string) string {
	var parts []string
	for _, kv := range set.ToSlice() {
		parts = append(parts, promName(string(kv.Key))+`="`+escapeLabel(kv.Value.Emit())+`"`)
	}
	slices.Sort(parts)
	if extra != "" {
		parts = append(parts, extra+`="`+value+`"`)
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
