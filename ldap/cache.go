package ldap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// dirCache is the Syncer's view of the directory as of its last sync: it
// resolves group member DNs and uids to user ids between full syncs. It
// is valid only for the stored cursor whose token it carries; a cold or
// stale cache is loaded from the stored state (dirstate.go).
//
// It holds compact per-entry state, not entries, so that a full sync's
// memory grows by tens of bytes per user, not by hundreds: a user is a
// 24-byte record in one slice (its DN and uid as 64-bit hashes, its id
// and engine id as offsets into one byte arena, where an id in UUID form
// takes 17 bytes), found through open-addressing tables of 32-bit record
// indexes. The hashes are FNV-1a of dnKey and of the lower-cased uid; two
// of a directory's DNs colliding is a chance of about n²/2⁶⁵, one in ten
// billion at 300,000 entries. Ids are compared in full. Past its first
// few thousand users, the records, arena and tables live off the Go heap
// (offheap.go).
type dirCache struct {
	token string
	mem   *offheap // the mappings of recs, strs, byID and byDN

	mu    sync.Mutex
	recs  recList // every user record; its index names it
	strs  arena
	byID  table             // live records by id
	byDN  table             // records by their current DN
	alias map[uint64]uint32 // old DNs of renamed users that still name them
	byUID map[uint64]uint32 // by uidHash; nil until a group names members by uid
	live  int               // records not dropped

	groups map[string]*groupRec
	gByDN  map[uint64]*groupRec

	// buckets is the number of buckets of the stored state (0 before it
	// is first stored), dirty the ids of the records changed since, and
	// journaled the buckets whose records the state's journal changes.
	buckets   int
	dirty     map[string]bool
	journaled map[int]bool
}

// touch marks the record id changed; the caller holds c.mu.
func (c *dirCache) touch(id string) {
	if c.dirty != nil {
		c.dirty[id] = true
	}
}

// userRec is one user entry: dn and uid are the hashes of its DN and uid
// (0: no uid); id and userID are arena references of its id and of the
// engine's user id (userID 0 when the entry was skipped). The top bit of
// id is set when the entry was deleted (aliases may still name the
// record).
type userRec struct {
	dn, uid    uint64
	id, userID uint32
}

const droppedBit = 1 << 31

func (r *userRec) dropped() bool { return r.id&droppedBit != 0 }
func (r *userRec) idRef() uint32 { return r.id &^ droppedBit }

type groupRec struct {
	id, dn, name string   // dn is the dnKey
	memberDNs    []uint64 // dnHashes
	memberUIDs   []uint64 // uidHashes
	// groupID is the engine's group id; empty until applied.
	groupID string
	// applied is the hash of the member ids last applied, and
	// appliedMembers the records of those members (4 bytes a member, not
	// a string): an incremental sync sends the engine only the
	// difference.
	applied        uint64
	appliedMembers []uint32
}

// dnHash hashes a dnKey; uidHash a uid, case-insensitively (0 for none).
func dnHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64() | 1 // never 0
}

func uidHash(uid string) uint64 {
	if uid == "" {
		return 0
	}
	return dnHash(strings.ToLower(uid))
}

func newDirCache() *dirCache {
	mem := &offheap{}
	c := &dirCache{
		mem:       mem,
		recs:      recList{mem: mem},
		strs:      arena{chunks: newArena().chunks, mem: mem},
		byID:      table{mem: mem},
		byDN:      table{mem: mem},
		alias:     map[uint64]uint32{},
		groups:    map[string]*groupRec{},
		gByDN:     map[uint64]*groupRec{},
		journaled: map[int]bool{},
	}
	runtime.AddCleanup(c, (*offheap).freeAll, mem)
	return c
}

// size returns the bytes the cache holds on the Go heap and mapped off
// it (the maps and group records estimated); the caller holds the
// Syncer's lock.
func (c *dirCache) size() (heap, mapped int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	for _, ch := range c.recs.chunks {
		total += int64(cap(ch)) * int64(unsafe.Sizeof(userRec{}))
	}
	for _, ch := range c.strs.chunks {
		total += int64(cap(ch))
	}
	total += 4 * int64(cap(c.byID.slots)+cap(c.byDN.slots))
	total += 24 * int64(len(c.alias)+len(c.byUID))
	for _, g := range c.groups {
		total += 160 + int64(len(g.id)+len(g.dn)+len(g.name)+len(g.groupID))
		total += 8*int64(cap(g.memberDNs)+cap(g.memberUIDs)) + 4*int64(cap(g.appliedMembers))
	}
	c.mem.mu.Lock()
	for _, b := range c.mem.mapped {
		mapped += int64(len(b))
	}
	c.mem.mu.Unlock()
	return total - mapped, mapped
}

// recList holds user records in chunks of recChunk. The first is on the
// heap and grows by append, so that a small directory takes a few
// hundred bytes, not a whole chunk; the others are allocated whole, off
// the heap, so that growing never copies (a slice grown by append holds
// the old and the new array at once).
type recList struct {
	chunks [][]userRec
	n      int
	mem    *offheap
}

const recChunk = 4096

func (l *recList) len() int { return l.n }

// at returns record i.
func (l *recList) at(i uint32) *userRec { return &l.chunks[i/recChunk][i%recChunk] }

// add appends r and returns its index.
func (l *recList) add(r userRec) uint32 {
	if l.n%recChunk == 0 {
		if len(l.chunks) == 0 {
			l.chunks = append(l.chunks, make([]userRec, 0, 16))
		} else {
			l.chunks = append(l.chunks, offheapSlice[userRec](l.mem, recChunk)[:0])
		}
	}
	last := len(l.chunks) - 1
	l.chunks[last] = append(l.chunks[last], r)
	l.n++
	return uint32(l.n - 1)
}

// arena holds the records' strings back to back in chunks, each string a
// header and its bytes: header 0 is a lower-case 8-4-4-4-12 UUID stored
// as its 16 bytes, any other header is the uvarint of the length plus
// one. A reference is a chunk number (11 bits) and an offset in the chunk
// (20 bits); a string longer than a chunk gets a chunk of its own. The
// first chunk grows on the heap up to offheapMin, so that a small
// directory takes no mapping; each next one is twice the one before, up
// to arenaChunk, off the heap (where the kernel backs only the pages
// written, and on the heap where it cannot be mapped, so that a chunk
// there is never more than twice what the directory has used). Nothing
// handed out points into a chunk (str copies).
type arena struct {
	chunks [][]byte
	mem    *offheap
}

const (
	arenaChunkBits = 20
	arenaChunk     = 1 << arenaChunkBits
)

func newArena() arena {
	return arena{chunks: [][]byte{make([]byte, 1, 4096)}} // reference 0 is "no string"
}

// encodeString appends s's arena encoding to dst.
func encodeString[S ~string | ~[]byte](dst []byte, s S) []byte {
	if u, ok := uuidBytes(s); ok {
		dst = append(dst, 0)
		return append(dst, u[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s))+1)
	return append(dst, s...)
}

// uuidBytes parses the canonical (lower-case, hyphenated) UUID form.
func uuidBytes[S ~string | ~[]byte](s S) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	n := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		hi, ok1 := hexVal(s[i])
		lo, ok2 := hexVal(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[n] = hi<<4 | lo
		n++
	}
	return u, true
}

// hexVal is a lower-case hex digit's value.
func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// add stores an encoded string and returns its reference.
func (a *arena) add(enc []byte) uint32 {
	last := len(a.chunks) - 1
	c := a.chunks[last]
	if len(c)+len(enc) > cap(c) {
		if last == 0 && len(c)+len(enc) <= offheapMin {
			nc := make([]byte, len(c), min(offheapMin, max(2*cap(c), len(c)+len(enc))))
			copy(nc, c)
			c = nc
		} else {
			c = offheapSlice[byte](a.mem, max(min(arenaChunk, 2*cap(c)), len(enc)))[:0]
			a.chunks = append(a.chunks, c)
			last++
		}
	}
	ref := uint32(last)<<arenaChunkBits | uint32(len(c))
	a.chunks[last] = append(c, enc...)
	return ref
}

// raw returns the encoding stored at ref.
func (a *arena) raw(ref uint32) []byte {
	b := a.chunks[ref>>arenaChunkBits][ref&(arenaChunk-1):]
	if b[0] == 0 {
		return b[:17]
	}
	n, k := binary.Uvarint(b)
	return b[:k+int(n)-1]
}

// appendStr appends the string stored at ref to dst (no allocation
// beyond dst's).
func (a *arena) appendStr(dst []byte, ref uint32) []byte {
	if ref == 0 {
		return dst
	}
	b := a.raw(ref)
	if b[0] == 0 {
		var out [36]byte
		formatUUID(&out, b[1:17])
		return append(dst, out[:]...)
	}
	_, k := binary.Uvarint(b)
	return append(dst, b[k:]...)
}

func formatUUID(out *[36]byte, u []byte) {
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], u[10:16])
}

// str returns a copy of the string stored at ref ("" for 0).
func (a *arena) str(ref uint32) string {
	if ref == 0 {
		return ""
	}
	b := a.raw(ref)
	if b[0] == 0 {
		var out [36]byte
		formatUUID(&out, b[1:17])
		return string(out[:])
	}
	n, k := binary.Uvarint(b)
	if n <= 1 {
		return ""
	}
	return string(b[k : k+int(n)-1])
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// table is an open-addressing hash table (linear probing) of record
// indexes: a slot is 0 (empty), tomb (deleted) or an index plus one. The
// key of a slot is derived from its record, so that a slot costs 4 bytes.
type table struct {
	slots []uint32
	n     int      // live slots
	used  int      // live slots and tombs
	mem   *offheap // where large slot arrays are kept
}

const tomb = ^uint32(0)

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// find returns the slot holding the record for which eq holds, or -1.
func (t *table) find(h uint64, k tkey) int {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := mix(h) & mask; ; i = (i + 1) & mask {
		switch v := t.slots[i]; v {
		case 0:
			return -1
		case tomb:
		default:
			if k.eq(v - 1) {
				return int(i)
			}
		}
	}
}

// get returns the record for which eq holds.
func (t *table) get(h uint64, k tkey) (uint32, bool) {
	if i := t.find(h, k); i >= 0 {
		return t.slots[i] - 1, true
	}
	return 0, false
}

// set makes rec the record of key h (eq tells the key's records),
// replacing the one there; hashOf gives a record's key hash when the
// table grows.
func (t *table) set(h uint64, rec uint32, k tkey) {
	if i := t.find(h, k); i >= 0 {
		t.slots[i] = rec + 1
		return
	}
	if (t.used+1)*4 > len(t.slots)*3 {
		t.grow(k)
	}
	mask := uint64(len(t.slots) - 1)
	for i := mix(h) & mask; ; i = (i + 1) & mask {
		if v := t.slots[i]; v == 0 || v == tomb {
			if v == 0 {
				t.used++
			}
			t.slots[i] = rec + 1
			t.n++
			return
		}
	}
}

// remove removes rec as the record of key h, if it is.
func (t *table) remove(h uint64, rec uint32, k tkey) {
	if i := t.find(h, k); i >= 0 && t.slots[i] == rec+1 {
		t.slots[i] = tomb
		t.n--
	}
}

// reserve grows the table for n more entries at once.
func (t *table) reserve(n int, k tkey) {
	if (t.used+n)*4 > len(t.slots)*3 {
		t.resize(t.n+n, k)
	}
}

func (t *table) grow(k tkey) { t.resize(t.n+1, k) }

// resize makes room for n entries: at most half full, so between 37.5%
// and 75% full as it fills, 5 to 11 bytes an entry.
func (t *table) resize(n int, k tkey) {
	size := 64
	for size < n*2 {
		size *= 2
	}
	old := t.slots
	t.slots = offheapSlice[uint32](t.mem, size)
	t.n, t.used = 0, 0
	mask := uint64(size - 1)
	for _, v := range old {
		if v == 0 || v == tomb {
			continue
		}
		for i := mix(k.hashOf(v-1)) & mask; ; i = (i + 1) & mask {
			if t.slots[i] == 0 {
				t.slots[i] = v
				break
			}
		}
		t.n++
		t.used++
	}
	offheapFree(t.mem, old)
}

// encodeID returns id's encoding (in buf) and hash, for the id table.
func encodeID(buf []byte, id string) ([]byte, uint64) {
	enc := encodeString(buf[:0], id)
	return enc, hashBytes(enc)
}

// tkey is a key of a table: what its records are compared and hashed
// by (a concrete type, so that a lookup allocates nothing).
type tkey struct {
	c    *dirCache
	kind uint8
	enc  []byte // the id's arena encoding
	dn   uint64
}

const (
	keyID uint8 = iota // records by id
	keyDN              // records by current DN hash
)

func (c *dirCache) idKey(enc []byte) tkey { return tkey{c: c, kind: keyID, enc: enc} }
func (c *dirCache) dnKey(dn uint64) tkey  { return tkey{c: c, kind: keyDN, dn: dn} }

func (k tkey) eq(i uint32) bool {
	r := k.c.recs.at(i)
	if k.kind == keyID {
		return bytes.Equal(k.c.strs.raw(r.idRef()), k.enc)
	}
	return r.dn == k.dn
}

func (k tkey) hashOf(i uint32) uint64 {
	r := k.c.recs.at(i)
	if k.kind == keyID {
		return hashBytes(k.c.strs.raw(r.idRef()))
	}
	return r.dn
}

// lookupID returns the live record of id; the caller holds c.mu (or owns
// the cache alone).
func (c *dirCache) lookupID(id string) (uint32, bool) {
	var buf [64]byte
	enc, h := encodeID(buf[:], id)
	return c.byID.get(h, c.idKey(enc))
}

// hasUser reports whether id is a known, live user entry; the caller
// holds c.mu (or owns the cache alone).
func (c *dirCache) hasUser(id string) bool {
	_, ok := c.lookupID(id)
	return ok
}

// eachUser calls fn with the id of every live user entry; the caller
// holds c.mu (or owns the cache alone).
func (c *dirCache) eachUser(fn func(id string)) {
	for i := range c.recs.len() {
		if r := c.recs.at(uint32(i)); !r.dropped() {
			fn(c.strs.str(r.idRef()))
		}
	}
}

// userByDN returns (a copy of) the record a DN hash names: the entry at
// that DN, or the entry renamed from it. It may be a dropped record.
func (c *dirCache) userByDN(dn uint64) (userRec, bool) {
	if i, ok := c.byDN.get(dn, c.dnKey(dn)); ok {
		return *c.recs.at(i), true
	}
	if i, ok := c.alias[dn]; ok {
		return *c.recs.at(i), true
	}
	return userRec{}, false
}

// putUser records (or moves, on rename) a user entry by its dnKey.
func (c *dirCache) putUser(id, dn, uid, userID string) {
	c.putUserHashed(id, dnHash(dn), uidHash(uid), userID)
}

func (c *dirCache) putUserHashed(id string, dn, uid uint64, userID string) {
	var buf, ubuf [64]byte
	var uenc []byte
	if userID != "" {
		uenc = encodeString(ubuf[:0], userID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touch(id)
	c.putEncoded(encodeString(buf[:0], id), dn, uid, uenc)
}

// putEncoded is putUserHashed with the id and the user id (nil: none) in
// their arena encoding; the caller holds c.mu and has touched the id.
func (c *dirCache) putEncoded(enc []byte, dn, uid uint64, uenc []byte) uint32 {
	h := hashBytes(enc)
	i, ok := c.byID.get(h, c.idKey(enc))
	if !ok {
		i = c.recs.add(userRec{id: c.strs.add(enc)})
		c.byID.set(h, i, c.idKey(enc))
		c.live++
	}
	r := c.recs.at(i)
	// On a rename or move the old DN stays an alias of the entry until
	// another entry takes it: referential integrity rewrites group members
	// asynchronously, and a group read before that must still resolve.
	if r.dn != dn && r.dn != 0 {
		if j, ok := c.byDN.get(r.dn, c.dnKey(r.dn)); ok && j == i {
			c.byDN.remove(r.dn, i, c.dnKey(r.dn))
			c.alias[r.dn] = i
		}
	}
	r.dn = dn
	c.byDN.set(dn, i, c.dnKey(dn))
	delete(c.alias, dn)
	if r.uid != uid {
		if j, ok := c.byUID[r.uid]; ok && j == i {
			delete(c.byUID, r.uid)
		}
		r.uid = uid
	}
	if uid != 0 && c.byUID != nil {
		c.byUID[uid] = i
	}
	if uenc != nil && (r.userID == 0 || !bytes.Equal(c.strs.raw(r.userID), uenc)) {
		r.userID = c.strs.add(uenc)
	}
	return i
}

// reserve sizes the tables for n more records.
func (c *dirCache) reserve(n int) {
	c.byID.reserve(n, c.idKey(nil))
	c.byDN.reserve(n, c.dnKey(0))
}

func (c *dirCache) dropUser(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf [64]byte
	enc, h := encodeID(buf[:], id)
	i, ok := c.byID.get(h, c.idKey(enc))
	if !ok {
		return
	}
	c.byID.remove(h, i, c.idKey(enc))
	c.live--
	c.touch(id)
	r := c.recs.at(i)
	r.id |= droppedBit
	c.byDN.remove(r.dn, i, c.dnKey(r.dn))
	if j, ok := c.byUID[r.uid]; ok && j == i {
		delete(c.byUID, r.uid)
	}
}

func (c *dirCache) putGroup(g *groupRec) {
	c.mu.Lock()
	c.touch(g.id)
	c.mu.Unlock()
	if old, ok := c.groups[g.id]; ok {
		g.groupID, g.applied, g.appliedMembers = old.groupID, old.applied, old.appliedMembers
		if h := dnHash(old.dn); c.gByDN[h] == old {
			delete(c.gByDN, h)
		}
	}
	c.groups[g.id] = g
	c.gByDN[dnHash(g.dn)] = g
}

func (c *dirCache) dropGroup(id string) *groupRec {
	g, ok := c.groups[id]
	if !ok {
		return nil
	}
	delete(c.groups, id)
	c.mu.Lock()
	c.touch(id)
	c.mu.Unlock()
	if h := dnHash(g.dn); c.gByDN[h] == g {
		delete(c.gByDN, h)
	}
	return g
}

// indexUIDs builds the uid index the first time a group names members
// by uid (posixGroup memberUid): directories without such groups never
// pay for it.
func (c *dirCache) indexUIDs() {
	if c.byUID != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byUID = make(map[uint64]uint32, c.live)
	for i := range c.recs.len() {
		if r := c.recs.at(uint32(i)); r.uid != 0 && !r.dropped() {
			c.byUID[r.uid] = uint32(i)
		}
	}
}

// members returns the user ids of g's direct and nested members, sorted,
// with their records, and how many nesting cycles it broke. Users that
// were skipped (no user id) and DNs outside the scope are left out.
func (c *dirCache) members(g *groupRec) ([]string, []uint32, int) {
	set := map[string]uint32{}
	add := func(i uint32) {
		if r := c.recs.at(i); r.userID != 0 && !r.dropped() {
			set[c.strs.str(r.userID)] = i
		}
	}
	visited := map[*groupRec]bool{}
	onPath := map[*groupRec]bool{}
	cycles := 0
	var walk func(*groupRec)
	walk = func(g *groupRec) {
		visited[g], onPath[g] = true, true
		for _, dn := range g.memberDNs {
			if i, ok := c.byDN.get(dn, c.dnKey(dn)); ok {
				add(i)
				continue
			}
			if i, ok := c.alias[dn]; ok {
				add(i)
				continue
			}
			if sub, ok := c.gByDN[dn]; ok {
				switch {
				case onPath[sub]:
					cycles++
				case !visited[sub]:
					walk(sub)
				}
			}
		}
		if len(g.memberUIDs) > 0 {
			c.indexUIDs()
		}
		for _, uid := range g.memberUIDs {
			if i, ok := c.byUID[uid]; ok {
				add(i)
			}
		}
		onPath[g] = false
	}
	walk(g)
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	recs := make([]uint32, len(ids))
	for k, id := range ids {
		recs[k] = set[id]
	}
	return ids, recs, cycles
}

// appliedUsers returns a test of whether an engine user id is the user
// of a live record: the sweep's set of the users a full sync applied, as
// the records sorted by user id (4 bytes a user; a hash table would take
// 8 to 16).
func (c *dirCache) appliedUsers() func(userID string) bool {
	c.mu.Lock()
	recs := make([]uint32, 0, c.live)
	for i := range uint32(c.recs.len()) {
		if r := c.recs.at(i); r.userID != 0 && !r.dropped() {
			recs = append(recs, i)
		}
	}
	slices.SortFunc(recs, func(a, b uint32) int {
		return bytes.Compare(c.strs.raw(c.recs.at(a).userID), c.strs.raw(c.recs.at(b).userID))
	})
	c.mu.Unlock()
	return func(userID string) bool {
		var buf [64]byte
		enc := encodeString(buf[:0], userID)
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := slices.BinarySearchFunc(recs, enc, func(i uint32, enc []byte) int {
			return bytes.Compare(c.strs.raw(c.recs.at(i).userID), enc)
		})
		return ok
	}
}

// appliedIDs returns the user ids last applied to g, sorted; false when
// they are not known (never applied, or a member's user id changed since).
func (c *dirCache) appliedIDs(g *groupRec) ([]string, bool) {
	if g.appliedMembers == nil {
		return nil, false
	}
	ids := make([]string, len(g.appliedMembers))
	for k, i := range g.appliedMembers {
		ids[k] = c.strs.str(c.recs.at(i).userID)
	}
	slices.Sort(ids)
	return ids, hashIDs(ids) == g.applied
}

func hashIDs(ids []string) uint64 {
	h := fnv.New64a()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return h.Sum64()
}
