package sqlstore

import (
	"context"
	"errors"
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
