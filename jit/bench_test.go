package jit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/idprov/idprov/provision"
)

// go test -run '^$' -bench Provision -benchmem ./jit/
func BenchmarkProvisionReturning(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, provision.JITSettings{Create: true, Update: true})
	id := identity("00u1", "jane@acme.example", "Jane")
	if _, err := f.p.Provision(ctx, tenant, "okta-saml", id); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.p.Provision(ctx, tenant, "okta-saml", id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProvisionNew(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, provision.JITSettings{Create: true, Update: true})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		n := strconv.Itoa(i)
		if _, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u"+n, "user"+n+"@acme.example", "Jane")); err != nil {
			b.Fatal(err)
		}
	}
}
