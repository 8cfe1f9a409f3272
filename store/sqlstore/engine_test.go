package sqlstore

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

var testTenant = provision.Tenant{ID: "acme", Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}

var admin = provision.Origin{TenantID: "acme"}

func newEngine(t testing.TB, s provision.Store) *provision.Engine {
	t.Helper()
	e, err := provision.NewEngine(provision.Config{Store: s, Tenants: []provision.Tenant{testTenant}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// checkEventLog checks that the tenant's events are numbered 1..LastSeq
// with no gap and no duplicate, and returns them.
func checkEventLog(t testing.TB, s *Store, tenantID string) []provision.Event {
	t.Helper()
	ctx := context.Background()
	var all []provision.Event
	for after := int64(0); ; {
		evs, err := s.ListEvents(ctx, tenantID, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a duplicate", i+1, ev.Seq)
		}
	}
	last, err := s.LastSeq(ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	if last != int64(len(all)) {
		t.Fatalf("LastSeq %d, but %d events", last, len(all))
	}
	return all
}

// TestReplicas runs two engines on two connection pools against one
// PostgreSQL database and hammers one tenant.
func TestReplicas(t *testing.T) {
	dsnStore := newPostgres(t, Config{})
	other := migrated(t, openPostgresDB(t), Config{Dialect: Postgres, TablePrefix: dsnStore.TablePrefix()})
	engines := []*provision.Engine{newEngine(t, dsnStore), newEngine(t, other)}
	ctx := context.Background()

	const users = 60
	ids := make([]string, users)
	for i := range ids {
		u, err := engines[i%2].CreateUser(ctx, admin, provision.User{UserName: fmt.Sprintf("user%02d", i), Active: true})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	g, err := engines[0].CreateGroup(ctx, admin, provision.Group{DisplayName: "everyone"}, nil)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 4*users)
	// Concurrent member adds, one user each, from both replicas, each user
	// added twice.
	for i := range 2 * users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := engines[i%2].UpdateGroup(ctx, admin, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{ids[i%users]}}); err != nil {
				errs <- fmt.Errorf("add member: %w", err)
			}
		}()
	}
	// Concurrent creates of one userName.
	var mu sync.Mutex
	created := 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := engines[i%2].CreateUser(ctx, admin, provision.User{UserName: "Contended", Active: true})
			switch {
			case err == nil:
				mu.Lock()
				created++
				mu.Unlock()
			case !errors.Is(err, provision.ErrAlreadyExists):
				errs <- fmt.Errorf("contended create: %w", err)
			}
		}()
	}
	// Concurrent updates of one user (version conflicts, retried by the
	// engine).
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := engines[i%2].UpdateUser(ctx, admin, ids[0], provision.Precondition{}, func(u *provision.User) error {
				u.Title = fmt.Sprintf("title %d", i)
				return nil
			})
			if err != nil {
				errs <- fmt.Errorf("update: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if created != 1 {
		t.Errorf("%d concurrent creates of one userName succeeded, want 1", created)
	}
	members, total, err := dsnStore.ListMembers(ctx, "acme", g.ID, provision.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if total != users || len(members) != users {
		t.Errorf("group has %d members, want %d", total, users)
	}
	evs := checkEventLog(t, dsnStore, "acme")
	count := map[provision.EventKind]int{}
	added := 0
	for _, ev := range evs {
		count[ev.Kind]++
		if ev.Kind == provision.GroupMembersAdded {
			added += len(ev.Members)
		}
	}
	if count[provision.UserCreated] != users+1 || added != users || count[provision.GroupCreated] != 1 {
		t.Errorf("events: %v, %d members added", count, added)
	}
	t.Logf("%d events, %v", len(evs), count)
}

// durabilityEnv names the variables of the durability test's child.
const (
	envChild  = "IDPROV_SQLSTORE_DURABILITY_CHILD"
	envDSN    = "IDPROV_SQLSTORE_DURABILITY_DSN"
	envPrefix = "IDPROV_SQLSTORE_DURABILITY_PREFIX"
)

// TestDurability starts a child process that creates users through the
// engine and prints the id of each acknowledged create, SIGKILLs it in
// the middle, and checks that every acknowledged user is there and the
// event log has no gap.
//
// SQLite runs in WAL mode with synchronous=FULL (the DSN of sqliteDSN):
// a commit returns after the WAL is fsynced, so an acknowledged write
// survives a power loss too. (synchronous=NORMAL would survive this test,
// a process crash, as well, but may lose the last commits on power loss.)
// PostgreSQL runs with the server's fsync and synchronous_commit settings
// (on by default).
func TestDurability(t *testing.T) {
	if d := os.Getenv(envChild); d != "" {
		durabilityChild(t, d)
		return
	}
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "idprov.db")
		testDurability(t, SQLite, sqliteDSN(path), DefaultTablePrefix)
	})
	t.Run("postgres", func(t *testing.T) {
		s := newPostgres(t, Config{})
		testDurability(t, Postgres, postgresDSN(t), s.TablePrefix())
	})
}

func testDurability(t *testing.T, d Dialect, dsn, prefix string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+d.String(), envDSN+"="+dsn, envPrefix+"="+prefix)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // id -> userName
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "ACK" {
			acked[f[1]] = f[2]
		}
		if len(acked) == 300 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // acknowledgements printed before the kill
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ACK" {
			acked[f[1]] = f[2]
		}
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("the child acknowledged only %d writes", len(acked))
	}

	db := openDB(t, d, dsn)
	s := migrated(t, db, Config{Dialect: d, TablePrefix: prefix})
	ctx := context.Background()
	for id, name := range acked {
		u, err := s.GetUser(ctx, "acme", id)
		if err != nil || u.UserName != name {
			t.Errorf("acknowledged user %s (%s): %v", id, name, err)
		}
	}
	evs := checkEventLog(t, s, "acme")
	_, total, err := s.ListUsers(ctx, "acme", provision.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if total != len(evs) {
		t.Errorf("%d users but %d user.created events", total, len(evs))
	}
	t.Logf("%s: %d acknowledged, %d stored, %d events", d, len(acked), total, len(evs))
}

func openDB(t testing.TB, d Dialect, dsn string) *sql.DB {
	t.Helper()
	driver := "sqlite"
	if d == Postgres {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

// durabilityChild writes users until it is killed.
func durabilityChild(t *testing.T, dialect string) {
	d := SQLite
	if dialect == Postgres.String() {
		d = Postgres
	}
	db := openDB(t, d, os.Getenv(envDSN))
	s, err := New(db, Config{Dialect: d, TablePrefix: os.Getenv(envPrefix)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, s)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				name := fmt.Sprintf("w%d-u%06d", w, i)
				u, err := e.CreateUser(ctx, admin, provision.User{UserName: name, Active: true})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				fmt.Printf("ACK %s %s\n", u.ID, name)
			}
		}()
	}
	wg.Wait()
}
