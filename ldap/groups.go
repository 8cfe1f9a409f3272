package ldap

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
)

// applyGroups brings the engine's groups of this connection in line with
// the cache: every group when full (which also deletes the connection's
// groups whose entries are gone, after a group search that found groups),
// else the groups in changed and those whose resolved members changed.
// Members are user ids, nested groups flattened.
func (r *run) applyGroups(ctx context.Context, changed map[string]bool, full bool) error {
	c := r.cache
	ids := make([]string, 0, len(c.groups))
	for id := range c.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := c.groups[id]
		members, recs, cycles := c.members(g)
		r.rep.Groups.Cycles += cycles
		h := hashIDs(members)
		if !full && !changed[id] && g.groupID != "" && h == g.applied {
			continue
		}
		skipped := r.rep.Groups.Skipped
		if err := r.applyGroup(ctx, g, members, full); err != nil {
			return err
		}
		r.prog.applied()
		c.mu.Lock()
		c.touch(id)
		c.mu.Unlock()
		if !r.dry && g.groupID != "" && r.rep.Groups.Skipped == skipped {
			g.applied, g.appliedMembers = h, recs
		}
	}
	if full && len(c.groups) > 0 {
		return r.sweepGroups(ctx)
	}
	return nil
}

func (r *run) applyGroup(ctx context.Context, g *groupRec, members []string, full bool) error {
	eng, o, rep := r.s.eng, r.s.origin, &r.rep.Groups
	if g.name == "" {
		rep.Skipped++
		r.rep.skip(g.dn, g.id, "group without "+r.s.cfg.Mapping.GroupName)
		return nil
	}
	cur, err := eng.GroupByExternalID(ctx, o, g.id)
	switch {
	case errors.Is(err, provision.ErrNotFound):
		if r.dry {
			rep.Created++
			rep.MembersAdded += len(members)
			return nil
		}
		created, err := eng.CreateGroup(ctx, o, provision.Group{DisplayName: g.name, ExternalID: g.id}, members)
		if err != nil {
			return r.groupErr(g, err)
		}
		g.groupID = created.ID
		rep.Created++
		rep.MembersAdded += len(members)
		return nil
	case err != nil:
		return fmt.Errorf("ldap: group %s: %w", g.dn, err)
	}
	g.groupID = cur.ID
	changed := false
	if cur.DisplayName != g.name {
		changed = true
		if !r.dry {
			if _, _, err := eng.UpdateGroup(ctx, o, cur.ID, provision.Precondition{}, provision.GroupUpdate{Mutate: func(ng *provision.Group) error {
				ng.DisplayName = g.name
				return nil
			}}); err != nil {
				return r.groupErr(g, err)
			}
		}
	}
	if r.dry {
		have, err := r.allMembers(ctx, cur.ID)
		if err != nil {
			return err
		}
		add, remove := diffSorted(have, members)
		rep.MembersAdded += len(add)
		rep.MembersRemoved += len(remove)
		changed = changed || len(add)+len(remove) > 0
	} else {
		var mc provision.MembershipChange
		var err error
		var have []string
		known := false
		if !full {
			have, known = r.cache.appliedIDs(g)
		}
		if !known {
			// Reconcile with what the engine has (its cost is the
			// group's size).
			_, mc, err = eng.UpdateGroup(ctx, o, cur.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: members})
		} else if add, remove := diffSorted(have, members); len(add)+len(remove) > 0 {
			// Only the difference: its cost is the change's size.
			_, mc, err = eng.UpdateGroup(ctx, o, cur.ID, provision.Precondition{}, provision.GroupUpdate{Add: add, Remove: remove})
		}
		if err != nil {
			g.applied, g.appliedMembers = 0, nil
			return r.groupErr(g, err)
		}
		rep.MembersAdded += len(mc.Added)
		rep.MembersRemoved += len(mc.Removed)
		changed = changed || len(mc.Added)+len(mc.Removed) > 0
	}
	if changed {
		rep.Updated++
	} else {
		rep.Unchanged++
	}
	return nil
}

func (r *run) groupErr(g *groupRec, err error) error {
	if reason, ok := skipReason(err); ok {
		r.rep.Groups.Skipped++
		r.rep.skip(g.dn, g.id, reason)
		return nil
	}
	return fmt.Errorf("ldap: group %s: %w", g.dn, err)
}

func (r *run) allMembers(ctx context.Context, groupID string) ([]string, error) {
	var out []string
	for off := 0; ; {
		page, total, err := r.s.eng.ListMembers(ctx, r.s.origin, groupID, provision.Page{Offset: off, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		off += len(page)
		if len(page) == 0 || off >= total {
			slices.Sort(out)
			return out, nil
		}
	}
}

// diffSorted returns what is in want and not in have, and the reverse.
func diffSorted(have, want []string) (add, remove []string) {
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch {
		case j >= len(want) || (i < len(have) && have[i] < want[j]):
			remove = append(remove, have[i])
			i++
		case i >= len(have) || want[j] < have[i]:
			add = append(add, want[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, remove
}

// sweepGroups deletes the groups this connection owns that are no longer
// in the directory.
func (r *run) sweepGroups(ctx context.Context) error {
	eng, o := r.s.eng, r.s.origin
	var gone []provision.Group
	for off := 0; ; {
		page, total, err := eng.ListGroups(ctx, o, provision.Query{Page: provision.Page{Offset: off, Limit: 500}})
		if err != nil {
			return fmt.Errorf("ldap: list groups: %w", err)
		}
		for _, g := range page {
			if g.Owner != r.s.cfg.ConnectionID {
				continue
			}
			if _, ok := r.cache.groups[g.ExternalID]; !ok {
				gone = append(gone, g)
			}
		}
		off += len(page)
		if len(page) == 0 || off >= total {
			break
		}
	}
	for _, g := range gone {
		if err := r.deleteGroup(ctx, g.ID); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) deleteGroup(ctx context.Context, groupID string) error {
	if r.dry {
		r.rep.Groups.Deleted++
		return nil
	}
	err := r.s.eng.DeleteGroup(ctx, r.s.origin, groupID, provision.Precondition{})
	if err != nil {
		if reason, ok := skipReason(err); ok {
			r.rep.Groups.Skipped++
			r.rep.skip("", groupID, "delete group: "+reason)
			return nil
		}
		return fmt.Errorf("ldap: delete group %s: %w", groupID, err)
	}
	r.rep.Groups.Deleted++
	return nil
}
