package ldap

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
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

// stateChunk is one bucket, gzipped JSON.
type stateChunk struct {
	U []userState `json:"u,omitempty"`
	// A are the old DNs of renamed users that still name them: group
	// members are rewritten by referential integrity later.
	A []aliasState `json:"a,omitempty"`
	G []groupState `json:"g,omitempty"`
}

type userState struct {
	ID     string `json:"i"`
	DN     uint64 `json:"d"`
	UID    uint64 `json:"u,omitempty"`
	UserID string `json:"g,omitempty"`
}

type aliasState struct {
	DN uint64 `json:"d"`
	ID string `json:"i"`
}

type groupState struct {
	ID      string   `json:"i"`
	DN      string   `json:"d"`
	Name    string   `json:"n"`
	GroupID string   `json:"g,omitempty"`
	Applied uint64   `json:"a,omitempty"`
	DNs     []uint64 `json:"m,omitempty"`
	UIDs    []uint64 `json:"u,omitempty"`
}

func (s *Syncer) stateKey(gen string, bucket int) string {
	return "ldap/" + s.cfg.ConnectionID + "/state/" + gen + "/" + strconv.Itoa(bucket)
}

func bucketOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// writeBuckets stores the cache's records in n buckets under gen; only
// is the set of buckets to write (nil: all). The records are indexed by
// bucket first and each bucket is encoded and stored on its own, so that
// what is held beyond the cache is a pointer per record and one bucket.
func (s *Syncer) writeBuckets(ctx context.Context, c *dirCache, gen string, n int, only map[int]bool) error {
	type index struct {
		users   []*userRec
		aliases []aliasState
		groups  []*groupRec
	}
	idx := map[int]*index{}
	get := func(id string) *index {
		b := bucketOf(id, n)
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
	for id, u := range c.users {
		if x := get(id); x != nil {
			x.users = append(x.users, u)
		}
	}
	for dn, u := range c.byDN {
		if u.dn == dn || u.dropped {
			continue
		}
		if x := get(u.id); x != nil {
			x.aliases = append(x.aliases, aliasState{DN: dn, ID: u.id})
		}
	}
	c.mu.Unlock()
	for id, g := range c.groups {
		if x := get(id); x != nil {
			x.groups = append(x.groups, g)
		}
	}
	var buf bytes.Buffer
	for b, x := range idx {
		ch := stateChunk{A: x.aliases, U: make([]userState, 0, len(x.users)), G: make([]groupState, 0, len(x.groups))}
		for _, u := range x.users {
			ch.U = append(ch.U, userState{ID: u.id, DN: u.dn, UID: u.uid, UserID: u.userID})
		}
		for _, g := range x.groups {
			ch.G = append(ch.G, groupState{ID: g.id, DN: g.dn, Name: g.name, GroupID: g.groupID, Applied: g.applied, DNs: g.memberDNs, UIDs: g.memberUIDs})
		}
		buf.Reset()
		zw := gzip.NewWriter(&buf)
		if err := json.NewEncoder(zw).Encode(&ch); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := s.eng.KVSet(ctx, s.cfg.TenantID, s.stateKey(gen, b), buf.Bytes(), 0); err != nil {
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
	n := 1 + (len(c.users)+len(c.groups))/stateBucketSize
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
		if err := s.eng.KVDelete(ctx, s.cfg.TenantID, s.stateKey(gen, b)); err != nil && !errors.Is(err, provision.ErrNotFound) {
			s.log().WarnContext(ctx, "ldap: delete old directory state", "error", err)
			return
		}
	}
}

// loadState rebuilds the cache from the state cur names.
func (s *Syncer) loadState(ctx context.Context, cur *cursor) (*dirCache, error) {
	c := newDirCache()
	var aliases []aliasState
	for b := range cur.StateBuckets {
		raw, err := s.eng.KVGet(ctx, s.cfg.TenantID, s.stateKey(cur.StateGen, b))
		if err != nil {
			return nil, fmt.Errorf("ldap: read directory state bucket %d: %w", b, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("ldap: directory state bucket %d: %w", b, err)
		}
		var ch stateChunk
		err = json.NewDecoder(zr).Decode(&ch)
		if err == nil {
			_, err = io.Copy(io.Discard, zr)
		}
		if err != nil {
			return nil, fmt.Errorf("ldap: directory state bucket %d: %w", b, err)
		}
		for _, u := range ch.U {
			c.putUserHashed(u.ID, u.DN, u.UID, u.UserID)
		}
		aliases = append(aliases, ch.A...)
		for _, g := range ch.G {
			c.putGroup(&groupRec{id: g.ID, dn: g.DN, name: g.Name, groupID: g.GroupID, applied: g.Applied, memberDNs: g.DNs, memberUIDs: g.UIDs})
		}
	}
	for _, a := range aliases {
		if u, ok := c.users[a.ID]; ok && c.byDN[a.DN] == nil {
			c.byDN[a.DN] = u
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
