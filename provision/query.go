package provision

import (
	"context"
	"errors"

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

var errFilterUnsupported = errors.New("provision: filters are not supported yet")

func (e *Engine) findUsers(ctx context.Context, s scope, q Query) ([]User, int, error) {
	if q.Filter == nil && q.SortBy == "" {
		return e.store.ListUsers(ctx, s.tenant.ID, q.Page)
	}
	return nil, 0, errFilterUnsupported
}

func (e *Engine) findGroups(ctx context.Context, s scope, q Query) ([]Group, int, error) {
	if q.Filter == nil && q.SortBy == "" {
		return e.store.ListGroups(ctx, s.tenant.ID, q.Page)
	}
	return nil, 0, errFilterUnsupported
}
