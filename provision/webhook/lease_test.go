package webhook_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/sqlstore"
)

// lossCounter is a slog.Handler counting the stores' "lock lost" records.
type lossCounter struct{ n *atomic.Int64 }

func (h lossCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h lossCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "sqlstore: lock lost" {
		h.n.Add(1)
	}
	return nil
}
func (h lossCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h lossCounter) WithGroup(string) slog.Handler      { return h }

// TestShortLeaseReplicasUnderContention is the SQLite case of
// TestReplicasNeverDeliverATenantConcurrently with a 300ms lease while a
// third process keeps SQLite's write lock busy in long transactions, so
// that lease renewals are delayed and leases are lost and taken over. A
// holder must stop delivering before its lease can lapse: the receiver
// never sees two deliveries of a tenant at once, every event arrives in
// order, and an event is delivered again only when a lease was lost
// while it was in flight (at least once, never more than the losses).
func TestShortLeaseReplicasUnderContention(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	const ttl = 300 * time.Millisecond
	path := filepath.Join(t.TempDir(), "idprov.db")
	var losses atomic.Int64
	open := func() *sqlstore.Store {
		db, err := sql.Open("sqlite", sqliteDSN(path))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite, LockTTL: ttl, Logger: slog.New(lossCounter{&losses})})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return st
	}
	stores := [2]*sqlstore.Store{open(), open()}

	// The contention: another process's write transactions, each holding
	// the write lock for a while.
	hog := open()
	hogCtx, stopHog := context.WithCancel(context.Background())
	var hogs sync.WaitGroup
	defer func() { stopHog(); hogs.Wait() }()
	hogs.Go(func() {
		for hogCtx.Err() == nil {
			_ = hog.Atomically(hogCtx, func(ctx context.Context, tx provision.Store) error {
				if err := tx.(provision.KV).KVSet(ctx, "hog", "k", []byte("v"), 0); err != nil {
					return err
				}
				time.Sleep(time.Duration(20+time.Now().UnixNano()%60) * time.Millisecond)
				return nil
			})
			time.Sleep(40 * time.Millisecond)
		}
	})

	const n = 20
	rc := deliverFromReplicas(t, [2]provision.Store{stores[0], stores[1]}, n)
	dups := 0
	for _, tenant := range []string{"acme", "globex"} {
		dups += checkInOrder(t, tenant, rc.got(tenant), 2*n)
	}
	if int64(dups) > losses.Load() {
		t.Fatalf("%d redeliveries with %d lost leases: more than at least once", dups, losses.Load())
	}
	t.Logf("%d leases lost, %d redeliveries", losses.Load(), dups)
}
