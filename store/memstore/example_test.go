package memstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// An engine over an in-memory store: the setup of tests and demos. The
// store keeps the durable event log, so the engine's Events lists what
// happened.
func Example() {
	ctx := context.Background()
	store := memstore.New()
	engine, err := provision.NewEngine(provision.Config{
		Store: store,
		Tenants: []provision.Tenant{{
			ID:          "acme",
			Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}

	// An identity provider's directory creates a user...
	okta := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
	u, err := engine.CreateUser(ctx, okta, provision.User{
		UserName:   "ada@acme.example",
		ExternalID: "00u1",
		Active:     true,
		Emails:     []provision.Email{{Value: "ada@acme.example", Primary: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", u.UserName, "version", u.Version, "owner", u.Owner)

	// ...which the host can read back from the store, case-insensitively.
	got, err := store.UserByUserName(ctx, "acme", "ADA@acme.example")
	if err != nil {
		log.Fatal(err)
	}
	link, err := store.GetLink(ctx, "acme", provision.ResourceUser, "okta", "00u1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same user:", got.ID == u.ID, "linked:", link.ResourceID == u.ID)

	// Another tenant sees nothing.
	_, total, _ := store.ListUsers(ctx, "globex", provision.Page{Limit: 10})
	fmt.Println("users of globex:", total)

	evs, err := engine.Events(ctx, "acme", 0, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, ev := range evs {
		fmt.Println("event", ev.Seq, ev.Kind, ev.User.UserName)
	}
	// Output:
	// created ada@acme.example version 1 owner okta
	// same user: true linked: true
	// users of globex: 0
	// event 1 user.created ada@acme.example
}
