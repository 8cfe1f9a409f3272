package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// workers is how many goroutines the concurrency subtests start.
const workers = 8

// together runs fn(i) for i in [0, n) in n goroutines released at once,
// and waits for them.
func together(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

// retryable reports whether the store asks the caller to try again.
func retryable(err error) bool {
	return errors.Is(err, provision.ErrVersionConflict) || errors.Is(err, provision.ErrUnavailable)
}

func testConcurrency(t *testing.T, s *suite) {
	t.Run("AddMembers", func(t *testing.T) {
		const perWorker, batch = 40, 5
		st := s.store(t)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Everyone"))
		us := idsOf(createUsers(t, st, tenantA, "c", workers*perWorker))
		errs := make([]error, workers)
		together(workers, func(w int) {
			mine := us[w*perWorker : (w+1)*perWorker]
			for b := 0; b < len(mine); b += batch {
				if _, err := st.AddMembers(t.Context(), tenantA, g.ID, mine[b:b+batch]); err != nil {
					errs[w] = err
					return
				}
			}
		})
		for w, err := range errs {
			if err != nil {
				t.Errorf("worker %d: AddMembers: %v", w, err)
			}
		}
		got := allMembers(t, st, tenantA, g.ID)
		if !slices.Equal(sorted(got), sorted(us)) {
			t.Errorf("after %d concurrent writers added %d distinct members, the group has %d", workers, len(us), len(got))
		}
	})

	t.Run("CreateSameUserName", func(t *testing.T) {
		st := s.store(t)
		names := []string{"grace", "Grace", "GRACE", "gRACE"}
		created := make([]provision.User, workers)
		errs := make([]error, workers)
		together(workers, func(w int) {
			created[w], errs[w] = st.CreateUser(t.Context(), user(tenantA, names[w%len(names)]))
		})
		wins := 0
		for w, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, provision.ErrAlreadyExists):
				t.Errorf("worker %d: CreateUser: %v, want nil or ErrAlreadyExists", w, err)
			}
		}
		if wins != 1 {
			t.Errorf("%d concurrent CreateUser of the same userName: %d succeeded, want exactly 1", workers, wins)
		}
		if _, total, err := st.ListUsers(t.Context(), tenantA, provision.Page{Limit: 100}); err != nil || total != 1 {
			t.Errorf("ListUsers total = %d, %v; want 1", total, err)
		}
	})

	t.Run("UpdateSameVersion", func(t *testing.T) {
		st := s.store(t)
		u := createUser(t, st, user(tenantA, "ada"))
		errs := make([]error, workers)
		together(workers, func(w int) {
			next := u
			next.Title = fmt.Sprintf("writer %d", w)
			_, errs[w] = st.UpdateUser(t.Context(), next, u.Version)
		})
		wins := 0
		winner := ""
		for w, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = fmt.Sprintf("writer %d", w)
			case !errors.Is(err, provision.ErrVersionConflict):
				t.Errorf("worker %d: UpdateUser: %v, want nil or ErrVersionConflict", w, err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d concurrent UpdateUser from version 1: %d succeeded, want exactly 1", workers, wins)
		}
		got, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if got.Version != 2 || got.Title != winner {
			t.Errorf("after the race: Version %d, Title %q; want 2, %q", got.Version, got.Title, winner)
		}
	})

	t.Run("ReadModifyWrite", func(t *testing.T) {
		// Transactions that read a counter and write it back, retrying
		// version conflicts as the engine does, lose no increment.
		const perWorker = 10
		st := s.store(t)
		in := user(tenantA, "counter")
		in.Attributes = map[string]json.RawMessage{"n": json.RawMessage(`0`)}
		u := createUser(t, st, in)
		errs := make([]error, workers)
		together(workers, func(w int) {
			for range perWorker {
				for attempt := 0; ; attempt++ {
					err := st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
						cur, err := tx.GetUser(ctx, tenantA, u.ID)
						if err != nil {
							return err
						}
						n, err := strconv.Atoi(string(cur.Attributes["n"]))
						if err != nil {
							return fmt.Errorf("counter %q: %w", cur.Attributes["n"], err)
						}
						next := cur
						next.Attributes = map[string]json.RawMessage{"n": json.RawMessage(strconv.Itoa(n + 1))}
						_, err = tx.UpdateUser(ctx, next, cur.Version)
						return err
					})
					if err == nil {
						break
					}
					if !retryable(err) || attempt > 1000 {
						errs[w] = err
						return
					}
					time.Sleep(time.Duration(attempt%10) * 100 * time.Microsecond)
				}
			}
		})
		for w, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
			}
		}
		got, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if want := strconv.Itoa(workers * perWorker); string(got.Attributes["n"]) != want || got.Version != int64(workers*perWorker+1) {
			t.Errorf("after %d increments: counter %s, Version %d; want %s, %d (a lost update)", workers*perWorker, got.Attributes["n"], got.Version, want, workers*perWorker+1)
		}
	})

	t.Run("ReadLocksInTransaction", func(t *testing.T) {
		// The Store contract (see provision.Store.Atomically): a read of a
		// user or a group through tx keeps other writers of it waiting
		// until the transaction ends, so read-modify-write transactions
		// never meet a version conflict, not even once.
		const perWorker = 5
		st := s.store(t)
		in := user(tenantA, "counter")
		in.Attributes = map[string]json.RawMessage{"n": json.RawMessage(`0`)}
		u := createUser(t, st, in)
		g := createGroup(t, st, group(tenantA, "scim-okta", "Counted"))
		errs := make([]error, workers)
		together(workers, func(w int) {
			for i := range perWorker {
				errs[w] = incrementUser(t.Context(), st, func(ctx context.Context, tx provision.Store) (provision.User, error) {
					return tx.GetUser(ctx, tenantA, u.ID)
				})
				if errs[w] != nil {
					errs[w] = fmt.Errorf("user, increment %d: %w", i, errs[w])
					return
				}
				errs[w] = st.Atomically(t.Context(), func(ctx context.Context, tx provision.Store) error {
					cur, err := tx.GetGroup(ctx, tenantA, g.ID)
					if err != nil {
						return err
					}
					next := cur
					next.DisplayName = fmt.Sprintf("Counted %d-%d", w, i)
					_, err = tx.UpdateGroup(ctx, next, cur.Version)
					return err
				})
				if errs[w] != nil {
					errs[w] = fmt.Errorf("group, change %d: %w", i, errs[w])
					return
				}
			}
		})
		for w, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v (want no conflict: reads in a transaction must lock)", w, err)
			}
		}
		got, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		if want := strconv.Itoa(workers * perWorker); string(got.Attributes["n"]) != want {
			t.Errorf("after %d increments: counter %s, want %s", workers*perWorker, got.Attributes["n"], want)
		}
		gg, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		if gg.Version != g.Version+workers*perWorker {
			t.Errorf("group at version %d after %d changes from %d", gg.Version, workers*perWorker, g.Version)
		}
	})
}

// incrementUser adds one to the counter attribute "n" of a user in one
// read-modify-write transaction, the user read through read (a read that
// must lock it, so that concurrent increments queue instead of meeting a
// version conflict).
func incrementUser(ctx context.Context, st provision.Store, read func(ctx context.Context, tx provision.Store) (provision.User, error)) error {
	return st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		cur, err := read(ctx, tx)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(cur.Attributes["n"]))
		if err != nil {
			return fmt.Errorf("counter %q: %w", cur.Attributes["n"], err)
		}
		next := cur
		next.Attributes = map[string]json.RawMessage{"n": json.RawMessage(strconv.Itoa(n + 1))}
		_, err = tx.UpdateUser(ctx, next, cur.Version)
		return err
	})
}
