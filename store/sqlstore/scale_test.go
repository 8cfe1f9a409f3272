package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
)

// countingConnector counts the transactions its connections run: each
// statement outside a transaction (autocommit) and each transaction.
type countingConnector struct {
	driver.Connector
	n *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn.(*stdlib.Conn), n: c.n}, nil
}

type countingConn struct {
	*stdlib.Conn
	n    *atomic.Int64
	inTx bool
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return &countingTx{Tx: tx, c: c}, nil
}

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if !c.inTx {
		c.n.Add(1)
	}
	return c.Conn.ExecContext(ctx, query, args)
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if !c.inTx {
		c.n.Add(1)
	}
	return c.Conn.QueryContext(ctx, query, args)
}

type countingTx struct {
	driver.Tx
	c *countingConn
}

func (t *countingTx) Commit() error   { t.c.inTx = false; t.c.n.Add(1); return t.Tx.Commit() }
func (t *countingTx) Rollback() error { t.c.inTx = false; t.c.n.Add(1); return t.Tx.Rollback() }

// openCountingPostgres opens a pool whose transactions are counted in n.
func openCountingPostgres(t testing.TB, n *atomic.Int64, conns int) *sql.DB {
	t.Helper()
	dc, err := stdlib.GetDefaultDriver().(driver.DriverContext).OpenConnector(withParam(postgresDSN(t), "synchronous_commit", "off"))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(countingConnector{Connector: dc, n: n})
	db.SetMaxOpenConns(conns)
	t.Cleanup(func() { db.Close() })
	return db
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dbCommits(t testing.TB, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkIdleReplicas measures two replicas (two engines, two pools,
// each with its own listening session) running the webhook consumer for
// IDPROV_BENCH_TENANTS (default 10,000) tenants on PostgreSQL, each with
// a caught-up cursor, the first IDPROV_BENCH_ENDPOINTS (default all) with
// an endpoint (the others' events are not consumed: they stay behind). First, idle for 5s: the
// transactions both replicas run per second (counted in the driver:
// idle-xact/s; and pg_stat_database's delta over the window, which also
// counts anything else on the database: db-xact/s) and the process CPU
// per replica (both run in this process: half of it). Then, b.N times, a
// user created on one replica (alternating) until the webhook request for
// it arrives, from either replica: p50-ms and p99-ms (from the call, so
// the write itself is included).
//
//	go test ./store/sqlstore -run '^$' -bench IdleReplicas -benchtime 200x
func BenchmarkIdleReplicas(b *testing.B) {
	postgresDSN(b)
	tenants := envInt("IDPROV_BENCH_TENANTS", 10000)
	endpoints := min(envInt("IDPROV_BENCH_ENDPOINTS", tenants), tenants)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := randomPrefix()
	var xacts atomic.Int64
	setup := newPostgres(b, Config{TablePrefix: prefix})
	decl := make([]provision.Tenant, tenants)
	for i := range decl {
		decl[i] = provision.Tenant{ID: fmt.Sprintf("tenant-%05d", i), Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}
	}
	// Every tenant has one event, that the consumer has had when the
	// tenant has an endpoint.
	err := setup.r.runTx(ctx, func(tx *Store) error {
		for i, tn := range decl {
			if _, err := setup.r.ev.Append(ctx, tx.q, tn.ID, []provision.Event{{Kind: provision.UserCreated, Time: time.Now()}}); err != nil {
				return err
			}
			if i >= endpoints {
				continue // never consumed: behind for good
			}
			if err := setup.r.ev.SetCursor(ctx, tx.q, tn.ID, "webhook", 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}

	var mu sync.Mutex
	arrived := map[string]chan struct{}{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev provision.Event
		_ = json.NewDecoder(r.Body).Decode(&ev)
		if ev.User == nil {
			return
		}
		mu.Lock()
		ch := arrived[ev.User.UserName]
		delete(arrived, ev.User.UserName)
		mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}))
	defer srv.Close()

	engines := make([]*provision.Engine, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range engines {
		db := openCountingPostgres(b, &xacts, 8)
		listenDB := openPostgresDB(b) // its session is not a transaction to count
		listenDB.SetMaxOpenConns(1)
		s := migrated(b, db, Config{Dialect: Postgres, TablePrefix: prefix, Listen: pgxListen(listenDB, nil)})
		e, err := provision.NewEngine(provision.Config{Store: s, Tenants: decl})
		if err != nil {
			b.Fatal(err)
		}
		engines[i] = e
		eps := make(map[string]webhook.Endpoint, endpoints)
		for _, tn := range decl[:endpoints] {
			eps[tn.ID] = webhook.Endpoint{URL: srv.URL, Secret: "0123456789abcdef0123"}
		}
		w, err := webhook.New(webhook.Config{Engine: e, Endpoints: eps})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}
	time.Sleep(2 * time.Second) // first polls done

	const idle = 5 * time.Second
	x0, c0, d0 := xacts.Load(), cpuTime(), dbCommits(b, setup.DB())
	time.Sleep(idle)
	x1, c1, d1 := xacts.Load(), cpuTime(), dbCommits(b, setup.DB())

	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		ch := make(chan struct{})
		mu.Lock()
		arrived[name] = ch
		mu.Unlock()
		o := provision.Origin{TenantID: decl[(i*7919)%endpoints].ID}
		start := time.Now() // an upper bound of commit-to-receipt
		if _, err := engines[i%2].CreateUser(ctx, o, provision.User{UserName: name, Active: true}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-ch:
			lat = append(lat, time.Since(start))
		case <-time.After(30 * time.Second):
			b.Fatalf("the webhook for %s did not arrive in 30s", name)
		}
	}
	b.ReportMetric(float64(x1-x0)/idle.Seconds(), "idle-xact/s")
	b.ReportMetric(float64(d1-d0-1)/idle.Seconds(), "db-xact/s")
	b.ReportMetric(100*float64(c1-c0)/float64(idle)/2, "cpu%/replica")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
}

// envInt reads a positive integer from the environment, def when unset.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkIdleSQLite measures one engine on a SQLite file with
// IDPROV_BENCH_TENANTS (default 10,000) idle tenants, each with one
// event its webhook consumer has had: the process CPU while idle (5s;
// each poll is one Backlogs query).
//
//	go test ./store/sqlstore -run '^$' -bench IdleSQLite -benchtime 1x
func BenchmarkIdleSQLite(b *testing.B) {
	tenants := envInt("IDPROV_BENCH_TENANTS", 10000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSQLite(b, Config{})
	decl := make([]provision.Tenant, tenants)
	for i := range decl {
		decl[i] = provision.Tenant{ID: fmt.Sprintf("tenant-%05d", i), Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}
	}
	err := s.r.runTx(ctx, func(tx *Store) error {
		for _, tn := range decl {
			if _, err := s.r.ev.Append(ctx, tx.q, tn.ID, []provision.Event{{Kind: provision.UserCreated, Time: time.Now()}}); err != nil {
				return err
			}
			if err := s.r.ev.SetCursor(ctx, tx.q, tn.ID, "webhook", 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	e, err := provision.NewEngine(provision.Config{Store: s, Tenants: decl})
	if err != nil {
		b.Fatal(err)
	}
	eps := make(map[string]webhook.Endpoint, tenants)
	for _, tn := range decl {
		eps[tn.ID] = webhook.Endpoint{URL: "http://127.0.0.1:9/unused", Secret: "0123456789abcdef0123"}
	}
	w, err := webhook.New(webhook.Config{Engine: e, Endpoints: eps})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(2 * time.Second)
	for b.Loop() {
		const idle = 5 * time.Second
		c0 := cpuTime()
		time.Sleep(idle)
		b.ReportMetric(100*float64(cpuTime()-c0)/float64(idle), "cpu%")
	}
}
