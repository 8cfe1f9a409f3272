package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

var (
	_ provision.Registry = (*Store)(nil)
	_ provision.Registry = (*tx)(nil)
)

// registry is the store's provision.Registry: the tenant records (a
// deleted one stays as a tombstone holding its last Rev, so that
// RegistryChanges reports the deletion), the domain and token hash
// indexes, and the changes in Rev order.
type registry struct {
	recs     map[string]*regRec
	byDomain map[string]string // domain -> live tenant
	byToken  map[provision.TokenHash]tokenOwner
	// changes are one entry per write, in Rev order; an entry whose Rev
	// is no longer its tenant's is stale, skipped by readers and dropped
	// at commit once stale entries outnumber the others.
	changes []provision.RegistryChange
	stale   int
	rev     int64
	live    int

	// order caches the live tenant ids, sorted, for ListTenantRecords.
	// Writes (under the store's write lock) invalidate it; a reader
	// rebuilds it under orderMu.
	orderMu sync.Mutex
	order   []string
	orderOK bool
}

type regRec struct {
	r       provision.TenantRecord
	deleted bool
}

type tokenOwner struct{ tenantID, connectionID string }

func (st *state) registry() *registry {
	if st.reg == nil {
		st.reg = &registry{
			recs:     map[string]*regRec{},
			byDomain: map[string]string{},
			byToken:  map[provision.TokenHash]tokenOwner{},
		}
	}
	return st.reg
}

func cloneRecord(r provision.TenantRecord) provision.TenantRecord {
	r.Body = bytes.Clone(r.Body)
	r.Domains = slices.Clone(r.Domains)
	r.Tokens = slices.Clone(r.Tokens)
	return r
}

func (g *registry) index(r *provision.TenantRecord) {
	for _, d := range r.Domains {
		g.byDomain[d] = r.TenantID
	}
	for _, tr := range r.Tokens {
		g.byToken[tr.Hash] = tokenOwner{r.TenantID, tr.ConnectionID}
	}
}

func (g *registry) unindex(r *provision.TenantRecord) {
	for _, d := range r.Domains {
		delete(g.byDomain, d)
	}
	for _, tr := range r.Tokens {
		delete(g.byToken, tr.Hash)
	}
}

// write replaces the tenant's record old (nil when none) by nw, which
// has the next Rev, and journals the inverse.
func (st *state) regWrite(g *registry, old, nw *regRec) {
	id := nw.r.TenantID
	n, stale, rev, live := len(g.changes), g.stale, g.rev, g.live
	if old != nil && !old.deleted {
		g.unindex(&old.r)
		g.live--
	}
	if old != nil {
		g.stale++
	}
	if !nw.deleted {
		g.index(&nw.r)
		g.live++
	}
	g.recs[id] = nw
	g.rev = nw.r.Rev
	g.changes = append(g.changes, provision.RegistryChange{TenantID: id, Rev: nw.r.Rev, Deleted: nw.deleted})
	g.orderOK = false
	st.do(func() {
		if !nw.deleted {
			g.unindex(&nw.r)
		}
		if old != nil && !old.deleted {
			g.index(&old.r)
		}
		if old == nil {
			delete(g.recs, id)
		} else {
			g.recs[id] = old
		}
		clear(g.changes[n:])
		g.changes = g.changes[:n]
		g.stale, g.rev, g.live = stale, rev, live
		g.orderOK = false
	})
	st.touch(g)
}

// compact drops the stale changes once they outnumber the others. It
// runs at commit only: the journal records lengths of changes.
func (g *registry) compact() {
	if g.stale <= 32 || g.stale <= len(g.changes)-g.stale {
		return
	}
	kept := make([]provision.RegistryChange, 0, len(g.changes)-g.stale)
	for _, c := range g.changes {
		if g.recs[c.TenantID].r.Rev == c.Rev {
			kept = append(kept, c)
		}
	}
	g.changes, g.stale = kept, 0
}

// regNow is the time of a registry write.
func (st *state) regNow() time.Time { return st.now().UTC().Truncate(time.Microsecond) }

func (st *state) getTenantRecord(tenantID string) (provision.TenantRecord, error) {
	if st.reg != nil {
		if rec := st.reg.recs[tenantID]; rec != nil && !rec.deleted {
			return cloneRecord(rec.r), nil
		}
	}
	return provision.TenantRecord{}, fmt.Errorf("memstore: tenant record %q: %w", tenantID, provision.ErrNotFound)
}

func (st *state) putTenantRecord(in provision.TenantRecord, expected int64) (provision.TenantRecord, error) {
	r, err := provision.NormalizeTenantRecord(in)
	if err != nil {
		return provision.TenantRecord{}, err
	}
	g := st.registry()
	old := g.recs[r.TenantID]
	live := old != nil && !old.deleted
	switch {
	case expected < 0:
		return provision.TenantRecord{}, &provision.ValidationError{Field: "expectedVersion", Reason: "negative"}
	case expected == 0 && live:
		return provision.TenantRecord{}, fmt.Errorf("memstore: tenant record %q: %w", r.TenantID, provision.ErrAlreadyExists)
	case expected > 0 && !live:
		return provision.TenantRecord{}, fmt.Errorf("memstore: tenant record %q: %w", r.TenantID, provision.ErrNotFound)
	case expected > 0 && old.r.Version != expected:
		return provision.TenantRecord{}, fmt.Errorf("memstore: tenant record %q is at version %d, not %d: %w", r.TenantID, old.r.Version, expected, provision.ErrVersionConflict)
	}
	for _, d := range r.Domains {
		if owner, ok := g.byDomain[d]; ok && owner != r.TenantID {
			return provision.TenantRecord{}, fmt.Errorf("memstore: %w", &provision.ConflictError{Field: "domain", Value: d, ExistingID: owner})
		}
	}
	for _, tr := range r.Tokens {
		if owner, ok := g.byToken[tr.Hash]; ok && owner.tenantID != r.TenantID {
			return provision.TenantRecord{}, fmt.Errorf("memstore: %w", &provision.ConflictError{Field: "tokenHash", Value: fmt.Sprintf("%x", tr.Hash), ExistingID: owner.tenantID})
		}
	}
	r.Version = expected + 1
	r.Rev = g.rev + 1
	r.Modified = st.regNow()
	st.regWrite(g, old, &regRec{r: r})
	return cloneRecord(r), nil
}

func (st *state) deleteTenantRecord(tenantID string, expected int64) error {
	g := st.registry()
	old := g.recs[tenantID]
	switch {
	case old == nil || old.deleted:
		return fmt.Errorf("memstore: tenant record %q: %w", tenantID, provision.ErrNotFound)
	case old.r.Version != expected:
		return fmt.Errorf("memstore: tenant record %q is at version %d, not %d: %w", tenantID, old.r.Version, expected, provision.ErrVersionConflict)
	}
	tomb := provision.TenantRecord{TenantID: tenantID, Version: old.r.Version, Rev: g.rev + 1, Modified: st.regNow()}
	st.regWrite(g, old, &regRec{r: tomb, deleted: true})
	return nil
}

func (st *state) tenantByDomain(domain string) (string, error) {
	if st.reg != nil {
		if id, ok := st.reg.byDomain[fold(domain)]; ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("memstore: domain %q: %w", domain, provision.ErrNotFound)
}

func (st *state) connectionByTokenHash(h provision.TokenHash) (string, string, error) {
	if st.reg != nil {
		if o, ok := st.reg.byToken[h]; ok {
			return o.tenantID, o.connectionID, nil
		}
	}
	return "", "", fmt.Errorf("memstore: token hash: %w", provision.ErrNotFound)
}

func (st *state) listTenantRecords(p provision.Page) ([]provision.TenantRecord, int) {
	g := st.reg
	if g == nil || g.live == 0 {
		return []provision.TenantRecord{}, 0
	}
	g.orderMu.Lock()
	defer g.orderMu.Unlock()
	if !g.orderOK {
		g.order = g.order[:0]
		for id, rec := range g.recs {
			if !rec.deleted {
				g.order = append(g.order, id)
			}
		}
		slices.Sort(g.order)
		g.orderOK = true
	}
	off, limit := max(p.Offset, 0), max(p.Limit, 0)
	if off >= len(g.order) || limit == 0 {
		return []provision.TenantRecord{}, g.live
	}
	ids := g.order[off:min(len(g.order), off+limit)]
	out := make([]provision.TenantRecord, len(ids))
	for i, id := range ids {
		out[i] = cloneRecord(g.recs[id].r)
	}
	return out, g.live
}

func (st *state) registryChanges(after int64, limit int) []provision.RegistryChange {
	g := st.reg
	if g == nil || limit <= 0 {
		return []provision.RegistryChange{}
	}
	i := sort.Search(len(g.changes), func(i int) bool { return g.changes[i].Rev > after })
	out := make([]provision.RegistryChange, 0, min(limit, len(g.changes)-i))
	for _, c := range g.changes[i:] {
		if len(out) == limit {
			break
		}
		if g.recs[c.TenantID].r.Rev == c.Rev {
			out = append(out, c)
		}
	}
	return out
}

// GetTenantRecord implements provision.Registry.
func (s *Store) GetTenantRecord(ctx context.Context, tenantID string) (r provision.TenantRecord, err error) {
	err = s.read(ctx, func(st *state) error { r, err = st.getTenantRecord(tenantID); return err })
	return r, err
}

// PutTenantRecord implements provision.Registry. The stored record's
// Domains are lower case and sorted, its Tokens sorted by hash, both
// without repeats; Modified is the store's clock, in UTC.
func (s *Store) PutTenantRecord(ctx context.Context, r provision.TenantRecord, expectedVersion int64) (out provision.TenantRecord, err error) {
	err = s.write(ctx, func(st *state) error { out, err = st.putTenantRecord(r, expectedVersion); return err })
	return out, err
}

// DeleteTenantRecord implements provision.Registry.
func (s *Store) DeleteTenantRecord(ctx context.Context, tenantID string, expectedVersion int64) error {
	return s.write(ctx, func(st *state) error { return st.deleteTenantRecord(tenantID, expectedVersion) })
}

// TenantByDomain implements provision.Registry with a hash lookup.
func (s *Store) TenantByDomain(ctx context.Context, domain string) (id string, err error) {
	err = s.read(ctx, func(st *state) error { id, err = st.tenantByDomain(domain); return err })
	return id, err
}

// ConnectionByTokenHash implements provision.Registry with a hash lookup.
func (s *Store) ConnectionByTokenHash(ctx context.Context, hash provision.TokenHash) (tenantID, connectionID string, err error) {
	err = s.read(ctx, func(st *state) error { tenantID, connectionID, err = st.connectionByTokenHash(hash); return err })
	return tenantID, connectionID, err
}

// ListTenantRecords implements provision.Registry. The first call after
// a write that created or deleted a tenant sorts the tenant ids again.
func (s *Store) ListTenantRecords(ctx context.Context, p provision.Page) (rs []provision.TenantRecord, total int, err error) {
	err = s.read(ctx, func(st *state) error { rs, total = st.listTenantRecords(p); return nil })
	return rs, total, err
}

// RegistryChanges implements provision.Registry.
func (s *Store) RegistryChanges(ctx context.Context, afterRev int64, limit int) (cs []provision.RegistryChange, err error) {
	err = s.read(ctx, func(st *state) error { cs = st.registryChanges(afterRev, limit); return nil })
	return cs, err
}

// GetTenantRecord implements provision.Registry in the transaction.
func (t *tx) GetTenantRecord(ctx context.Context, tenantID string) (r provision.TenantRecord, err error) {
	err = t.read(ctx, func(st *state) error { r, err = st.getTenantRecord(tenantID); return err })
	return r, err
}

// PutTenantRecord implements provision.Registry in the transaction.
func (t *tx) PutTenantRecord(ctx context.Context, r provision.TenantRecord, expectedVersion int64) (out provision.TenantRecord, err error) {
	err = t.write(ctx, func(st *state) error { out, err = st.putTenantRecord(r, expectedVersion); return err })
	return out, err
}

// DeleteTenantRecord implements provision.Registry in the transaction.
func (t *tx) DeleteTenantRecord(ctx context.Context, tenantID string, expectedVersion int64) error {
	return t.write(ctx, func(st *state) error { return st.deleteTenantRecord(tenantID, expectedVersion) })
}

// TenantByDomain implements provision.Registry in the transaction.
func (t *tx) TenantByDomain(ctx context.Context, domain string) (id string, err error) {
	err = t.read(ctx, func(st *state) error { id, err = st.tenantByDomain(domain); return err })
	return id, err
}

// ConnectionByTokenHash implements provision.Registry in the transaction.
func (t *tx) ConnectionByTokenHash(ctx context.Context, hash provision.TokenHash) (tenantID, connectionID string, err error) {
	err = t.read(ctx, func(st *state) error { tenantID, connectionID, err = st.connectionByTokenHash(hash); return err })
	return tenantID, connectionID, err
}

// ListTenantRecords implements provision.Registry in the transaction.
func (t *tx) ListTenantRecords(ctx context.Context, p provision.Page) (rs []provision.TenantRecord, total int, err error) {
	err = t.read(ctx, func(st *state) error { rs, total = st.listTenantRecords(p); return nil })
	return rs, total, err
}

// RegistryChanges implements provision.Registry in the transaction.
func (t *tx) RegistryChanges(ctx context.Context, afterRev int64, limit int) (cs []provision.RegistryChange, err error) {
	err = t.read(ctx, func(st *state) error { cs = st.registryChanges(afterRev, limit); return nil })
	return cs, err
}

// RegistryRev implements provision.Registry.
func (s *Store) RegistryRev(ctx context.Context) (rev int64, err error) {
	err = s.read(ctx, func(st *state) error { rev = st.registryRev(); return nil })
	return rev, err
}

// RegistryRev implements provision.Registry in the transaction.
func (t *tx) RegistryRev(ctx context.Context) (rev int64, err error) {
	err = t.read(ctx, func(st *state) error { rev = st.registryRev(); return nil })
	return rev, err
}

func (st *state) registryRev() int64 {
	if st.reg == nil {
		return 0
	}
	return st.reg.rev
}
