package ldap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	"github.com/idprov/idprov/provision"
)

// The directory state an incremental sync needs (which DN and which uid
// is which user, the groups' member DNs for flattening nested groups, the
// engine ids and the members last applied) is kept in the Engine's KV
// next to the cursor, in buckets by entry id, so that a restarted
// process, or another replica, continues from the stored cookie instead
// of reading the whole directory again. A full sync writes every bucket
// under a new generation; an incremental sync appends a journal record
// of the entries it changed (below) before it stores the cursor that
// names it.

// stateBucketSize is the number of entries per bucket a full sync aims
// for: a compaction of the journal rewrites the buckets it touched.
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

// group appends a group's state, as buckets and journal records hold it.
func (w *stateWriter) group(g *groupRec) {
	w.str(g.id)
	w.str(g.dn)
	w.str(g.name)
	w.str(g.groupID)
	w.u64(g.applied)
	w.u64s(g.memberDNs)
	w.u64s(g.memberUIDs)
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

// group reads a group's state as stateWriter.group wrote it.
func (r *stateReader) group() *groupRec {
	g := &groupRec{id: r.str(), dn: r.str(), name: r.str(), groupID: r.str(), applied: r.u64()}
	g.memberDNs, g.memberUIDs = r.u64s(), r.u64s()
	return g
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
func (s *Syncer) writeBuckets(ctx context.Context, c *dirCache, gen string, n int, only map[int]bool) (int, error) {
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
	size := 0
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
			w.group(g)
		}
		if err := provision.AdapterOf(s.eng).KVSet(ctx, s.cfg.TenantID, s.stateKey(gen, b), w.b, 0); err != nil {
			return 0, fmt.Errorf("ldap: store directory state: %w", err)
		}
		size += len(w.b)
		delete(idx, b)
	}
	return size, nil
}

// saveState writes the whole cache under a new generation, which it
// records in cur (with an empty journal).
func (s *Syncer) saveState(ctx context.Context, c *dirCache, cur *cursor) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	gen := hex.EncodeToString(b[:])
	n := 1 + (c.live+len(c.groups))/stateBucketSize
	size, err := s.writeBuckets(ctx, c, gen, n, nil)
	if err != nil {
		return err
	}
	if cur.StateGen != "" {
		cur.Stale = append(slices.Clone(cur.Stale), staleOf(cur))
	}
	cur.StateGen, cur.StateBuckets, cur.StateBytes = gen, n, size
	cur.JournalFrom, cur.JournalTo, cur.JournalBytes = 0, 0, 0
	c.mu.Lock()
	c.buckets, c.dirty, c.journaled = n, map[string]bool{}, map[int]bool{}
	c.mu.Unlock()
	return nil
}

// saveDirty stores the records changed since the state was last written
// (all of them when cur has no state yet), as a journal record appended
// to the state, or, once the journal has grown past its bound, by
// rewriting the buckets the journal and these changes touched
// (compaction). It updates cur, which the caller stores next (the
// journal records a compaction made obsolete, and a state it replaced,
// in cur.Stale).
func (s *Syncer) saveDirty(ctx context.Context, c *dirCache, cur *cursor) error {
	if cur.StateGen == "" || c.buckets != cur.StateBuckets {
		return s.saveState(ctx, c, cur)
	}
	c.mu.Lock()
	changed := len(c.dirty)
	c.mu.Unlock()
	if changed == 0 {
		return nil
	}
	if cur.JournalTo-cur.JournalFrom < maxJournalRecords && cur.JournalBytes < journalBound(cur.StateBytes) {
		size, err := s.writeJournal(ctx, c, cur.StateGen, cur.JournalTo)
		if err != nil {
			return err
		}
		cur.JournalTo++
		cur.JournalBytes += size
		return nil
	}
	c.mu.Lock()
	only := map[int]bool{}
	maps.Copy(only, c.journaled)
	for id := range c.dirty {
		only[bucketOf(id, c.buckets)] = true
	}
	c.mu.Unlock()
	if _, err := s.writeBuckets(ctx, c, cur.StateGen, c.buckets, only); err != nil {
		return err
	}
	c.mu.Lock()
	c.dirty, c.journaled = map[string]bool{}, map[int]bool{}
	c.mu.Unlock()
	cur.Stale = append(slices.Clone(cur.Stale), staleState{Gen: cur.StateGen, From: cur.JournalFrom, To: cur.JournalTo})
	cur.JournalFrom, cur.JournalBytes = cur.JournalTo, 0
	return nil
}

// loadState rebuilds the cache from the state cur names: its buckets,
// then its journal records in order.
func (s *Syncer) loadState(ctx context.Context, cur *cursor) (*dirCache, error) {
	c := newDirCache()
	aliases := map[string][]uint64{} // by user id
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
					ubuf = uenc
				}
				c.putEncoded(ienc, dn, uid, uenc)
			}
		}
		c.mu.Unlock()
		for range r.count(9) {
			dn, id := r.u64(), r.str()
			aliases[id] = append(aliases[id], dn)
		}
		for range r.count(14) {
			g := r.group()
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
	c.journaled = map[int]bool{}
	c.buckets = cur.StateBuckets
	for seq := cur.JournalFrom; seq < cur.JournalTo; seq++ {
		if err := s.applyJournal(ctx, c, cur.StateGen, seq, aliases); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	clear(c.alias) // a journal's renames made some; the stored ones follow
	for id, dns := range aliases {
		i, ok := c.lookupID(id)
		if !ok {
			continue
		}
		for _, dn := range dns {
			if _, taken := c.userByDN(dn); !taken {
				c.alias[dn] = i
			}
		}
	}
	c.mu.Unlock()
	c.token, c.dirty = cur.Token, map[string]bool{}
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

// An incremental sync does not rewrite the buckets of what it changed:
// it appends a journal record of those entries to the state (key
// state/<gen>/j<seq>), and the cursor it stores next names the journal
// records that belong to the state, JournalFrom to JournalTo, so that
// what an incremental sync writes is in proportion to its changes, not
// to the directory. A loader applies the records over the buckets in
// order. A record written by a sync that stopped before it stored its
// cursor is not named by any cursor: the next sync writes over it. Once
// the journal passes its bound (maxJournalRecords, or journalBound of the
// buckets' size), a sync writes the buckets the journal touched instead
// and starts an empty journal; the records before it are deleted once
// the cursor that no longer names them is stored. Either way the cursor
// is stored last, so it is never ahead of the state: a compaction that
// stops before its cursor leaves some buckets ahead of the cursor still
// stored (as an in-place bucket write always could), its journal records
// still apply over them, and the cookie replays those changes.
//
// A record is journalVersion, the generation and the sequence number it
// was written as, a count of entries, each a kind byte and its state
// (journalUser: id, DN hash, uid hash, engine id, the DN hashes of its
// aliases; journalGroup: as in a bucket; journalGone: id), and a CRC-32
// (IEEE) of all that: a torn, cut or misplaced record is refused and the
// next sync is full.
const (
	journalVersion = 2

	journalUser  = 'u'
	journalGroup = 'g'
	journalGone  = 'd'
)

// maxJournalRecords bounds the journal's length (a push writes a record
// a change); a variable for the tests.
var maxJournalRecords = 256

// journalBound is the size the journal may reach before it is compacted
// into the buckets: an eighth of the buckets' size (so that a load reads
// at most 1/8 more), at least 256 KiB.
func journalBound(stateBytes int) int { return max(stateBytes/8, 256<<10) }

func (s *Syncer) journalKey(gen string, seq int) string {
	return "ldap/" + s.cfg.ConnectionID + "/state/" + gen + "/j" + strconv.Itoa(seq)
}

// writeJournal stores the records changed since the state was last
// written as journal record seq of gen, and returns its size.
func (s *Syncer) writeJournal(ctx context.Context, c *dirCache, gen string, seq int) (int, error) {
	c.mu.Lock()
	ids := slices.Sorted(maps.Keys(c.dirty))
	recs := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		if i, ok := c.lookupID(id); ok {
			recs[i] = true
		}
	}
	aliases := map[uint32][]uint64{}
	for dn, i := range c.alias {
		if recs[i] && c.recs.at(i).dn != dn {
			aliases[i] = append(aliases[i], dn)
		}
	}
	w := stateWriter{b: []byte{journalVersion}}
	w.str(gen)
	w.uvarint(uint64(seq))
	w.uvarint(uint64(len(ids)))
	var buf []byte
	for _, id := range ids {
		if i, ok := c.lookupID(id); ok {
			u := c.recs.at(i)
			w.b = append(w.b, journalUser)
			w.str(id)
			w.u64(u.dn)
			w.u64(u.uid)
			buf = c.strs.appendStr(buf[:0], u.userID)
			w.bytes(buf)
			dns := aliases[i]
			slices.Sort(dns)
			w.u64s(dns)
		} else if g, ok := c.groups[id]; ok {
			w.b = append(w.b, journalGroup)
			w.group(g)
		} else {
			w.b = append(w.b, journalGone)
			w.str(id)
		}
		c.journaled[bucketOf(id, c.buckets)] = true
	}
	c.mu.Unlock()
	w.b = binary.LittleEndian.AppendUint32(w.b, crc32.ChecksumIEEE(w.b))
	if err := provision.AdapterOf(s.eng).KVSet(ctx, s.cfg.TenantID, s.journalKey(gen, seq), w.b, 0); err != nil {
		return 0, fmt.Errorf("ldap: store directory state journal: %w", err)
	}
	c.mu.Lock()
	for _, id := range ids {
		delete(c.dirty, id)
	}
	c.mu.Unlock()
	return len(w.b), nil
}

// applyJournal applies journal record seq of gen to c, which is being
// loaded (aliases are its users' old DNs, by id, applied at the end).
func (s *Syncer) applyJournal(ctx context.Context, c *dirCache, gen string, seq int, aliases map[string][]uint64) error {
	raw, err := provision.AdapterOf(s.eng).KVGet(ctx, s.cfg.TenantID, s.journalKey(gen, seq))
	if err != nil {
		return fmt.Errorf("ldap: read directory state journal record %d: %w", seq, err)
	}
	bad := func(why string) error { return fmt.Errorf("ldap: directory state journal record %d: %s", seq, why) }
	if len(raw) < 5 || raw[0] != journalVersion {
		return bad("unknown format")
	}
	body := raw[:len(raw)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(raw[len(raw)-4:]) {
		return bad("checksum mismatch (torn or damaged)")
	}
	r := &stateReader{b: body[1:]}
	if g, q := r.str(), r.uvarint(); r.err == nil && (g != gen || q != uint64(seq)) {
		return bad(fmt.Sprintf("written as record %d of state %s", q, g))
	}
	n := r.count(2)
	var ienc, ubuf, uenc []byte
	for range n {
		if len(r.b) == 0 {
			r.fail()
			break
		}
		kind := r.b[0]
		r.b = r.b[1:]
		var id string
		switch kind {
		case journalUser:
			var dn, uid uint64
			var userID []byte
			id, dn, uid, userID = r.str(), r.u64(), r.u64(), r.raw()
			dns := r.u64s()
			if r.err != nil {
				break
			}
			ienc, uenc = encodeString(ienc[:0], id), nil
			if len(userID) > 0 {
				uenc = encodeString(ubuf[:0], userID)
				ubuf = uenc
			}
			c.mu.Lock()
			i := c.putEncoded(ienc, dn, uid, uenc)
			if uenc == nil {
				c.recs.at(i).userID = 0
			}
			c.mu.Unlock()
			if dns == nil {
				delete(aliases, id)
			} else {
				aliases[id] = dns
			}
		case journalGroup:
			g := r.group()
			if r.err != nil {
				break
			}
			groupID, applied := g.groupID, g.applied
			c.putGroup(g) // keeps the old group's engine id: the record's is the one
			g.groupID, g.applied, g.appliedMembers = groupID, applied, nil
			id = g.id
		case journalGone:
			id = r.str()
			if r.err != nil {
				break
			}
			c.dropUser(id)
			c.dropGroup(id)
			delete(aliases, id)
		default:
			r.fail()
		}
		if r.err != nil {
			break
		}
		c.journaled[bucketOf(id, c.buckets)] = true
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return bad(r.err.Error())
	}
	return nil
}
