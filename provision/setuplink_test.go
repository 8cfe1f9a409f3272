package provision_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func TestSetupLinkLifecycle(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clock := &regClock{t: time.Now().UTC()}
	e := newRegEngine(t, st, clock)
	if _, err := e.PutTenant(ctx, globexTenant(), "admin@host"); err != nil {
		t.Fatal(err)
	}
	other := provision.Tenant{ID: "initech", Name: "Initech"}
	if _, err := e.PutTenant(ctx, other, "admin@host"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		kinds []provision.ConnectionKind
		ttl   time.Duration
	}{
		{"no kinds", nil, time.Hour},
		{"bad kind", []provision.ConnectionKind{"oidc"}, time.Hour},
		{"no ttl", []provision.ConnectionKind{provision.KindSAML}, 0},
		{"ttl too long", []provision.ConnectionKind{provision.KindSAML}, 31 * 24 * time.Hour},
	} {
		if _, _, err := e.CreateSetupLink(ctx, "globex", tc.kinds, tc.ttl, "admin@host"); !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, _, err := e.CreateSetupLink(ctx, "nobody", []provision.ConnectionKind{provision.KindSAML}, time.Hour, "admin@host"); !errors.Is(err, provision.ErrUnknownTenant) {
		t.Fatalf("unknown tenant: err %v", err)
	}

	l, secret, err := e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindSAML, provision.KindSCIM, provision.KindSAML}, 24*time.Hour, "admin@host")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 43 || l.TenantID != "globex" || len(l.Kinds) != 2 || !l.Allows(provision.KindSCIM) || l.Allows(provision.KindLDAP) || l.Actor() != "setup-link:"+l.ID {
		t.Fatalf("link %+v secret %q", l, secret)
	}
	// Only the digest is stored: the secret is no key and in no value.
	if _, err := provision.AdapterOf(e).KVGet(ctx, "", "setup-link/"+secret); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the secret in clear is a key: %v", err)
	}
	sum := sha256.Sum256([]byte(secret))
	b, err := provision.AdapterOf(e).KVGet(ctx, "", "setup-link/"+hex.EncodeToString(sum[:]))
	if err != nil || strings.Contains(string(b), secret) || !strings.Contains(string(b), l.ID) {
		t.Fatalf("stored link %s, %v", b, err)
	}

	got, err := e.SetupLinkBySecret(ctx, secret)
	if err != nil || got.ID != l.ID || got.TenantID != "globex" {
		t.Fatalf("SetupLinkBySecret = %+v, %v", got, err)
	}
	wrong := "A" + secret[1:]
	if secret[0] == 'A' {
		wrong = "B" + secret[1:]
	}
	if _, err := e.SetupLinkBySecret(ctx, wrong); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a wrong secret: %v", err)
	}

	// What is done through the link names it in the events.
	c := provision.Connection{ID: "sso", Kind: provision.KindSAML, SAML: &provision.SAMLSettings{IDPMetadataURL: "https://idp.globex.example/metadata"}}
	if _, err := e.PutConnection(ctx, got.TenantID, c, got.Actor()); err != nil {
		t.Fatal(err)
	}
	evs, err := e.Events(ctx, "globex", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Kind != provision.ConnectionActivated || last.ConnectionID != "sso" || last.Actor != "setup-link:"+l.ID {
		t.Fatalf("last event %+v", last)
	}

	// Another tenant cannot revoke it; its own tenant can.
	if err := e.RevokeSetupLink(ctx, "initech", l.ID, "admin@host"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("revoke from another tenant: %v", err)
	}
	if _, err := e.SetupLinkBySecret(ctx, secret); err != nil {
		t.Fatalf("after a refused revoke: %v", err)
	}
	if err := e.RevokeSetupLink(ctx, "globex", l.ID, "admin@host"); err != nil {
		t.Fatal(err)
	}
	if err := e.RevokeSetupLink(ctx, "globex", l.ID, "admin@host"); err != nil {
		t.Fatalf("revoke twice: %v", err)
	}
	if got, err := e.SetupLinkBySecret(ctx, secret); !errors.Is(err, provision.ErrSetupLinkRevoked) || !errors.Is(err, provision.ErrForbidden) || got.TenantID != "globex" {
		t.Fatalf("revoked link: %+v, %v", got, err)
	}

	// Expiry follows the engine's clock.
	l2, secret2, err := e.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindLDAP}, time.Hour, "admin@host")
	if err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour - time.Second)
	if _, err := e.SetupLinkBySecret(ctx, secret2); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	clock.add(time.Second)
	if got, err := e.SetupLinkBySecret(ctx, secret2); !errors.Is(err, provision.ErrSetupLinkExpired) || got.ID != l2.ID {
		t.Fatalf("expired link: %+v, %v", got, err)
	}
}

func TestSetupLinkContext(t *testing.T) {
	if _, ok := provision.SetupLinkFrom(context.Background()); ok {
		t.Fatal("a link in an empty context")
	}
	l := provision.SetupLink{ID: "x", TenantID: "globex"}
	got, ok := provision.SetupLinkFrom(provision.WithSetupLink(context.Background(), l))
	if !ok || got.ID != "x" || got.Origin("sso") != (provision.Origin{TenantID: "globex", ConnectionID: "sso", Actor: "setup-link:x"}) {
		t.Fatalf("SetupLinkFrom = %+v, %v", got, ok)
	}
}
