package memstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// ref is what the benchmarks keep of a loaded user; its strings are
// shared with the store.
type ref struct{ ID, UserName string }

// seeded is a store with n users in tenant "bench", built once per
// process with Load.
type seeded struct {
	store *memstore.Store
	users []ref
	// bytesPerUser is the heap growth per user across generating and
	// loading the users (the users' own strings included).
	bytesPerUser float64
}

var (
	seedMu sync.Mutex
	seeds  = map[int]*seeded{}
)

// benchUsers returns n plausible users: a userName that is also the
// e-mail address, a name, a display name, an owner and timestamps.
func benchUsers(n int) []provision.User {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	us := make([]provision.User, n)
	for i := range us {
		mail := fmt.Sprintf("user%07d@example.com", i)
		given, family := fmt.Sprint("Given", i), fmt.Sprint("Family", i)
		us[i] = provision.User{
			UserName:    mail,
			Name:        provision.Name{GivenName: given, FamilyName: family},
			DisplayName: given + " " + family,
			Active:      true,
			Emails:      []provision.Email{{Value: mail, Type: "work", Primary: true}},
			Owner:       "okta",
			Created:     t0,
			Modified:    t0,
		}
	}
	return us
}

func seed(b *testing.B, n int) *seeded {
	b.Helper()
	seedMu.Lock()
	defer seedMu.Unlock()
	if s := seeds[n]; s != nil {
		return s
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	store := memstore.New()
	users := benchUsers(n)
	if err := store.Load("bench", users); err != nil {
		b.Fatal(err)
	}
	kept := make([]ref, n)
	for i, u := range users {
		kept[i] = ref{u.ID, u.UserName}
	}
	users = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	keptBytes := float64(n) * float64(unsafe.Sizeof(ref{}))
	s := &seeded{store: store, users: kept}
	s.bytesPerUser = (float64(after.HeapAlloc) - float64(before.HeapAlloc) - keptBytes) / float64(n)
	seeds[n] = s
	return s
}

func BenchmarkUserByUserName(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			s := seed(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				want := &s.users[(i*7919)%n]
				u, err := s.store.UserByUserName(ctx, "bench", want.UserName)
				if err != nil || u.ID != want.ID {
					b.Fatalf("%v %v", u.ID, err)
				}
				i++
			}
		})
	}
}

func BenchmarkAddMember(b *testing.B) {
	const big = 100_000
	s := seed(b, 100_000)
	ctx := context.Background()
	for _, size := range []int{10, big} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			g, err := s.store.CreateGroup(ctx, provision.Group{TenantID: "bench", DisplayName: fmt.Sprint("bench", size, b.N), Owner: "okta"})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, size-1)
			for i := range ids {
				ids[i] = s.users[i].ID
			}
			if _, err := s.store.AddMembers(ctx, "bench", g.ID, ids); err != nil {
				b.Fatal(err)
			}
			// The group has size-1 members; each iteration adds one (size)
			// and removes it again.
			extra := []string{s.users[big-1].ID}
			b.ReportAllocs()
			for b.Loop() {
				if added, err := s.store.AddMembers(ctx, "bench", g.ID, extra); err != nil || len(added) != 1 {
					b.Fatal(added, err)
				}
				if removed, err := s.store.RemoveMembers(ctx, "bench", g.ID, extra); err != nil || len(removed) != 1 {
					b.Fatal(removed, err)
				}
			}
			b.StopTimer()
			if err := s.store.DeleteGroup(ctx, "bench", g.ID, g.Version); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkListUsersPage reads a page of 100 of 1,000,000 users at the
// start and at the end: the page's start is found in O(log n), so both
// cost the same.
func BenchmarkListUsersPage(b *testing.B) {
	s := seed(b, 1_000_000)
	ctx := context.Background()
	for _, off := range []int{0, 999_900} {
		b.Run(fmt.Sprintf("offset=%d", off), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if us, _, err := s.store.ListUsers(ctx, "bench", provision.Page{Offset: off, Limit: 100}); err != nil || len(us) != 100 {
					b.Fatal(len(us), err)
				}
			}
		})
	}
}

// BenchmarkMemory reports the heap bytes per user of a store holding
// 1,000,000 users (the users' data included), measured once when the
// store was seeded.
func BenchmarkMemory(b *testing.B) {
	s := seed(b, 1_000_000)
	for b.Loop() {
	}
	b.ReportMetric(s.bytesPerUser, "bytes/user")
}
