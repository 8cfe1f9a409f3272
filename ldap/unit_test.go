package ldap

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func unitEngine(t *testing.T) *provision.Engine {
	eng, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{
		{ID: ldapConn, Kind: provision.KindLDAP}, {ID: scimConn, Kind: provision.KindSCIM},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func TestConfigValidation(t *testing.T) {
	eng := unitEngine(t)
	good := Config{Engine: eng, TenantID: tenant, ConnectionID: ldapConn, URL: "ldaps://ldap.example.com", UserBaseDN: "ou=people,dc=example,dc=com"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" for success
	}{
		{"good", func(*Config) {}, ""},
		{"no engine", func(c *Config) { c.Engine = nil }, "Engine is required"},
		{"unknown tenant", func(c *Config) { c.TenantID = "globex" }, "unknown tenant"},
		{"unknown connection", func(c *Config) { c.ConnectionID = "nope" }, "declares no connection"},
		{"not an LDAP connection", func(c *Config) { c.ConnectionID = scimConn }, `not "ldap"`},
		{"no base", func(c *Config) { c.UserBaseDN = "" }, "UserBaseDN is required"},
		{"bad base", func(c *Config) { c.UserBaseDN = "people" }, "UserBaseDN"},
		{"bad scheme", func(c *Config) { c.URL = "http://x" }, "scheme"},
		{"no host", func(c *Config) { c.URL = "ldaps://" }, "names no host"},
		{"plaintext", func(c *Config) { c.URL = "ldap://x" }, "plaintext"},
		{"plaintext allowed", func(c *Config) { c.URL = "ldap://x"; c.InsecurePlaintext = true }, ""},
		{"starttls", func(c *Config) { c.URL = "ldap://x"; c.StartTLS = true }, ""},
		{"starttls on ldaps", func(c *Config) { c.StartTLS = true }, "already encrypted"},
		{"bad user filter", func(c *Config) { c.UserFilter = "(uid=a" }, "UserFilter"},
		{"bad group filter", func(c *Config) { c.GroupFilter = "objectClass=group)" }, "GroupFilter"},
		{"password without dn", func(c *Config) { c.BindPassword = "x" }, "without a BindDN"},
		{"bad scope", func(c *Config) { c.Scope = 7 }, "Scope"},
		{"bad incremental", func(c *Config) { c.Incremental = "persist" }, "Incremental"},
		{"dirsync", func(c *Config) { c.Incremental = IncrementalDirSync }, ""},
		{"bad bit mask", func(c *Config) {
			c.Mapping = ActiveDirectory()
			c.Mapping.Disabled = []DisabledRule{{Attribute: "userAccountControl", Match: MatchAnyBit, Value: "x"}}
		}, "decimal mask"},
		{"unknown match", func(c *Config) {
			c.Mapping = OpenLDAP()
			c.Mapping.Disabled = []DisabledRule{{Attribute: "a", Match: "like"}}
		}, "unknown Match"},
		{"negative page", func(c *Config) { c.PageSize = -1 }, "negative"},
		{"share over 1", func(c *Config) { c.MaxDeactivationShare = 1.5 }, "at most 1"},
		{"disabled rule without attribute", func(c *Config) { c.Mapping = OpenLDAP(); c.Mapping.Disabled = []DisabledRule{{Value: "x"}} }, "names no attribute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			s, err := NewSyncer(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			case tc.want == "":
				if s.cfg.PageSize != 500 || s.cfg.MaxDeactivations != 500 || s.cfg.MaxDeactivationShare != 0.2 || s.cfg.Interval != 5*time.Minute || s.cfg.Mapping.ID != "entryUUID" {
					t.Fatalf("defaults: %+v", s.cfg)
				}
			}
		})
	}
}

func TestCanonicalID(t *testing.T) {
	for in, want := range map[string]string{
		"ae18b218-7d82-1041-8717-cdf72cc14d78": "ae18b218-7d82-1041-8717-cdf72cc14d78",
		"AE18B218-7D82-1041-8717-CDF72CC14D78": "ae18b218-7d82-1041-8717-cdf72cc14d78",
		"ae18b218-7d821041-8717cdf7-2cc14d78":  "ae18b218-7d82-1041-8717-cdf72cc14d78", // nsUniqueId
		"not-a-uuid":                           "not-a-uuid",
		"ae18b218-7d82-1041-8717-cdf72cc14d7":  "ae18b218-7d82-1041-8717-cdf72cc14d7",
	} {
		if got := canonicalID(in); got != want {
			t.Errorf("canonicalID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDNKey(t *testing.T) {
	same := [][]string{
		{"uid=Ada,ou=People,dc=Example,dc=com", "UID=ada, ou=people, DC=example,dc=com"},
		{`cn=Sales\, EMEA,ou=groups,dc=example,dc=com`, `cn=Sales\2C EMEA,ou=groups,dc=example,dc=com`, `CN=sales\2c emea, OU=Groups,DC=Example,DC=Com`},
	}
	for _, dns := range same {
		for _, dn := range dns[1:] {
			if dnKey(dn) != dnKey(dns[0]) {
				t.Errorf("dnKey(%q) = %q, dnKey(%q) = %q", dn, dnKey(dn), dns[0], dnKey(dns[0]))
			}
		}
	}
	if dnKey("uid=a,dc=x") == dnKey("uid=b,dc=x") {
		t.Error("different DNs share a key")
	}
}

func TestMappingPresets(t *testing.T) {
	e := goldap.NewEntry("uid=ada,ou=people,dc=example,dc=com", map[string][]string{
		"nsUniqueId": {"AE18B218-7D821041-8717CDF7-2CC14D78"}, "uid": {" ada "}, "mail": {"ada@x.example", "lovelace@x.example"},
		"givenName": {"Ada"}, "sn": {"Lovelace"}, "cn": {"Ada Lovelace"}, "nsAccountLock": {"true"}, "telephoneNumber": {"+1 555"},
		"employeeType": {"staff", "contractor"},
	})
	m := DirectoryServer389()
	m.Attributes = map[string]string{"employeeType": "employeeType"}
	id := m.entryID(e)
	eq(t, "id", id, "ae18b218-7d82-1041-8717-cdf72cc14d78")
	ident, err := m.identity(ldapConn, id, e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	u := ident.User
	eq(t, "user", []any{u.UserName, u.Active, u.PrimaryEmail(), len(u.Emails), u.PhoneNumbers[0].Value, string(u.Attributes["employeeType"])},
		[]any{"ada", false, "ada@x.example", 2, "+1 555", `["staff","contractor"]`})
	if OpenLDAP().disabled(e, time.Now()) {
		t.Error("OpenLDAP's rule matched nsAccountLock")
	}
	e.Attributes = append(e.Attributes, &goldap.EntryAttribute{Name: "pwdAccountLockedTime", Values: []string{"000001010000Z"}})
	if !OpenLDAP().disabled(e, time.Now()) {
		t.Error("pwdAccountLockedTime did not disable")
	}
	noUID := goldap.NewEntry("cn=x", map[string][]string{"entryUUID": {"x"}})
	if _, err := OpenLDAP().identity(ldapConn, "x", noUID, time.Now()); err == nil {
		t.Error("an entry without uid was mapped")
	}
}

func TestDiffSorted(t *testing.T) {
	add, remove := diffSorted([]string{"a", "c", "d"}, []string{"b", "c", "e"})
	eq(t, "add", add, []string{"b", "e"})
	eq(t, "remove", remove, []string{"a", "d"})
}

func TestNextStamp(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	prev := start.Add(-time.Hour)
	eq(t, "seen is recent: start minus margin", nextStamp(prev, start.Add(-time.Second), start), start.Add(-stampMargin))
	eq(t, "seen is old", nextStamp(time.Time{}, start.Add(-2*time.Hour), start), start.Add(-2*time.Hour))
	eq(t, "never backwards", nextStamp(prev, time.Time{}, start), prev)
}

// TestTimeout: a server that accepts the connection and never answers
// fails the sync after Config.DialTimeout.
func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := NewSyncer(Config{Engine: unitEngine(t), TenantID: tenant, ConnectionID: ldapConn, URL: "ldap://" + ln.Addr().String(),
		InsecurePlaintext: true, BindDN: "cn=x", BindPassword: "y", UserBaseDN: "dc=x", DialTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := s.Sync(context.Background())
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("Sync = %v, %v after %s", rep, err, time.Since(start))
	}
	if rep != nil && (rep.Swept || rep.Deactivated > 0) {
		t.Fatalf("swept: %v", rep)
	}
}

// TestGroupPages: a group search's next page holds about 5,000 member
// values, as the largest group of the last page would, and never more
// than 20 groups.
func TestGroupPages(t *testing.T) {
	group := func(n int) *goldap.Entry {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = fmt.Sprintf("uid=u%d,ou=people,dc=example,dc=com", i)
		}
		return &goldap.Entry{Attributes: []*goldap.EntryAttribute{{Name: "member", Values: vals}}}
	}
	next := groupPages([]string{"member", "uniqueMember"})
	for _, tc := range []struct {
		last []*goldap.Entry
		want int
	}{
		{nil, groupPageSize},
		{[]*goldap.Entry{group(10)}, groupPageSize},
		{[]*goldap.Entry{group(10), group(1000)}, 5},
		{[]*goldap.Entry{group(50000)}, 1},
	} {
		if got := next(tc.last, 1); got != tc.want {
			t.Errorf("after groups of %d entries: %d, want %d", len(tc.last), got, tc.want)
		}
	}
}
