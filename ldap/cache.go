package ldap

import (
	"hash/fnv"
	"slices"
	"strings"
	"sync"
)

// dirCache is the Syncer's view of the directory as of its last sync: it
// resolves group member DNs and uids to user ids between full syncs. It
// is valid only for the stored cursor whose token it carries; a cold or
// stale cache is loaded from the stored state (dirstate.go).
//
// It holds compact per-entry state, not entries: the id, the engine's
// user id, and 64-bit hashes of the DN and uid (FNV-1a of dnKey and of
// the lower-cased uid; two of a directory's DNs colliding is a chance of
// about n²/2⁶⁵, one in ten billion at 300,000 entries).
type dirCache struct {
	token string

	mu     sync.Mutex
	users  map[string]*userRec // by canonical id
	byDN   map[uint64]*userRec // by dnHash
	byUID  map[uint64]*userRec // by uidHash; nil until a group names members by uid
	groups map[string]*groupRec
	gByDN  map[uint64]*groupRec

	// buckets is the number of buckets of the stored state (0 before it
	// is first stored), dirty the ids of the records changed since.
	buckets int
	dirty   map[string]bool
}

// touch marks the record id changed; the caller holds c.mu.
func (c *dirCache) touch(id string) {
	if c.dirty != nil {
		c.dirty[id] = true
	}
}

type userRec struct {
	id string
	// userID is the engine's user id; empty when the entry was skipped.
	userID string
	// dn and uid are the hashes of its DN and uid (0: no uid).
	dn, uid uint64
	// dropped is set when the entry was deleted (aliases may still name
	// the record).
	dropped bool
}

type groupRec struct {
	id, dn, name string   // dn is the dnKey
	memberDNs    []uint64 // dnHashes
	memberUIDs   []uint64 // uidHashes
	// groupID is the engine's group id; empty until applied.
	groupID string
	// applied is the hash of the member ids last applied, and
	// appliedMembers those ids, sorted: an incremental sync sends the
	// engine only the difference.
	applied        uint64
	appliedMembers []string
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
	return &dirCache{
		users:  map[string]*userRec{},
		byDN:   map[uint64]*userRec{},
		groups: map[string]*groupRec{},
		gByDN:  map[uint64]*groupRec{},
	}
}

// putUser records (or moves, on rename) a user entry by its dnKey.
func (c *dirCache) putUser(id, dn, uid, userID string) {
	c.putUserHashed(id, dnHash(dn), uidHash(uid), userID)
}

func (c *dirCache) putUserHashed(id string, dn, uid uint64, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touch(id)
	r, ok := c.users[id]
	if !ok {
		r = &userRec{id: id}
		c.users[id] = r
	}
	// On a rename or move the old DN stays an alias of the entry until
	// another entry takes it: referential integrity rewrites group members
	// asynchronously, and a group read before that must still resolve.
	r.dn = dn
	if r.uid != uid {
		if c.byUID != nil && c.byUID[r.uid] == r {
			delete(c.byUID, r.uid)
		}
		r.uid = uid
	}
	c.byDN[dn] = r
	if uid != 0 && c.byUID != nil {
		c.byUID[uid] = r
	}
	if userID != "" {
		r.userID = userID
	}
}

func (c *dirCache) dropUser(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.users[id]
	if !ok {
		return
	}
	delete(c.users, id)
	c.touch(id)
	r.dropped = true
	if c.byDN[r.dn] == r {
		delete(c.byDN, r.dn)
	}
	if c.byUID != nil && c.byUID[r.uid] == r {
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
	c.byUID = make(map[uint64]*userRec, len(c.users))
	for _, r := range c.users {
		if r.uid != 0 {
			c.byUID[r.uid] = r
		}
	}
}

// members returns the user ids of g's direct and nested members, sorted,
// and how many nesting cycles it broke. Users that were skipped (no user
// id) and DNs outside the scope are left out.
func (c *dirCache) members(g *groupRec) ([]string, int) {
	set := map[string]struct{}{}
	visited := map[*groupRec]bool{}
	onPath := map[*groupRec]bool{}
	cycles := 0
	var walk func(*groupRec)
	walk = func(g *groupRec) {
		visited[g], onPath[g] = true, true
		for _, dn := range g.memberDNs {
			if u, ok := c.byDN[dn]; ok {
				if u.userID != "" && !u.dropped {
					set[u.userID] = struct{}{}
				}
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
			if u, ok := c.byUID[uid]; ok && u.userID != "" && !u.dropped {
				set[u.userID] = struct{}{}
			}
		}
		onPath[g] = false
	}
	walk(g)
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, cycles
}

func hashIDs(ids []string) uint64 {
	h := fnv.New64a()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return h.Sum64()
}
