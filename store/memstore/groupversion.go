package memstore

import (
	"context"
	"time"

	"github.com/idprov/idprov/provision"
)

var (
	_ provision.GroupVersionBumper = (*Store)(nil)
	_ provision.GroupVersionBumper = (*tx)(nil)
)

// BumpGroupVersion implements provision.GroupVersionBumper: one more
// Version and a new Modified for the group, under the store's lock,
// whatever its Version.
func (s *Store) BumpGroupVersion(ctx context.Context, tenantID, id string, modified time.Time) (out provision.Group, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.bumpGroupVersion(tenantID, id, modified); return err })
	return out, err
}

// BumpGroupVersion implements provision.GroupVersionBumper in the
// transaction.
func (t *tx) BumpGroupVersion(ctx context.Context, tenantID, id string, modified time.Time) (out provision.Group, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.bumpGroupVersion(tenantID, id, modified); return err })
	return out, err
}

func (st *state) bumpGroupVersion(tenantID, id string, modified time.Time) (provision.Group, error) {
	_, g, err := st.group(tenantID, id)
	if err != nil {
		return provision.Group{}, err
	}
	old := g.g
	g.g.Version++
	g.g.Modified = modified
	st.do(func() { g.g = old })
	return provision.CloneGroup(g.g), nil
}
