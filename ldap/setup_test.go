package ldap_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap"
	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func TestSetupLDAPTestAndPlan(t *testing.T) {
	ldif := filepath.Join(t.TempDir(), "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldaptest.WriteDirectory(f, "dc=example,dc=com", 12, 3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := ldaptest.Start(t, ldaptest.Options{LDIFFile: ldif})
	ctx := context.Background()
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(),
		SecretKeys: []provision.SecretKey{{ID: "k1", Key: []byte("0123456789abcdef0123456789abcdef")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutTenant(ctx, provision.Tenant{ID: "globex"}, "test"); err != nil {
		t.Fatal(err)
	}
	approved := ""
	setup, err := ldap.NewSetup(ldap.SetupConfig{
		Engine: e,
		Config: func(tenantID, connID string, s provision.LDAPSettings) (ldap.Config, error) {
			return ldap.Config{Engine: e, TenantID: tenantID, ConnectionID: connID, URL: s.URL, InsecurePlaintext: true,
				BindDN: s.BindDN, BindPassword: s.BindPassword.Reveal(), UserBaseDN: s.BaseDN, GroupBaseDN: s.BaseDN,
				UserFilter: s.UserFilter, GroupFilter: s.GroupFilter, RequestTimeout: 10 * time.Second}, nil
		},
		OnApproved: func(_ context.Context, tenantID, connID string) { approved = tenantID + "/" + connID },
	})
	if err != nil {
		t.Fatal(err)
	}
	link, _, err := e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindLDAP}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	srvHTTP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setup.ServeHTTP(w, r.WithContext(provision.WithSetupLink(r.Context(), link)))
	}))
	defer srvHTTP.Close()
	post := func(p string, v url.Values) (int, string) {
		t.Helper()
		resp, err := http.PostForm(srvHTTP.URL+p, v)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	form := url.Values{"url": {srv.URL}, "bindDN": {srv.SyncDN}, "bindPassword": {"wrong"}, "baseDN": {srv.BaseDN}, "preset": {"openldap"}}

	// A bad URL: nothing saved.
	bad := url.Values{"url": {"http://x"}, "baseDN": {srv.BaseDN}}
	if st, body := post("/test", bad); st != 400 || !strings.Contains(body, "ldaps://") || !strings.Contains(body, "Nothing was saved") {
		t.Fatalf("bad URL: %d %s", st, body)
	}
	if _, err := e.Connection(ctx, "globex", "ldap"); err == nil {
		t.Fatal("a connection after a bad URL")
	}
	// A wrong password: the bind step says so.
	st, body := post("/test", form)
	if st != 400 || !strings.Contains(body, `id="ldap-test-failed"`) || !strings.Contains(body, "refused the bind DN or password") {
		t.Fatalf("wrong password: %d %s", st, body)
	}
	if !ldap.SetupHeld(ctx, e, "globex", "ldap") {
		t.Fatal("a connection saved through the setup is not held")
	}
	// Approving before a passing test is refused.
	if st, _ := post("/approve", nil); st != 409 {
		t.Fatalf("approve before a passing test: %d", st)
	}
	form.Set("bindPassword", srv.SyncPassword)
	st, body = post("/test", form)
	if st != 200 || !strings.Contains(body, `id="ldap-test-ok"`) || !strings.Contains(body, "read 12 users and 3 groups: create 12 users") || !strings.Contains(body, `id="approve"`) {
		t.Fatalf("test: %d %s", st, body)
	}
	res, err := ldap.LastSetupTest(ctx, e, "globex", "ldap")
	if err != nil || !res.OK || res.Users != 12 || res.Groups != 3 || res.CreateUsers != 12 || res.CreateGroups != 3 || res.DeactivateUsers != 0 || len(res.NamingContexts) == 0 {
		t.Fatalf("LastSetupTest %+v, %v", res, err)
	}
	// The dry run created nothing.
	if _, n, err := provision.AdapterOf(e).Store().ListUsers(ctx, "globex", provision.Page{}); err != nil || n != 0 {
		t.Fatalf("the test made %d users (%v)", n, err)
	}
	// The stored password is kept when the form leaves it empty.
	form.Set("bindPassword", "")
	if st, body := post("/test", form); st != 200 || !strings.Contains(body, `id="ldap-test-ok"`) {
		t.Fatalf("test keeping the password: %d %s", st, body)
	}
	if st, body := post("/approve", nil); st != 200 || !strings.Contains(body, `id="approved"`) || approved != "globex/ldap" || ldap.SetupHeld(ctx, e, "globex", "ldap") {
		t.Fatalf("approve: %d %q %s", st, approved, body)
	}
	evs, _ := e.Events(ctx, "globex", 0, 10)
	if len(evs) == 0 || evs[0].Actor != link.Actor() {
		t.Fatalf("events %+v", evs)
	}
}
