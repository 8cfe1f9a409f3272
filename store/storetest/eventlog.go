package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// event is an event of tenant about u (nil for none).
func event(tenant string, kind provision.EventKind, u *provision.User, at time.Time, requestID string) provision.Event {
	ev := provision.Event{
		Kind:         kind,
		TenantID:     tenant,
		ConnectionID: "scim-okta",
		Actor:        "okta",
		RequestID:    requestID,
		Time:         at,
	}
	if u != nil {
		c := *u
		c.Emails = slices.Clone(u.Emails)
		ev.User = &c
	}
	return ev
}

// fullEvent is an event with every field set.
func fullEvent(tenant string, at time.Time) provision.Event {
	before := fullUser(tenant, "ada")
	before.ID = "user-ada"
	before.Version = 3
	after := before
	after.Title = "Countess"
	after.Version = 4
	g := group(tenant, "scim-okta", "Engineering")
	g.ID, g.Version = "group-eng", 2
	pg := g
	pg.DisplayName = "Eng"
	return provision.Event{
		Kind:          provision.UserUpdated,
		TenantID:      tenant,
		ConnectionID:  "scim-okta",
		Actor:         "okta-provisioning",
		RequestID:     "req-42",
		Time:          at,
		User:          &after,
		Group:         &g,
		Fields:        []string{"title", "name.givenName"},
		PreviousUser:  &before,
		PreviousGroup: &pg,
		Members:       []string{"user-1", "user-2"},
	}
}

func seqs(evs []provision.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// consecutive reports whether s is s[0], s[0]+1, ...
func consecutive(s []int64) bool {
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1]+1 {
			return false
		}
	}
	return true
}

func appendEvents(t *testing.T, el provision.EventLog, tenant string, evs ...provision.Event) []provision.Event {
	t.Helper()
	out, err := el.AppendEvents(t.Context(), tenant, evs)
	must(t, err, "AppendEvents(%s, %d events)", tenant, len(evs))
	if len(out) != len(evs) {
		t.Fatalf("AppendEvents of %d events returned %d", len(evs), len(out))
	}
	return out
}

func listAll(t *testing.T, el provision.EventLog, tenant string) []provision.Event {
	t.Helper()
	evs, err := el.ListEvents(t.Context(), tenant, 0, 100000)
	must(t, err, "ListEvents(%s)", tenant)
	return evs
}

func testEventLog(t *testing.T, s *suite) {
	t.Run("Append", func(t *testing.T) {
		_, el := s.eventLog(t)
		ctx := t.Context()
		if last, err := el.LastSeq(ctx, tenantA); err != nil || last != 0 {
			t.Errorf("LastSeq of an empty log = %d, %v; want 0", last, err)
		}
		if evs, err := el.ListEvents(ctx, tenantA, 0, 10); err != nil || len(evs) != 0 {
			t.Errorf("ListEvents of an empty log = %d events, %v; want none", len(evs), err)
		}
		in := []provision.Event{
			fullEvent(tenantA, baseTime),
			event(tenantA, provision.GroupMembersAdded, nil, baseTime.Add(time.Second), "req-2"),
			event(tenantA, provision.ConnectionActivated, nil, baseTime.Add(2*time.Second), "req-3"),
		}
		in[1].Members = []string{"u1", "u2", "u3"}
		out := appendEvents(t, el, tenantA, in...)
		if out[0].Seq <= 0 || !consecutive(seqs(out)) {
			t.Errorf("AppendEvents assigned Seq %v, want positive and consecutive in the order given", seqs(out))
		}
		for i := range in {
			want := in[i]
			want.Seq = out[i].Seq
			if d := diff(want, out[i]); d != "" {
				t.Errorf("AppendEvents returned event %d (-want +got):\n%s", i, d)
			}
		}
		listed := listAll(t, el, tenantA)
		if d := diff(out, listed); d != "" {
			t.Errorf("ListEvents after AppendEvents (-want +got):\n%s", d)
		}
		if last, err := el.LastSeq(ctx, tenantA); err != nil || last != out[2].Seq {
			t.Errorf("LastSeq = %d, %v; want %d", last, err, out[2].Seq)
		}
		more := appendEvents(t, el, tenantA, event(tenantA, provision.UserDeleted, nil, baseTime, "req-4"))
		if more[0].Seq != out[2].Seq+1 {
			t.Errorf("the next AppendEvents assigned Seq %d, want %d", more[0].Seq, out[2].Seq+1)
		}

		// Deep copies, both ways.
		want := cloneJSON(t, append(slices.Clone(out), more...))
		in[0].User.Emails[0].Value = "scribbled"
		in[0].Fields[0] = "scribbled"
		in[1].Members[0] = "scribbled"
		listed[0].PreviousUser.Roles[0].Value = "scribbled"
		listed[0].Members[0] = "scribbled"
		listed[0].Group.DisplayName = "scribbled"
		if d := diff(want, listAll(t, el, tenantA)); d != "" {
			t.Errorf("changing events passed to AppendEvents or returned by ListEvents changed the log (-want +got):\n%s", d)
		}
	})

	t.Run("ListAfter", func(t *testing.T) {
		_, el := s.eventLog(t)
		var in []provision.Event
		for i := range 10 {
			in = append(in, event(tenantA, provision.UserCreated, nil, baseTime, fmt.Sprintf("req-%d", i)))
		}
		out := appendEvents(t, el, tenantA, in...)
		first := out[0].Seq
		cases := []struct {
			after int64
			limit int
			want  []provision.Event
		}{
			{0, 100, out},
			{0, 3, out[:3]},
			{first + 2, 4, out[3:7]},
			{first + 6, 100, out[7:]},
			{first + 9, 100, nil},
			{first + 50, 100, nil},
			{first, 0, nil},
		}
		for _, c := range cases {
			got, err := el.ListEvents(t.Context(), tenantA, c.after, c.limit)
			must(t, err, "ListEvents")
			if !slices.Equal(seqs(got), seqs(c.want)) {
				t.Errorf("ListEvents(after %d, limit %d) = seqs %v, want %v", c.after, c.limit, seqs(got), seqs(c.want))
			}
		}
	})

	t.Run("Tenants", func(t *testing.T) {
		_, el := s.eventLog(t)
		var a, b []provision.Event
		for i := range 4 {
			a = append(a, appendEvents(t, el, tenantA, event(tenantA, provision.UserCreated, nil, baseTime, fmt.Sprintf("a-%d", i)))...)
			b = append(b, appendEvents(t, el, tenantB, event(tenantB, provision.UserCreated, nil, baseTime, fmt.Sprintf("b-%d", i)), event(tenantB, provision.UserUpdated, nil, baseTime, fmt.Sprintf("b-%d'", i)))...)
		}
		if !consecutive(seqs(a)) || !consecutive(seqs(b)) {
			t.Errorf("interleaved appends to two tenants: A got %v, B got %v; want each tenant's own gapless sequence", seqs(a), seqs(b))
		}
		for _, c := range []struct {
			tenant string
			want   []provision.Event
		}{{tenantA, a}, {tenantB, b}} {
			if d := diff(c.want, listAll(t, el, c.tenant)); d != "" {
				t.Errorf("ListEvents(%s) (-want +got):\n%s", c.tenant, d)
			}
			if last, err := el.LastSeq(t.Context(), c.tenant); err != nil || last != c.want[len(c.want)-1].Seq {
				t.Errorf("LastSeq(%s) = %d, %v", c.tenant, last, err)
			}
		}
		if last, err := el.LastSeq(t.Context(), "tenant-c"); err != nil || last != 0 {
			t.Errorf("LastSeq of a tenant without events = %d, %v; want 0", last, err)
		}
	})

	t.Run("Rollback", func(t *testing.T) {
		st, el := s.eventLog(t)
		committed := appendEvents(t, el, tenantA, event(tenantA, provision.UserCreated, nil, baseTime, "c-1"), event(tenantA, provision.UserCreated, nil, baseTime, "c-2"))
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			txl, ok := tx.(provision.EventLog)
			if !ok {
				return fmt.Errorf("the Store Atomically hands to fn is not an EventLog")
			}
			if _, err := txl.AppendEvents(ctx, tenantA, []provision.Event{
				event(tenantA, provision.UserCreated, nil, baseTime, "rolled-back-1"),
				event(tenantA, provision.UserCreated, nil, baseTime, "rolled-back-2"),
			}); err != nil {
				return err
			}
			if _, err := txl.AppendEvents(ctx, tenantB, []provision.Event{event(tenantB, provision.UserCreated, nil, baseTime, "rolled-back-b")}); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Atomically = %v, want %v", err, errBoom)
		}
		if d := diff(committed, listAll(t, el, tenantA)); d != "" {
			t.Errorf("events appended in a rolled-back transaction are in the log (-want +got):\n%s", d)
		}
		if evs := listAll(t, el, tenantB); len(evs) != 0 {
			t.Errorf("tenant B has %d events after a rolled-back append", len(evs))
		}
		if last, err := el.LastSeq(t.Context(), tenantA); err != nil || last != committed[1].Seq {
			t.Errorf("LastSeq after a rolled-back append = %d, %v; want %d", last, err, committed[1].Seq)
		}
		next := appendEvents(t, el, tenantA, event(tenantA, provision.UserCreated, nil, baseTime, "c-3"))
		if next[0].Seq != committed[1].Seq+1 {
			t.Errorf("the append after a rollback got Seq %d, want %d: no gap among committed events", next[0].Seq, committed[1].Seq+1)
		}
		// And through a committed transaction.
		var inTx []provision.Event
		err = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			var err error
			inTx, err = tx.(provision.EventLog).AppendEvents(ctx, tenantA, []provision.Event{event(tenantA, provision.UserCreated, nil, baseTime, "c-4")})
			return err
		})
		must(t, err, "Atomically appending an event")
		if len(inTx) != 1 || inTx[0].Seq != next[0].Seq+1 {
			t.Errorf("an append in a committed transaction got Seq %v, want %d", seqs(inTx), next[0].Seq+1)
		}
		if got := listAll(t, el, tenantA); len(got) != 4 {
			t.Errorf("ListEvents after a committed transaction: %d events, want 4", len(got))
		}
	})

	t.Run("ConcurrentAppend", func(t *testing.T) {
		// Writers append in transactions, two events at a time, to two
		// tenants; a consumer per tenant reads after its cursor while they
		// run. Every tenant's Seq is gapless, and the consumers, which
		// trust that, see every event exactly once.
		const perWorker = 25
		st, el := s.eventLog(t)
		tenants := []string{tenantA, tenantB}
		errs := make([]error, workers)
		var wg sync.WaitGroup
		done := make(chan struct{})
		consumed := make([][]provision.Event, len(tenants))
		consumerErrs := make([]error, len(tenants))
		for i, tenant := range tenants {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cursor int64
				for finished := false; ; {
					select {
					case <-done:
						finished = true
					default:
					}
					evs, err := el.ListEvents(t.Context(), tenant, cursor, 7)
					if err != nil {
						consumerErrs[i] = err
						return
					}
					for _, e := range evs {
						if cursor != 0 && e.Seq != cursor+1 {
							consumerErrs[i] = fmt.Errorf("after Seq %d the consumer read Seq %d: a committed event was visible before an earlier one", cursor, e.Seq)
							return
						}
						cursor = e.Seq
						consumed[i] = append(consumed[i], e)
					}
					if finished && len(evs) == 0 {
						return
					}
				}
			}()
		}
		together(workers, func(w int) {
			tenant := tenants[w%2]
			for i := range perWorker {
				err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
					out, err := tx.(provision.EventLog).AppendEvents(ctx, tenant, []provision.Event{
						event(tenant, provision.UserCreated, nil, baseTime, fmt.Sprintf("w%d-%d-a", w, i)),
						event(tenant, provision.UserUpdated, nil, baseTime, fmt.Sprintf("w%d-%d-b", w, i)),
					})
					if err == nil && !(out[0].Seq < out[1].Seq) {
						err = fmt.Errorf("AppendEvents returned Seq %v, want increasing in the order given", seqs(out))
					}
					return err
				})
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
		close(done)
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		}
		for i, tenant := range tenants {
			if consumerErrs[i] != nil {
				t.Errorf("consumer of %s: %v", tenant, consumerErrs[i])
			}
			all := listAll(t, el, tenant)
			want := workers / 2 * perWorker * 2
			if len(all) != want || !consecutive(seqs(all)) || (len(all) > 0 && all[0].Seq <= 0) {
				t.Errorf("%s: %d events with Seq %v..., want %d with consecutive Seq", tenant, len(all), seqs(all)[:min(len(all), 10)], want)
			}
			reqs := map[string]int{}
			for _, e := range all {
				reqs[e.RequestID]++
			}
			for r, n := range reqs {
				if n != 1 {
					t.Errorf("%s: event %s is in the log %d times", tenant, r, n)
				}
			}
			if len(reqs) != want {
				t.Errorf("%s: %d distinct events, want %d", tenant, len(reqs), want)
			}
			if consumerErrs[i] == nil && !slices.Equal(seqs(consumed[i]), seqs(all)) {
				t.Errorf("%s: the consumer read %d events, the log has %d", tenant, len(consumed[i]), len(all))
			}
			if last, err := el.LastSeq(t.Context(), tenant); err != nil || (len(all) > 0 && last != all[len(all)-1].Seq) {
				t.Errorf("LastSeq(%s) = %d, %v", tenant, last, err)
			}
		}
	})

	t.Run("Cursors", func(t *testing.T) {
		_, el := s.eventLog(t)
		ctx := t.Context()
		if c, err := el.Cursor(ctx, tenantA, "webhooks"); err != nil || c != 0 {
			t.Errorf("Cursor never set = %d, %v; want 0", c, err)
		}
		must(t, el.SetCursor(ctx, tenantA, "webhooks", 5), "SetCursor")
		must(t, el.SetCursor(ctx, tenantB, "webhooks", 9), "SetCursor")
		must(t, el.SetCursor(ctx, tenantA, "audit", 2), "SetCursor")
		for _, c := range []struct {
			tenant, consumer string
			want             int64
		}{{tenantA, "webhooks", 5}, {tenantB, "webhooks", 9}, {tenantA, "audit", 2}, {tenantB, "audit", 0}, {tenantA, "WEBHOOKS", 0}} {
			if got, err := el.Cursor(ctx, c.tenant, c.consumer); err != nil || got != c.want {
				t.Errorf("Cursor(%s, %s) = %d, %v; want %d", c.tenant, c.consumer, got, err, c.want)
			}
		}
		must(t, el.SetCursor(ctx, tenantA, "webhooks", 7), "SetCursor")
		if got, err := el.Cursor(ctx, tenantA, "webhooks"); err != nil || got != 7 {
			t.Errorf("Cursor after a second SetCursor = %d, %v; want 7", got, err)
		}
	})

	t.Run("PurgeEvents", func(t *testing.T) {
		_, el := s.eventLog(t)
		cut := baseTime.Add(10 * time.Hour)
		out := appendEvents(t, el, tenantA,
			event(tenantA, provision.UserCreated, nil, cut.Add(-3*time.Hour), "old-1"),
			event(tenantA, provision.UserCreated, nil, cut.Add(-time.Microsecond), "old-2"),
			event(tenantA, provision.UserCreated, nil, cut, "at-cut"),
			event(tenantA, provision.UserCreated, nil, cut.Add(time.Hour), "new"),
		)
		bOut := appendEvents(t, el, tenantB, event(tenantB, provision.UserCreated, nil, cut.Add(-3*time.Hour), "b-old"))
		n, err := el.PurgeEvents(t.Context(), tenantA, cut)
		must(t, err, "PurgeEvents")
		if n != 2 {
			t.Errorf("PurgeEvents removed %d events, want 2 (those strictly older than the cut)", n)
		}
		if d := diff(out[2:], listAll(t, el, tenantA)); d != "" {
			t.Errorf("ListEvents after PurgeEvents (-want +got):\n%s", d)
		}
		if d := diff(bOut, listAll(t, el, tenantB)); d != "" {
			t.Errorf("PurgeEvents of tenant A changed tenant B (-want +got):\n%s", d)
		}
		if last, err := el.LastSeq(t.Context(), tenantA); err != nil || last != out[3].Seq {
			t.Errorf("LastSeq after PurgeEvents = %d, %v; want %d", last, err, out[3].Seq)
		}
		// Purge everything: Seq still never goes back.
		if _, err := el.PurgeEvents(t.Context(), tenantA, cut.Add(1000*time.Hour)); err != nil {
			t.Fatalf("PurgeEvents: %v", err)
		}
		if evs := listAll(t, el, tenantA); len(evs) != 0 {
			t.Errorf("ListEvents after purging all = %d events", len(evs))
		}
		next := appendEvents(t, el, tenantA, event(tenantA, provision.UserCreated, nil, cut, "after-purge"))
		if next[0].Seq <= out[3].Seq {
			t.Errorf("the append after purging every event got Seq %d, want more than %d: a Seq is never reused", next[0].Seq, out[3].Seq)
		}
	})

	t.Run("RedactEvents", func(t *testing.T) {
		_, el := s.eventLog(t)
		ada := fullUser(tenantA, "ada")
		ada.ID, ada.Version = "user-ada", 1
		adaDeleted := ada
		adaDeleted.Deleted, adaDeleted.Version = baseTime.Add(time.Hour), 3
		bob := fullUser(tenantA, "bob")
		bob.ID, bob.Version = "user-bob", 1
		g := group(tenantA, "scim-okta", "Engineering")
		g.ID, g.Version = "group-eng", 1

		created := event(tenantA, provision.UserCreated, &ada, baseTime, "r-1")
		updated := fullEvent(tenantA, baseTime.Add(time.Minute))
		updated.User.ID, updated.PreviousUser.ID = ada.ID, ada.ID
		deleted := event(tenantA, provision.UserDeleted, &adaDeleted, baseTime.Add(time.Hour), "r-3")
		other := event(tenantA, provision.UserCreated, &bob, baseTime, "r-4")
		members := event(tenantA, provision.GroupMembersAdded, nil, baseTime, "r-5")
		members.Group, members.Members = &g, []string{ada.ID, bob.ID}
		bAda := ada
		bAda.TenantID = tenantB
		otherTenant := event(tenantB, provision.UserCreated, &bAda, baseTime, "r-6")

		out := appendEvents(t, el, tenantA, created, updated, deleted, other, members)
		bOut := appendEvents(t, el, tenantB, otherTenant)

		n, err := el.RedactEvents(t.Context(), tenantA, ada.ID)
		must(t, err, "RedactEvents")
		if n != 3 {
			t.Errorf("RedactEvents = %d, want 3 (the events with the user's snapshots)", n)
		}
		redacted := func(u *provision.User) *provision.User {
			if u == nil {
				return nil
			}
			return &provision.User{ID: u.ID, TenantID: u.TenantID, Deleted: u.Deleted}
		}
		want := slices.Clone(out)
		for i := range 3 {
			want[i].User = redacted(want[i].User)
			want[i].PreviousUser = redacted(want[i].PreviousUser)
		}
		got := listAll(t, el, tenantA)
		if d := diff(want, got); d != "" {
			t.Errorf("ListEvents after RedactEvents: only the user's snapshots lose their personal data (-want +got):\n%s", d)
		}
		if d := diff(bOut, listAll(t, el, tenantB)); d != "" {
			t.Errorf("RedactEvents in tenant A changed tenant B's events about a user with the same ID (-want +got):\n%s", d)
		}
	})
}

// cloneJSON returns a deep copy of v through its JSON form.
func cloneJSON[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err, "json.Marshal")
	var out T
	must(t, json.Unmarshal(b, &out), "json.Unmarshal")
	return out
}
