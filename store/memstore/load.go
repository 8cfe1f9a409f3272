package memstore

import (
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
)

// Load seeds tenantID with users in one step, without the engine, events
// or links: a helper for benchmarks, demos and tests that need many users
// fast. It is not a provisioning path, and the engine does not know the
// users were loaded.
//
// Each user is stored like CreateUser stores it (a copy, an ID assigned
// when empty, Version 1), and Load writes the ID, TenantID and Version
// back into users[i] so that the caller knows them. A user naming another
// tenant, a userName taken (case-insensitively, by a live user already
// stored or earlier in users) or an ID already used is an error, and then
// nothing is loaded.
func (s *Store) Load(tenantID string, users []provision.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.st
	t := st.tenants[tenantID]
	fresh := t == nil

	// Check everything first, so that a failure loads nothing.
	names := make(map[string]int, len(users))
	ids := map[string]int{}
	for i := range users {
		u := &users[i]
		if u.TenantID != "" && u.TenantID != tenantID {
			return fmt.Errorf("memstore: Load: user %d belongs to tenant %q, not %q: %w", i, u.TenantID, tenantID, provision.ErrInvalid)
		}
		if u.ID != "" {
			if _, dup := ids[u.ID]; dup || (t != nil && t.users[u.ID] != nil) {
				return fmt.Errorf("memstore: Load: user %d: %w", i, &provision.ConflictError{Field: "id", Value: u.ID})
			}
			ids[u.ID] = i
		}
		if u.IsDeleted() {
			continue
		}
		k := fold(u.UserName)
		if j, dup := names[k]; dup {
			return fmt.Errorf("memstore: Load: users %d and %d: %w", j, i, &provision.ConflictError{Field: "userName", Value: u.UserName})
		}
		if t != nil {
			if o := t.byUserName[k]; o != nil {
				return fmt.Errorf("memstore: Load: user %d: %w", i, &provision.ConflictError{Field: "userName", Value: u.UserName, ExistingID: o.u.ID, Owner: o.u.Owner})
			}
		}
		names[k] = i
	}
	names, ids = nil, nil

	if fresh {
		t = newTenant(tenantID, len(users))
		st.tenants[tenantID] = t
	}
	t.userOrder.items = slices.Grow(t.userOrder.items, len(users))
	t.userOrder.fen = slices.Grow(t.userOrder.fen, len(users))
	for i := range users {
		u := &users[i]
		u.TenantID = tenantID
		if u.ID == "" {
			for u.ID = st.newID(); t.users[u.ID] != nil; u.ID = st.newID() {
			}
		}
		u.Version = 1
		r := &userRec{u: provision.CloneUser(*u), pos: -1}
		if r.u.IsDeleted() {
			t.tombs[r] = struct{}{}
		} else {
			t.linkNames(r)
			r.pos = t.userOrder.push(r)
		}
		t.users[u.ID] = r
	}
	return nil
}
