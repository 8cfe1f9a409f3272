package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// testUserLinksGetter tests provision.UserLinksGetter: a user and its
// links in one read, the same as GetUser and LinksOf, locked like GetUser.
func testUserLinksGetter(t *testing.T, s *suite) {
	getter := func(t *testing.T) (provision.Store, provision.UserLinksGetter) {
		t.Helper()
		return storeWith[provision.UserLinksGetter](t, s, "UserLinksGetter")
	}

	t.Run("SameAsGetUserAndLinksOf", func(t *testing.T) {
		st, g := getter(t)
		u := createUser(t, st, fullUser(tenantA, "ada"))
		other := createUser(t, st, user(tenantA, "other"))
		l1 := link(tenantA, provision.ResourceUser, "scim-okta", "okta-1", u.ID)
		l1.Created = baseTime.Add(time.Minute)
		l2 := link(tenantA, provision.ResourceUser, "ldap-corp", "8f2e-uuid", u.ID)
		createLink(t, st, l1)
		createLink(t, st, l2)
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "okta-2", other.ID))
		gr := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "g-1", gr.ID))

		got, links, err := g.GetUserLinks(t.Context(), tenantA, u.ID)
		must(t, err, "GetUserLinks")
		want, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if d := diff(want, got); d != "" {
			t.Errorf("GetUserLinks: the user (-GetUser +GetUserLinks):\n%s", d)
		}
		if d := diff([]provision.Link{l2, l1}, links); d != "" {
			t.Errorf("GetUserLinks: the user's links, ordered by ConnectionID (-want +got):\n%s", d)
		}

		lonely := createUser(t, st, user(tenantA, "lonely"))
		_, links, err = g.GetUserLinks(t.Context(), tenantA, lonely.ID)
		if err != nil || links == nil || len(links) != 0 {
			t.Errorf("GetUserLinks(a user without links): links %#v, %v; want an empty slice and no error", links, err)
		}
	})

	t.Run("TombstoneAndNotFound", func(t *testing.T) {
		st, g := getter(t)
		u := createUser(t, st, user(tenantA, "gone"))
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "okta-gone", u.ID))
		u.Deleted = baseTime.Add(time.Hour)
		u.Active = false
		_, err := st.UpdateUser(t.Context(), u, u.Version)
		must(t, err, "UpdateUser (delete)")
		got, links, err := g.GetUserLinks(t.Context(), tenantA, u.ID)
		must(t, err, "GetUserLinks of a tombstone")
		if !got.IsDeleted() || len(links) != 1 {
			t.Errorf("GetUserLinks of a tombstone: deleted %v, %d links; want the tombstone and its link", got.IsDeleted(), len(links))
		}
		_, _, err = g.GetUserLinks(t.Context(), tenantA, "no-such-user")
		wantErr(t, err, provision.ErrNotFound, "GetUserLinks of an unknown user")
		_, _, err = g.GetUserLinks(t.Context(), tenantB, u.ID)
		wantErr(t, err, provision.ErrNotFound, "GetUserLinks of another tenant's user")
	})

	t.Run("InTransaction", func(t *testing.T) {
		st, _ := getter(t)
		u := createUser(t, st, user(tenantA, "tx"))
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			g, ok := tx.(provision.UserLinksGetter)
			if !ok {
				t.Errorf("the Store inside Atomically (%T) is not a provision.UserLinksGetter: the engine would not use it", tx)
				return errBoom
			}
			if err := tx.CreateLink(ctx, link(tenantA, provision.ResourceUser, "scim-okta", "in-tx", u.ID)); err != nil {
				return err
			}
			_, links, err := g.GetUserLinks(ctx, tenantA, u.ID)
			if err != nil {
				return err
			}
			if len(links) != 1 || links[0].ExternalID != "in-tx" {
				t.Errorf("GetUserLinks in the transaction that created a link: %v; want that link (reads see the transaction's writes)", links)
			}
			return nil
		})
		must(t, err, "Atomically")
	})

	t.Run("LocksInTransaction", func(t *testing.T) {
		// As GetUser: a read-modify-write through GetUserLinks never meets
		// a version conflict, because the read locks the user.
		const perWorker = 5
		st, _ := getter(t)
		in := user(tenantA, "counter")
		in.Attributes = map[string]json.RawMessage{"n": json.RawMessage(`0`)}
		u := createUser(t, st, in)
		createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "counter", u.ID))
		errs := make([]error, workers)
		together(workers, func(w int) {
			for i := range perWorker {
				errs[w] = incrementUser(t.Context(), st, func(ctx context.Context, tx provision.Store) (provision.User, error) {
					cur, _, err := tx.(provision.UserLinksGetter).GetUserLinks(ctx, tenantA, u.ID)
					return cur, err
				})
				if errs[w] != nil {
					errs[w] = fmt.Errorf("increment %d: %w", i, errs[w])
					return
				}
			}
		})
		for w, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v (want no conflict: GetUserLinks in a transaction must lock)", w, err)
			}
		}
		got, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if want := strconv.Itoa(workers * perWorker); string(got.Attributes["n"]) != want {
			t.Errorf("counter = %s, want %s", got.Attributes["n"], want)
		}
	})
}
