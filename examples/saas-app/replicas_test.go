package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/internal/testenv"
	"github.com/idprov/idprov/saml/samltest"
)

// postgresSchema returns a postgres:// URL of IDPROV_TEST_POSTGRES_DSN whose
// search_path is a fresh schema, dropped when the test ends: two app
// replicas given it share one database of their own. Without the variable
// the test is skipped, or fails when CI=true.
func postgresSchema(t *testing.T) string {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b [5]byte
	_, _ = rand.Read(b[:])
	schema := "app_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL at IDPROV_TEST_POSTGRES_DSN: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("IDPROV_TEST_POSTGRES_DSN must be a postgres:// URL for the app tests, not %q", dsn)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// within polls ok until it holds, and returns how long that took; it
// fails the test after limit.
func within(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestReplicasFollowTheRegistry: two replicas of the app on one
// PostgreSQL database. A tenant and its SCIM directory made through one
// replica's admin API serve SCIM on the other within a second; the
// directory deleted on the second, its token is refused on both within a
// second.
func TestReplicasFollowTheRegistry(t *testing.T) {
	pg := postgresSchema(t)
	keyArgs := []string{"-db", pg, "-secret-key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
	a := startAppLines(t, []string{"scim", "admin"}, keyArgs...)
	b := startAppLines(t, []string{"scim", "admin"}, keyArgs...)
	baseA, tok := adminToken(t, a)
	baseB, tokB := adminToken(t, b)
	if tokB != tok {
		t.Fatalf("the replicas have different admin tokens")
	}

	if status, body := do(t, "PUT", baseA+"/admin/api/tenants/globex", tok, `{"name": "Globex", "verifiedDomains": ["globex.example"]}`); status != http.StatusOK {
		t.Fatalf("PUT tenant = %d %v", status, body)
	}
	status, body := do(t, "PUT", baseA+"/admin/api/tenants/globex/connections/okta", tok, `{"kind": "scim"}`)
	scimToken, _ := body["token"].(string)
	if status != http.StatusOK || scimToken == "" {
		t.Fatalf("PUT scim = %d %v", status, body)
	}
	took := within(t, time.Second, "the new directory served by the other replica", func() bool {
		status, _ := do(t, "GET", b["scim"]+"/Users", scimToken, "")
		return status == http.StatusOK
	})
	t.Logf("new directory on replica B after %s", took)
	if status, got := do(t, "POST", b["scim"]+"/Users", scimToken, scimUserBody); status != http.StatusCreated {
		t.Fatalf("POST /Users on replica B = %d %v", status, got)
	}
	if status, body := do(t, "GET", baseB+"/admin/api/tenants/globex", tok, ""); status != http.StatusOK || !strings.Contains(strings.Join(connIDs(body), ","), "okta") {
		t.Fatalf("GET tenant on replica B = %d %v", status, body)
	}

	// Replica A serves the directory too (so it holds it in its cache).
	if status, _ := do(t, "GET", a["scim"]+"/Users", scimToken, ""); status != http.StatusOK {
		t.Fatalf("GET /Users on replica A = %d", status)
	}
	// SAML: a connection registered on A to a test IdP signs in on B.
	idp, err := samltest.New("https://idp.globex.example/okta")
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := httptest.NewServer(idp.Handler())
	defer idpSrv.Close()
	idp.SSOURL = idpSrv.URL + "/sso"
	idp.SetUser(&samltest.User{NameID: "00u1", Attributes: []samltest.Attribute{{Name: "email", Values: []string{"ada@globex.example"}}}})
	status, body = do(t, "PUT", baseA+"/admin/api/tenants/globex/connections/okta-sso", tok, `{"kind": "saml", "idpMetadataURL": "`+idpSrv.URL+`/metadata", "domains": ["globex.example"]}`)
	if status != http.StatusOK {
		t.Fatalf("PUT saml on replica A = %d %v", status, body)
	}
	var resp *http.Response
	took = within(t, time.Second, "the new SAML connection served by replica B", func() bool {
		r, err := http.Get(baseB + "/saml/globex/okta-sso/metadata")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	})
	t.Logf("new SAML connection on replica B after %s", took)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err = idp.Login(browser, baseB+"/saml/globex/login?email=ada%40globex.example")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if status, got := me(t, browser, baseB); status != http.StatusOK || got["userName"] != "ada@globex.example" {
		t.Fatalf("/me on replica B after SSO = %d %v, want the directory's Ada", status, got)
	}
	if status, _ := do(t, "DELETE", baseA+"/admin/api/tenants/globex/connections/okta-sso", tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE saml on replica A = %d", status)
	}
	took = within(t, time.Second, "the deleted SAML connection refused on replica B", func() bool {
		r, err := http.Get(baseB + "/saml/globex/okta-sso/login")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusNotFound
	})
	t.Logf("deleted SAML connection refused on replica B after %s", took)

	if status, _ := do(t, "DELETE", baseB+"/admin/api/tenants/globex/connections/okta", tok, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE on replica B = %d", status)
	}
	for name, lines := range map[string]map[string]string{"A": a, "B": b} {
		took := within(t, time.Second, "the deleted directory's token refused on replica "+name, func() bool {
			status, _ := do(t, "GET", lines["scim"]+"/Users", scimToken, "")
			return status == http.StatusUnauthorized
		})
		t.Logf("deleted directory refused on replica %s after %s", name, took)
	}
}
