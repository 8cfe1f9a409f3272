package provision_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// BenchmarkCreateUser measures one user create through the engine on
// memstore: validation, the uniqueness lookups, the link, the event and
// the transaction.
func BenchmarkCreateUser(b *testing.B) {
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: tenants()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		n := strconv.Itoa(i)
		_, err := e.CreateUser(ctx, okta, provision.User{
			UserName:   "user" + n + "@acme.test",
			ExternalID: "00u" + n,
			Name:       provision.Name{GivenName: "Given", FamilyName: "Family" + n},
			Emails:     []provision.Email{{Value: "user" + n + "@acme.test", Type: "work", Primary: true}},
			Active:     true,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateUserNoOp measures the free path: a full replace with the
// same data (a periodic PUT or LDAP sync of unchanged data).
func BenchmarkUpdateUserNoOp(b *testing.B) {
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: tenants()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	u, err := e.CreateUser(ctx, okta, ada())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := e.ReplaceUser(ctx, okta, u.ID, provision.Precondition{}, ada()); err != nil {
			b.Fatal(err)
		}
	}
}
