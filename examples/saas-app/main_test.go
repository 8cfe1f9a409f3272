package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// launch runs the app on a free port with args (after -addr and -db
// memory, which args may override), waits for the printed lines named in
// want, and returns them by prefix with a stop function that ends the app
// and fails the test unless it returns cleanly.
func launch(t *testing.T, want []string, args ...string) (map[string]string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-db", "memory"}, args...), pw)
		pw.Close()
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancel")
		}
	}
	lines := map[string]string{}
	missing := func() bool {
		for _, k := range want {
			if lines[k] == "" {
				return true
			}
		}
		return false
	}
	sc := bufio.NewScanner(pr)
	for missing() && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			lines[k] = v
		}
	}
	go io.Copy(io.Discard, pr)
	if missing() {
		stop()
		t.Fatalf("printed lines = %v, want %v", lines, want)
	}
	return lines, stop
}

// startAppLines runs the app until the test ends and returns the printed
// lines, once those named in want are out.
func startAppLines(t *testing.T, want []string, args ...string) map[string]string {
	t.Helper()
	lines, stop := launch(t, want, args...)
	t.Cleanup(stop)
	return lines
}

// startApp is startAppLines waiting for the SCIM lines.
func startApp(t *testing.T, args ...string) map[string]string {
	t.Helper()
	return startAppLines(t, []string{"scim", "scim-token"}, args...)
}

func do(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestSCIMCreateAndRead(t *testing.T) {
	lines := startApp(t, "-tenant", "acme", "-scim-token", "SECRET")
	if lines["scim-token"] != "SECRET" {
		t.Fatalf("scim-token = %q, want SECRET", lines["scim-token"])
	}
	base := lines["scim"]
	if !strings.HasSuffix(base, "/scim/v2") || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("scim = %q", base)
	}
	status, created := do(t, "POST", base+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@acme.test","name":{"givenName":"Ada","familyName":"Lovelace"},"emails":[{"value":"ada@acme.test","type":"work","primary":true}],"externalId":"00u1","active":true}`)
	if status != http.StatusCreated {
		t.Fatalf("POST /Users = %d %v", status, created)
	}
	id, _ := created["id"].(string)
	status, got := do(t, "GET", base+"/Users/"+id, "SECRET", "")
	if status != http.StatusOK || got["userName"] != "ada@acme.test" || got["externalId"] != "00u1" {
		t.Fatalf("GET /Users/%s = %d %v", id, status, got)
	}
	if status, _ := do(t, "GET", base+"/Users/"+id, "WRONG", ""); status != http.StatusUnauthorized {
		t.Fatalf("GET with a wrong token = %d, want 401", status)
	}
}

func TestRandomToken(t *testing.T) {
	lines := startApp(t)
	tok := lines["scim-token"]
	if len(tok) < 32 {
		t.Fatalf("random token %q is too short", tok)
	}
	if status, body := do(t, "GET", lines["scim"]+"/Users?filter="+`userName%20eq%20%22x%22`, tok, ""); status != http.StatusOK || body["totalResults"] != float64(0) {
		t.Fatalf("GET /Users with the printed token = %d %v", status, body)
	}
}
