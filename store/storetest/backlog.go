package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// backlog returns the EventBacklog of a fresh store.
func (s *suite) backlog(t *testing.T) (provision.Store, provision.EventLog, provision.EventBacklog) {
	t.Helper()
	st, el := s.eventLog(t)
	bl, ok := st.(provision.EventBacklog)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.EventBacklog, although the first store it returned was", st)
	}
	return st, el, bl
}

func backlogs(t *testing.T, bl provision.EventBacklog, consumer, after string, limit int) []provision.Backlog {
	t.Helper()
	return backlogsOf(t, bl, consumer, nil, after, limit)
}

func backlogsOf(t *testing.T, bl provision.EventBacklog, consumer string, tenants []string, after string, limit int) []provision.Backlog {
	t.Helper()
	out, err := bl.Backlogs(t.Context(), consumer, tenants, after, limit)
	must(t, err, "Backlogs(%s, %v, %q, %d)", consumer, tenants, after, limit)
	return out
}

func testEventBacklog(t *testing.T, s *suite) {
	t.Run("BehindTenants", func(t *testing.T) {
		_, el, bl := s.backlog(t)
		ctx := t.Context()
		if got := backlogs(t, bl, "hooks", "", 10); len(got) != 0 {
			t.Errorf("Backlogs of an empty log = %v, want none", got)
		}
		appendEvents(t, el, tenantA, event(tenantA, provision.UserCreated, nil, baseTime, "a1"), event(tenantA, provision.UserUpdated, nil, baseTime, "a2"), event(tenantA, provision.UserUpdated, nil, baseTime, "a3"))
		appendEvents(t, el, tenantB, event(tenantB, provision.UserCreated, nil, baseTime, "b1"))
		want := []provision.Backlog{{TenantID: tenantA, Cursor: 0, LastSeq: 3}, {TenantID: tenantB, Cursor: 0, LastSeq: 1}}
		if d := diff(want, backlogs(t, bl, "hooks", "", 10)); d != "" {
			t.Errorf("Backlogs with no cursor stored (-want +got):\n%s", d)
		}
		must(t, el.SetCursor(ctx, tenantA, "hooks", 2), "SetCursor")
		want[0].Cursor = 2
		if d := diff(want, backlogs(t, bl, "hooks", "", 10)); d != "" {
			t.Errorf("Backlogs with a cursor behind (-want +got):\n%s", d)
		}
		// Pages, in tenant id order.
		if d := diff(want[:1], backlogs(t, bl, "hooks", "", 1)); d != "" {
			t.Errorf("first page of 1 (-want +got):\n%s", d)
		}
		if d := diff(want[1:], backlogs(t, bl, "hooks", tenantA, 1)); d != "" {
			t.Errorf("page after %s (-want +got):\n%s", tenantA, d)
		}
		if got := backlogs(t, bl, "hooks", tenantB, 10); len(got) != 0 {
			t.Errorf("page after the last tenant = %v, want none", got)
		}
		// Caught up: not listed; another consumer is independent.
		must(t, el.SetCursor(ctx, tenantA, "hooks", 3), "SetCursor")
		must(t, el.SetCursor(ctx, tenantB, "hooks", 1), "SetCursor")
		if got := backlogs(t, bl, "hooks", "", 10); len(got) != 0 {
			t.Errorf("Backlogs of a consumer caught up = %v, want none", got)
		}
		if got := backlogs(t, bl, "audit", "", 10); len(got) != 2 {
			t.Errorf("Backlogs of another consumer = %v, want both tenants", got)
		}
		// A new event makes the tenant behind again.
		appendEvents(t, el, tenantB, event(tenantB, provision.UserUpdated, nil, baseTime, "b2"))
		if d := diff([]provision.Backlog{{TenantID: tenantB, Cursor: 1, LastSeq: 2}}, backlogs(t, bl, "hooks", "", 10)); d != "" {
			t.Errorf("Backlogs after a new event (-want +got):\n%s", d)
		}
		// Purging does not hide a tenant's backlog (LastSeq stays).
		if _, err := el.PurgeEvents(ctx, tenantB, baseTime.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := backlogs(t, bl, "hooks", "", 10); len(got) != 1 || got[0].LastSeq != 2 {
			t.Errorf("Backlogs after a purge = %v, want tenant B at 2", got)
		}
	})

	t.Run("LateCommitNotSkipped", func(t *testing.T) {
		// Transaction 1 appends to tenant A and stays open; transaction 2
		// appends to tenant B and commits first (on a store whose
		// transactions run concurrently); a consumer handles B. When 1
		// commits, A is behind: nothing was skipped because a later
		// commit was seen first. On a store that serializes transactions,
		// 2 waits for 1 and both are behind at the end.
		st, el, bl := s.backlog(t)
		appended, release, done1 := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		// timedOut is set when transaction 1 stopped waiting by itself: on
		// a store that serializes transactions, 2 ran only after it, so 2
		// finishing first proves nothing then.
		var timedOut atomic.Bool
		go func() {
			done1 <- st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
				if _, err := tx.(provision.EventLog).AppendEvents(ctx, tenantA, []provision.Event{event(tenantA, provision.UserCreated, nil, baseTime, "early")}); err != nil {
					return err
				}
				close(appended)
				select {
				case <-release:
				case <-time.After(500 * time.Millisecond):
					timedOut.Store(true)
				}
				return nil
			})
		}()
		select {
		case <-appended:
		case err := <-done1:
			t.Fatalf("transaction 1: %v", err)
		}
		done2 := make(chan error, 1)
		go func() {
			done2 <- st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
				_, err := tx.(provision.EventLog).AppendEvents(ctx, tenantB, []provision.Event{event(tenantB, provision.UserCreated, nil, baseTime, "late")})
				return err
			})
		}()
		select {
		case err := <-done2:
			must(t, err, "transaction 2")
			if timedOut.Load() {
				// Serialized: 1 committed before 2 ran.
				must(t, <-done1, "transaction 1")
				must(t, el.SetCursor(t.Context(), tenantB, "hooks", 1), "SetCursor")
				break
			}
			// 1 is still open: only B is behind.
			if d := diff([]provision.Backlog{{TenantID: tenantB, LastSeq: 1}}, backlogs(t, bl, "hooks", "", 10)); d != "" {
				t.Errorf("Backlogs while transaction 1 is open (-want +got):\n%s", d)
			}
			must(t, el.SetCursor(t.Context(), tenantB, "hooks", 1), "SetCursor")
			close(release)
			must(t, <-done1, "transaction 1")
		case err := <-done1:
			must(t, err, "transaction 1")
			must(t, <-done2, "transaction 2")
			must(t, el.SetCursor(t.Context(), tenantB, "hooks", 1), "SetCursor")
		}
		if d := diff([]provision.Backlog{{TenantID: tenantA, LastSeq: 1}}, backlogs(t, bl, "hooks", "", 10)); d != "" {
			t.Errorf("Backlogs after the early transaction committed last (-want +got):\n%s", d)
		}
	})

	t.Run("ManyTenants", func(t *testing.T) {
		// 600 tenants with events, 580 caught up: pages of 4 list the
		// other 20, each once, in order.
		_, el, bl := s.backlog(t)
		ctx := t.Context()
		var want []string
		for i := range 600 {
			tenant := fmt.Sprintf("many-%03d", i)
			appendEvents(t, el, tenant, event(tenant, provision.UserCreated, nil, baseTime, "x"))
			if i%30 == 7 {
				want = append(want, tenant)
				continue
			}
			must(t, el.SetCursor(ctx, tenant, "hooks", 1), "SetCursor")
		}
		var got []string
		after := ""
		for range 40 {
			page := backlogs(t, bl, "hooks", after, 4)
			for _, b := range page {
				got = append(got, b.TenantID)
			}
			if len(page) < 4 {
				break
			}
			after = page[len(page)-1].TenantID
		}
		if d := diff(want, got); d != "" {
			t.Errorf("paged Backlogs (-want +got):\n%s", d)
		}
		// Restricted to named tenants (unsorted, repeated, many caught
		// up, one unknown; more than one SQL chunk of them): half of the
		// wanted ones are named.
		var named []string
		for i := 599; i >= 0; i-- {
			if i%60 != 37 {
				named = append(named, fmt.Sprintf("many-%03d", i))
			}
		}
		named = append(named, "many-067", "nobody")
		var wantOdd []string
		for _, id := range want {
			var n int
			fmt.Sscanf(id, "many-%d", &n)
			if n%60 == 7 {
				wantOdd = append(wantOdd, id)
			}
		}
		var gotOdd []string
		for _, b := range backlogsOf(t, bl, "hooks", named, "", 100) {
			gotOdd = append(gotOdd, b.TenantID)
		}
		if d := diff(wantOdd, gotOdd); d != "" {
			t.Errorf("Backlogs of named tenants (-want +got):\n%s", d)
		}
		if got := backlogsOf(t, bl, "hooks", []string{}, "", 100); len(got) != 0 {
			t.Errorf("Backlogs of no tenant = %v, want none", got)
		}
		if got := backlogsOf(t, bl, "hooks", named, wantOdd[0], 1); len(got) != 1 || got[0].TenantID != wantOdd[1] {
			t.Errorf("Backlogs of named tenants after %s, limit 1 = %v, want %s", wantOdd[0], got, wantOdd[1])
		}
	})
}
