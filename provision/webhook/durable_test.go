package webhook_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/internal/testenv"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/sqlstore"
)

func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
}

// openSQLite opens a migrated sqlstore on the SQLite file at path, as a
// separate process would: its own *sql.DB. lockTTL is the lease of its
// locks (0: the default, 30s).
func openSQLite(t testing.TB, path string, lockTTL time.Duration) *sqlstore.Store {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite, LockTTL: lockTTL})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// openPostgres opens a migrated sqlstore on IDPROV_TEST_POSTGRES_DSN with
// the given table prefix, or skips the test without the variable.
func openPostgres(t testing.TB, prefix string) *sqlstore.Store {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.Postgres, TablePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func dropPostgresTables(t testing.TB, prefix string) {
	db, err := sql.Open("pgx", os.Getenv("IDPROV_TEST_POSTGRES_DSN"))
	if err != nil {
		t.Error(err)
		return
	}
	defer db.Close()
	testenv.DropTables(t, db, prefix)
}

func randomPrefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "wh" + hex.EncodeToString(b[:]) + "_"
}

// TestReplicasNeverDeliverATenantConcurrently runs two engines, each with
// its own Webhook, on one store (one memstore; one SQLite file through two
// connection pools, as two processes; one PostgreSQL database through two
// pools), while both write events. The receiver fails the test if a
// tenant's deliveries overlap, and checks each tenant's order.
func TestReplicasNeverDeliverATenantConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stores func(t *testing.T) [2]provision.Store
	}{
		{"memstore", func(t *testing.T) [2]provision.Store {
			s := memstore.New()
			return [2]provision.Store{s, s}
		}},
		{"sqlite", func(t *testing.T) [2]provision.Store {
			path := filepath.Join(t.TempDir(), "idprov.db")
			return [2]provision.Store{openSQLite(t, path, 0), openSQLite(t, path, 0)}
		}},
		{"postgres", func(t *testing.T) [2]provision.Store {
			prefix := randomPrefix()
			a := openPostgres(t, prefix)
			t.Cleanup(func() { dropPostgresTables(t, prefix) })
			return [2]provision.Store{a, openPostgres(t, prefix)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 40
			rc := deliverFromReplicas(t, tc.stores(t), n)
			for _, tenant := range []string{"acme", "globex"} {
				if dups := checkInOrder(t, tenant, rc.got(tenant), 2*n); dups != 0 {
					t.Fatalf("%s: %d events delivered twice by the replicas", tenant, dups)
				}
			}
		})
	}
}

// deliverFromReplicas runs two engines, each with its own Webhook, on
// stores, while both write n events for each of two tenants, waits until
// the receiver has every event, fails the test if a tenant's deliveries
// overlapped, and returns the receiver.
func deliverFromReplicas(t *testing.T, stores [2]provision.Store, n int) *receiver {
	t.Helper()
	rc := newReceiver(t, nil, func(string, int64) action { return slow })
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	var engines [2]*provision.Engine
	for i := range engines {
		engines[i] = newEngine(t, stores[i], nil, nil)
		run(t, newWebhook(t, webhook.Config{Engine: engines[i], MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, srv.URL))
	}
	var wg sync.WaitGroup
	for i, tenant := range []string{"acme", "globex", "acme", "globex"} {
		wg.Go(func() { createUsers(t, engines[i%2], tenant, i*n, n) })
	}
	wg.Wait()
	waitFor(t, "every event", 60*time.Second, func() bool { return rc.distinct("acme") == 2*n && rc.distinct("globex") == 2*n })
	rc.mu.Lock()
	overlap := rc.overlap
	rc.mu.Unlock()
	if overlap != "" {
		t.Fatal(overlap)
	}
	return rc
}

const (
	childEnv    = "IDPROV_WEBHOOK_TEST_CHILD"
	childDBEnv  = "IDPROV_WEBHOOK_TEST_DB"
	childURLEnv = "IDPROV_WEBHOOK_TEST_URL"
)

// TestKilledConsumerResumesWithoutGaps runs the webhook in a child
// process (this test binary, re-executed) on a SQLite file, SIGKILLs it
// while a delivery is in flight, writes more events while it is down,
// restarts it, and checks the receiver got every event in order, with only
// the one in flight delivered twice.
func TestKilledConsumerResumesWithoutGaps(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		runChild(t)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "idprov.db")
	st := openSQLite(t, path, 0)
	e := newEngine(t, st, nil, nil)
	createUsers(t, e, "acme", 0, 100)

	const killAt = 40
	var (
		mu       sync.Mutex
		arrivals []int64
		inFlight = make(chan struct{})
		release  = make(chan struct{})
		once     sync.Once
	)
	rc := newReceiver(t, nil, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seq, _ := strconv.ParseInt(r.Header.Get("Idprov-Event-Seq"), 10, 64)
		mu.Lock()
		arrivals = append(arrivals, seq)
		n := len(arrivals)
		mu.Unlock()
		if n == killAt {
			// Hold this delivery open until the child is dead.
			once.Do(func() { close(inFlight) })
			<-release
			return
		}
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledConsumerResumesWithoutGaps$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1", childDBEnv+"="+path, childURLEnv+"="+srv.URL+"/acme")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	child, out := start()
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		child.Process.Kill()
		child.Wait()
		t.Fatalf("the child delivered nothing; its output:\n%s", out)
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	child.Wait()
	close(release)
	createUsers(t, e, "acme", 100, 50) // while no consumer runs

	child, out = start()
	defer func() {
		child.Process.Kill()
		child.Wait()
		if t.Failed() {
			t.Logf("second child's output:\n%s", out)
		}
	}()
	waitFor(t, "every event after the restart", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int64]bool{}
		for _, s := range arrivals {
			seen[s] = true
		}
		return len(seen) == 150
	})
	mu.Lock()
	got := append([]int64(nil), arrivals...)
	mu.Unlock()
	dups := checkInOrder(t, "acme", got, 150)
	if dups != 1 {
		t.Fatalf("%d redeliveries, want exactly 1 (the event in flight at the kill): %v", dups, got)
	}
	if got[killAt-1] != got[killAt] {
		t.Fatalf("the event in flight at the kill (%d) was not the first one delivered after the restart (%d)", got[killAt-1], got[killAt])
	}
}

// runChild is the consumer process of TestKilledConsumerResumesWithoutGaps.
func runChild(t *testing.T) {
	// A short lease, so the restarted child need not wait long for the
	// lock the killed one held.
	st := openSQLite(t, os.Getenv(childDBEnv), 300*time.Millisecond)
	e := newEngine(t, st, nil, nil)
	wh, err := webhook.New(webhook.Config{
		Engine:     e,
		Endpoints:  map[string]webhook.Endpoint{"acme": {URL: os.Getenv(childURLEnv), Secret: secret}},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Timeout:    time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The parent kills this process; the timeout only guards against an
	// orphan.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = wh.Run(ctx)
}
