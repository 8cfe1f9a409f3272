package ldap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/idprov/idprov/provision"
)

// The directory state an incremental sync needs (which DN and which uid
// is which user, the groups' member DNs for flattening nested groups, the
// engine ids and the members last applied) is kept in the Engine's KV
// next to the cursor, in buckets by entry id, so that a restarted
// process, or another replica, continues from the stored cookie instead
// of reading the whole directory again. A full sync writes every bucket
// under a new generation; an incremental sync rewrites the buckets of the
// entries it changed before it stores the cursor.

// stateBucketSize is the number of entries per bucket a full sync aims
// for: an incremental sync rewrites a bucket per change.
const stateBucketSize = 1000

// A bucket is stored in a compact binary form (stateVersion first):
// counted lists of users (id, DN hash, uid hash, engine id), aliases
// (old DN hash, id) and groups (id, DN, name, engine id, applied hash,
// member DN hashes, member uid hashes); strings are a uvarint length and
// the bytes, hashes 8 bytes little-endian.
const stateVersion = 1

// aliasState is an old DN of a renamed user that still names it: group
// members are rewritten by referential integrity later.
type aliasState struct {
	dn uint64
	id string
}

// stateWriter appends a bucket's encoding.
type stateWriter struct{ b []byte }

func (w *stateWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *stateWriter) u64(v uint64)     { w.b = binary.LittleEndian.AppendUint64(w.b, v) }
func (w *stateWriter) str(v string)     { w.uvarint(uint64(len(v))); w.b = append(w.b, v...) }
func (w *stateWriter) bytes(v []byte)   { w.uvarint(uint64(len(v))); w.b = append(w.b, v...) }
func (w *stateWriter) u64s(vs []uint64) {
	w.uvarint(uint64(len(vs)))
	for _, v := range vs {
		w.u64(v)
	}
}

// stateReader decodes a bucket; the first malformed read sets err.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail() {
	if r.err == nil {
		r.err = errors.New("truncated or malformed")
	}
	r.b = nil
}

func (r *stateReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// raw reads a string's bytes without copying them.
func (r *stateReader) raw() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	v := string(r.b[:n])
	r.b = r.b[n:]
	return v
}

// count reads a list length, bounded by what is left (each item takes
// at least min bytes).
func (r *stateReader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *stateReader) u64s() []uint64 {
	n := r.count(8)
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = r.u64()
	}
	return out
}

func (s *Syncer) stateKey(gen string, bucket int) string {
	return "ldap/" + s.cfg.ConnectionID + "/state/" + gen + "/" + strconv.Itoa(bucket)
}

func bucketOf(id string, n int) int { return bucketOfBytes([]byte(id), n) }

func bucketOfBytes(id []byte, n int) int {
	h := fnv.New32a()
	h.Write(id)
	return int(h.Sum32() % uint32(n))
}

// writeBuckets stores the cache's records in n buckets under gen; only
// is the set of buckets to write (nil: all). The records are indexed by
// bucket first and each bucket is encoded and stored on its own, so that
// what is held beyond the cache is a pointer per record and one bucket.
func (s *Syncer) writeBuckets(ctx context.Context, c *dirCache, gen string, n int, only map[int]bool) error {
	type index struct {
		users   []uint32 // records
		aliases []aliasState
		groups  []*groupRec
	}
	idx := map[int]*index{}
	get := func(id []byte) *index {
		b := bucketOfBytes(id, n)
		if only != nil && !only[b] {
			return nil
		}
		x := idx[b]
		if x == nil {
			x = &index{}
			idx[b] = x
		}
		return x
	}
	for b := range only {
		idx[b] = &index{} // a bucket emptied by deletes is written empty
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf []byte
	for i := range uint32(c.recs.len()) {
		u := c.recs.at(i)
		if u.dropped() {
			continue
		}
		buf = c.strs.appendStr(buf[:0], u.idRef())
		if x := get(buf); x != nil {
			x.users = append(x.users, i)
		}
	}
	for dn, i := range c.alias {
		u := c.recs.at(i)
		if u.dn == dn || u.dropped() {
			continue
		}
		id := c.strs.str(u.idRef())
		if x := get([]byte(id)); x != nil {
			x.aliases = append(x.aliases, aliasState{dn: dn, id: id})
		}
	}
	for id, g := range c.groups {
		if x := get([]byte(id)); x != nil {
			x.groups = append(x.groups, g)
		}
	}
	var w stateWriter
	for b, x := range idx {
		w.b = append(w.b[:0], stateVersion)
		w.uvarint(uint64(len(x.users)))
		for _, i := range x.users {
			u := c.recs.at(i)
			buf = c.strs.appendStr(buf[:0], u.idRef())
			w.bytes(buf)
			w.u64(u.dn)
			w.u64(u.uid)
			buf = c.strs.appendStr(buf[:0], u.userID)
			w.bytes(buf)
		}
		w.uvarint(uint64(len(x.aliases)))
		for _, a := range x.aliases {
			w.u64(a.dn)
			w.str(a.id)
		}
		w.uvarint(uint64(len(x.groups)))
		for _, g := range x.groups {
			w.str(g.id)
			w.str(g.dn)
			w.str(g.name)
			w.str(g.groupID)
			w.u64(g.applied)
			w.u64s(g.memberDNs)
			w.u64s(g.memberUIDs)
		}
		if err := provision.AdapterOf(s.eng).KVSet(ctx, s.cfg.TenantID, s.stateKey(gen, b), w.b, 0); err != nil {
			return fmt.Errorf("ldap: store directory state: %w", err)
		}
		delete(idx, b)
	}
	return nil
}

// saveState writes the whole cache under a new generation, which it
// records in cur.
func (s *Syncer) saveState(ctx context.Context, c *dirCache, cur *cursor) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	gen := hex.EncodeToString(b[:])
	n := 1 + (c.live+len(c.groups))/stateBucketSize
	if err := s.writeBuckets(ctx, c, gen, n, nil); err != nil {
		return err
	}
	cur.StateGen, cur.StateBuckets = gen, n
	c.mu.Lock()
	c.buckets, c.dirty = n, map[string]bool{}
	c.mu.Unlock()
	return nil
}

// saveDirty rewrites the buckets of the records changed since the state
// was last written (all of them when cur has no state yet).
func (s *Syncer) saveDirty(ctx context.Context, c *dirCache, cur *cursor) error {
	if cur.StateGen == "" || c.buckets != cur.StateBuckets {
		return s.saveState(ctx, c, cur)
	}
	c.mu.Lock()
	only := map[int]bool{}
	for id := range c.dirty {
		only[bucketOf(id, c.buckets)] = true
	}
	c.mu.Unlock()
	if len(only) == 0 {
		return nil
	}
	if err := s.writeBuckets(ctx, c, cur.StateGen, c.buckets, only); err != nil {
		return err
	}
	c.mu.Lock()
	c.dirty = map[string]bool{}
	c.mu.Unlock()
	return nil
}

// dropState deletes the buckets of a generation no cursor names any more.
func (s *Syncer) dropState(ctx context.Context, gen string, n int) {
	for b := range n {
		if err := provision.AdapterOf(s.eng).KVDelete(ctx, s.cfg.TenantID, s.stateKey(gen, b)); err != nil && !errors.Is(err, provision.ErrNotFound) {
			s.log().WarnContext(ctx, "ldap: delete old directory state", "error", err)
			return
		}
	}
}

// loadState rebuilds the cache from the state cur names.
func (s *Syncer) loadState(ctx context.Context, cur *cursor) (*dirCache, error) {
	c := newDirCache()
	var aliases []aliasState
	var ienc, ubuf []byte
	var uenc []byte
	for b := range cur.StateBuckets {
		raw, err := provision.AdapterOf(s.eng).KVGet(ctx, s.cfg.TenantID, s.stateKey(cur.StateGen, b))
		if err != nil {
			return nil, fmt.Errorf("ldap: read directory state bucket %d: %w", b, err)
		}
		if len(raw) == 0 || raw[0] != stateVersion {
			return nil, fmt.Errorf("ldap: directory state bucket %d: unknown format", b)
		}
		r := &stateReader{b: raw[1:]}
		n := r.count(18)
		if b == 0 {
			c.reserve(n * cur.StateBuckets) // buckets are about even
		}
		c.mu.Lock()
		for range n {
			id, dn, uid, userID := r.raw(), r.u64(), r.u64(), r.raw()
			if r.err == nil {
				ienc, uenc = encodeString(ienc[:0], id), nil
				if len(userID) > 0 {
					uenc = encodeString(ubuf[:0], userID)
				}
				c.putEncoded(ienc, dn, uid, uenc)
			}
		}
		c.mu.Unlock()
		for range r.count(9) {
			a := aliasState{dn: r.u64(), id: r.str()}
			aliases = append(aliases, a)
		}
		for range r.count(14) {
			g := &groupRec{id: r.str(), dn: r.str(), name: r.str(), groupID: r.str(), applied: r.u64()}
			g.memberDNs, g.memberUIDs = r.u64s(), r.u64s()
			if r.err == nil {
				c.putGroup(g)
			}
		}
		if r.err == nil && len(r.b) > 0 {
			r.err = errors.New("trailing bytes")
		}
		if r.err != nil {
			return nil, fmt.Errorf("ldap: directory state bucket %d: %w", b, r.err)
		}
	}
	for _, a := range aliases {
		if i, ok := c.lookupID(a.id); ok {
			if _, taken := c.userByDN(a.dn); !taken {
				c.alias[a.dn] = i
			}
		}
	}
	c.token, c.buckets, c.dirty = cur.Token, cur.StateBuckets, map[string]bool{}
	return c, nil
}

// warm loads the stored directory state when this Syncer's cache is cold
// or stale (a restart, or a sync on another replica since), so that the
// next sync can be incremental. A state that cannot be read leaves the
// cache as it is: the sync runs in full, saying why.
func (s *Syncer) warm(ctx context.Context, cur *cursor) {
	if cur == nil || cur.StateGen == "" || cur.Fingerprint != s.fingerprint || (s.cache != nil && s.cache.token == cur.Token) {
		return
	}
	c, err := s.loadState(ctx, cur)
	if err != nil {
		s.log().WarnContext(ctx, "ldap: the stored directory state is unusable; the next sync is full", "error", err)
		return
	}
	s.cache = c
}
