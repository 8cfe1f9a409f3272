package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision/filter"
)

// Query selects users or groups for a list: a filter, a sort and a page.
type Query struct {
	// Filter selects; nil selects all.
	Filter filter.Expr
	// SortBy is an attribute path; empty means the store's stable order.
	SortBy     string
	Descending bool
	Page       Page
}

// How the engine answers a Query (findUsers, findGroups):
//
//  1. No filter and no sort: the Store's List.
//  2. externalId is per connection (see User.ExternalID) and the Store
//     never holds it, so every "externalId eq x" is first resolved
//     through the calling connection's Link into "id eq <linked id>" (or
//     "id eq \"\"", which matches nothing, when there is no such link).
//  3. A Searcher gets the rewritten filter, unless it still names
//     externalId (another operator than eq) or the sort is by externalId.
//  4. Otherwise the candidates come from the core lookups when the filter
//     is an and-tree (or an or of such trees) with an indexed equality:
//     id, userName, emails.value (users), id, displayName, members.value
//     (groups). The whole filter is then evaluated over the candidates.
//  5. Otherwise the engine scans the tenant, at most Config.ScanLimit
//     resources, and answers ErrTooMany past that bound.
//
// Results of 4 and 5 are sorted (SortUsers) and paged here; without a
// sort, lookup candidates come in creation order (then ID), a scan in the
// Store's order.

// scanChunk is how many resources a bounded scan reads per List call.
const scanChunk = 1000

// noID is an id no resource has: Stores assign non-empty IDs.
const noID = ""

func (e *Engine) findUsers(ctx context.Context, s scope, q Query) ([]User, int, error) {
	if err := checkFilter(q.Filter); err != nil {
		return nil, 0, err
	}
	if q.Filter == nil && q.SortBy == "" {
		return e.store.ListUsers(ctx, s.tenant.ID, q.Page)
	}
	sortBy, err := canonicalSort(filter.Users, q.SortBy)
	if err != nil {
		return nil, 0, err
	}
	f, needExt, err := e.resolveExternalIDs(ctx, s, ResourceUser, q.Filter)
	if err != nil {
		return nil, 0, err
	}
	needExt = needExt || sortBy == "externalId"
	if e.searcher != nil && !needExt {
		return e.searcher.SearchUsers(ctx, s.tenant.ID, Search{Filter: f, SortBy: sortBy, Descending: q.Descending, Page: q.Page})
	}
	var matches []User
	m := NewUserMatcher(f)
	keep := func(u User) error {
		ext := ""
		if needExt {
			wu, err := e.withExternalID(ctx, s, u)
			if err != nil {
				return err
			}
			ext = wu.ExternalID
			u.ExternalID = ext
		}
		ok, err := m.Match(&u, ext)
		if ok {
			matches = append(matches, u)
		}
		return err
	}
	cands, indexed, err := e.userCandidates(ctx, s, f)
	if err != nil {
		return nil, 0, err
	}
	if indexed {
		slices.SortFunc(cands, func(a, b User) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		for _, u := range cands {
			if err := keep(u); err != nil {
				return nil, 0, err
			}
		}
	} else if err := scan(ctx, e, s, "users", f, e.store.ListUsers, keep); err != nil {
		return nil, 0, err
	}
	if err := SortUsers(matches, sortBy, q.Descending); err != nil {
		return nil, 0, err
	}
	return pageOf(matches, q.Page), len(matches), nil
}

func (e *Engine) findGroups(ctx context.Context, s scope, q Query) ([]Group, int, error) {
	if err := checkFilter(q.Filter); err != nil {
		return nil, 0, err
	}
	if q.Filter == nil && q.SortBy == "" {
		return e.store.ListGroups(ctx, s.tenant.ID, q.Page)
	}
	sortBy, err := canonicalSort(filter.Groups, q.SortBy)
	if err != nil {
		return nil, 0, err
	}
	f, needExt, err := e.resolveExternalIDs(ctx, s, ResourceGroup, q.Filter)
	if err != nil {
		return nil, 0, err
	}
	needExt = needExt || sortBy == "externalId"
	if e.searcher != nil && !needExt {
		return e.searcher.SearchGroups(ctx, s.tenant.ID, Search{Filter: f, SortBy: sortBy, Descending: q.Descending, Page: q.Page})
	}
	var matches []Group
	m := NewGroupMatcher(f)
	keep := func(g Group) error {
		ext := ""
		if needExt {
			wg, err := e.groupWithExternalID(ctx, s, g)
			if err != nil {
				return err
			}
			ext = wg.ExternalID
			g.ExternalID = ext
		}
		ok, err := m.Match(&g, ext, func(userID string) (bool, error) {
			return e.store.IsMember(ctx, s.tenant.ID, g.ID, userID)
		})
		if ok {
			matches = append(matches, g)
		}
		return err
	}
	cands, indexed, err := e.groupCandidates(ctx, s, f)
	if err != nil {
		return nil, 0, err
	}
	if indexed {
		slices.SortFunc(cands, func(a, b Group) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		for _, g := range cands {
			if err := keep(g); err != nil {
				return nil, 0, err
			}
		}
	} else if err := scan(ctx, e, s, "groups", f, e.store.ListGroups, keep); err != nil {
		return nil, 0, err
	}
	if err := SortGroups(matches, sortBy, q.Descending); err != nil {
		return nil, 0, err
	}
	return pageOf(matches, q.Page), len(matches), nil
}

// canonicalSort resolves a sort path to its canonical name.
func canonicalSort(r filter.Resource, sortBy string) (string, error) {
	if sortBy == "" {
		return "", nil
	}
	a, err := filter.Resolve(r, sortBy)
	if err != nil {
		return "", &ValidationError{Field: "sortBy", Reason: err.Error()}
	}
	return a.Path, nil
}

// resolveExternalIDs rewrites every "externalId eq x" into an id equality
// through the calling connection's Links, and reports whether the
// rewritten filter still names externalId.
func (e *Engine) resolveExternalIDs(ctx context.Context, s scope, kind ResourceKind, f filter.Expr) (filter.Expr, bool, error) {
	if f == nil {
		return nil, false, nil
	}
	rest := false
	out, err := filter.Rewrite(f, func(c *filter.Compare) (filter.Expr, error) {
		if c.Attr.Custom || c.Attr.Path != "externalId" {
			return c, nil
		}
		if c.Op != filter.Eq {
			rest = true
			return c, nil
		}
		id := noID
		if !s.isAdmin() { // the admin API sees no externalId (withExternalID)
			l, err := e.store.GetLink(ctx, s.tenant.ID, kind, s.conn.ID, c.Value.S)
			switch {
			case err == nil:
				id = l.ResourceID
			case !errors.Is(err, ErrNotFound):
				return nil, err
			}
		}
		idAttr, _ := filter.Resolve(filter.Any, "id")
		return &filter.Compare{Attr: idAttr, Op: filter.Eq, Value: filter.StringValue(id)}, nil
	})
	if err != nil {
		return nil, false, err
	}
	// A value path never holds externalId (not multi-valued): Rewrite saw
	// every mention.
	return out, rest, nil
}

// indexedEq returns the attribute path and value of an equality the core
// lookups answer.
func indexedEq(e filter.Expr, paths ...string) (string, string, bool) {
	c, ok := e.(*filter.Compare)
	if !ok || c.Op != filter.Eq || c.Attr.Custom || c.Value.Kind != filter.Str {
		return "", "", false
	}
	if slices.Contains(paths, c.Attr.Path) {
		return c.Attr.Path, c.Value.S, true
	}
	return "", "", false
}

// candidates finds, for an and/or tree, a superset of the matches from
// lookups: an "and" needs one indexed operand, an "or" needs all of them.
// It reports false when the tree has no such shape.
func candidates[T any](e filter.Expr, paths []string, lookup func(path, value string) ([]T, error), id func(T) string) ([]T, bool, error) {
	if path, v, ok := indexedEq(e, paths...); ok {
		out, err := lookup(path, v)
		return out, err == nil, err
	}
	l, ok := e.(*filter.Logical)
	if !ok {
		return nil, false, nil
	}
	if l.Op == filter.And {
		// Prefer the operand with an equality at hand: the left one first.
		if out, ok, err := candidates(l.Left, paths, lookup, id); ok || err != nil {
			return out, ok, err
		}
		return candidates(l.Right, paths, lookup, id)
	}
	left, ok, err := candidates(l.Left, paths, lookup, id)
	if !ok || err != nil {
		return nil, false, err
	}
	right, ok, err := candidates(l.Right, paths, lookup, id)
	if !ok || err != nil {
		return nil, false, err
	}
	seen := make(map[string]bool, len(left))
	for _, x := range left {
		seen[id(x)] = true
	}
	for _, x := range right {
		if !seen[id(x)] {
			seen[id(x)] = true
			left = append(left, x)
		}
	}
	return left, true, nil
}

func notFoundIsEmpty[T any](out []T, err error) ([]T, error) {
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return out, err
}

func (e *Engine) userCandidates(ctx context.Context, s scope, f filter.Expr) ([]User, bool, error) {
	tid := s.tenant.ID
	return candidates(f, []string{"id", "userName", "emails.value"}, func(path, v string) ([]User, error) {
		switch path {
		case "id":
			if v == noID {
				return nil, nil
			}
			u, err := e.store.GetUser(ctx, tid, v)
			if err == nil && u.IsDeleted() {
				return nil, nil
			}
			return notFoundIsEmpty([]User{u}, err)
		case "userName":
			u, err := e.store.UserByUserName(ctx, tid, v)
			return notFoundIsEmpty([]User{u}, err)
		case "emails.value":
			return e.store.UsersByEmail(ctx, tid, v)
		}
		return nil, nil
	}, func(u User) string { return u.ID })
}

func (e *Engine) groupCandidates(ctx context.Context, s scope, f filter.Expr) ([]Group, bool, error) {
	tid := s.tenant.ID
	return candidates(f, []string{"id", "displayName", "members.value"}, func(path, v string) ([]Group, error) {
		switch path {
		case "id":
			if v == noID {
				return nil, nil
			}
			g, err := e.store.GetGroup(ctx, tid, v)
			return notFoundIsEmpty([]Group{g}, err)
		case "displayName":
			return e.store.GroupsByDisplayName(ctx, tid, v)
		case "members.value":
			ids, err := e.store.GroupsOfUser(ctx, tid, v)
			if err != nil {
				return notFoundIsEmpty[Group](nil, err)
			}
			out := make([]Group, 0, len(ids))
			for _, id := range ids {
				g, err := e.store.GetGroup(ctx, tid, id)
				if err != nil {
					return nil, err
				}
				out = append(out, g)
			}
			return out, nil
		}
		return nil, nil
	}, func(g Group) string { return g.ID })
}

// scan feeds keep every resource of the tenant, in the Store's order,
// refusing with ErrTooMany a tenant larger than Config.ScanLimit.
func scan[T any](ctx context.Context, e *Engine, s scope, what string, f filter.Expr, list func(context.Context, string, Page) ([]T, int, error), keep func(T) error) error {
	tooMany := func(n int) error {
		expr := "no filter"
		if f != nil {
			expr = "filter " + f.String()
		}
		return fmt.Errorf("%w: answering %s needs a scan of the tenant's %d %s, more than the %d of Config.ScanLimit; "+
			"filter on an indexed equality (id, externalId, userName, emails.value, displayName, members) or use a store with a Searcher",
			ErrTooMany, expr, n, what, e.scanLimit)
	}
	_, total, err := list(ctx, s.tenant.ID, Page{Limit: 0})
	if err != nil {
		return err
	}
	if total > e.scanLimit {
		return tooMany(total)
	}
	for off := 0; ; off += scanChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, total, err := list(ctx, s.tenant.ID, Page{Offset: off, Limit: scanChunk})
		if err != nil {
			return err
		}
		if total > e.scanLimit {
			return tooMany(total) // the tenant grew during the scan
		}
		for _, x := range page {
			if err := keep(x); err != nil {
				return err
			}
		}
		if len(page) < scanChunk || off+len(page) >= total {
			return nil
		}
	}
}

func pageOf[T any](items []T, p Page) []T {
	off := min(max(p.Offset, 0), len(items))
	end := off + min(max(p.Limit, 0), len(items)-off)
	return items[off:end:end]
}
