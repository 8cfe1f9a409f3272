package ldap

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// presetConfig is the env's Config with the preset applied over
// baseDN: the preset's mapping and containers, URL given (the test
// server's) and the test CA pinned.
func (e *env) presetConfig(name, url, baseDN string, mod func(*Config)) Config {
	e.t.Helper()
	p, ok := PresetNamed(name)
	if !ok {
		e.t.Fatalf("no preset %q", name)
	}
	cfg := e.config()
	cfg.UserBaseDN, cfg.GroupBaseDN, cfg.URL = "", "", url
	cfg.InsecurePlaintext = false
	cfg.TLSCAPEM = string(e.srv.CAPEM)
	if mod != nil {
		mod(&cfg)
	}
	if err := p.Apply(&cfg, baseDN); err != nil {
		e.t.Fatalf("Apply %s: %v", name, err)
	}
	return cfg
}

func (e *env) syncConfig(cfg Config) *Report {
	e.t.Helper()
	s, err := NewSyncer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.sync(s)
}

// externalUser returns the user the connection knows by id.
func (e *env) externalUser(id string) provision.User {
	e.t.Helper()
	u, err := e.eng.UserByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, id)
	if err != nil {
		e.t.Fatalf("user %s: %v", id, err)
	}
	return u
}

func uuidN(n int) string { return fmt.Sprintf("%08x-1111-4222-8333-%012x", n, n) }

// googleSchema is the part of Google Secure LDAP's schema slapd lacks.
const googleSchema = `attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'googleUid' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'posixUid' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'apple-generateduid' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'googleObject' AUXILIARY MAY ( googleUid $ posixUid $ apple-generateduid ) )
`

// TestPresetGoogle: a slapd set up as Google Secure LDAP is: ldaps only
// with a demanded client certificate, users (inetOrgPerson and
// posixAccount, in sub-OUs of ou=Users) and groups (ou=Groups, member)
// under dc=<domain>,dc=<tld>, ids in apple-generateduid. The preset binds
// with SASL EXTERNAL: the certificate is the identity, no password.
func TestPresetGoogle(t *testing.T) {
	e := newEnv(t, ldaptest.Options{BaseDN: "dc=acme,dc=example", ClientCertificates: true, Schema: googleSchema})
	base := e.srv.BaseDN
	for _, ou := range []string{"ou=Users," + base, "ou=Sales,ou=Users," + base} { // ou=groups is there
		e.srv.Add(t, ou, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {strings.SplitN(strings.TrimPrefix(ou, "ou="), ",", 2)[0]}})
	}
	user := func(uid, parent string, n int) string {
		dn := "uid=" + uid + "," + parent
		e.srv.Add(t, dn, map[string][]string{
			"objectClass": {"inetOrgPerson", "posixAccount", "googleObject"},
			"uid":         {uid}, "googleUid": {uid}, "posixUid": {uid}, "cn": {uid + " Person"}, "sn": {"Person"}, "givenName": {uid},
			"displayName": {strings.ToUpper(uid[:1]) + uid[1:] + " Person"}, "mail": {uid + "@acme.example"},
			"uidNumber": {fmt.Sprint(1000 + n)}, "gidNumber": {"1000"}, "homeDirectory": {"/home/" + uid},
			"apple-generateduid": {strings.ToUpper(uuidN(n))},
		})
		return dn
	}
	lisa := user("lisasmith", "ou=Sales,ou=Users,"+base, 1)
	user("jimsmith", "ou=Users,"+base, 2)
	e.srv.Add(t, "cn=sales,ou=Groups,"+base, map[string][]string{"objectClass": {"groupOfNames", "googleObject"}, "cn": {"sales"}, "member": {lisa}, "apple-generateduid": {uuidN(100)}})

	// Without a client certificate the preset refuses before dialing.
	p, _ := PresetNamed("google")
	bare := Config{URL: e.srv.LDAPSURL}
	if err := p.Apply(&bare, base); !errors.Is(err, ErrCertificate) {
		t.Fatalf("Apply without a certificate: %v", err)
	}
	cfg := e.presetConfig("google", e.srv.LDAPSURL, base, func(c *Config) {
		c.BindDN, c.BindPassword = "", ""
		c.TLSClientCertPEM, c.TLSClientKeyPEM = string(e.srv.ClientCertPEM), string(e.srv.ClientKeyPEM)
	})
	eq(t, "SASL EXTERNAL", cfg.SASLExternal, true)
	eq(t, "bases", []string{cfg.UserBaseDN, cfg.GroupBaseDN}, []string{"ou=Users," + base, "ou=Groups," + base})
	rep := e.syncConfig(cfg)
	eq(t, "created", []int{rep.Created, rep.Groups.Created, rep.Skipped}, []int{2, 1, 0})
	u := e.externalUser(uuidN(1))
	eq(t, "user", []any{u.UserName, u.DisplayName, u.PrimaryEmail(), string(u.Attributes["googleUid"])}, []any{"lisasmith", "Lisasmith Person", "lisasmith@acme.example", `"lisasmith"`})
	eq(t, "members", e.members(uuidN(100)), []string{"lisasmith"})

	// The certificate is the identity: without SASL EXTERNAL the
	// connection is anonymous and reads nothing, and the sync says so
	// instead of sweeping.
	cfg.SASLExternal = false
	s, err := NewSyncer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Sync(e.ctx); err == nil && rep.Swept {
		t.Fatalf("an anonymous sync swept: %v", rep)
	}
	eq(t, "still active", e.externalUser(uuidN(2)).Active, true)
}

// TestPresetJumpCloud: JumpCloud's layout: o=<orgId>,dc=jumpcloud,dc=com
// with users (inetOrgPerson) and the LDAP-enabled groups (groupOfNames)
// together in ou=Users; ldaps only.
func TestPresetJumpCloud(t *testing.T) {
	e := newEnv(t, ldaptest.Options{BaseDN: "dc=jumpcloud,dc=com", TLS: true})
	org := "o=5f0c1a2b3c4d5e6f7a8b9c0d," + e.srv.BaseDN
	e.srv.Add(t, org, map[string][]string{"objectClass": {"organization"}, "o": {"5f0c1a2b3c4d5e6f7a8b9c0d"}})
	users := "ou=Users," + org
	e.srv.Add(t, users, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"Users"}})
	var dns []string
	for _, uid := range []string{"ana", "ben"} {
		dn := "uid=" + uid + "," + users
		e.srv.Add(t, dn, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {"X"}, "givenName": {uid}, "mail": {uid + "@acme.example"}})
		dns = append(dns, dn)
	}
	grp := "cn=engineering," + users
	e.srv.Add(t, grp, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"engineering"}, "member": {dns[1]}})

	if err := (Preset{Title: "x", TLSRequired: true}).Apply(&Config{URL: e.srv.URL}, org); err == nil {
		t.Fatal("a TLS-only preset took a plaintext URL")
	}
	cfg := e.presetConfig("jumpcloud", e.srv.LDAPSURL, org, nil)
	eq(t, "bases", []string{cfg.UserBaseDN, cfg.GroupBaseDN}, []string{users, users})
	rep := e.syncConfig(cfg)
	eq(t, "created", []int{rep.Created, rep.Groups.Created, rep.Skipped}, []int{2, 1, 0})
	eq(t, "members", e.members(e.srv.EntryUUID(t, grp)), []string{"ben"})
	eq(t, "user", e.user(dns[0]).UserName, "ana")
}

// TestPresetOkta: the Okta LDAP Interface's layout: dc=<org>,dc=okta,
// dc=com with ou=users (inetOrgPerson) and ou=groups
// (groupOfUniqueNames, uniqueMember), over StartTLS on the ldap://
// port.
func TestPresetOkta(t *testing.T) {
	e := newEnv(t, ldaptest.Options{BaseDN: "dc=acme,dc=okta,dc=com", TLS: true})
	base := e.srv.BaseDN
	e.srv.Add(t, "ou=users,"+base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"users"}}) // ou=groups is there
	var dns []string
	for _, login := range []string{"ana@acme.example", "ben@acme.example"} {
		dn := "uid=" + login + ",ou=users," + base
		e.srv.Add(t, dn, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {login}, "cn": {login}, "sn": {"X"}, "givenName": {"Y"}, "mail": {login}})
		dns = append(dns, dn)
	}
	grp := "cn=Everyone,ou=groups," + base
	e.srv.Add(t, grp, map[string][]string{"objectClass": {"groupOfUniqueNames"}, "cn": {"Everyone"}, "uniqueMember": dns})

	// Plaintext ldap:// without StartTLS is refused.
	p, _ := PresetNamed("okta")
	if err := p.Apply(&Config{URL: e.srv.URL}, base); err == nil {
		t.Fatal("the Okta preset took plaintext ldap://")
	}
	cfg := e.presetConfig("okta", e.srv.URL, base, func(c *Config) { c.StartTLS = true })
	rep := e.syncConfig(cfg)
	eq(t, "created", []int{rep.Created, rep.Groups.Created, rep.Skipped}, []int{2, 1, 0})
	eq(t, "members", e.members(e.srv.EntryUUID(t, grp)), []string{"ana@acme.example", "ben@acme.example"})
}

// freeIPASchema is the part of FreeIPA's (389's) schema slapd lacks.
const freeIPASchema = `attributetype ( 1.3.6.1.4.1.99999.3.1 NAME 'ipaUniqueID' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.3.2 NAME 'nsAccountLock' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.4.1 NAME 'ipaObject' AUXILIARY MAY ( ipaUniqueID $ nsAccountLock ) )
`

// TestPresetFreeIPA: FreeIPA's layout: cn=users,cn=accounts and
// cn=groups,cn=accounts under the base, ids in ipaUniqueID,
// nsAccountLock=TRUE disabled, nested groups flattened.
func TestPresetFreeIPA(t *testing.T) {
	e := newEnv(t, ldaptest.Options{BaseDN: "dc=ipa,dc=example", TLS: true, Schema: freeIPASchema})
	base := e.srv.BaseDN
	for _, cn := range []string{"cn=accounts", "cn=users,cn=accounts", "cn=groups,cn=accounts"} {
		e.srv.Add(t, cn+","+base, map[string][]string{"objectClass": {"organizationalRole"}, "cn": {strings.SplitN(strings.TrimPrefix(cn, "cn="), ",", 2)[0]}})
	}
	users, groups := "cn=users,cn=accounts,"+base, "cn=groups,cn=accounts,"+base
	var dns []string
	for i, uid := range []string{"admin", "ana", "ben"} {
		attrs := map[string][]string{"objectClass": {"inetOrgPerson", "ipaObject"}, "uid": {uid}, "cn": {uid}, "sn": {"X"}, "givenName": {uid}, "mail": {uid + "@ipa.example"}, "ipaUniqueID": {uuidN(i)}}
		if uid == "ben" {
			attrs["nsAccountLock"] = []string{"TRUE"}
		}
		dn := "uid=" + uid + "," + users
		e.srv.Add(t, dn, attrs)
		dns = append(dns, dn)
	}
	inner := "cn=developers," + groups
	e.srv.Add(t, inner, map[string][]string{"objectClass": {"groupOfNames", "ipaObject"}, "cn": {"developers"}, "member": {dns[1]}, "ipaUniqueID": {uuidN(10)}})
	e.srv.Add(t, "cn=staff,"+groups, map[string][]string{"objectClass": {"groupOfNames", "ipaObject"}, "cn": {"staff"}, "member": {dns[0], inner}, "ipaUniqueID": {uuidN(11)}})

	cfg := e.presetConfig("freeipa", e.srv.LDAPSURL, base, nil)
	rep := e.syncConfig(cfg)
	eq(t, "created", []int{rep.Created, rep.Groups.Created, rep.Skipped}, []int{3, 2, 0})
	eq(t, "nsAccountLock", []bool{e.externalUser(uuidN(1)).Active, e.externalUser(uuidN(2)).Active}, []bool{true, false})
	eq(t, "nested", e.members(uuidN(11)), []string{"admin", "ana"})

	// ipa user-disable and user-enable.
	e.srv.Replace(t, dns[1], map[string][]string{"nsAccountLock": {"TRUE"}})
	e.syncConfig(cfg)
	eq(t, "disabled", e.externalUser(uuidN(1)).Active, false)
}

// TestPresetNames: every preset is found by its name and fills a
// Config NewSyncer accepts.
func TestPresetNames(t *testing.T) {
	for _, p := range Presets() {
		got, ok := PresetNamed(strings.ToUpper(p.Name))
		if !ok || got.Name != p.Name {
			t.Fatalf("PresetNamed(%q)", p.Name)
		}
		cfg := Config{Engine: newBenchEngine(t, memstore.New()), TenantID: tenant, ConnectionID: ldapConn, URL: "ldaps://ldap.example:636", BindDN: "cn=x,dc=example,dc=com", BindPassword: "x"}
		if p.ClientCertificate {
			cfg.TLSClientCertPEM, cfg.TLSClientKeyPEM = "cert", "key"
		}
		if err := p.Apply(&cfg, "dc=example,dc=com"); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if p.ClientCertificate {
			cfg.TLSClientCertPEM, cfg.TLSClientKeyPEM = "", ""
		}
		if _, err := NewSyncer(cfg); err != nil {
			t.Fatalf("%s: NewSyncer: %v", p.Name, err)
		}
	}
	if _, ok := PresetNamed("nope"); ok {
		t.Fatal("an unknown preset was found")
	}
}

// TestSASLExternalConfig: SASL EXTERNAL needs a client certificate and
// no bind password; NewSyncer says which is missing.
func TestSASLExternalConfig(t *testing.T) {
	cfg := Config{Engine: newBenchEngine(t, memstore.New()), TenantID: tenant, ConnectionID: ldapConn, URL: "ldaps://ldap.example:636", UserBaseDN: "dc=example,dc=com", SASLExternal: true}
	if _, err := NewSyncer(cfg); !errors.Is(err, ErrCertificate) {
		t.Fatalf("no certificate: %v", err)
	}
	cfg.BindDN = "cn=x,dc=example,dc=com"
	if _, err := NewSyncer(cfg); err == nil || !strings.Contains(err.Error(), "BindDN") {
		t.Fatalf("with a BindDN: %v", err)
	}
}
