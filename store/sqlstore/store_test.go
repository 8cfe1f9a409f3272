package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func TestNewValidates(t *testing.T) {
	db, _ := openSQLiteDB(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dialect", Config{}},
		{"bad prefix", Config{Dialect: SQLite, TablePrefix: "Bad-Prefix"}},
		{"injection", Config{Dialect: SQLite, TablePrefix: "x; drop table users"}},
		{"negative retries", Config{Dialect: SQLite, MaxRetries: -1}},
	} {
		if _, err := New(db, tc.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		}
	}
	if _, err := New(nil, Config{Dialect: SQLite}); err == nil {
		t.Error("New accepted a nil db")
	}
	s, err := New(db, Config{Dialect: SQLite})
	if err != nil {
		t.Fatal(err)
	}
	if s.TablePrefix() != DefaultTablePrefix {
		t.Errorf("prefix %q", s.TablePrefix())
	}
}

func TestMigrateIdempotent(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		for range 2 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+s.TablePrefix()+"migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != SchemaVersion(s.Dialect()) {
			t.Errorf("%d migrations recorded, want %d", n, SchemaVersion(s.Dialect()))
		}
	})
}

func testUser(tenant, name string) provision.User {
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
	return provision.User{
		TenantID: tenant, UserName: name, Active: true, Owner: "scim",
		Name:       provision.Name{GivenName: "Ann", FamilyName: "Lee"},
		Emails:     []provision.Email{{Value: name + "@Example.com", Primary: true}},
		Attributes: map[string]json.RawMessage{"x": json.RawMessage(`{ "b": 1,  "a": [1, 2] }`)},
		Created:    now, Modified: now,
	}
}

func TestUsersRoundTrip(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		in := testUser("t1", "Ann")
		u, err := s.CreateUser(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID == "" || u.Version != 1 {
			t.Fatalf("created %+v", u)
		}
		if !u.Created.Equal(in.Created.Truncate(time.Microsecond)) || u.Created.Location() != time.UTC {
			t.Errorf("created time %v", u.Created)
		}
		got, err := s.GetUser(ctx, "t1", u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Errorf("GetUser:\n got %+v\nwant %+v", got, u)
		}
		if string(got.Attributes["x"]) != `{ "b": 1,  "a": [1, 2] }` {
			t.Errorf("attribute bytes changed: %s", got.Attributes["x"])
		}
		if _, err := s.GetUser(ctx, "t2", u.ID); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("other tenant: %v", err)
		}
		if g, err := s.UserByUserName(ctx, "t1", "aNN"); err != nil || g.ID != u.ID {
			t.Errorf("by userName: %v %v", g.ID, err)
		}
		if us, err := s.UsersByEmail(ctx, "t1", "ANN@example.COM"); err != nil || len(us) != 1 {
			t.Errorf("by email: %v %v", us, err)
		}
		_, err = s.CreateUser(ctx, testUser("t1", "ANN"))
		var ce *provision.ConflictError
		if !errors.As(err, &ce) || ce.Field != "userName" || ce.ExistingID != u.ID || !errors.Is(err, provision.ErrAlreadyExists) {
			t.Errorf("duplicate userName: %v", err)
		}
		if _, err := s.CreateUser(ctx, testUser("t2", "ann")); err != nil {
			t.Errorf("same userName in another tenant: %v", err)
		}
		dup := testUser("t1", "other")
		dup.ID = u.ID
		if _, err := s.CreateUser(ctx, dup); !errors.As(err, &ce) || ce.Field != "id" {
			t.Errorf("duplicate id: %v", err)
		}

		// Update with versions.
		u.DisplayName = "Ann L."
		u.Emails = []provision.Email{{Value: "new@example.com"}}
		u2, err := s.UpdateUser(ctx, u, 1)
		if err != nil || u2.Version != 2 {
			t.Fatalf("update: %v %v", u2.Version, err)
		}
		if _, err := s.UpdateUser(ctx, u, 1); !errors.Is(err, provision.ErrVersionConflict) {
			t.Errorf("stale update: %v", err)
		}
		ghost := u
		ghost.ID = "nope"
		if _, err := s.UpdateUser(ctx, ghost, 1); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("update missing: %v", err)
		}
		if us, _ := s.UsersByEmail(ctx, "t1", "ann@example.com"); len(us) != 0 {
			t.Errorf("old email still found")
		}
		if us, _ := s.UsersByEmail(ctx, "t1", "NEW@example.com"); len(us) != 1 {
			t.Errorf("new email not found")
		}
		b, err := s.CreateUser(ctx, testUser("t1", "bob"))
		if err != nil {
			t.Fatal(err)
		}
		b.UserName = "ann"
		if _, err := s.UpdateUser(ctx, b, 1); !errors.As(err, &ce) || ce.Field != "userName" || ce.ExistingID != u.ID {
			t.Errorf("rename onto a taken userName: %v", err)
		}

		// Tombstone frees the userName.
		del := u2
		del.Deleted = time.Now()
		del.Active = false
		if _, err := s.UpdateUser(ctx, del, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UserByUserName(ctx, "t1", "ann"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("tombstone found by userName: %v", err)
		}
		if _, err := s.CreateUser(ctx, testUser("t1", "ann")); err != nil {
			t.Errorf("reuse of a deleted userName: %v", err)
		}
		ds, err := s.DeletedUsers(ctx, "t1", time.Now().Add(time.Minute), 10)
		if err != nil || len(ds) != 1 || ds[0].ID != u.ID {
			t.Errorf("DeletedUsers: %v %v", ds, err)
		}
		list, total, err := s.ListUsers(ctx, "t1", provision.Page{Limit: 10})
		if err != nil || total != 2 || len(list) != 2 {
			t.Errorf("ListUsers: %d %d %v", total, len(list), err)
		}
		if err := s.PurgeUser(ctx, "t1", u.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.PurgeUser(ctx, "t1", u.ID); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("purge twice: %v", err)
		}
	})
}

func TestGroupsMembersLinks(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		var uids []string
		for i := range 5 {
			u, err := s.CreateUser(ctx, testUser("t1", fmt.Sprintf("u%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			uids = append(uids, u.ID)
		}
		g, err := s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "Eng", Owner: "scim"})
		if err != nil {
			t.Fatal(err)
		}
		var ce *provision.ConflictError
		if _, err := s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "ENG", Owner: "scim"}); !errors.As(err, &ce) || ce.Field != "displayName" {
			t.Errorf("duplicate displayName: %v", err)
		}
		if _, err := s.CreateGroup(ctx, provision.Group{TenantID: "t1", DisplayName: "eng", Owner: "ldap"}); err != nil {
			t.Errorf("same name, other owner: %v", err)
		}
		if gs, err := s.GroupsByDisplayName(ctx, "t1", "eNg"); err != nil || len(gs) != 2 {
			t.Errorf("by displayName: %v %v", gs, err)
		}
		added, err := s.AddMembers(ctx, "t1", g.ID, []string{uids[2], uids[0], uids[2]})
		if err != nil || !reflect.DeepEqual(added, []string{uids[2], uids[0]}) {
			t.Errorf("add: %v %v", added, err)
		}
		added, err = s.AddMembers(ctx, "t1", g.ID, []string{uids[0], uids[1]})
		if err != nil || !reflect.DeepEqual(added, []string{uids[1]}) {
			t.Errorf("add again: %v %v", added, err)
		}
		if _, err := s.AddMembers(ctx, "t1", g.ID, []string{uids[3], "ghost"}); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("unknown member: %v", err)
		}
		if ok, _ := s.IsMember(ctx, "t1", g.ID, uids[3]); ok {
			t.Error("partial add applied")
		}
		if _, err := s.AddMembers(ctx, "t2", g.ID, []string{uids[3]}); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("other tenant's group: %v", err)
		}
		ms, total, err := s.ListMembers(ctx, "t1", g.ID, provision.Page{Limit: 2})
		if err != nil || total != 3 || len(ms) != 2 {
			t.Errorf("list: %v %d %v", ms, total, err)
		}
		if gs, err := s.GroupsOfUser(ctx, "t1", uids[0]); err != nil || !reflect.DeepEqual(gs, []string{g.ID}) {
			t.Errorf("groups of user: %v %v", gs, err)
		}
		removed, err := s.RemoveMembers(ctx, "t1", g.ID, []string{uids[4], uids[0]})
		if err != nil || !reflect.DeepEqual(removed, []string{uids[0]}) {
			t.Errorf("remove: %v %v", removed, err)
		}

		l := provision.Link{TenantID: "t1", Kind: provision.ResourceUser, ConnectionID: "okta", ExternalID: "x1", ResourceID: uids[0], Created: time.Now()}
		if err := s.CreateLink(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateLink(ctx, l); !errors.Is(err, provision.ErrAlreadyExists) {
			t.Errorf("duplicate link: %v", err)
		}
		l2 := l
		l2.ExternalID = "x2"
		if err := s.CreateLink(ctx, l2); !errors.Is(err, provision.ErrAlreadyExists) {
			t.Errorf("second link of the resource: %v", err)
		}
		l3 := l
		l3.ResourceID = "ghost"
		l3.ExternalID = "x3"
		if err := s.CreateLink(ctx, l3); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("link to nothing: %v", err)
		}
		got, err := s.GetLink(ctx, "t1", provision.ResourceUser, "okta", "x1")
		if err != nil || got.ResourceID != uids[0] || !got.Created.Equal(normTime(l.Created)) {
			t.Errorf("get link: %+v %v", got, err)
		}
		if ls, err := s.LinksOf(ctx, "t1", provision.ResourceUser, uids[0]); err != nil || len(ls) != 1 {
			t.Errorf("links of: %v %v", ls, err)
		}
		if err := s.DeleteGroup(ctx, "t1", g.ID, 7); !errors.Is(err, provision.ErrVersionConflict) {
			t.Errorf("delete group, stale: %v", err)
		}
		if err := s.DeleteGroup(ctx, "t1", g.ID, 1); err != nil {
			t.Errorf("delete group: %v", err)
		}
		if err := s.DeleteGroup(ctx, "t1", g.ID, 1); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("delete group twice: %v", err)
		}
		if gs, _ := s.GroupsOfUser(ctx, "t1", uids[1]); len(gs) != 0 {
			t.Errorf("memberships survived the group: %v", gs)
		}
	})
}

func TestAtomically(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		boom := errors.New("boom")
		err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			u, err := tx.CreateUser(ctx, testUser("t1", "a"))
			if err != nil {
				return err
			}
			if _, err := tx.GetUser(ctx, "t1", u.ID); err != nil {
				return fmt.Errorf("read own write: %w", err)
			}
			if _, err := tx.(provision.EventLog).AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.UserCreated, User: &u}}); err != nil {
				return err
			}
			return tx.Atomically(ctx, func(ctx context.Context, tx2 provision.Store) error {
				if _, err := tx2.UserByUserName(ctx, "t1", "a"); err != nil {
					return fmt.Errorf("nested read: %w", err)
				}
				return boom
			})
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Atomically returned %v", err)
		}
		if _, err := s.UserByUserName(ctx, "t1", "a"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("rolled back user visible: %v", err)
		}
		if seq, _ := s.LastSeq(ctx, "t1"); seq != 0 {
			t.Errorf("rolled back events: last seq %d", seq)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic swallowed")
				}
			}()
			_ = s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
				if _, err := tx.CreateUser(ctx, testUser("t1", "p")); err != nil {
					return err
				}
				panic("boom")
			})
		}()
		if _, err := s.UserByUserName(ctx, "t1", "p"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("user of a panicking transaction visible: %v", err)
		}
		// The store still works after the panic (no leaked write lock).
		if _, err := s.CreateUser(ctx, testUser("t1", "after")); err != nil {
			t.Errorf("after panic: %v", err)
		}
	})
}

func TestEventLog(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		u := testUser("t1", "ann")
		u.ID = "u1"
		evs, err := s.AppendEvents(ctx, "t1", []provision.Event{
			{Kind: provision.UserCreated, Time: time.Now(), User: &u},
			{Kind: provision.UserUpdated, Time: time.Now(), User: &u, PreviousUser: &u, Fields: []string{"x"}},
		})
		if err != nil || len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 2 {
			t.Fatalf("append: %v %v", evs, err)
		}
		more, err := s.AppendEvents(ctx, "t1", []provision.Event{{Kind: provision.GroupCreated, Time: time.Now()}})
		if err != nil || more[0].Seq != 3 {
			t.Fatalf("append: %v %v", more, err)
		}
		if other, _ := s.AppendEvents(ctx, "t2", []provision.Event{{Kind: provision.GroupCreated}}); other[0].Seq != 1 {
			t.Errorf("other tenant seq %d", other[0].Seq)
		}
		got, err := s.ListEvents(ctx, "t1", 1, 10)
		if err != nil || len(got) != 2 || got[0].Seq != 2 {
			t.Fatalf("list: %v %v", got, err)
		}
		if !reflect.DeepEqual(got[0], evs[1]) {
			t.Errorf("event round trip:\n got %+v\nwant %+v", got[0], evs[1])
		}
		if n, _ := s.LastSeq(ctx, "t1"); n != 3 {
			t.Errorf("last seq %d", n)
		}
		if c, _ := s.Cursor(ctx, "t1", "hook"); c != 0 {
			t.Errorf("cursor %d", c)
		}
		if err := s.SetCursor(ctx, "t1", "hook", 2); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Cursor(ctx, "t1", "hook"); c != 2 {
			t.Errorf("cursor %d", c)
		}
		n, err := s.RedactEvents(ctx, "t1", "u1")
		if err != nil || n != 2 {
			t.Errorf("redact: %d %v", n, err)
		}
		got, _ = s.ListEvents(ctx, "t1", 0, 10)
		if got[1].User.UserName != "" || got[1].PreviousUser.ID != "u1" || got[1].User.TenantID != "t1" {
			t.Errorf("redacted: %+v", got[1].User)
		}
		if n, _ := s.RedactEvents(ctx, "t1", "u1"); n != 0 {
			t.Errorf("redact twice changed %d", n)
		}
		n, err = s.PurgeEvents(ctx, "t1", time.Now().Add(time.Hour))
		if err != nil || n != 3 {
			t.Errorf("purge: %d %v", n, err)
		}
		if n, _ := s.LastSeq(ctx, "t1"); n != 3 {
			t.Errorf("last seq after purge %d", n)
		}
	})
}

func TestKV(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		now := time.Now()
		s.r.now = func() time.Time { return now }
		ctx := context.Background()
		if _, err := s.KVGet(ctx, "t1", "k"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("get missing: %v", err)
		}
		if ok, err := s.KVInsert(ctx, "t1", "k", []byte("v1"), time.Minute); !ok || err != nil {
			t.Errorf("insert: %v %v", ok, err)
		}
		if ok, err := s.KVInsert(ctx, "t1", "k", []byte("v2"), time.Minute); ok || err != nil {
			t.Errorf("insert again: %v %v", ok, err)
		}
		if v, err := s.KVGet(ctx, "t2", "k"); err == nil {
			t.Errorf("other tenant sees %q", v)
		}
		now = now.Add(2 * time.Minute)
		if _, err := s.KVGet(ctx, "t1", "k"); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("get expired: %v", err)
		}
		if ok, err := s.KVInsert(ctx, "t1", "k", []byte("v3"), 0); !ok || err != nil {
			t.Errorf("insert over expired: %v %v", ok, err)
		}
		if v, err := s.KVGet(ctx, "t1", "k"); string(v) != "v3" || err != nil {
			t.Errorf("get: %q %v", v, err)
		}
		if err := s.KVSet(ctx, "t1", "k", []byte("v4"), time.Second); err != nil {
			t.Fatal(err)
		}
		if v, _ := s.KVGet(ctx, "t1", "k"); string(v) != "v4" {
			t.Errorf("get after set: %q", v)
		}
		if err := s.KVDelete(ctx, "t1", "k"); err != nil {
			t.Fatal(err)
		}
		if err := s.KVDelete(ctx, "t1", "k"); err != nil {
			t.Errorf("delete missing: %v", err)
		}
		// Concurrent inserts of one key: exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.KVInsert(ctx, "t1", "once", []byte("x"), time.Hour)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d concurrent inserts won", wins)
		}
	})
}

func TestLocker(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		held, release, err := s.TryLock(ctx, "t1", "sync")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.TryLock(ctx, "t1", "sync"); !errors.Is(err, provision.ErrLocked) {
			t.Errorf("second TryLock: %v", err)
		}
		_, r2, err := s.TryLock(ctx, "t2", "sync")
		if err != nil {
			t.Errorf("other tenant: %v", err)
		} else {
			r2()
		}
		if held.Err() != nil {
			t.Fatalf("held ended: %v", context.Cause(held))
		}
		release()
		if held.Err() == nil || errors.Is(context.Cause(held), provision.ErrLockLost) {
			t.Errorf("after release: held %v, cause %v; want canceled, not lost", held.Err(), context.Cause(held))
		}
		release() // idempotent
		_, r3, err := s.TryLock(ctx, "t1", "sync")
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		r3()
	})
}

func TestLeaseExpires(t *testing.T) {
	s := newSQLite(t, Config{LockTTL: time.Hour})
	now := time.Now()
	var mu sync.Mutex
	s.r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()
	dead, _, err := s.TryLock(ctx, "t1", "x") // never released: the holder "died"
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TryLock(ctx, "t1", "x"); !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("held: %v", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	// The old holder's fenced writes are refused from now on, and its
	// held ends.
	if err := s.SetCursor(dead, "t1", "c", 1); !errors.Is(err, provision.ErrLockLost) {
		t.Fatalf("SetCursor after the lease lapsed: %v, want ErrLockLost", err)
	}
	if !errors.Is(context.Cause(dead), provision.ErrLockLost) {
		t.Fatalf("the lapsed holder's held: %v, want ErrLockLost", context.Cause(dead))
	}
	_, r, err := s.TryLock(ctx, "t1", "x")
	if err != nil {
		t.Fatalf("after the lease: %v", err)
	}
	r()
}
