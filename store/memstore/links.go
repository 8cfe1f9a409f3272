package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision"
)

func linkNotFound(tenantID string, kind provision.ResourceKind, connectionID, externalID string) error {
	return fmt.Errorf("memstore: %s link (%q, %q) of tenant %q: %w", kind, connectionID, externalID, tenantID, provision.ErrNotFound)
}

func (st *state) getLink(tenantID string, kind provision.ResourceKind, connectionID, externalID string) (provision.Link, error) {
	if t := st.tenantR(tenantID); t != nil {
		if l := t.links[linkKey{kind, connectionID, externalID}]; l != nil {
			return *l, nil
		}
	}
	return provision.Link{}, linkNotFound(tenantID, kind, connectionID, externalID)
}

func (st *state) linksOf(tenantID string, kind provision.ResourceKind, resourceID string) []provision.Link {
	t := st.tenantR(tenantID)
	if t == nil {
		return []provision.Link{}
	}
	ls := t.linksOf[resKey{kind, resourceID}]
	out := make([]provision.Link, len(ls))
	for i, l := range ls {
		out[i] = *l
	}
	return out
}

func compareLinks(a, b *provision.Link) int { return cmp.Compare(a.ConnectionID, b.ConnectionID) }

func (t *tenant) putLink(l *provision.Link) {
	t.links[linkKey{l.Kind, l.ConnectionID, l.ExternalID}] = l
	rk := resKey{l.Kind, l.ResourceID}
	ls := t.linksOf[rk]
	i, _ := slices.BinarySearchFunc(ls, l, compareLinks)
	t.linksOf[rk] = slices.Insert(ls, i, l)
}

func (t *tenant) dropLink(l *provision.Link) {
	delete(t.links, linkKey{l.Kind, l.ConnectionID, l.ExternalID})
	rk := resKey{l.Kind, l.ResourceID}
	ls := t.linksOf[rk]
	if i := slices.Index(ls, l); i >= 0 {
		ls = slices.Delete(ls, i, i+1)
	}
	if len(ls) == 0 {
		delete(t.linksOf, rk)
	} else {
		t.linksOf[rk] = ls
	}
}

func (st *state) createLink(l provision.Link) error {
	switch l.Kind {
	case provision.ResourceUser, provision.ResourceGroup:
	default:
		return fmt.Errorf("memstore: link kind %q: %w", l.Kind, provision.ErrInvalid)
	}
	t := st.tenantR(l.TenantID)
	exists := false
	if t != nil {
		if l.Kind == provision.ResourceUser {
			exists = t.users[l.ResourceID] != nil
		} else {
			exists = t.groups[l.ResourceID] != nil
		}
	}
	if !exists {
		return fmt.Errorf("memstore: link to %s %q of tenant %q: %w", l.Kind, l.ResourceID, l.TenantID, provision.ErrNotFound)
	}
	if o := t.links[linkKey{l.Kind, l.ConnectionID, l.ExternalID}]; o != nil {
		return &provision.ConflictError{Field: "externalId", Value: l.ExternalID, ExistingID: o.ResourceID, Owner: l.ConnectionID}
	}
	for _, o := range t.linksOf[resKey{l.Kind, l.ResourceID}] {
		if o.ConnectionID == l.ConnectionID {
			return &provision.ConflictError{Field: "id", Value: l.ResourceID, ExistingID: l.ResourceID, Owner: l.ConnectionID}
		}
	}
	p := &l
	t.putLink(p)
	st.do(func() { t.dropLink(p) })
	return nil
}

func (st *state) deleteLink(tenantID string, kind provision.ResourceKind, connectionID, externalID string) error {
	t := st.tenantR(tenantID)
	var l *provision.Link
	if t != nil {
		l = t.links[linkKey{kind, connectionID, externalID}]
	}
	if l == nil {
		return linkNotFound(tenantID, kind, connectionID, externalID)
	}
	t.dropLink(l)
	st.do(func() { t.putLink(l) })
	return nil
}

// deleteLinksOf removes every link to the resource.
func (st *state) deleteLinksOf(t *tenant, kind provision.ResourceKind, id string) {
	ls := slices.Clone(t.linksOf[resKey{kind, id}])
	for _, l := range ls {
		t.dropLink(l)
	}
	if len(ls) > 0 {
		st.do(func() {
			for _, l := range ls {
				t.putLink(l)
			}
		})
	}
}

// GetLink returns the link of (kind, connectionID, externalID).
func (s *Store) GetLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) (l provision.Link, err error) {
	err = s.read(ctx, func(st *state) error { l, err = st.getLink(tenantID, kind, connectionID, externalID); return err })
	return l, err
}

// LinksOf returns the links to the resource, ordered by ConnectionID.
func (s *Store) LinksOf(ctx context.Context, tenantID string, kind provision.ResourceKind, resourceID string) (ls []provision.Link, err error) {
	err = s.read(ctx, func(st *state) error { ls = st.linksOf(tenantID, kind, resourceID); return nil })
	return ls, err
}

// CreateLink stores l; the resource must exist (a tombstone counts).
func (s *Store) CreateLink(ctx context.Context, l provision.Link) error {
	return s.write(ctx, func(st *state) error { return st.createLink(l) })
}

// DeleteLink removes the link of (kind, connectionID, externalID); a
// missing link is ErrNotFound.
func (s *Store) DeleteLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) error {
	return s.write(ctx, func(st *state) error { return st.deleteLink(tenantID, kind, connectionID, externalID) })
}

// GetLink implements provision.Store in the transaction.
func (t *tx) GetLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) (l provision.Link, err error) {
	err = t.read(ctx, func(st *state) error { l, err = st.getLink(tenantID, kind, connectionID, externalID); return err })
	return l, err
}

// LinksOf implements provision.Store in the transaction.
func (t *tx) LinksOf(ctx context.Context, tenantID string, kind provision.ResourceKind, resourceID string) (ls []provision.Link, err error) {
	err = t.read(ctx, func(st *state) error { ls = st.linksOf(tenantID, kind, resourceID); return nil })
	return ls, err
}

// CreateLink implements provision.Store in the transaction.
func (t *tx) CreateLink(ctx context.Context, l provision.Link) error {
	return t.write(ctx, func(st *state) error { return st.createLink(l) })
}

// DeleteLink implements provision.Store in the transaction.
func (t *tx) DeleteLink(ctx context.Context, tenantID string, kind provision.ResourceKind, connectionID, externalID string) error {
	return t.write(ctx, func(st *state) error { return st.deleteLink(tenantID, kind, connectionID, externalID) })
}
