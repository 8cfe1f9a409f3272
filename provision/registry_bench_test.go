package provision_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// seedRegistered registers n tenants, each with a SCIM directory (token
// "token-<i>") and a SAML connection, on a fresh memstore.
func seedRegistered(b *testing.B, n int) (*provision.Engine, *memstore.Store) {
	b.Helper()
	ctx := context.Background()
	st := memstore.New()
	e, err := provision.NewEngine(provision.Config{Store: st, SecretKeys: []provision.SecretKey{testKey}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("t%06d", i)
		_, err := e.PutTenant(ctx, provision.Tenant{
			ID: id, Name: "Tenant " + id, VerifiedDomains: []string{id + ".example"},
			Connections: []provision.Connection{
				{ID: "scim", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{provision.HashToken("token-" + id)}}},
				{ID: "sso", Kind: provision.KindSAML, Domains: []string{id + ".example"}, PairedWith: "scim", Match: []provision.MatchRule{provision.MatchPairedExternalID},
					SAML: &provision.SAMLSettings{IDPMetadataURL: "https://idp.example/" + id + "/metadata", Mapping: "okta"}, JIT: &provision.JITSettings{Update: true}},
			},
		}, "seed")
		if err != nil {
			b.Fatal(err)
		}
	}
	return e, st
}

// BenchmarkConnectionByToken: authenticating a SCIM token with 10 and
// 100,000 registered directories. "warm" is the common case (the engine
// has the tenant cached); "cold" looks the hash up in the store's index
// and loads the tenant (a fresh engine per lookup round). Both must stay
// flat as the number of tenants grows.
//
//	go test ./provision -run '^$' -bench ConnectionByToken -benchmem
func BenchmarkConnectionByToken(b *testing.B) {
	for _, n := range []int{10, 100000} {
		e, st := seedRegistered(b, n)
		ctx := context.Background()
		hashes := make([]provision.TokenHash, 1024)
		for i := range hashes {
			hashes[i] = provision.HashToken(fmt.Sprintf("token-t%06d", i%n))
		}
		for _, h := range hashes {
			if _, _, err := e.ConnectionByToken(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("warm/tenants=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, _, err := e.ConnectionByToken(ctx, hashes[i%len(hashes)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cold/tenants=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var fresh *provision.Engine
			for i := 0; b.Loop(); i++ {
				if i%len(hashes) == 0 {
					b.StopTimer()
					fresh, _ = provision.NewEngine(provision.Config{Store: st, SecretKeys: []provision.SecretKey{testKey}})
					b.StartTimer()
				}
				if _, _, err := fresh.ConnectionByToken(ctx, hashes[i%len(hashes)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRegisteredTenantMemory reports the engine's heap per
// registered tenant it has loaded (every one of 100,000 tenants served
// once), separately from the store's.
//
//	go test ./provision -run '^$' -bench RegisteredTenantMemory -benchtime 1x
func BenchmarkRegisteredTenantMemory(b *testing.B) {
	const n = 100000
	_, st := seedRegistered(b, n)
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e, err := provision.NewEngine(provision.Config{Store: st, SecretKeys: []provision.SecretKey{testKey}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range n {
			if _, err := e.Tenant(ctx, fmt.Sprintf("t%06d", i)); err != nil {
				b.Fatal(err)
			}
		}
		loaded := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "engine-bytes/tenant")
		b.ReportMetric(float64(loaded.Nanoseconds())/n, "load-ns/tenant")
		runtime.KeepAlive(e)
	}
}
