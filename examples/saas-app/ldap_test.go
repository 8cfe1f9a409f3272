package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestLDAPSync: users and groups of a real slapd, synced in the
// background, show through SCIM GET like any other.
func TestLDAPSync(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{})
	for _, uid := range []string{"ada", "bob"} {
		srv.Add(t, "uid="+uid+","+srv.PeopleDN, map[string][]string{
			"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {uid + "@acme.example"},
		})
	}
	srv.Add(t, "cn=eng,"+srv.GroupsDN, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"eng"}, "member": {"uid=ada," + srv.PeopleDN}})
	lines := startApp(t, "-scim-token", "SECRET",
		"-ldap-url", srv.URL, "-ldap-bind-dn", srv.SyncDN, "-ldap-bind-password", srv.SyncPassword,
		"-ldap-base-dn", srv.BaseDN, "-ldap-interval", "100ms")
	base := lines["scim"]
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, users := do(t, "GET", base+"/Users?filter="+`userName%20eq%20%22bob%22`, "SECRET", "")
		_, groups := do(t, "GET", base+"/Groups", "SECRET", "")
		if users["totalResults"] == float64(1) && strings.Contains(strings.ToLower(ldapTestJSON(groups)), `"eng"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("LDAP users not visible through SCIM: users %v groups %v", users, groups)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ldapTestJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
