package provision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func TestPurgeRemovesEventsOlderThanTheRetention(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.EventRetention = 48 * time.Hour })
	f.create(okta, provision.User{UserName: "day0", Active: true})
	f.clock = f.clock.Add(24 * time.Hour)
	f.create(okta, provision.User{UserName: "day1", Active: true})
	f.create(globex, provision.User{UserName: "other-tenant", Active: true})
	f.clock = f.clock.Add(24*time.Hour + time.Minute) // day0's event is now older than 48h
	res, err := f.engine.Purge(f.ctx, "acme")
	if err != nil || res.Events != 1 || res.Users != 0 {
		t.Fatalf("Purge = %+v, %v", res, err)
	}
	evs := f.events("acme", 0)
	if len(evs) != 1 || evs[0].User.UserName != "day1" || evs[0].Seq != 2 {
		t.Fatalf("kept %v", evs)
	}
	if got := f.events("globex", 0); len(got) != 1 {
		t.Fatalf("Purge of acme touched globex: %d events left", len(got))
	}
	// The cursor API goes on from where a client was: Seq is not reused.
	f.create(okta, provision.User{UserName: "day2", Active: true})
	if evs := f.events("acme", 2); len(evs) != 1 || evs[0].Seq != 3 {
		t.Fatalf("after purge, events after 2 = %v", evs)
	}
	if res, err := f.engine.Purge(f.ctx, "acme"); err != nil || res.Events != 0 {
		t.Fatalf("second Purge = %+v, %v (want idempotent)", res, err)
	}
}

func TestPurgeDefaultRetentionIs30Days(t *testing.T) {
	f := newFixture(t)
	f.create(okta, provision.User{UserName: "a", Active: true})
	f.clock = f.clock.Add(29 * 24 * time.Hour)
	if res, err := f.engine.Purge(f.ctx, "acme"); err != nil || res.Events != 0 {
		t.Fatalf("Purge after 29 days = %+v, %v", res, err)
	}
	f.clock = f.clock.Add(24*time.Hour + time.Second)
	if res, err := f.engine.Purge(f.ctx, "acme"); err != nil || res.Events != 1 {
		t.Fatalf("Purge after 30 days = %+v, %v", res, err)
	}
}

func TestPurgeReportsEventsAConsumerHasNotHad(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) { c.EventRetention = time.Hour; c.PollInterval = 5 * time.Millisecond })
	f.create(okta, provision.User{UserName: "a", Active: true})
	f.create(okta, provision.User{UserName: "b", Active: true})
	// A consumer that acknowledges only the first event, then hangs.
	ctx, cancel := context.WithCancel(f.ctx)
	acked := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.engine.Consume(ctx, "sessions", func(ctx context.Context, ev provision.Event) error {
			if ev.Seq == 1 {
				close(acked)
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-acked
	waitFor(t, "the cursor", func() bool {
		st, err := f.engine.ConsumerStatus(f.ctx, "sessions", "acme")
		return err == nil && st.Cursor == 1
	})
	cancel()
	<-done
	f.clock = f.clock.Add(2 * time.Hour)
	res, err := f.engine.Purge(f.ctx, "acme")
	if err != nil || res.Events != 2 || res.Undelivered != 1 {
		t.Fatalf("Purge = %+v, %v; want 2 events removed, 1 of them undelivered", res, err)
	}
}

func TestPurgeRedactsTombstonedUsersInOldEvents(t *testing.T) {
	f := newFixture(t, func(c *provision.Config) {
		c.EventRetention = 90 * 24 * time.Hour
		c.TombstoneRetention = 30 * 24 * time.Hour
	})
	gone := f.create(okta, ada())
	if _, err := f.engine.UpdateUser(f.ctx, okta, gone.ID, provision.Precondition{}, func(u *provision.User) error {
		u.Title = "Countess"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kept := f.create(okta, provision.User{UserName: "grace@acme.test", Name: provision.Name{GivenName: "Grace", FamilyName: "Hopper"}, Emails: []provision.Email{{Value: "grace@acme.test"}}, Active: true})
	if err := f.engine.DeleteUser(f.ctx, okta, gone.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(20 * 24 * time.Hour)
	recent := f.create(okta, provision.User{UserName: "alan@acme.test", Name: provision.Name{FamilyName: "Turing"}, Active: true})
	if err := f.engine.DeleteUser(f.ctx, okta, recent.ID, provision.Precondition{}); err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(11 * 24 * time.Hour) // ada deleted 31 days ago, alan 11
	res, err := f.engine.Purge(f.ctx, "acme")
	if err != nil || res.Users != 1 || res.Events != 0 || res.RedactedEvents == 0 {
		t.Fatalf("Purge = %+v, %v", res, err)
	}
	var adaEvents int
	for _, ev := range f.events("acme", 0) {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, u := range []*provision.User{ev.User, ev.PreviousUser} {
			if u == nil || u.ID != gone.ID {
				continue
			}
			adaEvents++
			if u.UserName != "" || u.Name != (provision.Name{}) || len(u.Emails) != 0 || u.Title != "" {
				t.Errorf("%s event %d keeps personal data of the purged user: %+v", ev.Kind, ev.Seq, u)
			}
		}
		if strings.Contains(s, "Lovelace") || strings.Contains(s, "ada@acme.test") || strings.Contains(s, "Countess") {
			t.Errorf("%s event %d still names the purged user: %s", ev.Kind, ev.Seq, s)
		}
		if ev.User != nil && ev.User.ID == kept.ID && ev.User.Name.FamilyName != "Hopper" {
			t.Errorf("a live user's event was redacted: %+v", ev.User)
		}
		if ev.User != nil && ev.User.ID == recent.ID && ev.User.Name.FamilyName != "Turing" {
			t.Errorf("a user deleted 11 days ago was redacted: %+v", ev.User)
		}
	}
	if adaEvents < 3 { // created, updated, deactivated, deleted
		t.Fatalf("only %d events of the purged user are left; the test lost its subject", adaEvents)
	}
	if res, err := f.engine.Purge(f.ctx, "acme"); err != nil || res.Users != 0 || res.RedactedEvents != 0 {
		t.Fatalf("second Purge = %+v, %v (want idempotent)", res, err)
	}
}
