package main

import (
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim/scimtest"
	"github.com/idprov/idprov/store/sqlstore"
)

// TestSCIMConformanceMemstore replays the recorded Okta and Entra
// lifecycles against the running app (memstore), as a host would in its
// own CI.
func TestSCIMConformanceMemstore(t *testing.T) {
	lines := startApp(t)
	scimtest.Run(t, lines["scim"], lines["scim-token"])
}

// TestSCIMConformanceSQLite replays them against the app's SCIM feature
// on sqlstore over a SQLite file.
func TestSCIMConformanceSQLite(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "idprov.db")+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := &app{
		Tenants: []*tenant{{Tenant: provision.Tenant{ID: "acme", Name: "acme"}}},
		Store:   st,
		Mux:     http.NewServeMux(),
		Log:     slog.New(slog.DiscardHandler),
		Stdout:  io.Discard,
	}
	f := &scimFeature{connID: "scim"}
	if err := f.setup(a); err != nil {
		t.Fatal(err)
	}
	if a.Engine, err = provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{a.Tenants[0].Tenant}, Logger: a.Log}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Mux)
	t.Cleanup(srv.Close)
	a.BaseURL = srv.URL
	if err := f.start(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	scimtest.Run(t, srv.URL+"/scim/v2", f.token)
	if h := f.handler.Health("acme", "scim"); h.Requests == 0 || h.Failures != 0 {
		t.Fatalf("health after the replay = %+v", h)
	}
}
