package sqlstore

// Benchmarks, memstore next to SQLite and PostgreSQL. Run them with:
//
//	IDPROV_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test ./store/sqlstore -run '^$' -bench .
//
// SQLite runs with the recommended DSN (WAL, synchronous=FULL: an fsync
// per commit). PostgreSQL runs with the server's fsync and
// synchronous_commit (on and on by default; the benchmarks do not change
// them).

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// benchStore is one store under benchmark.
type benchStore struct {
	name string
	st   provision.Store
	sql  *Store // nil for memstore
}

// benchStores returns memstore, SQLite (synchronous=FULL) and, when
// IDPROV_TEST_POSTGRES_DSN is set, PostgreSQL (the server's durability
// settings).
func benchStores(b *testing.B) []benchStore {
	b.Helper()
	out := []benchStore{{name: "memstore", st: memstore.New()}}
	path := filepath.Join(b.TempDir(), "bench.db")
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	lite := migrated(b, db, Config{Dialect: SQLite})
	out = append(out, benchStore{name: "sqlite", st: lite, sql: lite})
	if dsnSet() {
		pdb, err := sql.Open("pgx", postgresDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		pdb.SetMaxOpenConns(8)
		b.Cleanup(func() { pdb.Close() })
		pg := migrated(b, pdb, Config{Dialect: Postgres, TablePrefix: randomPrefix()})
		b.Cleanup(func() { pg.dropTables(context.Background()) })
		out = append(out, benchStore{name: "postgres", st: pg, sql: pg})
	}
	return out
}

// seed bulk-inserts n users (memstore: through CreateUser).
func (bs benchStore) seed(b *testing.B, tenantID, prefix string, n int) []string {
	if bs.sql != nil {
		ids := seedUsers(b, bs.sql, tenantID, prefix, n)
		analyze(b, bs.sql)
		return ids
	}
	users := make([]provision.User, n)
	for i := range users {
		users[i] = provision.User{TenantID: tenantID, UserName: fmt.Sprintf("%s%07d", prefix, i), Active: true, Owner: "okta"}
	}
	if err := bs.st.(*memstore.Store).Load(tenantID, users); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i, u := range users {
		ids[i] = u.ID
	}
	return ids
}

func benchEngine(b *testing.B, st provision.Store) *provision.Engine {
	e, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{testTenant}})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCreateUser: user creates per second through the engine (one
// transaction each: the user, its events).
func BenchmarkCreateUser(b *testing.B) {
	for _, bs := range benchStores(b) {
		e := benchEngine(b, bs.st)
		b.Run(bs.name, func(b *testing.B) {
			ctx := context.Background()
			run := time.Now().UnixNano()
			for i := 0; b.Loop(); i++ {
				if _, err := e.CreateUser(ctx, admin, provision.User{UserName: fmt.Sprintf("c%d-%d", run, i), Active: true}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// BenchmarkUserByUserName: lookup by userName among 100,000 users.
func BenchmarkUserByUserName(b *testing.B) {
	const n = 100000
	for _, bs := range benchStores(b) {
		bs.seed(b, "acme", "user", n)
		b.Run(bs.name, func(b *testing.B) {
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				if _, err := bs.st.UserByUserName(ctx, "acme", fmt.Sprintf("USER%07d", (i*7919)%n)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}

// BenchmarkAddMember: one member added through the engine to a group of
// 10 and to a group of 100,000 members.
func BenchmarkAddMember(b *testing.B) {
	const spare = 5000
	for _, bs := range benchStores(b) {
		ctx := context.Background()
		ids := bs.seed(b, "acme", "user", 100000+spare)
		e := benchEngine(b, bs.st)
		members, extra := ids[:100000], ids[100000:]
		for _, size := range []int{10, 100000} {
			g, err := bs.st.CreateGroup(ctx, provision.Group{TenantID: "acme", DisplayName: fmt.Sprint("group ", size), Owner: provision.APIConnection})
			if err != nil {
				b.Fatal(err)
			}
			if bs.sql != nil {
				seedMembers(b, bs.sql, "acme", g.ID, members[:size])
				analyze(b, bs.sql)
			} else {
				for _, c := range chunks(members[:size]) {
					if _, err := bs.st.AddMembers(ctx, "acme", g.ID, c); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run(fmt.Sprintf("%s/members=%d", bs.name, size), func(b *testing.B) {
				next := 0
				for b.Loop() {
					if next == len(extra) { // out of non-members: start again
						b.StopTimer()
						if _, err := bs.st.RemoveMembers(ctx, "acme", g.ID, extra); err != nil {
							b.Fatal(err)
						}
						next = 0
						b.StartTimer()
					}
					if _, _, err := e.UpdateGroup(ctx, admin, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{extra[next]}}); err != nil {
						b.Fatal(err)
					}
					next++
				}
				b.StopTimer()
				if _, err := bs.st.RemoveMembers(ctx, "acme", g.ID, extra); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkListEvents: events read per second in pages of 256 (what
// Consume reads), from a log of 20,000 events with user snapshots.
func BenchmarkListEvents(b *testing.B) {
	const n = 20000
	for _, bs := range benchStores(b) {
		el := bs.st.(provision.EventLog)
		ctx := context.Background()
		for i := 0; i < n; i += 100 {
			evs := make([]provision.Event, 100)
			for j := range evs {
				u := provision.User{ID: fmt.Sprint("u", i+j), TenantID: "acme", UserName: fmt.Sprint("user", i+j), Active: true,
					Emails: []provision.Email{{Value: fmt.Sprint("user", i+j, "@acme.example")}}}
				evs[j] = provision.Event{Kind: provision.UserCreated, TenantID: "acme", Time: time.Now(), User: &u}
			}
			if _, err := el.AppendEvents(ctx, "acme", evs); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(bs.name, func(b *testing.B) {
			read := 0
			for b.Loop() {
				for after := int64(0); ; {
					evs, err := el.ListEvents(ctx, "acme", after, 256)
					if err != nil {
						b.Fatal(err)
					}
					if len(evs) == 0 {
						break
					}
					read += len(evs)
					after = evs[len(evs)-1].Seq
				}
			}
			b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
