package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/idprov/idprov/provision"
)

// pgxListen is the ListenFunc a host using pgx writes: a connection of
// the pool, LISTEN, WaitForNotification; the session is closed at the
// end (ErrBadConn) so that it does not go back to the pool listening.
// pid, when set, gets the session's backend pid.
func pgxListen(db *sql.DB, pid *atomic.Uint32) ListenFunc {
	return func(ctx context.Context, channels []string, ready func(), deliver func(channel, payload string)) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			for _, ch := range channels {
				if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
					return errors.Join(err, driver.ErrBadConn)
				}
			}
			if pid != nil {
				pid.Store(pc.PgConn().PID())
			}
			ready()
			for {
				n, err := pc.WaitForNotification(ctx)
				if err != nil {
					return errors.Join(err, driver.ErrBadConn)
				}
				deliver(n.Channel, n.Payload)
			}
		})
	}
}

// recorder collects notifications.
type recorder struct {
	mu  sync.Mutex
	got []Notification
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) fn(n Notification) {
	r.mu.Lock()
	r.got = append(r.got, n)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// wait waits until fn matches what was received.
func (r *recorder) wait(t *testing.T, what string, fn func([]Notification) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := fn(r.got)
		got := fmt.Sprint(r.got)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("%s: not received in 5s; got %s", what, got)
		}
	}
}

func hasPayload(p string) func([]Notification) bool {
	return func(ns []Notification) bool {
		for _, n := range ns {
			if !n.Missed && n.Payload == p {
				return true
			}
		}
		return false
	}
}

func missedCount(ns []Notification) int {
	c := 0
	for _, n := range ns {
		if n.Missed {
			c++
		}
	}
	return c
}

func TestNotifyPostgres(t *testing.T) {
	postgresDSN(t)
	ctx := t.Context()
	prefix := randomPrefix()
	var pid atomic.Uint32
	dbA, dbB := openPostgresDB(t), openPostgresDB(t)
	a := newPostgresOn(t, dbA, Config{TablePrefix: prefix, Listen: pgxListen(dbA, nil)})
	b := newPostgresOn(t, dbB, Config{TablePrefix: prefix, Listen: pgxListen(dbB, &pid)})
	other := newPostgres(t, Config{Listen: pgxListen(dbA, nil)}) // another prefix

	recA, recB, recOther := newRecorder(), newRecorder(), newRecorder()
	stopA, live := a.Subscribe("registry", recA.fn)
	defer stopA()
	if !live {
		t.Fatal("Subscribe with Config.Listen on PostgreSQL is not live")
	}
	stopB, _ := b.Subscribe("registry", recB.fn)
	defer stopB()
	stopO, _ := other.Subscribe("registry", recOther.fn)
	defer stopO()
	for _, r := range []*recorder{recA, recB, recOther} {
		r.wait(t, "the first Missed", func(ns []Notification) bool { return missedCount(ns) == 1 })
	}

	// Sent in a transaction: delivered at commit to both replicas; not at
	// all after a rollback.
	errBoom := errors.New("boom")
	err := a.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		return tx.(*Store).Notify(ctx, "registry", "committed")
	})
	must(t, err)
	err = a.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		if err := tx.(*Store).Notify(ctx, "registry", "never"); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	must(t, b.Notify(ctx, "registry", "tenant-ü"))
	for _, r := range []*recorder{recA, recB} {
		r.wait(t, "a committed notification", hasPayload("tenant-ü"))
		r.wait(t, "a committed notification", hasPayload("committed"))
		r.mu.Lock()
		if hasPayload("never")(r.got) {
			t.Error("a notification of a rolled-back transaction was delivered")
		}
		r.mu.Unlock()
	}
	time.Sleep(100 * time.Millisecond)
	recOther.mu.Lock()
	if len(recOther.got) != 1 {
		t.Errorf("a store of another prefix heard %v", recOther.got)
	}
	recOther.mu.Unlock()

	// Bad topics and payloads.
	for _, c := range []struct{ topic, payload string }{{"Registry", "x"}, {"", "x"}, {"registry", "a\x00b"}, {"registry", "\xff"}, {"registry", strings.Repeat("x", 8000)}} {
		if err := a.Notify(ctx, c.topic, c.payload); err == nil {
			t.Errorf("Notify(%q, %.20q) succeeded", c.topic, c.payload)
		}
	}
	if _, live := a.Subscribe("Bad-Topic", recA.fn); live {
		t.Error("Subscribe of a bad topic is live")
	}

	// The listening session dies: Missed again, and notifications flow
	// again.
	var killed bool
	must(t, dbA.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", int(pid.Load())).Scan(&killed))
	if !killed {
		t.Fatal("pg_terminate_backend: the listening session was not found")
	}
	recB.wait(t, "Missed after the session ended", func(ns []Notification) bool { return missedCount(ns) == 2 })
	must(t, a.Notify(ctx, "registry", "after-restart"))
	recB.wait(t, "a notification after the restart", hasPayload("after-restart"))

	// Cancelled: nothing more.
	stopB()
	recB.mu.Lock()
	n := len(recB.got)
	recB.mu.Unlock()
	must(t, a.Notify(ctx, "registry", "after-cancel"))
	recA.wait(t, "after-cancel", hasPayload("after-cancel"))
	time.Sleep(50 * time.Millisecond)
	recB.mu.Lock()
	if len(recB.got) != n {
		t.Errorf("a cancelled subscription got %v", recB.got[n:])
	}
	recB.mu.Unlock()
}

func TestNotifyNotLive(t *testing.T) {
	s := newSQLite(t, Config{Listen: func(context.Context, []string, func(), func(string, string)) error {
		t.Error("Listen called on SQLite")
		return nil
	}})
	stop, live := s.Subscribe("registry", func(Notification) { t.Error("called") })
	stop()
	if live {
		t.Error("Subscribe on SQLite is live")
	}
	if err := s.Notify(t.Context(), "registry", "x"); err != nil {
		t.Errorf("Notify on SQLite: %v", err)
	}
	if _, live := s.WatchCommits(func(string) {}); live {
		t.Error("WatchCommits on SQLite is live")
	}
	if dsnSet() {
		p := newPostgres(t, Config{})
		if _, live := p.Subscribe("registry", func(Notification) {}); live {
			t.Error("Subscribe without Config.Listen is live")
		}
	}
}

// TestWatchCommitsAcrossReplicas: a consumer on one engine gets an event
// committed on another engine (another pool) long before its poll, and
// a rolled-back change wakes nobody.
func TestWatchCommitsAcrossReplicas(t *testing.T) {
	postgresDSN(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prefix := randomPrefix()
	dbA, dbB := openPostgresDB(t), openPostgresDB(t)
	sa := newPostgresOn(t, dbA, Config{TablePrefix: prefix, Listen: pgxListen(dbA, nil)})
	sb := newPostgresOn(t, dbB, Config{TablePrefix: prefix, Listen: pgxListen(dbB, nil)})
	cfg := func(s *Store) provision.Config {
		return provision.Config{Store: s, Tenants: []provision.Tenant{testTenant}, PollInterval: time.Hour}
	}
	ea, err := provision.NewEngine(cfg(sa))
	must(t, err)
	eb, err := provision.NewEngine(cfg(sb))
	must(t, err)
	got := make(chan provision.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- eb.Consume(ctx, "hooks", func(ctx context.Context, ev provision.Event) error {
			got <- ev
			return nil
		})
	}()
	// A commit before the consumer listens is found by its first poll or
	// by the poll its first Missed triggers.
	for i := range 3 {
		start := time.Now()
		u, err := ea.CreateUser(ctx, admin, provision.User{UserName: fmt.Sprintf("u%d", i), Active: true})
		must(t, err)
		select {
		case ev := <-got:
			if ev.User == nil || ev.User.ID != u.ID {
				t.Fatalf("got %+v, want the creation of %s", ev, u.ID)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("delivered after %v", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the event committed on the other replica was not delivered within 5s (PollInterval is 1h)")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Consume = %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newPostgresOn returns a migrated store on db with cfg's prefix, whose
// tables are dropped when the test ends.
func newPostgresOn(t testing.TB, db *sql.DB, cfg Config) *Store {
	t.Helper()
	cfg.Dialect = Postgres
	s := migrated(t, db, cfg)
	t.Cleanup(func() { _ = s.dropTables(context.Background()) })
	return s
}
