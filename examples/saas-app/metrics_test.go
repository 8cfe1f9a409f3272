package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsEndpoint: /metrics serves the engine's and the SCIM
// handler's metrics in the Prometheus text format.
func TestMetricsEndpoint(t *testing.T) {
	lines := startAppLines(t, []string{"scim", "scim-token", "metrics"}, "-tenant", "acme", "-scim-token", "SECRET")
	base := lines["scim"]
	if status, _ := do(t, "POST", base+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","active":true}`); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	if status, _ := do(t, "GET", base+"/Users/nope", "SECRET", ""); status != http.StatusNotFound {
		t.Fatalf("get: %d", status)
	}
	resp, err := http.Get(lines["metrics"])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE idprov_scim_requests_total counter",
		`idprov_scim_requests_total{connection="scim",method="POST",status="201",tenant="acme"} 1`,
		`idprov_scim_requests_total{connection="scim",method="GET",status="404",tenant="acme"} 1`,
		"# TYPE idprov_scim_duration_seconds histogram",
		`idprov_scim_duration_seconds_bucket{class="2xx",connection="scim",tenant="acme",le="+Inf"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
