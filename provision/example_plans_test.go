package provision_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// An identity provider's replace that would empty a group of 150 is held;
// the admin page lists it with HeldPlans and discards it.
func ExampleEngine_HeldPlans() {
	ctx := context.Background()
	engine, _ := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{{
		ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}},
	}}})
	okta := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
	var ids []string
	for i := range 150 {
		u, _ := engine.CreateUser(ctx, okta, provision.User{UserName: fmt.Sprintf("user%d@acme.example", i), Active: true})
		ids = append(ids, u.ID)
	}
	g, _ := engine.CreateGroup(ctx, okta, provision.Group{DisplayName: "Everyone"}, ids)
	_, _, err := engine.UpdateGroup(ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: nil})
	fmt.Println(errors.Is(err, provision.ErrHeld))

	plans, total, _ := engine.HeldPlans(ctx, "acme", provision.Page{Limit: 25})
	for _, p := range plans {
		fmt.Printf("%d held: %s from %s removes %d of %d\n", total, p.Kind, p.ConnectionID, p.Size, p.Of)
	}
	_ = engine.DiscardPlan(ctx, provision.Origin{TenantID: "acme", Actor: "admin@acme"}, plans[0].Kind, plans[0].ID)
	_, total, _ = engine.HeldPlans(ctx, "acme", provision.Page{})
	fmt.Println(total, "held")
	// Output:
	// true
	// 1 held: members from okta removes 150 of 150
	// 0 held
}
