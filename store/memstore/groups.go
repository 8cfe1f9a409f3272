package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
)

func groupNotFound(tenantID, id string) error {
	return fmt.Errorf("memstore: group %q of tenant %q: %w", id, tenantID, provision.ErrNotFound)
}

func (st *state) group(tenantID, id string) (*tenant, *groupRec, error) {
	if t := st.tenantR(tenantID); t != nil {
		if g := t.groups[id]; g != nil {
			return t, g, nil
		}
	}
	return nil, nil, groupNotFound(tenantID, id)
}

func (st *state) getGroup(tenantID, id string) (provision.Group, error) {
	_, g, err := st.group(tenantID, id)
	if err != nil {
		return provision.Group{}, err
	}
	return provision.CloneGroup(g.g), nil
}

func (st *state) groupsByDisplayName(tenantID, name string) []provision.Group {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.Group{}
	}
	gs := t.groupsByName[fold(name)]
	out := make([]provision.Group, len(gs))
	for i, g := range gs {
		out[i] = provision.CloneGroup(g.g)
	}
	return out
}

func (st *state) listGroups(tenantID string, p provision.Page) ([]provision.Group, int) {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.Group{}, 0
	}
	out := make([]provision.Group, 0, t.groupOrder.count(p))
	t.groupOrder.page(p, func(g *groupRec) { out = append(out, provision.CloneGroup(g.g)) })
	return out, t.groupOrder.live
}

func compareGroups(a, b *groupRec) int { return cmp.Compare(a.g.ID, b.g.ID) }

// indexGroupName adds g to the displayName index, refusing a name another
// group of the same owner has.
func (st *state) indexGroupName(t *tenant, g *groupRec) error {
	k := fold(g.g.DisplayName)
	gs := t.groupsByName[k]
	for _, o := range gs {
		if o != g && o.g.Owner == g.g.Owner {
			return &provision.ConflictError{Field: "displayName", Value: g.g.DisplayName, ExistingID: o.g.ID, Owner: o.g.Owner}
		}
	}
	i, _ := slices.BinarySearchFunc(gs, g, compareGroups)
	t.groupsByName[k] = slices.Insert(gs, i, g)
	st.do(func() { t.unlinkGroupName(k, g) })
	return nil
}

func (t *tenant) unlinkGroupName(k string, g *groupRec) {
	gs := t.groupsByName[k]
	if i := slices.Index(gs, g); i >= 0 {
		gs = slices.Delete(gs, i, i+1)
	}
	if len(gs) == 0 {
		delete(t.groupsByName, k)
	} else {
		t.groupsByName[k] = gs
	}
}

func (st *state) unindexGroupName(t *tenant, g *groupRec) {
	k := fold(g.g.DisplayName)
	t.unlinkGroupName(k, g)
	st.do(func() {
		gs := t.groupsByName[k]
		i, _ := slices.BinarySearchFunc(gs, g, compareGroups)
		t.groupsByName[k] = slices.Insert(gs, i, g)
	})
}

func (st *state) createGroup(in provision.Group) (provision.Group, error) {
	t := st.tenantW(in.TenantID)
	id := in.ID
	if id != "" {
		if o := t.groups[id]; o != nil {
			return provision.Group{}, &provision.ConflictError{Field: "id", Value: id, ExistingID: id, Owner: o.g.Owner}
		}
	} else {
		for id = st.newID(); t.groups[id] != nil; id = st.newID() {
		}
	}
	g := &groupRec{g: provision.CloneGroup(in), members: map[*userRec]int{}}
	g.g.ID = id
	g.g.Version = 1
	if err := st.indexGroupName(t, g); err != nil {
		return provision.Group{}, err
	}
	g.pos = t.groupOrder.push(g)
	t.groups[id] = g
	st.do(func() {
		delete(t.groups, id)
		t.groupOrder.pop()
	})
	return provision.CloneGroup(g.g), nil
}

func versionConflict(kind, id string, have, want int64) error {
	return fmt.Errorf("memstore: %s %q is at version %d, not %d: %w", kind, id, have, want, provision.ErrVersionConflict)
}

func (st *state) updateGroup(in provision.Group, expected int64) (provision.Group, error) {
	t, g, err := st.group(in.TenantID, in.ID)
	if err != nil {
		return provision.Group{}, err
	}
	if g.g.Version != expected {
		return provision.Group{}, versionConflict("group", in.ID, g.g.Version, expected)
	}
	st.unindexGroupName(t, g)
	old := g.g
	g.g = provision.CloneGroup(in)
	g.g.Version = expected + 1
	st.do(func() { g.g = old })
	if err := st.indexGroupName(t, g); err != nil {
		return provision.Group{}, err
	}
	return provision.CloneGroup(g.g), nil
}

func (st *state) deleteGroup(tenantID, id string, expected int64) error {
	t, g, err := st.group(tenantID, id)
	if err != nil {
		return err
	}
	if g.g.Version != expected {
		return versionConflict("group", id, g.g.Version, expected)
	}
	// The members keep the deleted group's record (for a rollback); only
	// the users' side of the relation is cut.
	for r := range g.members {
		r.dropGroup(g)
	}
	st.do(func() {
		for r := range g.members {
			r.groups = append(r.groups, g)
		}
	})
	st.deleteLinksOf(t, provision.ResourceGroup, id)
	st.unindexGroupName(t, g)
	i := g.pos
	t.groupOrder.remove(i)
	st.touch(t)
	delete(t.groups, id)
	st.do(func() {
		t.groups[id] = g
		t.groupOrder.restore(i, g)
	})
	return nil
}

// dropGroup removes g from r's groups. The order of r.groups is free, so
// every undo of a change to it works by value, not by position.
func (r *userRec) dropGroup(g *groupRec) {
	i := slices.Index(r.groups, g)
	last := len(r.groups) - 1
	r.groups[i] = r.groups[last]
	r.groups[last] = nil
	r.groups = r.groups[:last]
}

// addMember makes r a member of g; r is not one yet.
func (st *state) addMember(g *groupRec, r *userRec) {
	g.members[r] = g.order.push(r)
	r.groups = append(r.groups, g)
	st.do(func() {
		r.dropGroup(g)
		delete(g.members, r)
		g.order.pop()
	})
}

// removeMember ends r's membership of g; r is a member.
func (st *state) removeMember(g *groupRec, r *userRec) {
	i := g.members[r]
	g.order.remove(i)
	delete(g.members, r)
	st.touch(g)
	r.dropGroup(g)
	st.do(func() {
		r.groups = append(r.groups, g)
		g.members[r] = i
		g.order.restore(i, r)
	})
}

func (st *state) addMembers(tenantID, groupID string, userIDs []string) ([]string, error) {
	t, g, err := st.group(tenantID, groupID)
	if err != nil {
		return nil, err
	}
	for _, id := range userIDs {
		if r := t.users[id]; r == nil || r.u.IsDeleted() {
			return nil, fmt.Errorf("memstore: member %q of group %q: %w", id, groupID, userNotFound(tenantID, id))
		}
	}
	added := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		r := t.users[id]
		if _, ok := g.members[r]; ok {
			continue
		}
		st.addMember(g, r)
		added = append(added, id)
	}
	return added, nil
}

func (st *state) removeMembers(tenantID, groupID string, userIDs []string) ([]string, error) {
	t, g, err := st.group(tenantID, groupID)
	if err != nil {
		return nil, err
	}
	removed := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		r := t.users[id]
		if r == nil {
			continue
		}
		if _, ok := g.members[r]; !ok {
			continue
		}
		st.removeMember(g, r)
		removed = append(removed, id)
	}
	return removed, nil
}

func (st *state) listMembers(tenantID, groupID string, p provision.Page) ([]string, int, error) {
	_, g, err := st.group(tenantID, groupID)
	if err != nil {
		return nil, 0, err
	}
	out := make([]string, 0, g.order.count(p))
	g.order.page(p, func(r *userRec) { out = append(out, r.u.ID) })
	return out, g.order.live, nil
}

func (st *state) isMember(tenantID, groupID, userID string) (bool, error) {
	t, g, err := st.group(tenantID, groupID)
	if err != nil {
		return false, err
	}
	r := t.users[userID]
	if r == nil {
		return false, nil
	}
	_, ok := g.members[r]
	return ok, nil
}

func (st *state) groupsOfUser(tenantID, userID string) ([]string, error) {
	t := st.tenantR(tenantID)
	var r *userRec
	if t != nil {
		r = t.users[userID]
	}
	if r == nil {
		return nil, userNotFound(tenantID, userID)
	}
	out := make([]string, len(r.groups))
	for i, g := range r.groups {
		out[i] = g.g.ID
	}
	slices.Sort(out)
	return out, nil
}

// GetGroup returns the group with id.
func (s *Store) GetGroup(ctx context.Context, tenantID, id string) (g provision.Group, err error) {
	err = s.read(ctx, func(st *state) error { g, err = st.getGroup(tenantID, id); return err })
	return g, err
}

// GroupsByDisplayName returns the groups named name (case-insensitive),
// in ID order.
func (s *Store) GroupsByDisplayName(ctx context.Context, tenantID, name string) (gs []provision.Group, err error) {
	err = s.read(ctx, func(st *state) error { gs = st.groupsByDisplayName(tenantID, name); return nil })
	return gs, err
}

// ListGroups returns a page of the groups in creation order, and their
// total.
func (s *Store) ListGroups(ctx context.Context, tenantID string, p provision.Page) (gs []provision.Group, total int, err error) {
	err = s.read(ctx, func(st *state) error { gs, total = st.listGroups(tenantID, p); return nil })
	return gs, total, err
}

// CreateGroup stores g as a new group, assigning its ID when empty.
func (s *Store) CreateGroup(ctx context.Context, g provision.Group) (out provision.Group, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.createGroup(g); return err })
	return out, err
}

// UpdateGroup replaces the group g.ID if it is at expectedVersion.
func (s *Store) UpdateGroup(ctx context.Context, g provision.Group, expectedVersion int64) (out provision.Group, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.updateGroup(g, expectedVersion); return err })
	return out, err
}

// DeleteGroup removes the group, its memberships and its links, if it is
// at expectedVersion. It costs O(members).
func (s *Store) DeleteGroup(ctx context.Context, tenantID, id string, expectedVersion int64) error {
	return s.write(ctx, func(st *state) error { return st.deleteGroup(tenantID, id, expectedVersion) })
}

// AddMembers adds the users to the group and returns those that were not
// members; every user must be a live user of the tenant. It costs
// O(len(userIDs)), whatever the group's size.
func (s *Store) AddMembers(ctx context.Context, tenantID, groupID string, userIDs []string) (added []string, err error) {
	err = s.write(ctx, func(st *state) error { added, err = st.addMembers(tenantID, groupID, userIDs); return err })
	return added, err
}

// RemoveMembers removes the users from the group and returns those that
// were members. It costs O(len(userIDs)), whatever the group's size.
func (s *Store) RemoveMembers(ctx context.Context, tenantID, groupID string, userIDs []string) (removed []string, err error) {
	err = s.write(ctx, func(st *state) error { removed, err = st.removeMembers(tenantID, groupID, userIDs); return err })
	return removed, err
}

// ListMembers returns a page of the group's member IDs in the order they
// were added, and their total.
func (s *Store) ListMembers(ctx context.Context, tenantID, groupID string, p provision.Page) (ids []string, total int, err error) {
	err = s.read(ctx, func(st *state) error { ids, total, err = st.listMembers(tenantID, groupID, p); return err })
	return ids, total, err
}

// IsMember reports whether the user is a member of the group; a missing
// group is ErrNotFound, a missing user is not a member.
func (s *Store) IsMember(ctx context.Context, tenantID, groupID, userID string) (ok bool, err error) {
	err = s.read(ctx, func(st *state) error { ok, err = st.isMember(tenantID, groupID, userID); return err })
	return ok, err
}

// GroupsOfUser returns the IDs of the user's groups in ID order; a missing
// user is ErrNotFound.
func (s *Store) GroupsOfUser(ctx context.Context, tenantID, userID string) (ids []string, err error) {
	err = s.read(ctx, func(st *state) error { ids, err = st.groupsOfUser(tenantID, userID); return err })
	return ids, err
}

// GetGroup implements provision.Store in the transaction.
func (t *tx) GetGroup(ctx context.Context, tenantID, id string) (g provision.Group, err error) {
	err = t.read(ctx, func(st *state) error { g, err = st.getGroup(tenantID, id); return err })
	return g, err
}

// GroupsByDisplayName implements provision.Store in the transaction.
func (t *tx) GroupsByDisplayName(ctx context.Context, tenantID, name string) (gs []provision.Group, err error) {
	err = t.read(ctx, func(st *state) error { gs = st.groupsByDisplayName(tenantID, name); return nil })
	return gs, err
}

// ListGroups implements provision.Store in the transaction.
func (t *tx) ListGroups(ctx context.Context, tenantID string, p provision.Page) (gs []provision.Group, total int, err error) {
	err = t.read(ctx, func(st *state) error { gs, total = st.listGroups(tenantID, p); return nil })
	return gs, total, err
}

// CreateGroup implements provision.Store in the transaction.
func (t *tx) CreateGroup(ctx context.Context, g provision.Group) (out provision.Group, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.createGroup(g); return err })
	return out, err
}

// UpdateGroup implements provision.Store in the transaction.
func (t *tx) UpdateGroup(ctx context.Context, g provision.Group, expectedVersion int64) (out provision.Group, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.updateGroup(g, expectedVersion); return err })
	return out, err
}

// DeleteGroup implements provision.Store in the transaction.
func (t *tx) DeleteGroup(ctx context.Context, tenantID, id string, expectedVersion int64) error {
	return t.write(ctx, func(st *state) error { return st.deleteGroup(tenantID, id, expectedVersion) })
}

// AddMembers implements provision.Store in the transaction.
func (t *tx) AddMembers(ctx context.Context, tenantID, groupID string, userIDs []string) (added []string, err error) {
	err = t.write(ctx, func(st *state) error { added, err = st.addMembers(tenantID, groupID, userIDs); return err })
	return added, err
}

// RemoveMembers implements provision.Store in the transaction.
func (t *tx) RemoveMembers(ctx context.Context, tenantID, groupID string, userIDs []string) (removed []string, err error) {
	err = t.write(ctx, func(st *state) error { removed, err = st.removeMembers(tenantID, groupID, userIDs); return err })
	return removed, err
}

// ListMembers implements provision.Store in the transaction.
func (t *tx) ListMembers(ctx context.Context, tenantID, groupID string, p provision.Page) (ids []string, total int, err error) {
	err = t.read(ctx, func(st *state) error { ids, total, err = st.listMembers(tenantID, groupID, p); return err })
	return ids, total, err
}

// IsMember implements provision.Store in the transaction.
func (t *tx) IsMember(ctx context.Context, tenantID, groupID, userID string) (ok bool, err error) {
	err = t.read(ctx, func(st *state) error { ok, err = st.isMember(tenantID, groupID, userID); return err })
	return ok, err
}

// GroupsOfUser implements provision.Store in the transaction.
func (t *tx) GroupsOfUser(ctx context.Context, tenantID, userID string) (ids []string, err error) {
	err = t.read(ctx, func(st *state) error { ids, err = st.groupsOfUser(tenantID, userID); return err })
	return ids, err
}
