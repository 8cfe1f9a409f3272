package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// txFixture is tenant A's data before the big transaction of the
// Atomically subtests, and what that transaction creates.
type txFixture struct {
	u0, u1, dead provision.User
	g0, gDel     provision.Group
	lastSeq      int64

	// Set by the transaction.
	newUser  provision.User
	newGroup provision.Group
}

var (
	txConsumers = []string{"consumer-1", "consumer-2"}
	txKeys      = []string{"key-1", "key-2", "key-3", "key-4"}
)

func seedTx(t *testing.T, st provision.Store) *txFixture {
	t.Helper()
	f := &txFixture{}
	f.u0 = createUser(t, st, user(tenantA, "u0"))
	f.u1 = createUser(t, st, user(tenantA, "u1"))
	f.dead = tombstone(t, st, createUser(t, st, user(tenantA, "dead")), baseTime.Add(time.Hour))
	f.g0 = createGroup(t, st, group(tenantA, "scim-okta", "g0"))
	f.gDel = createGroup(t, st, group(tenantA, "scim-okta", "gDel"))
	addMembers(t, st, tenantA, f.g0.ID, f.u1.ID)
	addMembers(t, st, tenantA, f.gDel.ID, f.u0.ID)
	createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-u1", f.u1.ID))
	createLink(t, st, link(tenantA, provision.ResourceUser, "scim-okta", "ext-dead", f.dead.ID))
	createLink(t, st, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-gdel", f.gDel.ID))
	if el, ok := st.(provision.EventLog); ok {
		evs, err := el.AppendEvents(t.Context(), tenantA, []provision.Event{
			event(tenantA, provision.UserCreated, &f.u0, baseTime, "seed-1"),
			event(tenantA, provision.UserCreated, &f.u1, baseTime, "seed-2"),
		})
		must(t, err, "AppendEvents")
		f.lastSeq = evs[len(evs)-1].Seq
		must(t, el.SetCursor(t.Context(), tenantA, txConsumers[0], evs[0].Seq), "SetCursor")
	}
	if kv, ok := st.(provision.KV); ok {
		must(t, kv.KVSet(t.Context(), tenantA, txKeys[0], []byte("v1"), 0), "KVSet")
		must(t, kv.KVSet(t.Context(), tenantA, txKeys[1], []byte("v2"), 0), "KVSet")
	}
	return f
}

// txBody makes one change of every kind through tx, including through the
// capabilities the store has.
func (f *txFixture) txBody(ctx context.Context, tx provision.Store, store provision.Store) error {
	var err error
	step := func(what string, e error) {
		if err == nil && e != nil {
			err = fmt.Errorf("%s in the transaction: %w", what, e)
		}
	}
	var e error
	f.newUser, e = tx.CreateUser(ctx, user(tenantA, "new"))
	step("CreateUser", e)
	next := f.u0
	next.Title = "changed in tx"
	_, e = tx.UpdateUser(ctx, next, f.u0.Version)
	step("UpdateUser", e)
	d := f.u1
	d.Deleted = baseTime.Add(2 * time.Hour)
	_, e = tx.UpdateUser(ctx, d, f.u1.Version)
	step("UpdateUser(Deleted)", e)
	f.newGroup, e = tx.CreateGroup(ctx, group(tenantA, "scim-okta", "g1"))
	step("CreateGroup", e)
	ng := f.g0
	ng.DisplayName = "g0 renamed"
	_, e = tx.UpdateGroup(ctx, ng, f.g0.Version)
	step("UpdateGroup", e)
	if err != nil {
		return err
	}
	_, e = tx.AddMembers(ctx, tenantA, f.g0.ID, []string{f.u0.ID, f.newUser.ID})
	step("AddMembers", e)
	_, e = tx.RemoveMembers(ctx, tenantA, f.g0.ID, []string{f.u1.ID})
	step("RemoveMembers", e)
	_, e = tx.AddMembers(ctx, tenantA, f.newGroup.ID, []string{f.u0.ID})
	step("AddMembers(new group)", e)
	step("CreateLink", tx.CreateLink(ctx, link(tenantA, provision.ResourceUser, "scim-okta", "ext-u0", f.u0.ID)))
	step("CreateLink(new group)", tx.CreateLink(ctx, link(tenantA, provision.ResourceGroup, "scim-okta", "ext-g1", f.newGroup.ID)))
	step("DeleteLink", tx.DeleteLink(ctx, tenantA, provision.ResourceUser, "scim-okta", "ext-u1"))
	step("DeleteGroup", tx.DeleteGroup(ctx, tenantA, f.gDel.ID, f.gDel.Version))
	step("PurgeUser", tx.PurgeUser(ctx, tenantA, f.dead.ID))
	if _, ok := store.(provision.EventLog); ok {
		el, ok := tx.(provision.EventLog)
		if !ok {
			return errors.New("the store is an EventLog but the Store that Atomically hands to fn is not")
		}
		_, e = el.AppendEvents(ctx, tenantA, []provision.Event{
			event(tenantA, provision.UserCreated, &f.newUser, baseTime, "tx-1"),
			event(tenantA, provision.UserUpdated, &f.u0, baseTime, "tx-2"),
			event(tenantA, provision.GroupCreated, nil, baseTime, "tx-3"),
		})
		step("AppendEvents", e)
		step("SetCursor", el.SetCursor(ctx, tenantA, txConsumers[0], f.lastSeq+3))
		step("SetCursor", el.SetCursor(ctx, tenantA, txConsumers[1], f.lastSeq+1))
	}
	if _, ok := store.(provision.KV); ok {
		kv, ok := tx.(provision.KV)
		if !ok {
			return errors.New("the store is a KV but the Store that Atomically hands to fn is not")
		}
		step("KVSet", kv.KVSet(ctx, tenantA, txKeys[0], []byte("changed"), 0))
		step("KVDelete", kv.KVDelete(ctx, tenantA, txKeys[1]))
		step("KVSet", kv.KVSet(ctx, tenantA, txKeys[2], []byte("new"), time.Hour))
		_, e = kv.KVInsert(ctx, tenantA, txKeys[3], []byte("new"), 0)
		step("KVInsert", e)
	}
	return err
}

// storeState is everything the suite can read of tenant A.
type storeState struct {
	Users      []provision.User
	Tombstones []provision.User
	Groups     []provision.Group
	Members    map[string][]string
	Links      map[string][]provision.Link
	Events     []provision.Event
	LastSeq    int64
	Cursors    map[string]int64
	KV         map[string]string
}

func snapshot(t *testing.T, st provision.Store) storeState {
	t.Helper()
	ctx := t.Context()
	s := storeState{Members: map[string][]string{}, Links: map[string][]provision.Link{}}
	var err error
	s.Users = allUsers(t, st, tenantA)
	s.Tombstones, err = st.DeletedUsers(ctx, tenantA, baseTime.Add(1000*time.Hour), 1000)
	must(t, err, "DeletedUsers")
	s.Groups = allGroups(t, st, tenantA)
	for _, g := range s.Groups {
		s.Members[g.ID] = sorted(allMembers(t, st, tenantA, g.ID))
		ls, err := st.LinksOf(ctx, tenantA, provision.ResourceGroup, g.ID)
		must(t, err, "LinksOf(group)")
		s.Links["group "+g.ID] = ls
	}
	for _, u := range append(slices.Clone(s.Users), s.Tombstones...) {
		ls, err := st.LinksOf(ctx, tenantA, provision.ResourceUser, u.ID)
		must(t, err, "LinksOf(user)")
		s.Links["user "+u.ID] = ls
	}
	if el, ok := st.(provision.EventLog); ok {
		s.Events, err = el.ListEvents(ctx, tenantA, 0, 10000)
		must(t, err, "ListEvents")
		s.LastSeq, err = el.LastSeq(ctx, tenantA)
		must(t, err, "LastSeq")
		s.Cursors = map[string]int64{}
		for _, c := range txConsumers {
			s.Cursors[c], err = el.Cursor(ctx, tenantA, c)
			must(t, err, "Cursor")
		}
	}
	if kv, ok := st.(provision.KV); ok {
		s.KV = map[string]string{}
		for _, k := range txKeys {
			v, err := kv.KVGet(ctx, tenantA, k)
			switch {
			case errors.Is(err, provision.ErrNotFound):
				s.KV[k] = "<absent>"
			case err != nil:
				t.Fatalf("KVGet(%s): %v", k, err)
			default:
				s.KV[k] = string(v)
			}
		}
	}
	return s
}

// checkRolledBack checks that nothing of txBody is left.
func checkRolledBack(t *testing.T, st provision.Store, f *txFixture, before storeState) {
	t.Helper()
	if d := diff(before, snapshot(t, st)); d != "" {
		t.Errorf("a rolled-back transaction changed the store (-before +after):\n%s", d)
	}
	if f.newUser.ID != "" {
		_, err := st.GetUser(t.Context(), tenantA, f.newUser.ID)
		wantErr(t, err, provision.ErrNotFound, "GetUser of a user created in a rolled-back transaction")
	}
	if f.newGroup.ID != "" {
		_, err := st.GetGroup(t.Context(), tenantA, f.newGroup.ID)
		wantErr(t, err, provision.ErrNotFound, "GetGroup of a group created in a rolled-back transaction")
	}
	_, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-u0")
	wantErr(t, err, provision.ErrNotFound, "GetLink of a link created in a rolled-back transaction")
	if _, err := st.UserByUserName(t.Context(), tenantA, "new"); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("UserByUserName of a user created in a rolled-back transaction: %v, want ErrNotFound", err)
	}
}

// checkStoreUsable checks that the store still serves reads and writes,
// within a bound (a panic must not leave it locked).
func checkStoreUsable(t *testing.T, st provision.Store) {
	t.Helper()
	withTimeout(t, 10*time.Second, "using the store after a panicking transaction", func() {
		if _, err := st.CreateUser(t.Context(), user(tenantA, "after-the-panic")); err != nil {
			t.Errorf("CreateUser after a panicking transaction: %v", err)
		}
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			_, err := tx.CreateUser(ctx, user(tenantA, "after-the-panic-in-tx"))
			return err
		})
		if err != nil {
			t.Errorf("Atomically after a panicking transaction: %v", err)
		}
	})
}

func testAtomically(t *testing.T, s *suite) {
	t.Run("Commit", func(t *testing.T) {
		st := s.store(t)
		f := seedTx(t, st)
		ctx := t.Context()
		err := st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			return f.txBody(ctx, tx, st)
		})
		must(t, err, "Atomically")

		if _, err := st.GetUser(ctx, tenantA, f.newUser.ID); err != nil {
			t.Errorf("GetUser of the user created in the transaction: %v", err)
		}
		if u, err := st.GetUser(ctx, tenantA, f.u0.ID); err != nil || u.Title != "changed in tx" || u.Version != 2 {
			t.Errorf("GetUser of the user updated in the transaction: Title %q, Version %d, %v", u.Title, u.Version, err)
		}
		if u, err := st.GetUser(ctx, tenantA, f.u1.ID); err != nil || !u.IsDeleted() {
			t.Errorf("GetUser of the user deleted in the transaction: deleted %v, %v", u.IsDeleted(), err)
		}
		if g, err := st.GetGroup(ctx, tenantA, f.g0.ID); err != nil || g.DisplayName != "g0 renamed" {
			t.Errorf("GetGroup of the group renamed in the transaction: %q, %v", g.DisplayName, err)
		}
		if got := sorted(allMembers(t, st, tenantA, f.g0.ID)); !slices.Equal(got, sorted([]string{f.u0.ID, f.newUser.ID})) {
			t.Errorf("members of g0 = %v, want u0 and the new user", got)
		}
		if got := allMembers(t, st, tenantA, f.newGroup.ID); !slices.Equal(got, []string{f.u0.ID}) {
			t.Errorf("members of the new group = %v, want [u0]", got)
		}
		if _, err := st.GetLink(ctx, tenantA, provision.ResourceUser, "scim-okta", "ext-u0"); err != nil {
			t.Errorf("GetLink of the link created in the transaction: %v", err)
		}
		if _, err := st.GetLink(ctx, tenantA, provision.ResourceGroup, "scim-okta", "ext-g1"); err != nil {
			t.Errorf("GetLink of the group link created in the transaction: %v", err)
		}
		_, err = st.GetLink(ctx, tenantA, provision.ResourceUser, "scim-okta", "ext-u1")
		wantErr(t, err, provision.ErrNotFound, "GetLink of the link deleted in the transaction")
		_, err = st.GetGroup(ctx, tenantA, f.gDel.ID)
		wantErr(t, err, provision.ErrNotFound, "GetGroup of the group deleted in the transaction")
		_, err = st.GetUser(ctx, tenantA, f.dead.ID)
		wantErr(t, err, provision.ErrNotFound, "GetUser of the user purged in the transaction")
		if el, ok := st.(provision.EventLog); ok {
			if last, err := el.LastSeq(ctx, tenantA); err != nil || last != f.lastSeq+3 {
				t.Errorf("LastSeq = %d, %v; want %d", last, err, f.lastSeq+3)
			}
			for i, want := range []int64{f.lastSeq + 3, f.lastSeq + 1} {
				if c, err := el.Cursor(ctx, tenantA, txConsumers[i]); err != nil || c != want {
					t.Errorf("Cursor(%s) = %d, %v; want %d", txConsumers[i], c, err, want)
				}
			}
		}
		if kv, ok := st.(provision.KV); ok {
			for k, want := range map[string]string{txKeys[0]: "changed", txKeys[2]: "new", txKeys[3]: "new"} {
				if v, err := kv.KVGet(ctx, tenantA, k); err != nil || string(v) != want {
					t.Errorf("KVGet(%s) = %q, %v; want %q", k, v, err, want)
				}
			}
			_, err := kv.KVGet(ctx, tenantA, txKeys[1])
			wantErr(t, err, provision.ErrNotFound, "KVGet of a key deleted in the transaction")
		}
	})

	t.Run("RollbackOnError", func(t *testing.T) {
		st := s.store(t)
		f := seedTx(t, st)
		before := snapshot(t, st)
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			if err := f.txBody(ctx, tx, st); err != nil {
				return err
			}
			return fmt.Errorf("wrapped: %w", errBoom)
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Atomically returned %v, want the error fn returned (errors.Is %v)", err, errBoom)
		}
		checkRolledBack(t, st, f, before)
	})

	t.Run("RollbackOnPanic", func(t *testing.T) {
		st := s.store(t)
		f := seedTx(t, st)
		before := snapshot(t, st)
		var bodyErr, err error
		panicked := func() (p any) {
			defer func() { p = recover() }()
			err = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
				if bodyErr = f.txBody(ctx, tx, st); bodyErr != nil {
					return bodyErr
				}
				panic("storetest: panic in fn")
			})
			return nil
		}()
		if bodyErr != nil {
			t.Fatalf("%v", bodyErr)
		}
		if panicked == nil && err == nil {
			t.Errorf("Atomically returned nil after fn panicked: want it to panic again or return an error")
		}
		checkRolledBack(t, st, f, before)
		checkStoreUsable(t, st)
	})

	t.Run("EmailsAcrossUpdates", func(t *testing.T) {
		// Several updates of one user in a transaction, some leaving the
		// e-mails alone, some changing them: the e-mail lookups follow
		// the last one.
		st := s.store(t)
		in := user(tenantA, "mails")
		in.Emails = []provision.Email{{Value: "a@example.com"}, {Value: "b@example.com"}}
		u := createUser(t, st, in)
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			cur, err := tx.GetUser(ctx, tenantA, u.ID)
			if err != nil {
				return err
			}
			steps := [][]string{{"a@example.com", "b@example.com"}, {"A@example.com", "c@example.com"}, {"c@example.com", "a@example.com"}, {"a@example.com", "b@example.com", "d@example.com"}}
			for i, emails := range steps {
				next := cur
				next.Title = fmt.Sprintf("step %d", i)
				next.Emails = nil
				for _, e := range emails {
					next.Emails = append(next.Emails, provision.Email{Value: e})
				}
				if cur, err = tx.UpdateUser(ctx, next, cur.Version); err != nil {
					return err
				}
			}
			return nil
		})
		must(t, err, "Atomically with four updates")
		for addr, want := range map[string]int{"a@example.com": 1, "b@example.com": 1, "c@example.com": 0, "d@example.com": 1} {
			got, err := st.UsersByEmail(t.Context(), tenantA, addr)
			if err != nil || len(got) != want {
				t.Errorf("UsersByEmail(%s) after the updates = %v, %v; want %d", addr, idsOf(got), err, want)
			}
		}
	})

	t.Run("ReadOwnWrites", func(t *testing.T) {
		st := s.store(t)
		f := seedTx(t, st)
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			if err := f.txBody(ctx, tx, st); err != nil {
				return err
			}
			if u, err := tx.GetUser(ctx, tenantA, f.newUser.ID); err != nil || u.UserName != "new" {
				t.Errorf("tx.GetUser of a user created in tx = %q, %v", u.UserName, err)
			}
			if u, err := tx.UserByUserName(ctx, tenantA, "NEW"); err != nil || u.ID != f.newUser.ID {
				t.Errorf("tx.UserByUserName of a user created in tx = %q, %v", u.ID, err)
			}
			if us, err := tx.UsersByEmail(ctx, tenantA, "new@example.com"); err != nil || len(us) != 1 {
				t.Errorf("tx.UsersByEmail of a user created in tx = %v, %v", idsOf(us), err)
			}
			if u, err := tx.GetUser(ctx, tenantA, f.u0.ID); err != nil || u.Version != 2 || u.Title != "changed in tx" {
				t.Errorf("tx.GetUser of a user updated in tx: Version %d, Title %q, %v", u.Version, u.Title, err)
			}
			if _, err := tx.UserByUserName(ctx, tenantA, "u1"); !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("tx.UserByUserName of a user deleted in tx: %v, want ErrNotFound", err)
			}
			if _, total, err := tx.ListUsers(ctx, tenantA, provision.Page{Limit: 100}); err != nil || total != 2 {
				t.Errorf("tx.ListUsers total = %d, %v; want 2 (u0 and the new user)", total, err)
			}
			if gs, err := tx.GroupsByDisplayName(ctx, tenantA, "G1"); err != nil || len(gs) != 1 {
				t.Errorf("tx.GroupsByDisplayName of a group created in tx = %v, %v", idsOf(gs), err)
			}
			if _, err := tx.GetGroup(ctx, tenantA, f.gDel.ID); !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("tx.GetGroup of a group deleted in tx: %v, want ErrNotFound", err)
			}
			if ok, err := tx.IsMember(ctx, tenantA, f.g0.ID, f.newUser.ID); err != nil || !ok {
				t.Errorf("tx.IsMember of a member added in tx = %v, %v", ok, err)
			}
			if ms, total, err := tx.ListMembers(ctx, tenantA, f.g0.ID, provision.Page{Limit: 10}); err != nil || total != 2 || len(ms) != 2 {
				t.Errorf("tx.ListMembers = %v (total %d), %v; want 2", ms, total, err)
			}
			if gs, err := tx.GroupsOfUser(ctx, tenantA, f.u0.ID); err != nil || !slices.Equal(gs, sorted([]string{f.g0.ID, f.newGroup.ID})) {
				t.Errorf("tx.GroupsOfUser = %v, %v", gs, err)
			}
			if l, err := tx.GetLink(ctx, tenantA, provision.ResourceUser, "scim-okta", "ext-u0"); err != nil || l.ResourceID != f.u0.ID {
				t.Errorf("tx.GetLink of a link created in tx = %+v, %v", l, err)
			}
			if _, err := tx.GetLink(ctx, tenantA, provision.ResourceUser, "scim-okta", "ext-u1"); !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("tx.GetLink of a link deleted in tx: %v, want ErrNotFound", err)
			}
			if el, ok := tx.(provision.EventLog); ok {
				if last, err := el.LastSeq(ctx, tenantA); err != nil || last != f.lastSeq+3 {
					t.Errorf("tx LastSeq = %d, %v; want %d", last, err, f.lastSeq+3)
				}
				if evs, err := el.ListEvents(ctx, tenantA, f.lastSeq, 10); err != nil || len(evs) != 3 {
					t.Errorf("tx ListEvents after the seed = %d events, %v; want 3", len(evs), err)
				}
				if c, err := el.Cursor(ctx, tenantA, txConsumers[1]); err != nil || c != f.lastSeq+1 {
					t.Errorf("tx Cursor = %d, %v; want %d", c, err, f.lastSeq+1)
				}
			}
			if kv, ok := tx.(provision.KV); ok {
				if v, err := kv.KVGet(ctx, tenantA, txKeys[0]); err != nil || string(v) != "changed" {
					t.Errorf("tx KVGet of a key set in tx = %q, %v", v, err)
				}
				if _, err := kv.KVGet(ctx, tenantA, txKeys[1]); !errors.Is(err, provision.ErrNotFound) {
					t.Errorf("tx KVGet of a key deleted in tx: %v, want ErrNotFound", err)
				}
				if ok, err := kv.KVInsert(ctx, tenantA, txKeys[3], []byte("again"), 0); err != nil || ok {
					t.Errorf("tx KVInsert of a key inserted in tx = %v, %v; want false", ok, err)
				}
			}
			return nil
		})
		must(t, err, "Atomically")
	})

	t.Run("Nested", func(t *testing.T) {
		cases := []struct {
			name              string
			inner, outer      func(innerErr error) error
			wantCommit        bool
			wantErrIs         error
			innerReturnsError bool
		}{
			{name: "Commit", wantCommit: true},
			{name: "OuterFails", outer: func(error) error { return errBoom }, wantErrIs: errBoom},
			{name: "InnerFails", innerReturnsError: true, outer: func(innerErr error) error { return innerErr }, wantErrIs: errBoom},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				st := s.store(t)
				var outerUser, innerUser provision.User
				err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
					var err error
					outerUser, err = tx.CreateUser(ctx, user(tenantA, "outer"))
					if err != nil {
						return err
					}
					innerErr := tx.Atomically(ctx, func(ctx context.Context, tx2 provision.Store) error {
						var err error
						innerUser, err = tx2.CreateUser(ctx, user(tenantA, "inner"))
						if err != nil {
							return err
						}
						if u, err := tx2.GetUser(ctx, tenantA, outerUser.ID); err != nil || u.UserName != "outer" {
							t.Errorf("the nested transaction does not see the outer one's user: %v", err)
						}
						if c.innerReturnsError {
							return errBoom
						}
						return nil
					})
					if !c.innerReturnsError && innerErr != nil {
						return innerErr
					}
					if c.innerReturnsError && !errors.Is(innerErr, errBoom) {
						t.Errorf("nested Atomically returned %v, want the error its fn returned", innerErr)
					}
					if u, err := tx.GetUser(ctx, tenantA, innerUser.ID); !c.innerReturnsError && (err != nil || u.UserName != "inner") {
						t.Errorf("the outer transaction does not see the nested one's user: %v", err)
					}
					if c.outer != nil {
						return c.outer(innerErr)
					}
					return nil
				})
				if c.wantErrIs != nil && !errors.Is(err, c.wantErrIs) {
					t.Errorf("Atomically = %v, want %v", err, c.wantErrIs)
				}
				if c.wantErrIs == nil && err != nil {
					t.Fatalf("Atomically: %v", err)
				}
				_, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10})
				must(t, err, "ListUsers")
				want := 0
				if c.wantCommit {
					want = 2
				}
				if total != want {
					t.Errorf("after the transaction, %d users; want %d (outer and nested commit or roll back together)", total, want)
				}
			})
		}
	})

	t.Run("ErrorsMatch", func(t *testing.T) {
		// The engine retries version conflicts by errors.Is on what
		// Atomically returns.
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			_, err := tx.UpdateUser(ctx, u, u.Version+1)
			return err
		})
		wantErr(t, err, provision.ErrVersionConflict, "Atomically returning fn's ErrVersionConflict")
		err = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			_, err := tx.CreateUser(ctx, user(tenantA, "ADA"))
			return err
		})
		wantErr(t, err, provision.ErrAlreadyExists, "Atomically returning fn's ErrAlreadyExists")
		err = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			_, err := tx.GetUser(ctx, tenantA, "no-such-user")
			return err
		})
		wantErr(t, err, provision.ErrNotFound, "Atomically returning fn's ErrNotFound")
	})

	t.Run("ContinueAfterError", func(t *testing.T) {
		// The engine handles a sentinel error inside a transaction (a
		// retried create finds the existing user) and goes on with it.
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		g := createGroup(t, st, group(tenantA, "scim-okta", "Engineering"))
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			_, err := tx.CreateUser(ctx, user(tenantA, "Ada"))
			wantErr(t, err, provision.ErrAlreadyExists, "tx.CreateUser of a taken userName")
			_, err = tx.UpdateUser(ctx, u, 7)
			wantErr(t, err, provision.ErrVersionConflict, "tx.UpdateUser with a wrong version")
			_, err = tx.GetUser(ctx, tenantA, "no-such-user")
			wantErr(t, err, provision.ErrNotFound, "tx.GetUser(unknown)")
			_, err = tx.AddMembers(ctx, tenantA, g.ID, []string{u.ID, "no-such-user"})
			wantErr(t, err, provision.ErrNotFound, "tx.AddMembers with an unknown user")
			err = tx.CreateLink(ctx, link(tenantA, provision.ResourceUser, "scim-okta", "x", "no-such-user"))
			wantErr(t, err, provision.ErrNotFound, "tx.CreateLink to an unknown user")
			if _, err := tx.CreateUser(ctx, user(tenantA, "grace")); err != nil {
				return fmt.Errorf("tx.CreateUser after handled errors in the same transaction: %w", err)
			}
			if _, err := tx.AddMembers(ctx, tenantA, g.ID, []string{u.ID}); err != nil {
				return fmt.Errorf("tx.AddMembers after handled errors in the same transaction: %w", err)
			}
			return nil
		})
		must(t, err, "Atomically")
		if got := allUsers(t, st, tenantA); len(got) != 2 {
			t.Errorf("after the transaction, users %v; want ada and grace", idsOf(got))
		}
		if got := allMembers(t, st, tenantA, g.ID); !slices.Equal(got, []string{u.ID}) {
			t.Errorf("members = %v, want [%s]", got, u.ID)
		}
	})

	t.Run("Uncommitted", func(t *testing.T) {
		// Another caller sees a transaction's writes only once it commits;
		// it may also wait for the commit.
		st := s.store(t)
		createUser(t, st, user(tenantA, "before"))
		type result struct {
			total int
			err   error
		}
		seen := make(chan result, 1)
		err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
			if _, err := tx.CreateUser(ctx, user(tenantA, "uncommitted")); err != nil {
				return err
			}
			go func() {
				_, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10})
				seen <- result{total, err}
			}()
			select {
			case r := <-seen:
				if r.err == nil && r.total != 1 {
					t.Errorf("ListUsers outside the transaction saw %d users before the commit, want 1", r.total)
				}
				seen <- r
			case <-time.After(200 * time.Millisecond):
				// Blocked until the commit: fine.
			}
			return nil
		})
		must(t, err, "Atomically")
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatal("ListUsers outside the transaction did not return after the commit")
		}
		if _, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 10}); err != nil || total != 2 {
			t.Errorf("ListUsers after the commit: total %d, %v; want 2", total, err)
		}
	})
}
