package storetest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func testUsers(t *testing.T, s *suite) {
	t.Run("CreateGet", func(t *testing.T) {
		st := s.store(t)
		in := fullUser(tenantA, "ada")
		got, err := st.CreateUser(t.Context(), in)
		must(t, err, "CreateUser")
		if got.ID == "" {
			t.Fatal("CreateUser did not assign an ID")
		}
		if got.Version != 1 {
			t.Errorf("CreateUser: Version = %d, want 1", got.Version)
		}
		want := in
		want.ID, want.Version = got.ID, 1
		if d := diff(want, got); d != "" {
			t.Errorf("CreateUser returned (-want +got):\n%s", d)
		}
		read, err := st.GetUser(t.Context(), tenantA, got.ID)
		must(t, err, "GetUser")
		if d := diff(want, read); d != "" {
			t.Errorf("GetUser after CreateUser (-want +got):\n%s", d)
		}
		if read.IsDeleted() {
			t.Errorf("GetUser: a live user has Deleted = %v", read.Deleted)
		}
	})

	t.Run("AssignedIDs", func(t *testing.T) {
		st := s.store(t)
		seen := map[string]bool{}
		for _, u := range createUsers(t, st, tenantA, "id", 20) {
			if u.ID == "" || seen[u.ID] {
				t.Fatalf("CreateUser assigned ID %q, empty or already assigned", u.ID)
			}
			seen[u.ID] = true
		}
	})

	t.Run("ExplicitID", func(t *testing.T) {
		st := s.store(t)
		in := user(tenantA, "explicit")
		in.ID = "user-explicit-1"
		got := createUser(t, st, in)
		if got.ID != in.ID {
			t.Fatalf("CreateUser with ID %q: got ID %q, want it kept", in.ID, got.ID)
		}
		read, err := st.GetUser(t.Context(), tenantA, in.ID)
		must(t, err, "GetUser(explicit ID)")
		if read.UserName != "explicit" {
			t.Errorf("GetUser(explicit ID).UserName = %q", read.UserName)
		}
		again := user(tenantA, "other-name")
		again.ID = in.ID
		_, err = st.CreateUser(t.Context(), again)
		wantErr(t, err, provision.ErrAlreadyExists, "CreateUser with an ID already used in the tenant")
		read, err = st.GetUser(t.Context(), tenantA, in.ID)
		must(t, err, "GetUser")
		if read.UserName != "explicit" {
			t.Errorf("a refused CreateUser changed the existing user: UserName = %q", read.UserName)
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		st := s.store(t)
		createUser(t, st, user(tenantA, "someone"))
		_, err := st.GetUser(t.Context(), tenantA, "no-such-id")
		wantErr(t, err, provision.ErrNotFound, "GetUser(unknown id)")
		_, err = st.UserByUserName(t.Context(), tenantA, "nobody")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName(unknown)")
	})

	t.Run("UserByUserName", func(t *testing.T) {
		st := s.store(t)
		ada := createUser(t, st, user(tenantA, "Ada.Lovelace"))
		createUser(t, st, user(tenantA, "charles"))
		for _, name := range []string{"Ada.Lovelace", "ada.lovelace", "ADA.LOVELACE", "aDa.LoVeLaCe"} {
			got, err := st.UserByUserName(t.Context(), tenantA, name)
			if err != nil {
				t.Errorf("UserByUserName(%q): %v", name, err)
				continue
			}
			if d := diff(ada, got); d != "" {
				t.Errorf("UserByUserName(%q) (-want +got):\n%s", name, d)
			}
		}
		_, err := st.UserByUserName(t.Context(), tenantA, "Ada")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName(a prefix of a userName)")
	})

	t.Run("UsersByEmail", func(t *testing.T) {
		st := s.store(t)
		a := user(tenantA, "a")
		a.Emails = []provision.Email{{Value: "Shared@Example.com", Primary: true}}
		b := user(tenantA, "b")
		b.Emails = []provision.Email{
			{Value: "b@example.com", Primary: true},
			{Value: "shared@example.COM", Type: "other"},
		}
		c := user(tenantA, "c")
		ua, ub := createUser(t, st, a), createUser(t, st, b)
		createUser(t, st, c)
		want := []provision.User{ua, ub}
		slices.SortFunc(want, func(x, y provision.User) int { return compareStrings(x.ID, y.ID) })
		for _, q := range []string{"shared@example.com", "SHARED@EXAMPLE.COM"} {
			got, err := st.UsersByEmail(t.Context(), tenantA, q)
			must(t, err, "UsersByEmail(%q)", q)
			if d := diff(want, got); d != "" {
				t.Errorf("UsersByEmail(%q) must return both users, primary or not, in ID order (-want +got):\n%s", q, d)
			}
		}
		got, err := st.UsersByEmail(t.Context(), tenantA, "b@example.com")
		must(t, err, "UsersByEmail")
		if d := diff([]provision.User{ub}, got); d != "" {
			t.Errorf("UsersByEmail(b@example.com) (-want +got):\n%s", d)
		}
		got, err = st.UsersByEmail(t.Context(), tenantA, "nobody@example.com")
		if err != nil || len(got) != 0 {
			t.Errorf("UsersByEmail(unknown) = %v, %v; want no users and no error", idsOf(got), err)
		}
	})

	t.Run("Update", func(t *testing.T) {
		st := s.store(t)
		orig := createUser(t, st, fullUser(tenantA, "ada"))
		other := createUser(t, st, user(tenantA, "other"))

		next := fullUser(tenantA, "Ada.King")
		next.ID = orig.ID
		next.Title = "Countess"
		next.Emails = []provision.Email{{Value: "countess@example.com", Primary: true}}
		next.PhoneNumbers = nil
		next.Roles = []provision.Role{{Value: "reader", Source: "direct"}}
		next.Attributes = map[string]json.RawMessage{"plain": json.RawMessage(`"changed"`)}
		next.Active = false
		next.Modified = baseTime.Add(2 * time.Hour)
		got, err := st.UpdateUser(t.Context(), next, 1)
		must(t, err, "UpdateUser")
		want := next
		want.Version = 2
		if d := diff(want, got); d != "" {
			t.Errorf("UpdateUser returned (-want +got):\n%s", d)
		}
		read, err := st.GetUser(t.Context(), tenantA, orig.ID)
		must(t, err, "GetUser")
		if d := diff(want, read); d != "" {
			t.Errorf("UpdateUser replaces the whole user: GetUser after it (-want +got):\n%s", d)
		}

		_, err = st.UserByUserName(t.Context(), tenantA, "ada")
		wantErr(t, err, provision.ErrNotFound, "UserByUserName(old userName after a rename)")
		if got, err := st.UserByUserName(t.Context(), tenantA, "ada.king"); err != nil || got.ID != orig.ID {
			t.Errorf("UserByUserName(new userName) = %q, %v; want %q", got.ID, err, orig.ID)
		}
		if got, err := st.UsersByEmail(t.Context(), tenantA, "ada@example.com"); err != nil || len(got) != 0 {
			t.Errorf("UsersByEmail(removed address) = %v, %v; want none", idsOf(got), err)
		}
		if got, err := st.UsersByEmail(t.Context(), tenantA, "countess@example.com"); err != nil || len(got) != 1 || got[0].ID != orig.ID {
			t.Errorf("UsersByEmail(new address) = %v, %v; want [%s]", idsOf(got), err, orig.ID)
		}

		next.Title = "Mathematician"
		next.Emails = append(next.Emails, provision.Email{Value: "Lovelace@Example.com"}) // one kept, one added
		got, err = st.UpdateUser(t.Context(), next, 2)
		must(t, err, "second UpdateUser")
		if got.Version != 3 {
			t.Errorf("second UpdateUser: Version = %d, want 3", got.Version)
		}
		for _, addr := range []string{"countess@example.com", "lovelace@example.com"} {
			if got, err := st.UsersByEmail(t.Context(), tenantA, addr); err != nil || len(got) != 1 || got[0].ID != orig.ID {
				t.Errorf("UsersByEmail(%s) after an update keeping one address and adding one = %v, %v; want [%s]", addr, idsOf(got), err, orig.ID)
			}
		}
		read, err = st.GetUser(t.Context(), tenantA, other.ID)
		must(t, err, "GetUser(other)")
		if d := diff(other, read); d != "" {
			t.Errorf("UpdateUser changed another user (-want +got):\n%s", d)
		}
	})

	t.Run("UpdateUnknown", func(t *testing.T) {
		st := s.store(t)
		u := user(tenantA, "ghost")
		u.ID = "no-such-id"
		_, err := st.UpdateUser(t.Context(), u, 1)
		wantErr(t, err, provision.ErrNotFound, "UpdateUser(unknown id)")
		if got, _, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10}); err != nil || len(got) != 0 {
			t.Errorf("UpdateUser(unknown id) created a user: ListUsers = %v, %v", idsOf(got), err)
		}
	})

	t.Run("UniqueUserName", func(t *testing.T) {
		st := s.store(t)
		alice := createUser(t, st, user(tenantA, "alice"))
		bob := createUser(t, st, user(tenantA, "bob"))
		for _, name := range []string{"alice", "ALICE", "Alice"} {
			_, err := st.CreateUser(t.Context(), user(tenantA, name))
			wantErr(t, err, provision.ErrAlreadyExists, "CreateUser(%q) with %q live", name, "alice")
		}
		renamed := bob
		renamed.UserName = "aLiCe"
		_, err := st.UpdateUser(t.Context(), renamed, bob.Version)
		wantErr(t, err, provision.ErrAlreadyExists, "UpdateUser renaming bob to aLiCe")
		read, err := st.GetUser(t.Context(), tenantA, bob.ID)
		must(t, err, "GetUser(bob)")
		if d := diff(bob, read); d != "" {
			t.Errorf("a refused rename changed the user (-want +got):\n%s", d)
		}
		self := alice
		self.UserName = "ALICE"
		if _, err := st.UpdateUser(t.Context(), self, alice.Version); err != nil {
			t.Errorf("UpdateUser changing only the case of its own userName: %v", err)
		}
		// The same name in another tenant is another user.
		if _, err := st.CreateUser(t.Context(), user(tenantB, "alice")); err != nil {
			t.Errorf("CreateUser(alice) in %s with alice live in %s: %v", tenantB, tenantA, err)
		}
		if _, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10}); err != nil || total != 2 {
			t.Errorf("ListUsers total = %d, %v; want 2", total, err)
		}
	})

	t.Run("Attributes", func(t *testing.T) {
		st := s.store(t)
		in := user(tenantA, "attrs")
		in.Attributes = map[string]json.RawMessage{
			"object": json.RawMessage(`{"b": [1, 2.5, -3e2, "x"], "a": {"deep": {"deeper": [true, false, null]}}}`),
			"array":  json.RawMessage(`[]`),
			"empty":  json.RawMessage(`{}`),
			"string": json.RawMessage(`"tab\there, quote \", unicode \u00e9 é 😀"`),
			"number": json.RawMessage(`42`),
			"big":    json.RawMessage(`9007199254740993`),
			"bool":   json.RawMessage(`false`),
			"null":   json.RawMessage(`null`),
			"urn:ietf:params:scim:schemas:extension:acme:2.0:User:badge": json.RawMessage(`"gold"`),
		}
		got := createUser(t, st, in)
		read, err := st.GetUser(t.Context(), tenantA, got.ID)
		must(t, err, "GetUser")
		if d := diff(in.Attributes, read.Attributes); d != "" {
			t.Errorf("Attributes after a round trip, compared as JSON values (-want +got):\n%s", d)
		}
		for k, v := range read.Attributes {
			if !json.Valid(v) {
				t.Errorf("Attributes[%q] = %q is not valid JSON", k, v)
			}
		}
		upd := read
		upd.Attributes = nil
		_, err = st.UpdateUser(t.Context(), upd, read.Version)
		must(t, err, "UpdateUser clearing Attributes")
		read, err = st.GetUser(t.Context(), tenantA, got.ID)
		must(t, err, "GetUser")
		if len(read.Attributes) != 0 {
			t.Errorf("Attributes after an update to nil = %v, want none", read.Attributes)
		}
	})

	t.Run("DeepCopy", func(t *testing.T) {
		st := s.store(t)
		in := fullUser(tenantA, "ada")
		created := createUser(t, st, in)
		want := created
		want.Emails = slices.Clone(created.Emails)
		want.PhoneNumbers = slices.Clone(created.PhoneNumbers)
		want.Addresses = slices.Clone(created.Addresses)
		want.Roles = slices.Clone(created.Roles)
		want.Attributes = map[string]json.RawMessage{}
		for k, v := range created.Attributes {
			want.Attributes[k] = slices.Clone(v)
		}
		scribble := func(u *provision.User) {
			if len(u.Emails) > 0 {
				u.Emails[0].Value = "scribbled@example.com"
			}
			if len(u.PhoneNumbers) > 0 {
				u.PhoneNumbers[0].Value = "0"
			}
			if len(u.Addresses) > 0 {
				u.Addresses[0].Locality = "Nowhere"
			}
			if len(u.Roles) > 0 {
				u.Roles[0].Value = "root"
			}
			for k, v := range u.Attributes {
				for i := range v {
					v[i] = ' '
				}
				u.Attributes[k] = v
			}
			if u.Attributes != nil {
				u.Attributes["added"] = json.RawMessage(`1`)
			}
		}
		check := func(after string) {
			t.Helper()
			read, err := st.GetUser(t.Context(), tenantA, created.ID)
			must(t, err, "GetUser")
			if d := diff(want, read); d != "" {
				t.Errorf("changing %s changed the stored user (-want +got):\n%s", after, d)
			}
		}
		scribble(&in)
		check("the User passed to CreateUser")
		scribble(&created)
		check("the User CreateUser returned")
		got, err := st.GetUser(t.Context(), tenantA, want.ID)
		must(t, err, "GetUser")
		scribble(&got)
		check("the User GetUser returned")
		got, err = st.UserByUserName(t.Context(), tenantA, "ada")
		must(t, err, "UserByUserName")
		scribble(&got)
		check("the User UserByUserName returned")
		list, _, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10})
		must(t, err, "ListUsers")
		for i := range list {
			scribble(&list[i])
		}
		check("the Users ListUsers returned")
		list, err = st.UsersByEmail(t.Context(), tenantA, "ada@example.com")
		must(t, err, "UsersByEmail")
		for i := range list {
			scribble(&list[i])
		}
		check("the Users UsersByEmail returned")

		upd := want
		upd.Emails = slices.Clone(want.Emails)
		upd.Attributes = map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}
		updated, err := st.UpdateUser(t.Context(), upd, want.Version)
		must(t, err, "UpdateUser")
		want = updated
		want.Emails = slices.Clone(upd.Emails)
		want.Attributes = map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}
		want.Roles = slices.Clone(upd.Roles)
		want.PhoneNumbers = slices.Clone(upd.PhoneNumbers)
		want.Addresses = slices.Clone(upd.Addresses)
		scribble(&upd)
		check("the User passed to UpdateUser")
		scribble(&updated)
		check("the User UpdateUser returned")
	})
}

// compareStrings orders IDs as the contract's "ID order" does: by bytes.
func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
