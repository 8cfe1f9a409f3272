package sqlstore

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
)

// TestEngineCreateUser drives the engine's create (SCIM POST) through the
// paths the store shapes: a new user inserted with its e-mails and link,
// a retried create, a taken userName (its own user, and another
// connection's), and one userName created by many clients at once. On
// PostgreSQL the last is a real race on the unique index.
func TestEngineCreateUser(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(t testing.TB) *Store) {
		st := newStore(t)
		tenant := provision.Tenant{ID: "acme", Connections: []provision.Connection{
			{ID: "okta", Kind: provision.KindSCIM}, {ID: "entra", Kind: provision.KindSCIM},
		}}
		e, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{tenant}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		okta := provision.Origin{TenantID: "acme", ConnectionID: "okta"}
		entra := provision.Origin{TenantID: "acme", ConnectionID: "entra"}
		ada := provision.User{UserName: "ada@example.com", ExternalID: "00u1", Active: true,
			Emails: []provision.Email{{Value: "ada@example.com", Type: "work"}, {Value: "Ada.L@Example.com"}}}

		u, err := e.CreateUser(ctx, okta, ada)
		if err != nil {
			t.Fatal(err)
		}
		for _, email := range []string{"ADA@example.com", "ada.l@example.com"} {
			got, err := st.UsersByEmail(ctx, "acme", email)
			if err != nil || len(got) != 1 || got[0].ID != u.ID {
				t.Errorf("UsersByEmail(%q) = %v, %v; want the new user (its e-mail rows are written with it)", email, got, err)
			}
		}
		if l, err := st.GetLink(ctx, "acme", provision.ResourceUser, "okta", "00u1"); err != nil || l.ResourceID != u.ID {
			t.Errorf("link of 00u1 = %+v, %v; want the new user", l, err)
		}

		// The same create again (a retry): a conflict naming the user.
		var ce *provision.ConflictError
		_, err = e.CreateUser(ctx, okta, ada)
		if !errors.As(err, &ce) || ce.ExistingID != u.ID {
			t.Errorf("retried create: %v; want a ConflictError naming %s", err, u.ID)
		}
		// The userName taken by another user of the same connection.
		other := ada
		other.ExternalID, other.Emails = "00u2", nil
		_, err = e.CreateUser(ctx, okta, other)
		if !errors.As(err, &ce) || ce.ExistingID != u.ID || !errors.Is(err, provision.ErrAlreadyExists) {
			t.Errorf("create of a taken userName: %v; want a ConflictError naming %s", err, u.ID)
		}
		// Another connection's create of the name is refused (no Adopt
		// policy) with a conflict naming the owner, and changes nothing.
		_, err = e.CreateUser(ctx, entra, provision.User{UserName: "ADA@example.com", ExternalID: "e-1", Active: true})
		if !errors.As(err, &ce) || ce.ExistingID != u.ID || ce.Owner != "okta" {
			t.Errorf("another connection's create of a taken userName: %v; want a ConflictError naming %s of okta", err, u.ID)
		}
		if _, err := st.GetLink(ctx, "acme", provision.ResourceUser, "entra", "e-1"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("the refused create left a link: %v", err)
		}
		users, total, err := st.ListUsers(ctx, "acme", provision.Page{Limit: 10})
		if err != nil || total != 1 {
			t.Errorf("users after the refused creates: %d (%v), %v; want only ada", total, users, err)
		}

		// Many clients create one new userName at once: one user, one
		// created event, and every other client a conflict naming it.
		const clients = 8
		ids := make([]string, clients)
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := e.CreateUser(ctx, okta, provision.User{UserName: "race@example.com", ExternalID: "00u-race", Active: true})
				ids[i], errs[i] = u.ID, err
				if ce := (*provision.ConflictError)(nil); errors.As(err, &ce) {
					ids[i] = ce.ExistingID
				}
			}()
		}
		wg.Wait()
		created := 0
		for i := range clients {
			switch {
			case errs[i] == nil:
				created++
			case !errors.Is(errs[i], provision.ErrAlreadyExists):
				t.Errorf("client %d: %v; want success or a conflict", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("client %d saw user %q, client 0 %q: want one user", i, ids[i], ids[0])
			}
		}
		if created != 1 {
			t.Errorf("%d clients created the user, want 1", created)
		}
		evs, err := st.ListEvents(ctx, "acme", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.Kind == provision.UserCreated && ev.User != nil && ev.User.UserName == "race@example.com" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d user.created events for the raced userName, want 1", n)
		}
	})
}
