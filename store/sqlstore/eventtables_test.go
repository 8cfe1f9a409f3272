package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// TestEventTablesInHostTx appends events in the host's own *sql.Tx,
// together with a write to the host's own table.
func TestEventTablesInHostTx(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t) // Migrate created the event tables
		db := s.DB()
		ctx := context.Background()
		host := s.TablePrefix() + "host_orders"
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+host+" (id text PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+host) })
		ev, err := NewEventTables(s.Dialect(), s.TablePrefix())
		if err != nil {
			t.Fatal(err)
		}
		write := func(id string, commit bool) []provision.Event {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+host+" (id) VALUES ($1)", id); err != nil {
				t.Fatal(err)
			}
			out, err := ev.Append(ctx, tx, "t1", []provision.Event{
				{Kind: provision.UserCreated, Time: time.Now(), User: &provision.User{ID: id, TenantID: "t1", UserName: id}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			return out
		}
		if got := write("a", true); got[0].Seq != 1 {
			t.Errorf("first seq %d", got[0].Seq)
		}
		write("b", false) // rolled back: its seq is given back
		if got := write("c", true); got[0].Seq != 2 {
			t.Errorf("seq after a rollback %d, want 2", got[0].Seq)
		}
		evs, err := ev.List(ctx, db, "t1", 0, 10)
		if err != nil || len(evs) != 2 || evs[1].User.ID != "c" {
			t.Fatalf("List: %v %v", evs, err)
		}
		// The Store reads the same log.
		if last, _ := s.LastSeq(ctx, "t1"); last != 2 {
			t.Errorf("Store.LastSeq %d", last)
		}
		if _, err := ev.Append(ctx, db, "t1", []provision.Event{{TenantID: "t2"}}); !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("other tenant's event: %v", err)
		}
		if err := ev.SetCursor(ctx, db, "t1", "hook", 2); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Cursor(ctx, "t1", "hook"); c != 2 {
			t.Errorf("cursor %d", c)
		}
	})
}

// TestEventDocsCarryTheirSeq appends batches of events (one, several, and
// more than one INSERT holds) and checks every stored document is the
// encoding of the returned event, its Seq included, with gapless Seqs.
func TestEventDocsCarryTheirSeq(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		var all []provision.Event
		for _, n := range []int{1, 3, eventRowsPerInsert, eventRowsPerInsert + 2} {
			evs := make([]provision.Event, n)
			for i := range evs {
				u := &provision.User{ID: fmt.Sprintf("u%d-%d", n, i), TenantID: "t1", UserName: "é\"x"}
				evs[i] = provision.Event{Kind: provision.UserUpdated, Time: time.Now(), Fields: []string{"title"}, User: u, PreviousUser: u}
			}
			if i := n / 2; n > 1 {
				evs[i].User = nil // an event of a deleted user: user_id from PreviousUser
			}
			out, err := s.AppendEvents(ctx, "t1", evs)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out...)
		}
		rows, err := s.DB().QueryContext(ctx, "SELECT seq, user_id, doc FROM "+s.TablePrefix()+"events WHERE tenant_id = 't1' ORDER BY seq")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		i := 0
		for ; rows.Next(); i++ {
			var seq int64
			var uid, doc string
			if err := rows.Scan(&seq, &uid, &doc); err != nil {
				t.Fatal(err)
			}
			want, _ := encodeEvent(all[i])
			if seq != int64(i+1) || all[i].Seq != seq || doc != want || uid != all[i].PreviousUser.ID {
				t.Fatalf("row %d: seq %d (returned %d), user %q, doc\n%s\nwant\n%s", i, seq, all[i].Seq, uid, doc, want)
			}
		}
		if i != len(all) {
			t.Errorf("%d rows, %d events", i, len(all))
		}
	})
}
