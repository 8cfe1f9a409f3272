package provision_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// regClock is a clock tests move by hand.
type regClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *regClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *regClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testKey = provision.SecretKey{ID: "k1", Key: bytes.Repeat([]byte{7}, 32)}

func newRegEngine(t *testing.T, st provision.Store, clock *regClock, keys ...provision.SecretKey) *provision.Engine {
	t.Helper()
	if len(keys) == 0 {
		keys = []provision.SecretKey{testKey}
	}
	e, err := provision.NewEngine(provision.Config{Store: st, Now: clock.now, SecretKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func globexTenant() provision.Tenant {
	return provision.Tenant{
		ID: "globex", Name: "Globex", VerifiedDomains: []string{"Globex.example", "globex-contractors.example"},
		Webhook: &provision.WebhookSettings{URL: "https://hooks.globex.example/idprov", Secret: provision.NewSecret("whsec-very-secret")},
		Connections: []provision.Connection{
			{ID: "okta", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken("okta-token")}}},
			{ID: "okta-sso", Kind: provision.KindSAML, Domains: []string{"globex.example"}, PairedWith: "okta", Match: []provision.MatchRule{provision.MatchPairedExternalID},
				SAML: &provision.SAMLSettings{IDPMetadataURL: "https://globex.okta.example/metadata", Mapping: "okta"}},
			{ID: "contractors", Kind: provision.KindSAML, Domains: []string{"globex-contractors.example"},
				SAML: &provision.SAMLSettings{IDPMetadataXML: "<EntityDescriptor/>"}, JIT: &provision.JITSettings{Create: true}},
			{ID: "corp", Kind: provision.KindLDAP, LDAP: &provision.LDAPSettings{URL: "ldaps://dc1.globex.example", BindDN: "cn=sync", BindPassword: provision.NewSecret("ldap-bind-pw"), BaseDN: "dc=globex,dc=example",
				TLSClientCertPEM: "-----BEGIN CERTIFICATE-----", TLSClientKey: provision.NewSecret("client-key-pem-secret")}},
		},
	}
}

func evKinds(evs []provision.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind)+":"+e.ConnectionID)
	}
	return out
}

func TestRegistryLifecycle(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clock := &regClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	e := newRegEngine(t, st, clock)

	got, err := e.PutTenant(ctx, globexTenant(), "admin@host")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || !got.Registered || got.VerifiedDomains[0] != "globex.example" {
		t.Fatalf("PutTenant = %+v", got)
	}
	tn, err := e.Tenant(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if len(tn.Connections) != 4 || tn.Connections[3].LDAP.BindPassword.Reveal() != "ldap-bind-pw" || tn.Webhook.Secret.Reveal() != "whsec-very-secret" {
		t.Fatalf("Tenant = %+v", tn)
	}
	evs, err := e.Events(ctx, "globex", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"connection.activated:okta", "connection.activated:okta-sso", "connection.activated:contractors", "connection.activated:corp"}
	if !slices.Equal(evKinds(evs), want) {
		t.Fatalf("events %v, want %v", evKinds(evs), want)
	}
	b, _ := json.Marshal(evs)
	if bytes.Contains(b, []byte("ldap-bind-pw")) || !bytes.Contains(b, []byte("[redacted]")) {
		t.Fatalf("an event carries the secret in clear: %s", b)
	}

	// The engine works for the registered tenant like for a declared one.
	o := provision.Origin{TenantID: "globex", ConnectionID: "okta"}
	if _, err := e.CreateUser(ctx, o, provision.User{UserName: "ada@globex.example", ExternalID: "00u1", Active: true}); err != nil {
		t.Fatal(err)
	}
	if tid, cid, err := e.ConnectionByToken(ctx, provision.HashToken("okta-token")); err != nil || tid != "globex" || cid != "okta" {
		t.Fatalf("ConnectionByToken = %q %q %v", tid, cid, err)
	}

	// An unchanged PutConnection writes nothing; a change is one event.
	if _, err := e.PutConnection(ctx, "globex", tn.Connections[0], "admin"); err != nil {
		t.Fatal(err)
	}
	c := tn.Connections[1]
	c.Name = "Okta SSO"
	if _, err := e.PutConnection(ctx, "globex", c, "admin"); err != nil {
		t.Fatal(err)
	}
	evs, _ = e.Events(ctx, "globex", 0, 100)
	last := evs[len(evs)-1]
	if len(evs) != 6 || last.Kind != provision.ConnectionUpdated || !slices.Equal(last.Fields, []string{"name"}) {
		t.Fatalf("events after the update: %v, last %+v", evKinds(evs), last)
	}

	// Deleting the directory refuses its token at once.
	if err := e.DeleteConnection(ctx, "globex", "okta", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ConnectionByToken(ctx, provision.HashToken("okta-token")); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("token of a deleted connection: %v", err)
	}
	if _, err := e.CreateUser(ctx, o, provision.User{UserName: "bob@globex.example", Active: true}); !errors.Is(err, provision.ErrForbidden) {
		t.Fatalf("write through a deleted connection: %v", err)
	}
	tn, _ = e.Tenant(ctx, "globex")
	if tn.Connections[0].ID != "okta-sso" || tn.Connections[0].PairedWith != "" || len(tn.Connections[0].Match) != 0 {
		t.Fatalf("the pairing with the deleted directory is kept: %+v", tn.Connections[0])
	}
	if err := e.DeleteConnection(ctx, "globex", "okta", "admin"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// The users it owned stay.
	if u, err := provision.AdapterOf(e).Store().UserByUserName(ctx, "globex", "ada@globex.example"); err != nil || !u.Active {
		t.Fatalf("the deleted directory's user: %+v %v", u, err)
	}

	// A pinned version that is stale is a conflict.
	stale := globexTenant()
	stale.Version = 1
	if _, err := e.PutTenant(ctx, stale, "admin"); !errors.Is(err, provision.ErrVersionConflict) {
		t.Fatalf("stale version: %v", err)
	}

	if err := e.DeleteTenant(ctx, "globex", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Tenant(ctx, "globex"); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("deleted tenant: %v", err)
	}
}

func TestRegistryDomainBelongsToOneTenant(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clock := &regClock{t: time.Now()}
	e := newRegEngine(t, st, clock)
	if _, err := e.PutTenant(ctx, globexTenant(), "admin"); err != nil {
		t.Fatal(err)
	}
	_, err := e.PutTenant(ctx, provision.Tenant{ID: "initech", VerifiedDomains: []string{"initech.example", "GLOBEX.example"}}, "admin")
	var de *provision.DomainError
	if !errors.As(err, &de) || de.Domain != "globex.example" || de.Owner != "globex" || !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := e.Tenant(ctx, "initech"); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("the refused tenant was stored: %v", err)
	}
	// A connection's domain must be one of its tenant's.
	_, err = e.PutConnection(ctx, "globex", provision.Connection{ID: "x", Kind: provision.KindSAML, Domains: []string{"initech.example"}, SAML: &provision.SAMLSettings{IDPMetadataURL: "https://idp.example/md"}}, "admin")
	var ve *provision.ValidationError
	if !errors.As(err, &ve) || ve.Field != "connection.domains" {
		t.Fatalf("foreign connection domain: %v", err)
	}
	// Declared tenants take part too.
	e2, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{{ID: "acme", VerifiedDomains: []string{"acme.example"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2.PutTenant(ctx, provision.Tenant{ID: "initech", VerifiedDomains: []string{"acme.example"}}, "admin"); !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("claim of a declared tenant's domain: %v", err)
	}
	if _, err := e2.PutTenant(ctx, provision.Tenant{ID: "acme"}, "admin"); !errors.Is(err, provision.ErrDeclared) {
		t.Fatalf("registry write to a declared tenant: %v", err)
	}
}

func TestRegistryValidation(t *testing.T) {
	ctx := context.Background()
	e := newRegEngine(t, memstore.New(), &regClock{t: time.Now()})
	cases := []struct {
		name  string
		t     provision.Tenant
		field string
	}{
		{"bad id", provision.Tenant{ID: "a/b"}, "tenant.id"},
		{"bad domain", provision.Tenant{ID: "a", VerifiedDomains: []string{"not a domain"}}, "verifiedDomains"},
		{"saml without metadata", provision.Tenant{ID: "a", Connections: []provision.Connection{{ID: "s", Kind: provision.KindSAML, SAML: &provision.SAMLSettings{}}}}, "connection.saml.idpMetadataURL"},
		{"saml metadata not http", provision.Tenant{ID: "a", Connections: []provision.Connection{{ID: "s", Kind: provision.KindSAML, SAML: &provision.SAMLSettings{IDPMetadataURL: "file:///etc/passwd"}}}}, "connection.saml.idpMetadataURL"},
		{"ldap without url", provision.Tenant{ID: "a", Connections: []provision.Connection{{ID: "l", Kind: provision.KindLDAP, LDAP: &provision.LDAPSettings{BaseDN: "dc=x"}}}}, "connection.ldap.url"},
		{"settings of another kind", provision.Tenant{ID: "a", Connections: []provision.Connection{{ID: "l", Kind: provision.KindSCIM, LDAP: &provision.LDAPSettings{URL: "ldap://x", BaseDN: "dc=x"}}}}, "connection.ldap"},
		{"shared token", provision.Tenant{ID: "a", Connections: []provision.Connection{
			{ID: "s1", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken("t")}}},
			{ID: "s2", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken("t")}}},
		}}, "connection.scim.tokenHashes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.PutTenant(ctx, c.t, "admin")
			var ve *provision.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, provision.ErrInvalid) {
				t.Fatalf("err = %v, want a ValidationError on %s", err, c.field)
			}
		})
	}
	// A token another tenant's directory holds.
	if _, err := e.PutTenant(ctx, globexTenant(), "admin"); err != nil {
		t.Fatal(err)
	}
	_, err := e.PutTenant(ctx, provision.Tenant{ID: "b", Connections: []provision.Connection{{ID: "s", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken("okta-token")}}}}}, "admin")
	if !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("a token of another tenant: %v", err)
	}
}

func TestRegistrySecretsAreSealed(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clock := &regClock{t: time.Now()}
	e := newRegEngine(t, st, clock)
	if _, err := e.PutTenant(ctx, globexTenant(), "admin"); err != nil {
		t.Fatal(err)
	}
	rec, err := st.GetTenantRecord(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ldap-bind-pw", "whsec-very-secret", "okta-token", "client-key-pem-secret"} {
		if bytes.Contains(rec.Body, []byte(secret)) {
			t.Errorf("the stored record holds %q in clear: %s", secret, rec.Body)
		}
	}
	if !bytes.Contains(rec.Body, []byte("v1:k1:")) {
		t.Fatalf("no sealed value in %s", rec.Body)
	}

	// Rotation: new writes use the new key, old rows still open.
	k2 := provision.SecretKey{ID: "k2", Key: bytes.Repeat([]byte{9}, 32)}
	rotated := newRegEngine(t, st, clock, k2, testKey)
	tn, err := rotated.Tenant(ctx, "globex")
	if err != nil || tn.Webhook.Secret.Reveal() != "whsec-very-secret" || tn.Connections[3].LDAP.TLSClientKey.Reveal() != "client-key-pem-secret" {
		t.Fatalf("old row with the rotated keys: %+v %v", tn.Webhook, err)
	}
	tn.Webhook.Secret = provision.NewSecret("whsec-new")
	if _, err := rotated.PutTenant(ctx, tn, "admin"); err != nil {
		t.Fatal(err)
	}
	rec, _ = st.GetTenantRecord(ctx, "globex")
	if !bytes.Contains(rec.Body, []byte("v1:k2:")) || bytes.Contains(rec.Body, []byte("v1:k1:")) {
		t.Fatalf("after a write with the new key first: %s", rec.Body)
	}
	// An engine without the key that sealed a row says so.
	onlyOld := newRegEngine(t, st, clock, testKey)
	if _, err := onlyOld.Tenant(ctx, "globex"); err == nil || !strings.Contains(err.Error(), `key "k2"`) {
		t.Fatalf("opening with a missing key: %v", err)
	}
	// A secret cannot be written without a key.
	nokey, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nokey.PutTenant(ctx, globexTenant(), "admin"); !errors.Is(err, provision.ErrNoSecretKey) {
		t.Fatalf("a secret without SecretKeys: %v", err)
	}
	// A sealed value moved to another tenant's row does not open.
	var doc map[string]any
	_ = json.Unmarshal(rec.Body, &doc)
	moved := rec
	moved.TenantID = "evil"
	moved.Version = 0
	moved.Domains, moved.Tokens = nil, nil
	err = st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		_, err := tx.(provision.Registry).PutTenantRecord(ctx, moved, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.Tenant(ctx, "evil"); err == nil {
		t.Fatal("a sealed value copied to another tenant opened")
	}
	// Bad keys are refused up front.
	for _, keys := range [][]provision.SecretKey{{{ID: "a", Key: []byte("short")}}, {{ID: "a:b", Key: make([]byte, 32)}}, {testKey, testKey}} {
		if _, err := provision.NewEngine(provision.Config{Store: memstore.New(), SecretKeys: keys}); err == nil {
			t.Errorf("NewEngine accepted SecretKeys %v", keys)
		}
	}
	// fmt and JSON never show a Secret.
	s := provision.NewSecret("hunter2")
	if out := fmt.Sprintf("%v %s %+v", s, s, struct{ S provision.Secret }{s}); strings.Contains(out, "hunter2") {
		t.Fatalf("fmt shows the secret: %s", out)
	}
	if err := json.Unmarshal([]byte(`"[redacted]"`), &s); err == nil {
		t.Fatal(`"[redacted]" was accepted as a secret`)
	}
}

// TestRegistryFollowedByAnotherEngine: two engines on one store; what one
// registers, changes or deletes reaches the other within FollowInterval
// (here by its clock), or at once through RegistryChanged.
func TestRegistryFollowedByAnotherEngine(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clock := &regClock{t: time.Now()}
	a := newRegEngine(t, st, clock)
	b := newRegEngine(t, st, clock)
	if _, err := b.Tenant(ctx, "globex"); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("before: %v", err)
	}
	if _, err := a.PutTenant(ctx, globexTenant(), "admin"); err != nil {
		t.Fatal(err)
	}
	// b cached "unknown"; within the interval it may still say so, and
	// after it, it must see the tenant.
	clock.add(1100 * time.Millisecond)
	if _, err := b.Tenant(ctx, "globex"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	if _, _, err := b.ConnectionByToken(ctx, provision.HashToken("okta-token")); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteConnection(ctx, "globex", "okta", "admin"); err != nil {
		t.Fatal(err)
	}
	if err := provision.RegistryChanged(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ConnectionByToken(ctx, provision.HashToken("okta-token")); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the deleted connection's token on the other engine: %v", err)
	}

	// FollowRegistry hands every tenant, then each change.
	fctx, cancel := context.WithCancel(ctx)
	seen := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- b.FollowRegistry(fctx, func(ctx context.Context, t provision.Tenant, removed bool) error {
			seen <- fmt.Sprintf("%s:%d:%v", t.ID, len(t.Connections), removed)
			return nil
		})
	}()
	if got := <-seen; got != "globex:3:false" {
		t.Fatalf("first: %s", got)
	}
	if _, err := a.PutTenant(ctx, provision.Tenant{ID: "initech", VerifiedDomains: []string{"initech.example"}}, "admin"); err != nil {
		t.Fatal(err)
	}
	_ = provision.RegistryChanged(ctx, b)
	if got := recv(t, seen); got != "initech:0:false" {
		t.Fatalf("after a create: %s", got)
	}
	if err := a.DeleteTenant(ctx, "initech", "admin"); err != nil {
		t.Fatal(err)
	}
	_ = provision.RegistryChanged(ctx, b)
	if got := recv(t, seen); got != "initech:0:true" {
		t.Fatalf("after a delete: %s", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("FollowRegistry: %v", err)
	}
}

func recv(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("nothing within 5s")
		return ""
	}
}

func TestDiscover(t *testing.T) {
	ctx := context.Background()
	e := newRegEngine(t, memstore.New(), &regClock{t: time.Now()})
	if _, err := e.PutTenant(ctx, globexTenant(), "admin"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ email, tenant, conns string }{
		{"ada@globex.example", "globex", "okta-sso"},
		{"Ada@GLOBEX.EXAMPLE", "globex", "okta-sso"},
		{"bob@eu.globex.example", "globex", "okta-sso"},
		{"carol@globex-contractors.example", "globex", "contractors"},
		{"dan@initech.example", "", ""},
		{"nobody", "", ""},
	} {
		tn, conns, err := e.Discover(ctx, c.email, provision.KindSAML)
		var ids []string
		for _, cn := range conns {
			ids = append(ids, cn.ID)
		}
		if tn.ID != c.tenant || strings.Join(ids, ",") != c.conns {
			t.Errorf("Discover(%q) = %q %v (%v), want %q %q", c.email, tn.ID, ids, err, c.tenant, c.conns)
		}
		if c.tenant == "" && err == nil {
			t.Errorf("Discover(%q): no error", c.email)
		}
	}
	// A connection's domains count only within the tenant's verified ones.
	tn := provision.Tenant{ID: "x", VerifiedDomains: []string{"x.example"}, Connections: []provision.Connection{{ID: "s", Kind: provision.KindSAML, Domains: []string{"x.example", "other.example"}}}}
	if got := tn.ConnectionsFor("eve@other.example", provision.KindSAML); len(got) != 0 {
		t.Fatalf("an unverified domain routed: %v", got)
	}
}

// TestConsumeRegisteredTenant: a durable consumer with no tenant list
// consumes the registered tenants too, including one registered after it
// started.
func TestConsumeRegisteredTenant(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memstore.New()
	e, err := provision.NewEngine(provision.Config{Store: st, SecretKeys: []provision.SecretKey{testKey}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	go e.Consume(ctx, "audit", func(ctx context.Context, ev provision.Event) error {
		got <- ev.TenantID + ":" + string(ev.Kind)
		return nil
	})
	if _, err := e.PutTenant(ctx, provision.Tenant{ID: "globex", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(ctx, provision.Origin{TenantID: "globex", ConnectionID: "okta"}, provision.User{UserName: "ada", Active: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"globex:connection.activated", "globex:user.created"} {
		if s := recv(t, got); s != want {
			t.Fatalf("consumed %s, want %s", s, want)
		}
	}
	// Written by another engine (no local wake-up): found by the poll.
	other := newRegEngine(t, st, &regClock{t: time.Now()})
	if _, err := other.CreateUser(ctx, provision.Origin{TenantID: "globex", ConnectionID: "okta"}, provision.User{UserName: "bob", Active: true}); err != nil {
		t.Fatal(err)
	}
	if s := recv(t, got); s != "globex:user.created" {
		t.Fatalf("consumed %s after another engine's write", s)
	}
}
