package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func TestConnectionRefusedIsUnavailable(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := New(db, Config{Dialect: Postgres})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.GetUser(ctx, "t1", "x"); !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("GetUser: %v, want ErrUnavailable", err)
	}
	err = s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error { return nil })
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("Atomically: %v, want ErrUnavailable", err)
	}
}

func TestSQLiteBusyIsUnavailable(t *testing.T) {
	db, path := openSQLiteDB(t)
	s := migrated(t, db, Config{Dialect: SQLite})
	// Another process (here: another pool) holds the write lock.
	other, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	s.r.busyTimeout = 50 * time.Millisecond
	if _, err := s.CreateUser(ctx, testUser("t1", "a")); !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("CreateUser while locked: %v, want ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, testUser("t1", "a")); err != nil {
		t.Errorf("CreateUser after the lock: %v", err)
	}
}

func TestUniqueViolationMapped(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := context.Background()
		u, err := s.CreateUser(ctx, testUser("t1", "a"))
		if err != nil {
			t.Fatal(err)
		}
		// A raw write that breaks the partial unique index on userName.
		v := testUser("t1", "A")
		v.ID = "other"
		doc, _ := encodeUser(v)
		_, err = s.DB().ExecContext(ctx, s.r.sql(`INSERT INTO {p}users
			(tenant_id, id, user_name, user_name_lower, display_name_lower, owner, active, version, created, modified, deleted, doc)
			VALUES ($1, $2, $3, $4, '', '', $5, 1, $6, $6, NULL, $7)`), "t1", "other", "A", "a", true, s.r.ts(time.Now()), doc)
		err = mapErr("raw insert", err)
		var ce *provision.ConflictError
		if !errors.Is(err, provision.ErrAlreadyExists) || !errors.As(err, &ce) || ce.Field != "userName" {
			t.Errorf("mapped %v, want a userName ConflictError", err)
		}
		// The cause is kept.
		var sc sqliteCoder
		if sqlState(err) == "" && !errors.As(err, &sc) {
			t.Errorf("cause dropped: %v", err)
		}
		_ = u
	})
}

func TestSerializationFailureRetried(t *testing.T) {
	s := newPostgres(t, Config{MaxRetries: 3})
	ctx := context.Background()
	raise := func(tx provision.Store) error {
		_, err := tx.(*Store).q.ExecContext(ctx, `DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40001'; END $$`)
		return mapErr("simulated", err)
	}
	attempts := 0
	err := s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		attempts++
		if _, err := tx.CreateUser(ctx, testUser("t1", "a")); err != nil {
			return err
		}
		if attempts < 3 {
			return raise(tx)
		}
		return nil
	})
	if err != nil || attempts != 3 {
		t.Fatalf("Atomically: %v after %d attempts", err, attempts)
	}
	if _, err := s.UserByUserName(ctx, "t1", "a"); err != nil {
		t.Errorf("committed user: %v", err)
	}
	attempts = 0
	err = s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		attempts++
		return raise(tx)
	})
	if !errors.Is(err, provision.ErrUnavailable) || attempts != 4 {
		t.Errorf("always failing: %v after %d attempts", err, attempts)
	}
}
