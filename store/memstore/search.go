package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

var (
	_ provision.Searcher = (*Store)(nil)
	_ provision.Searcher = (*tx)(nil)
)

// SearchUsers answers a filter from the store's indexes: an equality on
// id, userName or emails.value (alone, in an "and", or in an "or" whose
// every branch has one) is a hash lookup, and only its candidates are
// evaluated; any other filter scans the tenant's live users. Matching is
// provision.MatchUser's, so the answers are the engine's. Filters never
// see an externalId: the engine resolves those through Links first.
func (s *Store) SearchUsers(ctx context.Context, tenantID string, q provision.Search) (us []provision.User, total int, err error) {
	err = s.read(ctx, func(st *state) error { us, total, err = st.searchUsers(ctx, tenantID, q); return err })
	return us, total, err
}

// SearchGroups answers a filter like SearchUsers, with lookups on id,
// displayName and members.value.
func (s *Store) SearchGroups(ctx context.Context, tenantID string, q provision.Search) (gs []provision.Group, total int, err error) {
	err = s.read(ctx, func(st *state) error { gs, total, err = st.searchGroups(ctx, tenantID, q); return err })
	return gs, total, err
}

// SearchUsers searches within the transaction.
func (t *tx) SearchUsers(ctx context.Context, tenantID string, q provision.Search) (us []provision.User, total int, err error) {
	err = t.read(ctx, func(st *state) error { us, total, err = st.searchUsers(ctx, tenantID, q); return err })
	return us, total, err
}

// SearchGroups searches within the transaction.
func (t *tx) SearchGroups(ctx context.Context, tenantID string, q provision.Search) (gs []provision.Group, total int, err error) {
	err = t.read(ctx, func(st *state) error { gs, total, err = st.searchGroups(ctx, tenantID, q); return err })
	return gs, total, err
}

// ctxEvery is how many resources a scan evaluates between context checks.
const ctxEvery = 4096

func (st *state) searchUsers(ctx context.Context, tenantID string, q provision.Search) ([]provision.User, int, error) {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.User{}, 0, nil
	}
	var matches []*userRec
	m := provision.NewUserMatcher(q.Filter)
	test := func(r *userRec) error {
		ok, err := m.Match(&r.u, "")
		if ok {
			matches = append(matches, r)
		}
		return err
	}
	if recs, ok := lookup(q.Filter, t.userLookup); ok {
		slices.SortFunc(recs, func(a, b *userRec) int { return cmp.Compare(a.pos, b.pos) })
		for _, r := range recs {
			if err := test(r); err != nil {
				return nil, 0, err
			}
		}
	} else {
		for i, r := range t.userOrder.items {
			if r == nil {
				continue
			}
			if i%ctxEvery == 0 {
				if err := ctx.Err(); err != nil {
					return nil, 0, fmt.Errorf("memstore: %w", err)
				}
			}
			if err := test(r); err != nil {
				return nil, 0, err
			}
		}
	}
	total := len(matches)
	if q.SortBy != "" {
		// Sort references; only the page is copied.
		refs := make([]*provision.User, len(matches))
		for i, r := range matches {
			refs[i] = &r.u
		}
		if err := provision.SortUserRefs(refs, q.SortBy, q.Descending, q.Page.Offset+q.Page.Limit); err != nil {
			return nil, 0, err
		}
		refs = pageOf(refs, q.Page)
		us := make([]provision.User, len(refs))
		for i, u := range refs {
			us[i] = provision.CloneUser(*u)
		}
		return us, total, nil
	}
	page := pageOf(matches, q.Page)
	out := make([]provision.User, len(page))
	for i, r := range page {
		out[i] = provision.CloneUser(r.u)
	}
	return out, total, nil
}

func (st *state) searchGroups(ctx context.Context, tenantID string, q provision.Search) ([]provision.Group, int, error) {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.Group{}, 0, nil
	}
	var matches []*groupRec
	m := provision.NewGroupMatcher(q.Filter)
	test := func(g *groupRec) error {
		ok, err := m.Match(&g.g, "", func(userID string) (bool, error) {
			r := t.users[userID]
			if r == nil {
				return false, nil
			}
			_, ok := g.members[r]
			return ok, nil
		})
		if ok {
			matches = append(matches, g)
		}
		return err
	}
	if gs, ok := lookup(q.Filter, t.groupLookup); ok {
		slices.SortFunc(gs, func(a, b *groupRec) int { return cmp.Compare(a.pos, b.pos) })
		for _, g := range gs {
			if err := test(g); err != nil {
				return nil, 0, err
			}
		}
	} else {
		for i, g := range t.groupOrder.items {
			if g == nil {
				continue
			}
			if i%ctxEvery == 0 {
				if err := ctx.Err(); err != nil {
					return nil, 0, fmt.Errorf("memstore: %w", err)
				}
			}
			if err := test(g); err != nil {
				return nil, 0, err
			}
		}
	}
	total := len(matches)
	gs := make([]provision.Group, len(matches))
	for i, g := range matches {
		gs[i] = g.g
	}
	if err := provision.SortGroups(gs, q.SortBy, q.Descending); err != nil {
		return nil, 0, err
	}
	gs = pageOf(gs, q.Page)
	for i := range gs {
		gs[i] = provision.CloneGroup(gs[i])
	}
	return gs, total, nil
}

// userLookup returns the live users an indexed equality selects, and
// false for an attribute without an index.
func (t *tenant) userLookup(path, v string) ([]*userRec, bool) {
	switch path {
	case "id":
		if r := t.users[v]; r != nil && !r.u.IsDeleted() {
			return []*userRec{r}, true
		}
		return nil, true
	case "userName":
		if r := t.byUserName[fold(v)]; r != nil {
			return []*userRec{r}, true
		}
		return nil, true
	case "emails.value":
		return slices.Clone(t.byEmail[fold(v)]), true
	}
	return nil, false
}

func (t *tenant) groupLookup(path, v string) ([]*groupRec, bool) {
	switch path {
	case "id":
		if g := t.groups[v]; g != nil {
			return []*groupRec{g}, true
		}
		return nil, true
	case "displayName":
		return slices.Clone(t.groupsByName[fold(v)]), true
	case "members.value":
		if r := t.users[v]; r != nil {
			return slices.Clone(r.groups), true
		}
		return nil, true
	}
	return nil, false
}

// lookup finds a superset of the matches of an and/or tree from index
// lookups: an "and" needs one indexed equality among its operands, an
// "or" one in each branch. It reports false when the tree has no such
// shape, and the caller scans.
func lookup[T comparable](e filter.Expr, index func(path, v string) ([]T, bool)) ([]T, bool) {
	switch e := e.(type) {
	case *filter.Compare:
		if e.Op != filter.Eq || e.Attr.Custom || e.Value.Kind != filter.Str {
			return nil, false
		}
		return index(e.Attr.Path, e.Value.S)
	case *filter.Logical:
		l, lok := lookup(e.Left, index)
		if e.Op == filter.And {
			if lok {
				return l, true
			}
			return lookup(e.Right, index)
		}
		if !lok {
			return nil, false
		}
		r, rok := lookup(e.Right, index)
		if !rok {
			return nil, false
		}
		for _, x := range r {
			if !slices.Contains(l, x) {
				l = append(l, x)
			}
		}
		return l, true
	}
	return nil, false
}

func pageOf[T any](items []T, p provision.Page) []T {
	off := min(max(p.Offset, 0), len(items))
	end := off + min(max(p.Limit, 0), len(items)-off)
	return items[off:end:end]
}
