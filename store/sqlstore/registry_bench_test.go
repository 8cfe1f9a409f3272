package sqlstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/idprov/idprov/provision"
)

// BenchmarkRegistryLookup measures the two lookups a request makes before
// it knows its tenant, at 10 and at 100,000 registered tenants: their
// cost must not depend on the number. Run it with:
//
//	IDPROV_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test ./store/sqlstore -run '^$' -bench RegistryLookup -benchtime 2000x
func BenchmarkRegistryLookup(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		domains := make([]string, n)
		hashes := make([]provision.TokenHash, n)
		for i := range n {
			r := seedRecord(i)
			domains[i], hashes[i] = r.Domains[0], r.Tokens[0].Hash
		}
		for _, bs := range benchStores(b) {
			seedBenchRegistry(b, bs, n)
			reg := bs.st.(provision.Registry)
			ctx := context.Background()
			b.Run(fmt.Sprintf("%s/tenants=%d/TenantByDomain", bs.name, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					k := (i * 7919) % n
					i++
					id, err := reg.TenantByDomain(ctx, domains[k])
					if err != nil || id == "" {
						b.Fatalf("TenantByDomain(%s) = %q, %v", domains[k], id, err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/tenants=%d/ConnectionByTokenHash", bs.name, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					k := (i * 7919) % n
					i++
					id, conn, err := reg.ConnectionByTokenHash(ctx, hashes[k])
					if err != nil || id == "" || conn != "scim" {
						b.Fatalf("ConnectionByTokenHash(%d) = %q, %q, %v", k, id, conn, err)
					}
				}
			})
		}
	}
}

// seedBenchRegistry registers n tenants: through PutTenantRecord in one
// transaction on memstore, with seedRegistry's bulk INSERTs on SQL.
func seedBenchRegistry(b *testing.B, bs benchStore, n int) {
	b.Helper()
	if bs.sql != nil {
		seedRegistry(b, bs.sql, n)
		return
	}
	err := bs.st.Atomically(context.Background(), func(ctx context.Context, tx provision.Store) error {
		reg := tx.(provision.Registry)
		for i := range n {
			if _, err := reg.PutTenantRecord(ctx, seedRecord(i), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
