package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// BenchmarkRegistryPropagation measures how long a connection change made
// through one engine takes to take effect on another engine of another
// pool on the same PostgreSQL database: each round rotates a SCIM
// directory's token on engine A, and times until engine B (which serves
// the directory and so holds it in its cache) refuses the old token. With
// LISTEN wired ("notify") B's FollowRegistry hears the commit; without it
// ("poll") B reads the revision feed every FollowInterval (1s).
//
//	IDPROV_TEST_POSTGRES_DSN=... go test ./store/sqlstore -run '^$' -bench RegistryPropagation -benchtime 100x
func BenchmarkRegistryPropagation(b *testing.B) {
	for _, mode := range []string{"notify", "poll"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			prefix := randomPrefix()
			dbA, dbB := openPostgresDB(b), openPostgresDB(b)
			cfgA, cfgB := Config{TablePrefix: prefix}, Config{TablePrefix: prefix}
			if mode == "notify" {
				cfgA.Listen, cfgB.Listen = pgxListen(dbA, nil), pgxListen(dbB, nil)
			}
			a, bs := newPostgresOn(b, dbA, cfgA), newPostgresOn(b, dbB, cfgB)
			keys := []provision.SecretKey{{ID: "k", Key: make([]byte, 32)}}
			ea, err := provision.NewEngine(provision.Config{Store: a, SecretKeys: keys})
			if err != nil {
				b.Fatal(err)
			}
			eb, err := provision.NewEngine(provision.Config{Store: bs, SecretKeys: keys})
			if err != nil {
				b.Fatal(err)
			}
			go eb.FollowRegistry(ctx, func(context.Context, provision.Tenant, bool) error { return nil })
			hash := func(i int) provision.TokenHash { return provision.HashToken(fmt.Sprintf("token-%d", i)) }
			dir := func(i int) provision.Connection {
				return provision.Connection{ID: "okta", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{TokenHashes: []provision.TokenHash{hash(i)}}}
			}
			if _, err := ea.PutTenant(ctx, provision.Tenant{ID: "globex", Connections: []provision.Connection{dir(0)}}, "bench"); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				// B serves the current token, so it holds the tenant cached.
				deadline := time.Now().Add(5 * time.Second)
				for {
					if _, _, err := eb.ConnectionByToken(ctx, hash(i)); err == nil {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("round %d: engine B never accepted the new token", i)
					}
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
				start := time.Now()
				if _, err := ea.PutConnection(ctx, "globex", dir(i+1), "bench"); err != nil {
					b.Fatal(err)
				}
				for {
					_, _, err := eb.ConnectionByToken(ctx, hash(i))
					if errors.Is(err, provision.ErrNotFound) {
						break
					}
					if time.Since(start) > 5*time.Second {
						b.Fatalf("round %d: engine B still accepts the rotated token after 5s", i)
					}
					time.Sleep(200 * time.Microsecond)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
