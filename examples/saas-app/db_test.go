package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// With a SQLite file (the default store), a restart keeps what the
// identity provider provisioned.
func TestSQLiteStoreSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	lines, stop := launch(t, []string{"scim", "scim-token", "admin"}, "-db", path, "-scim-token", "SECRET")
	code, body := do(t, "POST", lines["scim"]+"/Users", "SECRET",
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"kept@acme.test","externalId":"00u-kept","active":true}`)
	if code != http.StatusCreated {
		t.Fatalf("POST = %d %v", code, body)
	}
	id, _ := body["id"].(string)
	stop()

	lines, stop = launch(t, []string{"scim", "scim-token", "admin"}, "-db", path, "-scim-token", "SECRET")
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
