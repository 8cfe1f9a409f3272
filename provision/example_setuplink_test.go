package provision_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// A host hands a customer's IT admin a setup link for one tenant; the link
// resolves to that tenant until it is revoked or expires.
func ExampleEngine_CreateSetupLink() {
	ctx := context.Background()
	engine, _ := provision.NewEngine(provision.Config{Store: memstore.New()})
	_, _ = engine.PutTenant(ctx, provision.Tenant{ID: "globex", Name: "Globex"}, "onboarding")

	link, secret, err := engine.CreateSetupLink(ctx, "globex", []provision.ConnectionKind{provision.KindSAML, provision.KindSCIM}, 24*time.Hour, "support@host")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Send https://app.example/setup/<secret>/ to the IT admin.
	got, _ := engine.SetupLinkBySecret(ctx, secret)
	fmt.Println(got.TenantID, got.Kinds, got.Allows(provision.KindLDAP), got.Actor() == "setup-link:"+link.ID)

	_ = engine.RevokeSetupLink(ctx, "globex", link.ID, "support@host")
	_, err = engine.SetupLinkBySecret(ctx, secret)
	fmt.Println(errors.Is(err, provision.ErrSetupLinkRevoked))
	// Output:
	// globex [saml scim] false true
	// true
}
