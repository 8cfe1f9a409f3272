package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestPinnedSCIMTokenRotationSurvivesRestart: a rotation on the admin page
// of the -scim-token directory survives a restart with the same command
// line (the revoked flag token stays refused, the new one works and is
// printed); a different -scim-token starts over.
func TestPinnedSCIMTokenRotationSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	args := []string{"-db", path, "-scim-token", "SECRET"}
	want := []string{"scim", "scim-token", "admin", "events-token"}
	lines, stop := launch(t, want, args...)
	events := lines["events-token"]
	status, body := adminPost(t, lines["admin"], "/admin/t/acme/scim/scim/rotate", nil)
	i := strings.Index(body, `id="new-token">`)
	if status != http.StatusOK || i < 0 {
		t.Fatalf("rotate = %d %s", status, body)
	}
	fresh := body[i+len(`id="new-token">`):]
	fresh = fresh[:strings.Index(fresh, "<")]
	if status, _ := adminPost(t, lines["admin"], "/admin/t/acme/scim/scim/revoke-old", nil); status != http.StatusSeeOther {
		t.Fatalf("revoke-old = %d", status)
	}
	stop()

	lines, stop = launch(t, want, args...)
	if status, _ := do(t, "GET", lines["scim"]+"/Users", "SECRET", ""); status != http.StatusUnauthorized {
		t.Errorf("the revoked -scim-token after a restart = %d, want 401", status)
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", fresh, ""); status != http.StatusOK {
		t.Errorf("the rotated token after a restart = %d, want 200", status)
	}
	if lines["scim-token"] != fresh {
		t.Errorf("printed scim-token after a restart = %q, want the rotated %q", lines["scim-token"], fresh)
	}
	if lines["events-token"] != events || len(events) < 32 {
		t.Errorf("events-token changed across a restart: %q then %q", events, lines["events-token"])
	}
	if status, _ := do(t, "GET", strings.TrimSuffix(lines["scim"], "/scim/v2")+"/events", events, ""); status != http.StatusOK {
		t.Errorf("GET /events with the kept events-token = %d", status)
	}
	stop()

	lines, stop = launch(t, want, "-db", path, "-scim-token", "OTHER")
	defer stop()
	if status, _ := do(t, "GET", lines["scim"]+"/Users", "OTHER", ""); status != http.StatusOK || lines["scim-token"] != "OTHER" {
		t.Errorf("a new -scim-token after a rotation = %d, printed %q", status, lines["scim-token"])
	}
	if status, _ := do(t, "GET", lines["scim"]+"/Users", fresh, ""); status != http.StatusUnauthorized {
		t.Errorf("the rotated token under a new -scim-token = %d, want 401", status)
	}
}
