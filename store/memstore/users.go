package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/idprov/idprov/provision"
)

func userNotFound(tenantID, id string) error {
	return fmt.Errorf("memstore: user %q of tenant %q: %w", id, tenantID, provision.ErrNotFound)
}

func (st *state) getUser(tenantID, id string) (provision.User, error) {
	if t := st.tenantR(tenantID); t != nil {
		if r := t.users[id]; r != nil {
			return provision.CloneUser(r.u), nil
		}
	}
	return provision.User{}, userNotFound(tenantID, id)
}

func (st *state) userByUserName(tenantID, userName string) (provision.User, error) {
	if t := st.tenantR(tenantID); t != nil {
		if r := t.byUserName[fold(userName)]; r != nil {
			return provision.CloneUser(r.u), nil
		}
	}
	return provision.User{}, fmt.Errorf("memstore: userName %q in tenant %q: %w", userName, tenantID, provision.ErrNotFound)
}

func (st *state) usersByEmail(tenantID, email string) []provision.User {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.User{}
	}
	recs := t.byEmail[fold(email)]
	out := make([]provision.User, 0, len(recs))
	for _, r := range recs {
		out = append(out, provision.CloneUser(r.u))
	}
	slices.SortFunc(out, func(a, b provision.User) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (st *state) listUsers(tenantID string, p provision.Page) ([]provision.User, int) {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.User{}, 0
	}
	out := make([]provision.User, 0, t.userOrder.count(p))
	t.userOrder.page(p, func(r *userRec) { out = append(out, provision.CloneUser(r.u)) })
	return out, t.userOrder.live
}

func (st *state) deletedUsers(tenantID string, before time.Time, limit int) []provision.User {
	t := st.tenantR(tenantID)
	if t == nil || limit <= 0 {
		return []provision.User{}
	}
	var recs []*userRec
	for r := range t.tombs {
		if r.u.Deleted.Before(before) {
			recs = append(recs, r)
		}
	}
	slices.SortFunc(recs, func(a, b *userRec) int {
		if c := a.u.Deleted.Compare(b.u.Deleted); c != 0 {
			return c
		}
		return cmp.Compare(a.u.ID, b.u.ID)
	})
	recs = recs[:min(limit, len(recs))]
	out := make([]provision.User, len(recs))
	for i, r := range recs {
		out[i] = provision.CloneUser(r.u)
	}
	return out
}

// linkNames adds r to the userName and e-mail indexes, unchecked and
// unjournaled.
func (t *tenant) linkNames(r *userRec) {
	t.byUserName[fold(r.u.UserName)] = r
	for _, e := range r.u.Emails {
		if e.Value == "" {
			continue
		}
		k := fold(e.Value)
		if s := t.byEmail[k]; !slices.Contains(s, r) {
			t.byEmail[k] = append(s, r)
		}
	}
}

// unlinkNames removes r from the userName and e-mail indexes, unjournaled.
func (t *tenant) unlinkNames(r *userRec) {
	k := fold(r.u.UserName)
	if t.byUserName[k] == r {
		delete(t.byUserName, k)
	}
	for _, e := range r.u.Emails {
		k := fold(e.Value)
		s := t.byEmail[k]
		if i := slices.Index(s, r); i >= 0 {
			s = slices.Delete(s, i, i+1)
			if len(s) == 0 {
				delete(t.byEmail, k)
			} else {
				t.byEmail[k] = s
			}
		}
	}
}

// indexNames indexes the live user r, refusing a userName another live
// user has.
func (st *state) indexNames(t *tenant, r *userRec) error {
	if o := t.byUserName[fold(r.u.UserName)]; o != nil && o != r {
		return &provision.ConflictError{Field: "userName", Value: r.u.UserName, ExistingID: o.u.ID, Owner: o.u.Owner}
	}
	t.linkNames(r)
	st.do(func() { t.unlinkNames(r) })
	return nil
}

func (st *state) unindexNames(t *tenant, r *userRec) {
	t.unlinkNames(r)
	st.do(func() { t.linkNames(r) })
}

// setLive puts the user into the live order (live) or the tombstones.
func (st *state) setLive(t *tenant, r *userRec, live bool) {
	if live {
		r.pos = t.userOrder.push(r)
		st.do(func() { t.userOrder.pop(); r.pos = -1 })
		return
	}
	if _, ok := t.tombs[r]; ok {
		return
	}
	t.tombs[r] = struct{}{}
	st.do(func() { delete(t.tombs, r) })
}

// unsetLive takes the user out of the live order (live) or the tombstones.
func (st *state) unsetLive(t *tenant, r *userRec, live bool) {
	if !live {
		delete(t.tombs, r)
		st.do(func() { t.tombs[r] = struct{}{} })
		return
	}
	i := r.pos
	t.userOrder.remove(i)
	r.pos = -1
	st.touch(t)
	st.do(func() { t.userOrder.restore(i, r); r.pos = i })
}

// freeUserID returns id, or a new ID when id is empty; a used id is
// ErrAlreadyExists.
func (st *state) freeUserID(t *tenant, id string) (string, error) {
	if id != "" {
		if o := t.users[id]; o != nil {
			return "", &provision.ConflictError{Field: "id", Value: id, ExistingID: id, Owner: o.u.Owner}
		}
		return id, nil
	}
	for {
		id = st.newID()
		if t.users[id] == nil {
			return id, nil
		}
	}
}

func (st *state) createUser(u provision.User) (provision.User, error) {
	t := st.tenantW(u.TenantID)
	id, err := st.freeUserID(t, u.ID)
	if err != nil {
		return provision.User{}, err
	}
	r := &userRec{u: provision.CloneUser(u), pos: -1}
	r.u.ID = id
	r.u.Version = 1
	live := !r.u.IsDeleted()
	if live {
		if err := st.indexNames(t, r); err != nil {
			return provision.User{}, err
		}
	}
	st.setLive(t, r, live)
	t.users[id] = r
	st.do(func() { delete(t.users, id) })
	return provision.CloneUser(r.u), nil
}

func (st *state) updateUser(u provision.User, expected int64) (provision.User, error) {
	t := st.tenantR(u.TenantID)
	var r *userRec
	if t != nil {
		r = t.users[u.ID]
	}
	if r == nil {
		return provision.User{}, userNotFound(u.TenantID, u.ID)
	}
	if r.u.Version != expected {
		return provision.User{}, fmt.Errorf("memstore: user %q is at version %d, not %d: %w", u.ID, r.u.Version, expected, provision.ErrVersionConflict)
	}
	wasLive, old := !r.u.IsDeleted(), r.u
	if wasLive {
		st.unindexNames(t, r)
	}
	r.u = provision.CloneUser(u)
	r.u.Version = expected + 1
	st.do(func() { r.u = old })
	live := !r.u.IsDeleted()
	if live {
		if err := st.indexNames(t, r); err != nil {
			return provision.User{}, err
		}
	}
	if live != wasLive {
		st.unsetLive(t, r, wasLive)
		st.setLive(t, r, live)
	}
	return provision.CloneUser(r.u), nil
}

func (st *state) purgeUser(tenantID, id string) error {
	t := st.tenantR(tenantID)
	var r *userRec
	if t != nil {
		r = t.users[id]
	}
	if r == nil {
		return userNotFound(tenantID, id)
	}
	live := !r.u.IsDeleted()
	if live {
		st.unindexNames(t, r)
	}
	st.unsetLive(t, r, live)
	for len(r.groups) > 0 {
		st.removeMember(r.groups[len(r.groups)-1], r)
	}
	st.deleteLinksOf(t, provision.ResourceUser, id)
	delete(t.users, id)
	st.do(func() { t.users[id] = r })
	return nil
}

// GetUser returns the user with id, tombstones included.
func (s *Store) GetUser(ctx context.Context, tenantID, id string) (u provision.User, err error) {
	err = s.read(ctx, func(st *state) error { u, err = st.getUser(tenantID, id); return err })
	return u, err
}

// UserByUserName returns the live user whose UserName equals userName
// case-insensitively.
func (s *Store) UserByUserName(ctx context.Context, tenantID, userName string) (u provision.User, err error) {
	err = s.read(ctx, func(st *state) error { u, err = st.userByUserName(tenantID, userName); return err })
	return u, err
}

// UsersByEmail returns the live users having the e-mail address
// (case-insensitive), in ID order.
func (s *Store) UsersByEmail(ctx context.Context, tenantID, email string) (us []provision.User, err error) {
	err = s.read(ctx, func(st *state) error { us = st.usersByEmail(tenantID, email); return nil })
	return us, err
}

// ListUsers returns a page of the live users in creation order, and their
// total.
func (s *Store) ListUsers(ctx context.Context, tenantID string, p provision.Page) (us []provision.User, total int, err error) {
	err = s.read(ctx, func(st *state) error { us, total = st.listUsers(tenantID, p); return nil })
	return us, total, err
}

// CreateUser stores u as a new user, assigning its ID when empty.
func (s *Store) CreateUser(ctx context.Context, u provision.User) (out provision.User, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.createUser(u); return err })
	return out, err
}

// UpdateUser replaces the user u.ID if it is at expectedVersion.
func (s *Store) UpdateUser(ctx context.Context, u provision.User, expectedVersion int64) (out provision.User, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.updateUser(u, expectedVersion); return err })
	return out, err
}

// DeletedUsers returns at most limit tombstones deleted before the time,
// oldest first. It scans the tenant's tombstones.
func (s *Store) DeletedUsers(ctx context.Context, tenantID string, before time.Time, limit int) (us []provision.User, err error) {
	err = s.read(ctx, func(st *state) error { us = st.deletedUsers(tenantID, before, limit); return nil })
	return us, err
}

// PurgeUser removes a user for good, with its links and memberships.
func (s *Store) PurgeUser(ctx context.Context, tenantID, id string) error {
	return s.write(ctx, func(st *state) error { return st.purgeUser(tenantID, id) })
}

// GetUser implements provision.Store in the transaction.
func (t *tx) GetUser(ctx context.Context, tenantID, id string) (u provision.User, err error) {
	err = t.read(ctx, func(st *state) error { u, err = st.getUser(tenantID, id); return err })
	return u, err
}

// UserByUserName implements provision.Store in the transaction.
func (t *tx) UserByUserName(ctx context.Context, tenantID, userName string) (u provision.User, err error) {
	err = t.read(ctx, func(st *state) error { u, err = st.userByUserName(tenantID, userName); return err })
	return u, err
}

// UsersByEmail implements provision.Store in the transaction.
func (t *tx) UsersByEmail(ctx context.Context, tenantID, email string) (us []provision.User, err error) {
	err = t.read(ctx, func(st *state) error { us = st.usersByEmail(tenantID, email); return nil })
	return us, err
}

// ListUsers implements provision.Store in the transaction.
func (t *tx) ListUsers(ctx context.Context, tenantID string, p provision.Page) (us []provision.User, total int, err error) {
	err = t.read(ctx, func(st *state) error { us, total = st.listUsers(tenantID, p); return nil })
	return us, total, err
}

// CreateUser implements provision.Store in the transaction.
func (t *tx) CreateUser(ctx context.Context, u provision.User) (out provision.User, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.createUser(u); return err })
	return out, err
}

// UpdateUser implements provision.Store in the transaction.
func (t *tx) UpdateUser(ctx context.Context, u provision.User, expectedVersion int64) (out provision.User, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.updateUser(u, expectedVersion); return err })
	return out, err
}

// DeletedUsers implements provision.Store in the transaction.
func (t *tx) DeletedUsers(ctx context.Context, tenantID string, before time.Time, limit int) (us []provision.User, err error) {
	err = t.read(ctx, func(st *state) error { us = st.deletedUsers(tenantID, before, limit); return nil })
	return us, err
}

// PurgeUser implements provision.Store in the transaction.
func (t *tx) PurgeUser(ctx context.Context, tenantID, id string) error {
	return t.write(ctx, func(st *state) error { return st.purgeUser(tenantID, id) })
}
