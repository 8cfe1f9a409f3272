package provision_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func declaredTenants(n int) []provision.Tenant {
	out := make([]provision.Tenant, n)
	for i := range out {
		out[i] = provision.Tenant{
			ID:              fmt.Sprintf("tenant-%06d", i),
			VerifiedDomains: []string{fmt.Sprintf("t%d.example.com", i)},
			Connections:     []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}, {ID: "sso", Kind: provision.KindSAML, PairedWith: "okta"}},
		}
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStartTenants measures NewEngine with 10,000 and 100,000
// declared tenants (two connections and a verified domain each): the time
// to ready (ms/start), and the engine's heap per tenant (B/tenant: the
// heap the engine keeps, its copies of the tenants included, the host's
// list freed).
//
//	go test ./provision -run '^$' -bench StartTenants -benchtime 3x
func BenchmarkStartTenants(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var perTenant float64
			for b.Loop() {
				b.StopTimer()
				before := heapInUse()
				ts := declaredTenants(n)
				b.StartTimer()
				e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: ts})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				ts = nil
				perTenant = float64(heapInUse()-before) / float64(n)
				runtime.KeepAlive(e)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/start")
			b.ReportMetric(perTenant, "B/tenant")
		})
	}
}

// BenchmarkIdleConsumer measures a durable consumer over 10,000 and
// 100,000 idle declared tenants on memstore (PollInterval 1s): the
// process CPU it burns while nothing happens (cpu%), over 3s.
//
//	go test ./provision -run '^$' -bench IdleConsumer -benchtime 1x
func BenchmarkIdleConsumer(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: declaredTenants(n)})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = e.Consume(ctx, "hooks", func(context.Context, provision.Event) error { return nil })
				}()
				time.Sleep(1500 * time.Millisecond) // the first pass
				c0 := processCPU()
				const window = 3 * time.Second
				time.Sleep(window)
				b.ReportMetric(100*float64(processCPU()-c0)/float64(window), "cpu%")
				cancel()
				<-done
			}
		})
	}
}
