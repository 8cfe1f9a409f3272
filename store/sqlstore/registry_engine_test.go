package sqlstore

import (
	"bytes"
	"context"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestEngineSealsRegistrySecrets: a tenant registered through the engine
// leaves none of its secrets in clear in any table of the store (the
// registry tables, the events with their connection snapshots, KV), on
// either dialect; a second engine with the key reads them back.
func TestEngineSealsRegistrySecrets(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		keys := []provision.SecretKey{{ID: "k1", Key: bytes.Repeat([]byte{3}, 32)}}
		e, err := provision.NewEngine(provision.Config{Store: s, SecretKeys: keys})
		if err != nil {
			t.Fatal(err)
		}
		const bindPW, hookSecret, scimToken = "bind-pw-9f1c2e", "whsec-77aa01", "scim-token-5d3b"
		_, err = e.PutTenant(ctx, provision.Tenant{
			ID: "globex", VerifiedDomains: []string{"globex.example"},
			Webhook: &provision.WebhookSettings{URL: "https://hooks.globex.example/x", Secret: provision.NewSecret(hookSecret)},
			Connections: []provision.Connection{
				{ID: "okta", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken(scimToken)}}},
				{ID: "corp", Kind: provision.KindLDAP, LDAP: &provision.LDAPSettings{URL: "ldaps://dc1.globex.example", BindDN: "cn=sync", BindPassword: provision.NewSecret(bindPW), BaseDN: "dc=globex,dc=example"}},
			},
		}, "test")
		if err != nil {
			t.Fatal(err)
		}
		sawURL := false
		for _, table := range []string{"registry_tenants", "registry_domains", "registry_tokens", "events", "kv"} {
			for _, v := range dumpTable(t, s, table) {
				sawURL = sawURL || bytes.Contains(v, []byte("ldaps://dc1.globex.example"))
				for _, secret := range []string{bindPW, hookSecret, scimToken} {
					if bytes.Contains(v, []byte(secret)) {
						t.Errorf("table %s holds %q in clear", table, secret)
					}
				}
			}
		}
		if !sawURL {
			t.Fatal("no table holds the registered tenant: the check read nothing")
		}
		other, err := provision.NewEngine(provision.Config{Store: s, SecretKeys: keys})
		if err != nil {
			t.Fatal(err)
		}
		tn, err := other.Tenant(ctx, "globex")
		if err != nil {
			t.Fatal(err)
		}
		if tn.Connections[1].LDAP.BindPassword.Reveal() != bindPW || tn.Webhook.Secret.Reveal() != hookSecret {
			t.Fatal("a second engine does not open the secrets")
		}
		if tenant, conn, err := other.ConnectionByToken(ctx, provision.HashToken(scimToken)); err != nil || tenant != "globex" || conn != "okta" {
			t.Fatalf("ConnectionByToken = %q %q %v", tenant, conn, err)
		}
	})
}
