package ldap

import (
	"errors"
	"strings"
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
)

// TestClientCertificate: a slapd that demands a client certificate, as
// Google Secure LDAP does, synced over ldaps:// with the certificate and
// a pinned CA from the connection's settings; and the errors that say
// which of certificate, bind or base went wrong.
func TestClientCertificate(t *testing.T) {
	e := newEnv(t, ldaptest.Options{ClientCertificates: true})
	e.addUser("gia", "Gia", "G", nil)
	other := ldaptest.Start(t, ldaptest.Options{TLS: true}) // another CA
	tlsCfg := func(c *Config) {
		c.URL = e.srv.LDAPSURL
		c.InsecurePlaintext = false
		c.TLSCAPEM = string(e.srv.CAPEM)
		c.TLSClientCertPEM = string(e.srv.ClientCertPEM)
		c.TLSClientKeyPEM = string(e.srv.ClientKeyPEM)
	}
	rep := e.sync(e.syncer(tlsCfg))
	eq(t, "created over client-certificate TLS", rep.Created, 1)

	cases := []struct {
		name string
		mod  func(*Config)
		want error
		says string
	}{
		{"no client certificate", func(c *Config) { c.TLSClientCertPEM, c.TLSClientKeyPEM = "", "" }, ErrCertificate, "certificate"},
		{"a client certificate of another CA", func(c *Config) {
			c.TLSClientCertPEM, c.TLSClientKeyPEM = string(other.ClientCertPEM), string(other.ClientKeyPEM)
		}, ErrCertificate, "certificate"},
		{"another CA pinned", func(c *Config) { c.TLSCAPEM = string(other.CAPEM) }, ErrCertificate, "certificate"},
		{"wrong password", func(c *Config) { c.BindPassword = "wrong" }, ErrBind, "bind"},
		{"missing base", func(c *Config) { c.UserBaseDN = "ou=nobody," + e.srv.BaseDN }, ErrBaseDN, "ou=nobody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := e.syncer(func(c *Config) { tlsCfg(c); tc.mod(c) })
			_, err := s.Sync(e.ctx)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrCertificate, ErrBind, ErrBaseDN} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("err = %v is also %v", err, other)
				}
			}
		})
	}
	// Malformed settings are refused by NewSyncer.
	for _, mod := range []func(*Config){
		func(c *Config) { c.TLSCAPEM = "not PEM" },
		func(c *Config) { c.TLSClientKeyPEM = "" },
		func(c *Config) { c.TLSClientKeyPEM = string(other.ClientKeyPEM) }, // not the certificate's key
	} {
		cfg := e.config()
		tlsCfg(&cfg)
		mod(&cfg)
		if _, err := NewSyncer(cfg); !errors.Is(err, ErrCertificate) {
			t.Fatalf("NewSyncer: %v, want ErrCertificate", err)
		}
	}
}
