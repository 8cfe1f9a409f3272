package memstore

import (
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idprov/idprov/provision"
)

// state is everything a Store holds. Its methods assume the caller holds
// the store's lock (the read lock for reads, the write lock for writes).
// Writes record their inverse in undo, so that rollbackTo can bring the
// state back to any earlier journal length.
type state struct {
	tenants map[string]*tenant
	// idSeq numbers every ID the store assigns; it is never rolled back,
	// so an ID is never handed out twice.
	idSeq uint64
	rng   *rand.ChaCha8
	now   func() time.Time
	// reg is the Registry's data, nil until the first registry write.
	reg *registry

	// undo holds the inverse of every write since the transaction began.
	undo []func()
	// touched are the ordered lists that may need compacting at commit
	// (compaction moves positions, which the journal must not see).
	touched []compacter
}

type compacter interface{ compact() }

// do records the inverse of a write just made.
func (st *state) do(inverse func()) { st.undo = append(st.undo, inverse) }

// rollbackTo undoes the writes recorded after the journal had mark
// entries, newest first.
func (st *state) rollbackTo(mark int) {
	for i := len(st.undo) - 1; i >= mark; i-- {
		st.undo[i]()
		st.undo[i] = nil
	}
	st.undo = st.undo[:mark]
}

// commit forgets the journal and compacts the lists the transaction
// changed.
func (st *state) commit() {
	for i, c := range st.touched {
		c.compact()
		st.touched[i] = nil
	}
	st.touched = st.touched[:0]
	clear(st.undo)
	if cap(st.undo) > 4096 {
		st.undo = nil // do not keep a huge transaction's journal around
	} else {
		st.undo = st.undo[:0]
	}
}

// touch schedules c for compaction at commit.
func (st *state) touch(c compacter) {
	if n := len(st.touched); n > 0 && st.touched[n-1] == c {
		return
	}
	st.touched = append(st.touched, c)
}

const hexDigits = "0123456789abcdef"

// newID returns a fresh ID: 12 hex digits of the store-wide counter, so
// that IDs sort in creation order, then 16 random hex digits so that they
// cannot be guessed. IDs hold only [0-9a-f]: URL-safe, and never
// "bulkId".
func (st *state) newID() string {
	st.idSeq++
	var b [28]byte
	n := st.idSeq
	for i := 11; i >= 0; i-- {
		b[i] = hexDigits[n&0xf]
		n >>= 4
	}
	r := st.rng.Uint64()
	for i := 27; i >= 12; i-- {
		b[i] = hexDigits[r&0xf]
		r >>= 4
	}
	return string(b[:])
}

// tenant is one tenant's partition of the store.
//
// Indexes (the hook for an index-backed Searcher): users by ID, live users
// by folded userName and by folded e-mail, groups by ID and by folded
// displayName, links by (kind, connection, externalId) and by resource.
// Their keys are built with fold.
type tenant struct {
	id string

	users      map[string]*userRec   // by ID, tombstones included
	byUserName map[string]*userRec   // fold(UserName) -> the live user
	byEmail    map[string][]*userRec // fold(e-mail) -> live users having it
	userOrder  orderList[*userRec]   // live users, in creation order
	tombs      map[*userRec]struct{} // deleted users

	groups       map[string]*groupRec
	groupsByName map[string][]*groupRec // fold(DisplayName) -> groups, in ID order
	groupOrder   orderList[*groupRec]

	links   map[linkKey]*provision.Link
	linksOf map[resKey][]*provision.Link // by resource, ordered by ConnectionID

	events  []provision.Event // in Seq order; purging leaves Seq gaps at the front only
	lastSeq int64
	cursors map[string]int64

	kv       map[string]kvEntry
	kvWrites int // writes since the last sweep of expired keys
}

func newTenant(id string, users int) *tenant {
	return &tenant{
		id:           id,
		users:        make(map[string]*userRec, users),
		byUserName:   make(map[string]*userRec, users),
		byEmail:      make(map[string][]*userRec, users),
		tombs:        map[*userRec]struct{}{},
		groups:       map[string]*groupRec{},
		groupsByName: map[string][]*groupRec{},
		links:        map[linkKey]*provision.Link{},
		linksOf:      map[resKey][]*provision.Link{},
		cursors:      map[string]int64{},
		kv:           map[string]kvEntry{},
	}
}

// compact compacts the tenant's user and group orders.
func (t *tenant) compact() {
	t.userOrder.compact(func(r *userRec, i int) { r.pos = i })
	t.groupOrder.compact(func(g *groupRec, i int) { g.pos = i })
}

// tenantR returns the tenant for a read, nil when it has no data.
func (st *state) tenantR(id string) *tenant { return st.tenants[id] }

// tenantW returns the tenant for a write, creating it when needed. A
// created tenant is left in place by a rollback: it is empty.
func (st *state) tenantW(id string) *tenant {
	t := st.tenants[id]
	if t == nil {
		t = newTenant(id, 0)
		st.tenants[id] = t
	}
	return t
}

// userRec is a stored user.
type userRec struct {
	u provision.User
	// pos is the index in tenant.userOrder while the user is live.
	pos int
	// groups are the groups the user is a member of, in no order.
	groups []*groupRec
}

// groupRec is a stored group with its members.
type groupRec struct {
	g   provision.Group
	pos int // index in tenant.groupOrder
	// members maps each member to its index in order.
	members map[*userRec]int
	order   orderList[*userRec]
}

// compact compacts the member order.
func (g *groupRec) compact() {
	g.order.compact(func(r *userRec, i int) { g.members[r] = i })
}

type linkKey struct {
	kind       provision.ResourceKind
	connection string
	externalID string
}

type resKey struct {
	kind provision.ResourceKind
	id   string
}

type kvEntry struct {
	value   []byte
	expires time.Time // zero: never
}

// fold is the case-insensitive key of userNames, e-mails and
// displayNames. ToLower(ToUpper(s)) agrees with strings.EqualFold on the
// cases that matter (the Kelvin sign, the long s); ASCII takes the fast
// path, which allocates nothing for a string already in lower case.
func fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.ToLower(strings.ToUpper(s))
		}
	}
	return strings.ToLower(s)
}

// orderList keeps items in insertion order with O(1) append and removal,
// and finds the k-th present item in O(log n) with a Fenwick tree over
// presence, so that a page at any offset is cheap. A removal leaves a hole
// (the zero T); compact closes holes once they outnumber the items.
type orderList[T comparable] struct {
	items []T
	fen   []int32 // fen[j-1] is the Fenwick node j over presence of items
	live  int
}

// push appends x and returns its index.
func (l *orderList[T]) push(x T) int {
	j := len(l.items) + 1 // Fenwick index of the new item
	v := int32(1)
	for k := 1; k < j&-j; k <<= 1 {
		v += l.fen[j-k-1]
	}
	l.items = append(l.items, x)
	l.fen = append(l.fen, v)
	l.live++
	return j - 1
}

// pop removes the last item (undoing a push, or dropping a trailing hole).
func (l *orderList[T]) pop() {
	n := len(l.items) - 1
	var zero T
	if l.items[n] != zero {
		l.live--
	}
	l.items[n] = zero
	l.items = l.items[:n]
	l.fen = l.fen[:n]
}

func (l *orderList[T]) add(i int, d int32) {
	for j := i + 1; j <= len(l.fen); j += j & -j {
		l.fen[j-1] += d
	}
}

// remove leaves a hole at index i.
func (l *orderList[T]) remove(i int) {
	var zero T
	l.items[i] = zero
	l.add(i, -1)
	l.live--
}

// restore puts x back into the hole at index i.
func (l *orderList[T]) restore(i int, x T) {
	l.items[i] = x
	l.add(i, 1)
	l.live++
}

// find returns the index of the k-th present item (k from 0 < live).
func (l *orderList[T]) find(k int) int {
	n := len(l.fen)
	pos, rem := 0, int32(k+1)
	step := 1
	for step*2 <= n {
		step *= 2
	}
	for ; step > 0; step >>= 1 {
		if next := pos + step; next <= n && l.fen[next-1] < rem {
			pos = next
			rem -= l.fen[next-1]
		}
	}
	return pos
}

// page calls f on the present items of the page p, in order.
func (l *orderList[T]) page(p provision.Page, f func(T)) {
	off, limit := max(p.Offset, 0), max(p.Limit, 0)
	if off >= l.live || limit == 0 {
		return
	}
	var zero T
	for i := l.find(off); i < len(l.items) && limit > 0; i++ {
		if x := l.items[i]; x != zero {
			f(x)
			limit--
		}
	}
}

// count returns how many items a page p holds.
func (l *orderList[T]) count(p provision.Page) int {
	off, limit := max(p.Offset, 0), max(p.Limit, 0)
	return max(0, min(limit, l.live-off))
}

// compact drops trailing holes, and closes every hole once they outnumber
// the present items, calling setPos with each moved item's new index. It
// must not run inside a transaction: the journal records indexes.
func (l *orderList[T]) compact(setPos func(T, int)) {
	var zero T
	for n := len(l.items); n > 0 && l.items[n-1] == zero; n-- {
		l.pop()
	}
	holes := len(l.items) - l.live
	if holes <= 32 || holes <= l.live {
		return
	}
	w := 0
	for _, x := range l.items {
		if x != zero {
			l.items[w] = x
			setPos(x, w)
			w++
		}
	}
	clear(l.items[w:])
	l.items = l.items[:w]
	l.fen = l.fen[:w]
	for i := range l.fen {
		l.fen[i] = 1
	}
	for j := 1; j <= w; j++ {
		if p := j + j&-j; p <= w {
			l.fen[p-1] += l.fen[j-1]
		}
	}
	if cap(l.items) > 4*w+64 { // give memory back after a mass removal
		l.items = append([]T(nil), l.items...)
		l.fen = append([]int32(nil), l.fen...)
	}
}
