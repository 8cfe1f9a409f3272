package provision_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// An identity provider's replace that would empty a group of 150 is held;
// the admin page lists it with Plans, shows its first changes and discards it.
func ExampleEngine_Plans() {
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

	plans, total, _ := engine.Plans(ctx, "acme", provision.Page{Limit: 25})
	for _, p := range plans {
		fmt.Printf("%d held: %s from %s makes %d changes of %d members\n", total, p.Kind, p.ConnectionID, p.Size, p.Of)
		p, _ = engine.Plan(ctx, "acme", p.ID, provision.Page{Limit: 2})
		for _, c := range p.Changes {
			fmt.Println(" ", c.Op, c.GroupID == g.ID)
		}
	}
	_ = engine.DiscardPlan(ctx, provision.Origin{TenantID: "acme", Actor: "admin@acme"}, plans[0].ID)
	_, total, _ = engine.Plans(ctx, "acme", provision.Page{})
	fmt.Println(total, "held")
	// Output:
	// true
	// 1 held: members from okta makes 150 changes of 150 members
	//   remove-member true
	//   remove-member true
	// 0 held
}
