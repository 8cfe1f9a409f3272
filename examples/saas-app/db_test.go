package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runUntil runs the app with args, returns its printed lines once "scim",
// "scim-token" and "admin" are out, and a stop function that ends it and checks it
// returned cleanly.
func runUntil(t *testing.T, args ...string) (map[string]string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw)
		pw.Close()
	}()
	lines := map[string]string{}
	sc := bufio.NewScanner(pr)
	for (lines["scim"] == "" || lines["scim-token"] == "" || lines["admin"] == "") && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			lines[k] = v
		}
	}
	go io.Copy(io.Discard, pr)
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not stop")
		}
	}
	if lines["scim"] == "" {
		stop()
		t.Fatalf("printed %v", lines)
	}
	return lines, stop
}

// With a SQLite file (the default store), a restart keeps what the
// identity provider provisioned.
func TestSQLiteStoreSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	lines, stop := runUntil(t, "-db", path, "-scim-token", "SECRET")
	code, body := do(t, "POST", lines["scim"]+"/Users", "SECRET",
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"kept@acme.test","externalId":"00u-kept","active":true}`)
	if code != http.StatusCreated {
		t.Fatalf("POST = %d %v", code, body)
	}
	id, _ := body["id"].(string)
	stop()

	lines, stop = runUntil(t, "-db", path, "-scim-token", "SECRET")
	defer stop()
	code, body = do(t, "GET", lines["scim"]+"/Users/"+id, "SECRET", "")
	if code != http.StatusOK || body["userName"] != "kept@acme.test" {
		t.Fatalf("GET after restart = %d %v", code, body)
	}
}

func TestBadDBFlag(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-db") {
		t.Fatalf("run with an unusable -db = %v", err)
	}
}
