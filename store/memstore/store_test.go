package memstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

var ctx = context.Background()

// checkInvariants verifies that every index agrees with the records.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.st.undo) != 0 {
		t.Errorf("journal not empty: %d entries", len(s.st.undo))
	}
	for _, tn := range s.st.tenants {
		live := 0
		for id, r := range tn.users {
			if r.u.ID != id || r.u.TenantID != tn.id {
				t.Errorf("user %q stored as %q/%q", id, r.u.TenantID, r.u.ID)
			}
			if r.u.IsDeleted() {
				if _, ok := tn.tombs[r]; !ok {
					t.Errorf("tombstone %q missing from tombs", id)
				}
				continue
			}
			live++
			if tn.byUserName[fold(r.u.UserName)] != r {
				t.Errorf("user %q not indexed by userName", id)
			}
			if tn.userOrder.items[r.pos] != r {
				t.Errorf("user %q at wrong position %d", id, r.pos)
			}
			for _, e := range r.u.Emails {
				if !slices.Contains(tn.byEmail[fold(e.Value)], r) {
					t.Errorf("user %q not indexed by e-mail %q", id, e.Value)
				}
			}
			for _, g := range r.groups {
				if _, ok := g.members[r]; !ok || tn.groups[g.g.ID] != g {
					t.Errorf("user %q lists group %q that does not list it", id, g.g.ID)
				}
			}
		}
		if live != tn.userOrder.live || len(tn.byUserName) != live {
			t.Errorf("live users: %d, order says %d, userName index %d", live, tn.userOrder.live, len(tn.byUserName))
		}
		checkOrder(t, &tn.userOrder)
		checkOrder(t, &tn.groupOrder)
		for id, g := range tn.groups {
			if tn.groupOrder.items[g.pos] != g {
				t.Errorf("group %q at wrong position", id)
			}
			checkOrder(t, &g.order)
			if len(g.members) != g.order.live {
				t.Errorf("group %q: %d members, order says %d", id, len(g.members), g.order.live)
			}
			for r, i := range g.members {
				if g.order.items[i] != r || !slices.Contains(r.groups, g) || tn.users[r.u.ID] != r {
					t.Errorf("group %q: member %q inconsistent", id, r.u.ID)
				}
			}
		}
		for k, l := range tn.links {
			if !slices.Contains(tn.linksOf[resKey{l.Kind, l.ResourceID}], l) || k != (linkKey{l.Kind, l.ConnectionID, l.ExternalID}) {
				t.Errorf("link %+v inconsistent", l)
			}
		}
		for i := 1; i < len(tn.events); i++ {
			if tn.events[i].Seq <= tn.events[i-1].Seq {
				t.Errorf("events out of order")
			}
		}
	}
}

func checkOrder[T comparable](t *testing.T, l *orderList[T]) {
	t.Helper()
	var zero T
	n := 0
	for i, x := range l.items {
		if x != zero {
			if got := l.find(n); got != i {
				t.Errorf("find(%d) = %d, want %d", n, got, i)
			}
			n++
		}
	}
	if n != l.live || len(l.fen) != len(l.items) {
		t.Errorf("order list: %d present, live %d, fen %d items %d", n, l.live, len(l.fen), len(l.items))
	}
}

func TestOrderList(t *testing.T) {
	var l orderList[*int]
	var model []*int
	rng := rand.New(rand.NewPCG(1, 2))
	pos := map[*int]int{}
	for step := range 20000 {
		switch {
		case len(model) == 0 || rng.IntN(3) > 0:
			x := new(int)
			*x = step
			pos[x] = l.push(x)
			model = append(model, x)
		default:
			j := rng.IntN(len(model))
			x := model[j]
			l.remove(pos[x])
			delete(pos, x)
			model = slices.Delete(model, j, j+1)
		}
		if step%97 == 0 {
			l.compact(func(x *int, i int) { pos[x] = i })
		}
		if step%501 == 0 {
			checkOrder(t, &l)
			off := rng.IntN(len(model) + 2)
			var got []*int
			l.page(provision.Page{Offset: off, Limit: 7}, func(x *int) { got = append(got, x) })
			want := model[min(off, len(model)):min(off+7, len(model))]
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: page at %d differs", step, off)
			}
		}
	}
}

func user(tenant, name string, emails ...string) provision.User {
	u := provision.User{TenantID: tenant, UserName: name, Active: true, Owner: "scim"}
	for _, e := range emails {
		u.Emails = append(u.Emails, provision.Email{Value: e})
	}
	return u
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// dump renders everything the tenant holds, through the API.
func dump(t *testing.T, s provision.Store, tenant string) string {
	t.Helper()
	var b strings.Builder
	us, n, err := s.ListUsers(ctx, tenant, provision.Page{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "users %d\n", n)
	tombs, _ := s.DeletedUsers(ctx, tenant, time.Now().Add(time.Hour), 1<<30)
	for _, u := range append(us, tombs...) {
		gs, _ := s.GroupsOfUser(ctx, tenant, u.ID)
		ls, _ := s.LinksOf(ctx, tenant, provision.ResourceUser, u.ID)
		fmt.Fprintf(&b, "%+v groups=%v links=%+v\n", u, gs, ls)
	}
	gs, n, _ := s.ListGroups(ctx, tenant, provision.Page{Limit: 1 << 30})
	fmt.Fprintf(&b, "groups %d\n", n)
	for _, g := range gs {
		ms, _, _ := s.ListMembers(ctx, tenant, g.ID, provision.Page{Limit: 1 << 30})
		ls, _ := s.LinksOf(ctx, tenant, provision.ResourceGroup, g.ID)
		fmt.Fprintf(&b, "%+v members=%v links=%+v\n", g, ms, ls)
	}
	el := s.(provision.EventLog)
	evs, _ := el.ListEvents(ctx, tenant, 0, 1<<30)
	last, _ := el.LastSeq(ctx, tenant)
	cur, _ := el.Cursor(ctx, tenant, "c")
	fmt.Fprintf(&b, "events last=%d cursor=%d\n", last, cur)
	for _, ev := range evs {
		fmt.Fprintf(&b, "%d %s %+v %+v\n", ev.Seq, ev.Kind, ev.User, ev.PreviousUser)
	}
	v, err := s.(provision.KV).KVGet(ctx, tenant, "k")
	fmt.Fprintf(&b, "kv %q %v\n", v, err)
	return b.String()
}

// seed makes a tenant with some of everything.
func seed(t *testing.T, s *Store, tenant string) (users []provision.User, groups []provision.Group) {
	t.Helper()
	for i := range 40 {
		users = append(users, must[provision.User](t)(s.CreateUser(ctx, user(tenant, fmt.Sprintf("User%d", i), fmt.Sprintf("u%d@x.test", i), "shared@x.test"))))
	}
	for i := range 3 {
		g := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: tenant, DisplayName: fmt.Sprintf("G%d", i), Owner: "scim"}))
		groups = append(groups, g)
		var ids []string
		for _, u := range users[i*5 : i*5+20] {
			ids = append(ids, u.ID)
		}
		must[[]string](t)(s.AddMembers(ctx, tenant, g.ID, ids))
		if err := s.CreateLink(ctx, provision.Link{TenantID: tenant, Kind: provision.ResourceGroup, ConnectionID: "scim", ExternalID: "g" + g.ID, ResourceID: g.ID}); err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range users[:10] {
		if err := s.CreateLink(ctx, provision.Link{TenantID: tenant, Kind: provision.ResourceUser, ConnectionID: "scim", ExternalID: fmt.Sprint("ext", i), ResourceID: u.ID}); err != nil {
			t.Fatal(err)
		}
	}
	u := users[3]
	u.Deleted = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	users[3] = must[provision.User](t)(s.UpdateUser(ctx, u, u.Version))
	must[[]provision.Event](t)(s.AppendEvents(ctx, tenant, []provision.Event{{Kind: provision.UserCreated, User: &users[0], Time: time.Unix(1, 0)}, {Kind: provision.UserUpdated, User: &users[1], PreviousUser: &users[0]}}))
	if err := s.SetCursor(ctx, tenant, "c", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.KVSet(ctx, tenant, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	return users, groups
}

// mutateAll makes every kind of write through tx.
func mutateAll(t *testing.T, tx provision.Store, tenant string, users []provision.User, groups []provision.Group) {
	t.Helper()
	for i := range 50 {
		must[provision.User](t)(tx.CreateUser(ctx, user(tenant, fmt.Sprint("new", i), "shared@x.test")))
	}
	u := users[5]
	u.UserName = "renamed"
	u.Emails = nil
	must[provision.User](t)(tx.UpdateUser(ctx, u, u.Version))
	u = users[6]
	u.Deleted = time.Now()
	must[provision.User](t)(tx.UpdateUser(ctx, u, u.Version))
	u = users[3] // bring the tombstone back
	u.Deleted = time.Time{}
	must[provision.User](t)(tx.UpdateUser(ctx, u, u.Version))
	for _, u := range users[10:30] {
		if err := tx.PurgeUser(ctx, tenant, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	must[[]string](t)(tx.AddMembers(ctx, tenant, groups[0].ID, []string{users[31].ID, users[32].ID}))
	must[[]string](t)(tx.RemoveMembers(ctx, tenant, groups[0].ID, []string{users[5].ID, users[6].ID}))
	if err := tx.DeleteGroup(ctx, tenant, groups[1].ID, groups[1].Version); err != nil {
		t.Fatal(err)
	}
	g := groups[2]
	g.DisplayName = "G-renamed"
	must[provision.Group](t)(tx.UpdateGroup(ctx, g, g.Version))
	must[provision.Group](t)(tx.CreateGroup(ctx, provision.Group{TenantID: tenant, DisplayName: "G0", Owner: "ldap"}))
	if err := tx.DeleteLink(ctx, tenant, provision.ResourceUser, "scim", "ext0"); err != nil {
		t.Fatal(err)
	}
	if err := tx.CreateLink(ctx, provision.Link{TenantID: tenant, Kind: provision.ResourceUser, ConnectionID: "saml", ExternalID: "x", ResourceID: users[1].ID}); err != nil {
		t.Fatal(err)
	}
	el := tx.(provision.EventLog)
	must[[]provision.Event](t)(el.AppendEvents(ctx, tenant, []provision.Event{{Kind: provision.UserDeleted, User: &users[0]}}))
	must[int](t)(el.RedactEvents(ctx, tenant, users[0].ID))
	must[int](t)(el.PurgeEvents(ctx, tenant, time.Unix(2, 0)))
	if err := el.SetCursor(ctx, tenant, "c", 3); err != nil {
		t.Fatal(err)
	}
	kv := tx.(provision.KV)
	if err := kv.KVSet(ctx, tenant, "k", []byte("changed"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := kv.KVDelete(ctx, tenant, "k"); err != nil {
		t.Fatal(err)
	}
	must[bool](t)(kv.KVInsert(ctx, tenant, "k", []byte("inserted"), 0))
}

func TestRollback(t *testing.T) {
	errBoom := errors.New("boom")
	for _, how := range []string{"error", "panic", "inner-error"} {
		t.Run(how, func(t *testing.T) {
			s := New()
			users, groups := seed(t, s, "t1")
			seed(t, s, "t2")
			before := dump(t, s, "t1")
			func() {
				defer func() {
					if r := recover(); (r != nil) != (how == "panic") {
						t.Fatalf("recover() = %v", r)
					}
				}()
				err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
					if how == "inner-error" {
						err := tx.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
							mutateAll(t, tx, "t1", users, groups)
							return errBoom
						})
						if !errors.Is(err, errBoom) {
							t.Fatalf("inner Atomically: %v", err)
						}
						if got := dump(t, tx, "t1"); got != before {
							t.Fatalf("inner rollback:\n%s\nwant\n%s", got, before)
						}
						return nil
					}
					mutateAll(t, tx, "t1", users, groups)
					if got := dump(t, tx, "t1"); got == before {
						t.Fatal("tx does not see its writes")
					}
					checkInvariantsLocked(t, s)
					if how == "panic" {
						panic(errBoom)
					}
					return errBoom
				})
				if how == "error" && !errors.Is(err, errBoom) {
					t.Fatalf("Atomically: %v", err)
				}
			}()
			if got := dump(t, s, "t1"); got != before {
				t.Fatalf("after rollback:\n%s\nwant\n%s", got, before)
			}
			checkInvariants(t, s)
			// The same writes commit.
			if err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
				mutateAll(t, tx, "t1", users, groups)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, s)
			if got := dump(t, s, "t1"); got == before {
				t.Fatal("commit lost")
			}
		})
	}
}

// checkInvariantsLocked checks inside a transaction (the journal is full).
func checkInvariantsLocked(t *testing.T, s *Store) {
	t.Helper()
	undo := s.st.undo
	s.st.undo = nil
	defer func() { s.st.undo = undo }()
	// The write lock is held by the test's own transaction: read without it.
	c := &Store{st: s.st}
	checkInvariants(t, c)
}

func TestFailedOpInTxLeavesNoTrace(t *testing.T) {
	s := New()
	a := must[provision.User](t)(s.CreateUser(ctx, user("t1", "a")))
	g := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "g"}))
	err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		b := must[provision.User](t)(tx.CreateUser(ctx, user("t1", "b")))
		if _, err := tx.AddMembers(ctx, "t1", g.ID, []string{a.ID, b.ID, "nope"}); !errors.Is(err, provision.ErrNotFound) {
			t.Fatalf("AddMembers with an unknown id: %v", err)
		}
		if n, _, _ := tx.ListMembers(ctx, "t1", g.ID, provision.Page{Limit: 10}); len(n) != 0 {
			t.Fatalf("members after a failed add: %v", n)
		}
		bb := b
		bb.UserName = "A"
		if _, err := tx.UpdateUser(ctx, bb, b.Version); !errors.Is(err, provision.ErrAlreadyExists) {
			t.Fatalf("rename onto a taken userName: %v", err)
		}
		if got := must[provision.User](t)(tx.UserByUserName(ctx, "t1", "B")); got.ID != b.ID || got.Version != 1 {
			t.Fatalf("b after the failed rename: %+v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
}

func TestTxAfterEnd(t *testing.T) {
	s := New()
	var kept provision.Store
	if err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.CreateUser(ctx, user("t1", "late")); err == nil {
		t.Fatal("a finished tx accepted a write")
	}
	if _, err := kept.GetUser(ctx, "t1", "x"); err == nil || errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a finished tx answered a read: %v", err)
	}
	if err := kept.Atomically(ctx, func(context.Context, provision.Store) error { return nil }); err == nil {
		t.Fatal("a finished tx ran Atomically")
	}
	if _, n, _ := s.ListUsers(ctx, "t1", provision.Page{}); n != 0 {
		t.Fatal("the late write landed")
	}
}

func TestTenantIsolation(t *testing.T) {
	s := New()
	a := must[provision.User](t)(s.CreateUser(ctx, user("t1", "alice", "a@x.test")))
	g := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "g"}))
	b := must[provision.User](t)(s.CreateUser(ctx, user("t2", "alice", "a@x.test")))
	g2 := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: "t2", DisplayName: "g"}))
	if _, err := s.GetUser(ctx, "t2", a.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("GetUser across tenants: %v", err)
	}
	if _, err := s.GetGroup(ctx, "t2", g.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("GetGroup across tenants: %v", err)
	}
	if _, err := s.AddMembers(ctx, "t2", g2.ID, []string{b.ID, a.ID}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("AddMembers with another tenant's user: %v", err)
	}
	if ms, n, _ := s.ListMembers(ctx, "t2", g2.ID, provision.Page{Limit: 9}); n != 0 || len(ms) != 0 {
		t.Fatal("a member was added")
	}
	if _, err := s.AddMembers(ctx, "t1", g2.ID, []string{a.ID}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("AddMembers to another tenant's group: %v", err)
	}
	a.TenantID = "t2"
	if _, err := s.UpdateUser(ctx, a, 1); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("UpdateUser across tenants: %v", err)
	}
	if err := s.PurgeUser(ctx, "t2", a.ID); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("PurgeUser across tenants: %v", err)
	}
	if err := s.CreateLink(ctx, provision.Link{TenantID: "t2", Kind: provision.ResourceUser, ConnectionID: "c", ExternalID: "e", ResourceID: a.ID}); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("CreateLink across tenants: %v", err)
	}
	if us, _ := s.UsersByEmail(ctx, "t1", "A@X.TEST"); len(us) != 1 || us[0].ID != a.ID {
		t.Fatalf("UsersByEmail: %+v", us)
	}
	checkInvariants(t, s)
}

func TestUserNames(t *testing.T) {
	s := New()
	a := must[provision.User](t)(s.CreateUser(ctx, user("t1", "Ärger@X.test")))
	if got := must[provision.User](t)(s.UserByUserName(ctx, "t1", "äRGER@x.TEST")); got.ID != a.ID {
		t.Fatal("case-insensitive lookup failed")
	}
	if _, err := s.CreateUser(ctx, user("t1", "ärger@x.test")); !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("duplicate userName: %v", err)
	}
	var ce *provision.ConflictError
	if _, err := s.CreateUser(ctx, user("t1", "ÄRGER@X.TEST")); !errors.As(err, &ce) || ce.ExistingID != a.ID {
		t.Fatalf("conflict error: %v", err)
	}
	a.Deleted = time.Now().UTC()
	must[provision.User](t)(s.UpdateUser(ctx, a, 1))
	b := must[provision.User](t)(s.CreateUser(ctx, user("t1", "ärger@x.test")))
	if got := must[provision.User](t)(s.UserByUserName(ctx, "t1", "ÄRGER@X.TEST")); got.ID != b.ID {
		t.Fatal("lookup found the tombstone")
	}
	if _, err := s.UpdateUser(ctx, b, 7); !errors.Is(err, provision.ErrVersionConflict) {
		t.Fatalf("stale version: %v", err)
	}
	// Reviving the tombstone now collides.
	a.Deleted = time.Time{}
	if _, err := s.UpdateUser(ctx, a, 2); !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("revive onto a taken userName: %v", err)
	}
	if strings.Contains(a.ID, "bulkId") || a.ID >= b.ID {
		t.Fatalf("IDs %q, %q", a.ID, b.ID)
	}
	checkInvariants(t, s)
}

func TestValuesAreCopies(t *testing.T) {
	s := New()
	u := user("t1", "a", "a@x.test")
	created := must[provision.User](t)(s.CreateUser(ctx, u))
	u.Emails[0].Value = "changed"
	created.Emails[0].Value = "changed"
	got := must[provision.User](t)(s.GetUser(ctx, "t1", created.ID))
	if got.Emails[0].Value != "a@x.test" {
		t.Fatal("the store shares its slices")
	}
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	got.Created, got.Modified = now, now
	got = must[provision.User](t)(s.UpdateUser(ctx, got, got.Version))
	if again := must[provision.User](t)(s.GetUser(ctx, "t1", got.ID)); !again.Created.Equal(now) || again.Created != now {
		t.Fatal("times do not round-trip")
	}
}

func TestPagingAndOrder(t *testing.T) {
	s := New()
	var ids []string
	for i := range 500 {
		ids = append(ids, must[provision.User](t)(s.CreateUser(ctx, user("t1", fmt.Sprint("u", i)))).ID)
	}
	g := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "g"}))
	must[[]string](t)(s.AddMembers(ctx, "t1", g.ID, ids))
	// Delete every other user, remove every third member.
	var live, members []string
	for i, id := range ids {
		if i%2 == 0 {
			u := must[provision.User](t)(s.GetUser(ctx, "t1", id))
			u.Deleted = time.Now()
			must[provision.User](t)(s.UpdateUser(ctx, u, u.Version))
		} else {
			live = append(live, id)
		}
		if i%3 == 0 {
			must[[]string](t)(s.RemoveMembers(ctx, "t1", g.ID, []string{id}))
		} else {
			members = append(members, id)
		}
	}
	checkInvariants(t, s)
	for _, off := range []int{0, 1, 37, 200, 249, 250, 1000} {
		us, n, _ := s.ListUsers(ctx, "t1", provision.Page{Offset: off, Limit: 10})
		var got []string
		for _, u := range us {
			got = append(got, u.ID)
		}
		if want := live[min(off, len(live)):min(off+10, len(live))]; n != len(live) || !slices.Equal(got, want) {
			t.Fatalf("ListUsers at %d: %v (%d), want %v (%d)", off, got, n, want, len(live))
		}
		ms, n, _ := s.ListMembers(ctx, "t1", g.ID, provision.Page{Offset: off, Limit: 10})
		if want := members[min(off, len(members)):min(off+10, len(members))]; n != len(members) || !slices.Equal(ms, want) {
			t.Fatalf("ListMembers at %d: %v (%d), want %v", off, ms, n, want)
		}
	}
	tombs := must[[]provision.User](t)(s.DeletedUsers(ctx, "t1", time.Now().Add(time.Second), 1000))
	if len(tombs) != 250 {
		t.Fatalf("%d tombstones", len(tombs))
	}
}

func TestEvents(t *testing.T) {
	s := New()
	u := must[provision.User](t)(s.CreateUser(ctx, user("t1", "a", "a@x.test")))
	evs := must[[]provision.Event](t)(s.AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.UserCreated, User: &u, Time: time.Unix(10, 0)}}))
	if evs[0].Seq != 1 || evs[0].TenantID != "t1" {
		t.Fatalf("first event: %+v", evs[0])
	}
	s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		tx.(provision.EventLog).AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.UserUpdated}, {Kind: provision.UserUpdated}})
		return errors.New("no")
	})
	evs = must[[]provision.Event](t)(s.AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.UserUpdated, User: &u, PreviousUser: &u, Time: time.Unix(20, 0)}}))
	if evs[0].Seq != 2 {
		t.Fatalf("seq after a rollback: %d", evs[0].Seq)
	}
	if _, err := s.AppendEvents(ctx, "t1", []provision.Event{{TenantID: "t2"}}); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("foreign event: %v", err)
	}
	if n := must[int](t)(s.RedactEvents(ctx, "t1", u.ID)); n != 2 {
		t.Fatalf("redacted %d", n)
	}
	if n := must[int](t)(s.RedactEvents(ctx, "t1", u.ID)); n != 0 {
		t.Fatalf("redacted again %d", n)
	}
	all := must[[]provision.Event](t)(s.ListEvents(ctx, "t1", 0, 10))
	if len(all) != 2 || all[1].PreviousUser.UserName != "" || all[1].User.ID != u.ID {
		t.Fatalf("after redaction: %+v", all)
	}
	if n := must[int](t)(s.PurgeEvents(ctx, "t1", time.Unix(15, 0))); n != 1 {
		t.Fatalf("purged %d", n)
	}
	if evs := must[[]provision.Event](t)(s.ListEvents(ctx, "t1", 0, 10)); len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("after purge: %+v", evs)
	}
	if last := must[int64](t)(s.LastSeq(ctx, "t1")); last != 2 {
		t.Fatalf("LastSeq %d", last)
	}
	if last := must[int64](t)(s.LastSeq(ctx, "t2")); last != 0 {
		t.Fatalf("LastSeq of t2 %d", last)
	}
}

func TestKVAndLocks(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewWithConfig(Config{Now: func() time.Time { return now }})
	if ok := must[bool](t)(s.KVInsert(ctx, "t1", "k", []byte("1"), time.Minute)); !ok {
		t.Fatal("first insert refused")
	}
	if ok := must[bool](t)(s.KVInsert(ctx, "t1", "k", []byte("2"), time.Minute)); ok {
		t.Fatal("second insert accepted")
	}
	if _, err := s.KVGet(ctx, "t2", "k"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("KV across tenants: %v", err)
	}
	now = now.Add(time.Minute)
	if _, err := s.KVGet(ctx, "t1", "k"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("expired key: %v", err)
	}
	if ok := must[bool](t)(s.KVInsert(ctx, "t1", "k", []byte("3"), 0)); !ok {
		t.Fatal("insert over an expired key refused")
	}
	if v := must[[]byte](t)(s.KVGet(ctx, "t1", "k")); string(v) != "3" {
		t.Fatalf("value %q", v)
	}
	if err := s.KVDelete(ctx, "t1", "missing"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 { // exercise the sweep
		s.KVSet(ctx, "t1", fmt.Sprint(i), nil, time.Second)
	}
	now = now.Add(time.Hour)
	for i := range 100 {
		s.KVSet(ctx, "t1", fmt.Sprint("n", i), nil, 0)
	}
	if n := len(s.st.tenants["t1"].kv); n > 200 {
		t.Fatalf("%d keys kept after expiry", n)
	}

	held, release, err := s.TryLock(ctx, "t1", "sync")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TryLock(ctx, "t1", "sync"); !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("second TryLock: %v", err)
	}
	_, r2, err := s.TryLock(ctx, "t2", "sync")
	if err != nil {
		t.Fatal(err)
	}
	if held.Err() != nil {
		t.Fatalf("held ended while the lock is held: %v", held.Err())
	}
	release()
	if held.Err() == nil {
		t.Fatal("held still live after release")
	}
	_, r3, err := s.TryLock(ctx, "t1", "sync")
	if err != nil {
		t.Fatal(err)
	}
	release() // idempotent: must not release r3's lock
	if _, _, err := s.TryLock(ctx, "t1", "sync"); !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("a stale release freed the lock: %v", err)
	}
	r2()
	r3()
}

func TestConcurrency(t *testing.T) {
	s := New()
	g := must[provision.Group](t)(s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "g"}))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
					u, err := tx.CreateUser(ctx, user("t1", fmt.Sprintf("w%d-%d", w, i)))
					if err != nil {
						return err
					}
					if _, err := tx.AddMembers(ctx, "t1", g.ID, []string{u.ID}); err != nil {
						return err
					}
					if _, err := tx.(provision.EventLog).AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.UserCreated, User: &u}}); err != nil {
						return err
					}
					if i%3 == 0 {
						return errors.New("rollback")
					}
					return nil
				})
				if err != nil && err.Error() != "rollback" {
					t.Error(err)
				}
				s.ListUsers(ctx, "t1", provision.Page{Offset: i, Limit: 5})
				s.ListMembers(ctx, "t1", g.ID, provision.Page{Offset: i, Limit: 5})
			}
		})
	}
	wg.Wait()
	checkInvariants(t, s)
	_, n, _ := s.ListUsers(ctx, "t1", provision.Page{})
	_, m, _ := s.ListMembers(ctx, "t1", g.ID, provision.Page{})
	evs, _ := s.ListEvents(ctx, "t1", 0, 10000)
	if n != 8*66 || m != n || len(evs) != n || evs[len(evs)-1].Seq != int64(n) {
		t.Fatalf("users %d members %d events %d", n, m, len(evs))
	}
}

func TestLoad(t *testing.T) {
	s := New()
	users := []provision.User{user("", "a", "a@x.test"), user("t1", "b")}
	if err := s.Load("t1", users); err != nil {
		t.Fatal(err)
	}
	if users[0].ID == "" || users[0].TenantID != "t1" || users[0].Version != 1 {
		t.Fatalf("Load did not fill in %+v", users[0])
	}
	if err := s.Load("t1", []provision.User{user("t1", "c"), user("t1", "A")}); !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("Load of a taken userName: %v", err)
	}
	if _, n, _ := s.ListUsers(ctx, "t1", provision.Page{}); n != 2 {
		t.Fatalf("%d users after a failed Load", n)
	}
	if got := must[[]provision.User](t)(s.UsersByEmail(ctx, "t1", "A@x.test")); len(got) != 1 {
		t.Fatal("Load did not index e-mails")
	}
	checkInvariants(t, s)
}
