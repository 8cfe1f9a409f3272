package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// CreateGroup creates a group of o's tenant owned by o's connection, with
// the given members (user IDs of the tenant). A retried create (same
// connection, ExternalID and displayName) returns the existing group and
// emits nothing. A displayName already used by a group of the same owner
// is a *ConflictError; an unknown member id is a *MembersError and nothing
// is created. Emits group.created, then group.members_added when members
// were given.
func (e *Engine) CreateGroup(ctx context.Context, o Origin, g Group, members []string) (Group, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return Group{}, err
	}
	if err := validateGroup(g); err != nil {
		return Group{}, err
	}
	members = dedupe(members)
	var out Group
	err = e.atomically(ctx, s, false, func(ctx context.Context, tx Store, rec *recorder) error {
		tid := s.tenant.ID
		if g.ExternalID != "" {
			l, err := tx.GetLink(ctx, tid, ResourceGroup, s.conn.ID, g.ExternalID)
			switch {
			case err == nil:
				ex, err := tx.GetGroup(ctx, tid, l.ResourceID)
				if err != nil {
					return err
				}
				if !strings.EqualFold(ex.DisplayName, g.DisplayName) {
					return &ConflictError{Field: "externalId", Value: g.ExternalID, ExistingID: ex.ID, Owner: ex.Owner}
				}
				ex.ExternalID = g.ExternalID
				out = ex
				return nil
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		if err := e.checkNameFree(ctx, s, tx, g.DisplayName, ""); err != nil {
			return err
		}
		if err := e.checkMembers(ctx, s, tx, members, false); err != nil {
			return err
		}
		now := e.now().UTC()
		ng := cloneGroup(g)
		ng.ID, ng.ExternalID, ng.TenantID, ng.Owner = "", "", tid, s.conn.ID
		ng.Version, ng.Created, ng.Modified = 0, now, now
		created, err := tx.CreateGroup(ctx, ng)
		if err != nil {
			return err
		}
		if g.ExternalID != "" {
			if err := tx.CreateLink(ctx, Link{TenantID: tid, Kind: ResourceGroup, ConnectionID: s.conn.ID, ExternalID: g.ExternalID, ResourceID: created.ID, Created: now}); err != nil {
				return err
			}
		}
		after := cloneGroup(created)
		rec.add(Change{Kind: GroupCreated, Origin: s.origin, GroupAfter: &after})
		if len(members) > 0 {
			added, err := tx.AddMembers(ctx, tid, created.ID, members)
			if err != nil {
				return err
			}
			rec.add(Change{Kind: GroupMembersAdded, Origin: s.origin, GroupAfter: &after, Members: added})
		}
		created.ExternalID = g.ExternalID
		out = created
		return nil
	})
	if err != nil {
		return Group{}, err
	}
	return out, nil
}

// checkNameFree refuses a displayName that another group of the same owner
// (the calling connection) already has.
func (e *Engine) checkNameFree(ctx context.Context, s scope, st Store, name, self string) error {
	groups, err := st.GroupsByDisplayName(ctx, s.tenant.ID, name)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if g.Owner == s.conn.ID && g.ID != self {
			return &ConflictError{Field: "displayName", Value: name, ExistingID: g.ID, Owner: g.Owner}
		}
	}
	return nil
}

// checkMembers refuses ids that are not live users of the tenant. For a
// removal, deleted users are accepted (their memberships are already gone).
func (e *Engine) checkMembers(ctx context.Context, s scope, st Store, ids []string, removal bool) error {
	var unknown []string
	for _, id := range ids {
		if !validKey(id) {
			unknown = append(unknown, id)
			continue
		}
		u, err := st.GetUser(ctx, s.tenant.ID, id)
		switch {
		case errors.Is(err, ErrNotFound):
			unknown = append(unknown, id)
		case err != nil:
			return err
		case u.IsDeleted() && !removal:
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return &MembersError{Unknown: unknown}
	}
	return nil
}

func dedupe(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// GroupUpdate is a change of a group: its attributes, its members, or
// both as one intent (a SCIM PATCH that renames a group and changes its
// members, an LDAP group sync).
type GroupUpdate struct {
	// Mutate, when set, changes a copy of the group's attributes; the
	// rules are UpdateUser's (the ID, owner and timestamps are the
	// engine's).
	Mutate func(g *Group) error
	// Add and Remove are user IDs to add and remove. Every id added must
	// be a live user of the tenant; ids of deleted users are accepted as
	// removals that change nothing; any unknown id is a *MembersError and
	// nothing at all is applied. Their cost does not depend on the group's
	// size.
	Add, Remove []string
	// ReplaceMembers makes the members exactly Members (Add and Remove are
	// then ignored): a SCIM replace of members, an LDAP group sync. Its
	// cost is the group's size. A replace that would remove many members
	// is held as a plan instead (*HeldError; see Config.HoldMemberDrops
	// and Engine.Plans).
	ReplaceMembers bool
	Members        []string

	// confirmed applies a held replace (ConfirmPlan).
	confirmed bool
}

// UpdateGroup changes group id in one transaction: all of u, or nothing
// (an unknown member id or a displayName conflict refuses the whole
// update). It returns the group as stored and the membership change: the
// user IDs that joined (group.members_added) and left
// (group.members_removed); a change of attributes is group.updated. A
// membership change bumps the group's version, so its ETag protects a
// replace of members.
func (e *Engine) UpdateGroup(ctx context.Context, o Origin, id string, pre Precondition, p GroupUpdate) (Group, MembershipChange, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return Group{}, MembershipChange{}, err
	}
	add, remove, want := dedupe(p.Add), dedupe(p.Remove), dedupe(p.Members)
	var out Group
	var mc MembershipChange
	err = e.atomically(ctx, s, pre.Version != 0, func(ctx context.Context, tx Store, rec *recorder) error {
		mc = MembershipChange{}
		n := len(rec.changes)
		g, err := e.updateGroupTx(ctx, s, tx, rec, id, pre, p.Mutate)
		if err != nil {
			return err
		}
		stored := len(rec.changes) > n // the group's version changed already
		out = g
		switch {
		case p.ReplaceMembers:
			if err := e.checkMembers(ctx, s, tx, want, false); err != nil {
				return err
			}
			cur, err := allMembers(ctx, tx, s.tenant.ID, id)
			if err != nil {
				return err
			}
			keep := make(map[string]struct{}, len(want))
			for _, m := range want {
				keep[m] = struct{}{}
			}
			var drop []string
			for _, m := range cur {
				if _, ok := keep[m]; !ok {
					drop = append(drop, m)
				}
			}
			if !p.confirmed && e.memberDrops.holds(len(drop), len(cur)) {
				return e.newMembersPlan(s, id, want, cur, drop)
			}
			out, err = e.applyMembers(ctx, s, tx, rec, g, stored, pre.Version != 0, want, drop, &mc)
			return err
		case len(add) > 0 || len(remove) > 0:
			if err := e.checkMembers(ctx, s, tx, add, false); err != nil {
				return err
			}
			if err := e.checkMembers(ctx, s, tx, remove, true); err != nil {
				return err
			}
			out, err = e.applyMembers(ctx, s, tx, rec, g, stored, pre.Version != 0, add, remove, &mc)
			return err
		}
		return nil
	})
	var held *membersPlan
	if errors.As(err, &held) {
		return Group{}, MembershipChange{}, e.holdMembersPlan(ctx, held)
	}
	if err != nil {
		return Group{}, MembershipChange{}, err
	}
	return out, mc, nil
}

// updateGroupTx applies mutate (if any) to group id inside tx, checking
// the precondition and ownership.
func (e *Engine) updateGroupTx(ctx context.Context, s scope, tx Store, rec *recorder, id string, pre Precondition, mutate func(*Group) error) (Group, error) {
	if err := checkKey("group", id); err != nil {
		return Group{}, err
	}
	cur, err := tx.GetGroup(ctx, s.tenant.ID, id)
	if err != nil {
		return Group{}, err
	}
	if pre.Version != 0 && cur.Version != pre.Version {
		return Group{}, fmt.Errorf("%w: group %s is at version %d, not %d", ErrVersionConflict, id, cur.Version, pre.Version)
	}
	adopt, err := s.mayWrite(cur.Owner)
	if err != nil {
		return Group{}, err
	}
	if mutate == nil {
		return cur, nil // a membership change: the group itself stays
	}
	link, lerr := e.groupLinkOf(ctx, tx, s, id)
	if lerr != nil && !errors.Is(lerr, ErrNotFound) {
		return Group{}, lerr
	}
	cur.ExternalID = link.ExternalID
	next := cloneGroup(cur)
	if err := mutate(&next); err != nil {
		return Group{}, err
	}
	owner := cur.Owner
	if adopt {
		owner = s.conn.ID
	}
	next.ID, next.TenantID, next.Owner = cur.ID, cur.TenantID, owner
	next.Version, next.Created, next.Modified = cur.Version, cur.Created, cur.Modified
	if err := validateGroup(next); err != nil {
		return Group{}, err
	}
	fields := groupChanges(cur, next)
	if owner != cur.Owner {
		fields = append(fields, "owner")
	}
	if next.DisplayName != cur.DisplayName || owner != cur.Owner {
		if err := e.checkNameFree(ctx, scope{origin: s.origin, tenant: s.tenant, conn: Connection{ID: owner}}, tx, next.DisplayName, id); err != nil {
			return Group{}, err
		}
	}
	if next.ExternalID != cur.ExternalID && !s.isAdmin() {
		if lerr == nil {
			if err := tx.DeleteLink(ctx, s.tenant.ID, ResourceGroup, s.conn.ID, link.ExternalID); err != nil {
				return Group{}, err
			}
		}
		if next.ExternalID != "" {
			if err := tx.CreateLink(ctx, Link{TenantID: s.tenant.ID, Kind: ResourceGroup, ConnectionID: s.conn.ID, ExternalID: next.ExternalID, ResourceID: id, Created: e.now().UTC()}); err != nil {
				return Group{}, err
			}
		}
	}
	if len(fields) == 0 {
		return next, nil
	}
	ext := next.ExternalID
	next.ExternalID = ""
	next.Modified = e.now().UTC()
	stored, err := tx.UpdateGroup(ctx, next, cur.Version)
	if err != nil {
		return Group{}, err
	}
	before, after := cloneGroup(cur), cloneGroup(stored)
	before.ExternalID = ""
	rec.add(Change{Kind: GroupUpdated, Origin: s.origin, Fields: fields, GroupBefore: &before, GroupAfter: &after})
	stored.ExternalID = ext
	return stored, nil
}

func (e *Engine) groupLinkOf(ctx context.Context, st Store, s scope, id string) (Link, error) {
	return s.link(ctx, st, ResourceGroup, id)
}

// DeleteGroup removes group id with its memberships and links
// (group.deleted, whose Group is the last snapshot).
func (e *Engine) DeleteGroup(ctx context.Context, o Origin, id string, pre Precondition) error {
	s, err := e.scope(ctx, o)
	if err != nil {
		return err
	}
	if err := checkKey("group", id); err != nil {
		return err
	}
	return e.atomically(ctx, s, pre.Version != 0, func(ctx context.Context, tx Store, rec *recorder) error {
		cur, err := tx.GetGroup(ctx, s.tenant.ID, id)
		if err != nil {
			return err
		}
		if pre.Version != 0 && cur.Version != pre.Version {
			return fmt.Errorf("%w: group %s is at version %d, not %d", ErrVersionConflict, id, cur.Version, pre.Version)
		}
		if _, err := s.mayWrite(cur.Owner); err != nil {
			return err
		}
		var members []string
		if a := s.tenant.access; !a.empty() && a.groups[id] {
			if members, err = allMembers(ctx, tx, s.tenant.ID, id); err != nil {
				return err
			}
		}
		if err := tx.DeleteGroup(ctx, s.tenant.ID, id, cur.Version); err != nil {
			return err
		}
		rec.add(Change{Kind: GroupDeleted, Origin: s.origin, GroupBefore: &cur, GroupAfter: &cur})
		// What the group granted is revoked with it.
		return e.refreshRoles(ctx, s, tx, rec, id, members)
	})
}

// GetGroup returns group id of o's tenant, with ExternalID as o's
// connection knows it.
func (e *Engine) GetGroup(ctx context.Context, o Origin, id string) (Group, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return Group{}, err
	}
	if err := checkKey("group", id); err != nil {
		return Group{}, err
	}
	g, err := e.store.GetGroup(ctx, s.tenant.ID, id)
	if err != nil {
		return Group{}, err
	}
	return e.groupWithExternalID(ctx, s, g)
}

func (e *Engine) groupWithExternalID(ctx context.Context, s scope, g Group) (Group, error) {
	ext, err := s.externalID(ctx, e.store, ResourceGroup, g.ID)
	if err != nil {
		return Group{}, err
	}
	g.ExternalID = ext
	return g, nil
}

// ListGroups returns the groups of o's tenant that q selects and the
// exact number of matches.
func (e *Engine) ListGroups(ctx context.Context, o Origin, q Query) ([]Group, int, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	if q.Page.Offset < 0 || q.Page.Limit < 0 {
		return nil, 0, &ValidationError{Field: "page", Reason: "negative offset or limit"}
	}
	groups, total, err := e.findGroups(ctx, s, q)
	if err != nil {
		return nil, 0, err
	}
	for i := range groups {
		if groups[i], err = e.groupWithExternalID(ctx, s, groups[i]); err != nil {
			return nil, 0, err
		}
	}
	return groups, total, nil
}

// MembershipChange is the outcome of a membership update: the user IDs
// that joined and left.
type MembershipChange struct {
	Added   []string
	Removed []string
}

// applyMembers removes and adds members of g and, when the membership
// changed, bumps g's version (touchGroup) so that its ETag protects a
// replace of members, unless stored says that this transaction already
// bumped it (a PATCH that renames the group too); pinned is set when the
// client pinned the version (see touchGroup). It returns g as stored.
func (e *Engine) applyMembers(ctx context.Context, s scope, tx Store, rec *recorder, g Group, stored, pinned bool, add, remove []string, mc *MembershipChange) (Group, error) {
	var snapshots []*Group
	if len(remove) > 0 {
		removed, err := tx.RemoveMembers(ctx, s.tenant.ID, g.ID, remove)
		if err != nil {
			return Group{}, err
		}
		if len(removed) > 0 {
			gc := cloneGroup(g)
			snapshots = append(snapshots, &gc)
			rec.add(Change{Kind: GroupMembersRemoved, Origin: s.origin, GroupAfter: &gc, Members: removed})
			mc.Removed = removed
			if err := e.refreshRoles(ctx, s, tx, rec, g.ID, removed); err != nil {
				return Group{}, err
			}
		}
	}
	if len(add) > 0 {
		added, err := tx.AddMembers(ctx, s.tenant.ID, g.ID, add)
		if err != nil {
			return Group{}, err
		}
		if len(added) > 0 {
			gc := cloneGroup(g)
			snapshots = append(snapshots, &gc)
			rec.add(Change{Kind: GroupMembersAdded, Origin: s.origin, GroupAfter: &gc, Members: added})
			mc.Added = added
			if err := e.refreshRoles(ctx, s, tx, rec, g.ID, added); err != nil {
				return Group{}, err
			}
		}
	}
	if len(snapshots) == 0 || stored {
		return g, nil
	}
	touched, err := e.touchGroup(ctx, tx, g, pinned)
	if err != nil {
		return Group{}, err
	}
	for _, gc := range snapshots {
		*gc = cloneGroup(touched) // the events show the group as committed
	}
	return touched, nil
}

// touchGroup records a membership change on group g: its Version and
// Modified change in the caller's transaction, at the cost of one row
// whatever the group's size. Unless pinned (the client sent If-Match), a
// Store with GroupVersionBumper serializes concurrent changes; otherwise
// UpdateGroup at g's version makes a concurrent writer of the group
// ErrVersionConflict, which the engine retries unless pinned.
func (e *Engine) touchGroup(ctx context.Context, tx Store, g Group, pinned bool) (Group, error) {
	ext := g.ExternalID
	now := e.now().UTC()
	var stored Group
	var err error
	if b, ok := tx.(GroupVersionBumper); ok && !pinned {
		stored, err = b.BumpGroupVersion(ctx, g.TenantID, g.ID, now)
	} else {
		next := cloneGroup(g)
		next.ExternalID = ""
		next.Modified = now
		stored, err = tx.UpdateGroup(ctx, next, g.Version)
	}
	if err != nil {
		return Group{}, fmt.Errorf("provision: bump the version of group %s: %w", g.ID, err)
	}
	stored.ExternalID = ext
	return stored, nil
}

func allMembers(ctx context.Context, st Store, tenantID, groupID string) ([]string, error) {
	var out []string
	for off := 0; ; {
		page, total, err := st.ListMembers(ctx, tenantID, groupID, Page{Offset: off, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		off += len(page)
		if len(page) == 0 || off >= total {
			return out, nil
		}
	}
}

// ListMembers returns a page of the group's member user IDs and their
// exact total.
func (e *Engine) ListMembers(ctx context.Context, o Origin, groupID string, p Page) ([]string, int, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	if p.Offset < 0 || p.Limit < 0 {
		return nil, 0, &ValidationError{Field: "page", Reason: "negative offset or limit"}
	}
	if err := checkKey("group", groupID); err != nil {
		return nil, 0, err
	}
	return e.store.ListMembers(ctx, s.tenant.ID, groupID, p)
}

// GroupsOfUser returns the IDs of the groups user id belongs to.
func (e *Engine) GroupsOfUser(ctx context.Context, o Origin, userID string) ([]string, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := checkKey("user", userID); err != nil {
		return nil, err
	}
	return e.store.GroupsOfUser(ctx, s.tenant.ID, userID)
}
