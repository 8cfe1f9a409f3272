package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// TestCommitWaker: the tenants of committed event appends are notified on
// EventsTopic after the commit (many commits at once all heard), a
// rolled-back append wakes nobody, and an append outside Atomically is
// notified too.
func TestCommitWaker(t *testing.T) {
	postgresDSN(t)
	ctx := t.Context()
	prefix := randomPrefix()
	dbA, dbB := openPostgresDB(t), openPostgresDB(t)
	a := newPostgresOn(t, dbA, Config{TablePrefix: prefix})
	b := newPostgresOn(t, dbB, Config{TablePrefix: prefix, Listen: pgxListen(dbB, nil)})
	rec := newRecorder()
	stop, live := b.Subscribe(EventsTopic, rec.fn)
	defer stop()
	if !live {
		t.Fatal("Subscribe with Config.Listen is not live")
	}
	rec.wait(t, "the first Missed", func(ns []Notification) bool { return missedCount(ns) == 1 })

	ev := func(tenant string) []provision.Event {
		return []provision.Event{{TenantID: tenant, Kind: provision.UserCreated, Time: time.Now()}}
	}
	errBoom := errors.New("boom")
	err := a.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		if _, err := tx.(provision.EventLog).AppendEvents(ctx, "rolled-back", ev("rolled-back")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	if _, err := a.AppendEvents(ctx, "alone", ev("alone")); err != nil {
		t.Fatal(err)
	}
	const writers, tenants = 40, 10
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := fmt.Sprintf("t%d", i%tenants)
			err := a.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
				_, err := tx.(provision.EventLog).AppendEvents(ctx, tenant, ev(tenant))
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rec.wait(t, "the append outside Atomically", hasPayload("alone"))
	for i := range tenants {
		rec.wait(t, "every tenant committed", hasPayload(fmt.Sprintf("t%d", i)))
	}
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if hasPayload("rolled-back")(rec.got) {
		t.Error("a rolled-back append was notified")
	}
	if n := len(rec.got); n > 1+1+writers {
		t.Errorf("%d notifications for %d commits", n-1, writers+1)
	}
}

// TestEventTablesNotifyInHostTx: EventTables.Append in a host's own
// transaction (no Store commit to follow) still notifies EventsTopic,
// inside the transaction: heard after its commit, never after a rollback.
func TestEventTablesNotifyInHostTx(t *testing.T) {
	postgresDSN(t)
	ctx := t.Context()
	prefix := randomPrefix()
	db := openPostgresDB(t)
	s := newPostgresOn(t, db, Config{TablePrefix: prefix, Listen: pgxListen(db, nil)})
	rec := newRecorder()
	stop, live := s.Subscribe(EventsTopic, rec.fn)
	defer stop()
	if !live {
		t.Fatal("Subscribe with Config.Listen is not live")
	}
	rec.wait(t, "the first Missed", func(ns []Notification) bool { return missedCount(ns) == 1 })
	ev, err := NewEventTables(Postgres, prefix)
	if err != nil {
		t.Fatal(err)
	}
	appendIn := func(tenant string, commit bool) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := ev.Append(ctx, tx, tenant, []provision.Event{{Kind: provision.UserCreated, Time: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendIn("host-rolled-back", false)
	appendIn("host-committed", true)
	rec.wait(t, "the host's committed append", hasPayload("host-committed"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if hasPayload("host-rolled-back")(rec.got) {
		t.Error("a rolled-back host append was notified")
	}
}
