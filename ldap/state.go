package ldap

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idprov/idprov/provision"
)

// cursor is what the Syncer keeps in the Engine's KV between syncs (and
// across restarts and replicas): where the next incremental sync starts.
type cursor struct {
	// Token changes on every save; the in-memory directory cache is
	// valid only for the token it was built for.
	Token string
	// Fingerprint digests the configuration that decides what is in
	// scope: a change forces a full sync.
	Fingerprint string
	// Mode is ModeSyncrepl, ModeModifyTimestamp, ModeDirSync or
	// ModeUSNChanged.
	Mode Mode
	// UserCookie and GroupCookie are the syncrepl cookies.
	UserCookie  []byte `json:",omitempty"`
	GroupCookie []byte `json:",omitempty"`
	// UserStamp and GroupStamp are the modifyTimestamp cursors.
	UserStamp  time.Time `json:",omitzero"`
	GroupStamp time.Time `json:",omitzero"`
	// DirSyncCookie is Active Directory's DirSync cookie, and USN the
	// highest committed USN of the DC as of the last sync (uSNChanged
	// polling).
	DirSyncCookie []byte `json:",omitempty"`
	USN           int64  `json:",omitempty"`
	// DC and InvocationID name the domain controller the DirSync cookie
	// or the USN came from: its dsServiceName and the invocationId of
	// its directory database (which changes on a restore from backup).
	DC           string `json:",omitempty"`
	InvocationID string `json:",omitempty"`
	// StateGen and StateBuckets name the stored directory state
	// (dirstate.go) this cursor goes with.
	StateGen     string `json:",omitempty"`
	StateBuckets int    `json:",omitempty"`
	// StateBytes is the buckets' size as the full sync wrote them, and
	// JournalFrom to JournalTo (exclusive) the journal records of the
	// state, JournalBytes their size: a loader applies them over the
	// buckets in order.
	StateBytes   int `json:",omitempty"`
	JournalFrom  int `json:",omitempty"`
	JournalTo    int `json:",omitempty"`
	JournalBytes int `json:",omitempty"`
	// JournalGen is StateGen as stored while the state has journal
	// records (StateGen is then stored empty): a Syncer of a version
	// before the journal (a replica not yet upgraded) would load the
	// buckets without the journal, a state behind the cookie. It finds
	// no state instead, and runs a full sync.
	JournalGen string `json:",omitempty"`
	// Stale lists stored state no cursor names any more, still to be
	// deleted: a generation a full sync replaced, the journal records a
	// compaction folded into the buckets, the state of a cursor whose
	// store failed. Every store of a cursor deletes what it lists after
	// it, so a delete that failed (the store was unavailable) is tried
	// again at the next sync instead of leaving the state behind.
	Stale []staleState `json:",omitempty"`
	// LastFull is when the last full sync completed.
	LastFull time.Time
	// Owned is the number of active users the connection owns, as of
	// the last sync: the base of the share threshold between full syncs.
	Owned int
}

// staleState is stored directory state to delete: Buckets buckets of
// generation Gen and its journal records From to To (exclusive).
type staleState struct {
	Gen      string
	Buckets  int `json:",omitempty"`
	From, To int `json:",omitempty"`
}

// staleOf is all of the state c names, and the journal record after its
// last (written by a sync that stopped before it stored its cursor).
func staleOf(c *cursor) staleState {
	return staleState{Gen: c.StateGen, Buckets: c.StateBuckets, From: c.JournalFrom, To: c.JournalTo + 1}
}

func (s *Syncer) cursorKey() string { return "ldap/" + s.cfg.ConnectionID + "/cursor" }

func (s *Syncer) loadCursor(ctx context.Context) (*cursor, error) {
	b, err := provision.AdapterOf(s.eng).KVGet(ctx, s.cfg.TenantID, s.cursorKey())
	if errors.Is(err, provision.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ldap: read cursor: %w", err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		s.log().WarnContext(ctx, "ldap: unreadable cursor; running a full sync", "error", err)
		return nil, nil
	}
	if c.StateGen == "" {
		c.StateGen = c.JournalGen
	}
	c.JournalGen = ""
	return &c, nil
}

// saveCursor stores c with a fresh token, which it returns, then
// deletes the stale state c lists; the caller holds s.mu.
func (s *Syncer) saveCursor(ctx context.Context, c *cursor) (string, error) {
	c.Stale = s.staleFor(c)
	var b [12]byte
	_, _ = rand.Read(b[:])
	c.Token = hex.EncodeToString(b[:])
	c.Fingerprint = s.fingerprint
	stored := *c
	if stored.JournalTo > stored.JournalFrom {
		stored.JournalGen, stored.StateGen = stored.StateGen, ""
	}
	raw, err := json.Marshal(&stored)
	if err != nil {
		return "", err
	}
	if err := provision.AdapterOf(s.eng).KVSet(ctx, s.cfg.TenantID, s.cursorKey(), raw, 0); err != nil {
		// c's state may now be named by no cursor: the next store
		// deletes it, unless its cursor names it (the store did happen).
		if c.StateGen != "" {
			s.orphans = append(s.orphans, staleOf(c))
		}
		return "", fmt.Errorf("ldap: store cursor: %w", err)
	}
	s.orphans = nil
	s.dropStale(ctx, c)
	return c.Token, nil
}

// staleFor is the stale state c is to list: what it lists and this
// Syncer's orphans, less what was deleted since and anything of the
// state c names, which is never stale.
func (s *Syncer) staleFor(c *cursor) []staleState {
	var out []staleState
	seen := map[staleState]bool{}
	for _, st := range append(slices.Clone(c.Stale), s.orphans...) {
		live := st.Gen == c.StateGen && (st.Buckets > 0 || st.To > c.JournalFrom)
		if st.Gen == "" || live || seen[st] || s.deleted[st] {
			continue
		}
		seen[st] = true
		out = append(out, st)
	}
	s.deleted = nil
	return out
}

// dropStale deletes the stale state c lists, until a delete fails (the
// next store of a cursor tries again), and notes what it deleted for
// that store to leave out.
func (s *Syncer) dropStale(ctx context.Context, c *cursor) {
	kv := provision.AdapterOf(s.eng)
	del := func(key string) bool {
		err := kv.KVDelete(ctx, s.cfg.TenantID, key)
		if err != nil && !errors.Is(err, provision.ErrNotFound) {
			s.log().WarnContext(ctx, "ldap: delete old directory state (tried again at the next sync)",
				"tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err)
			return false
		}
		return true
	}
	for _, st := range c.Stale {
		for b := range st.Buckets {
			if !del(s.stateKey(st.Gen, b)) {
				return
			}
		}
		for seq := st.From; seq < st.To; seq++ {
			if !del(s.journalKey(st.Gen, seq)) {
				return
			}
		}
		if s.deleted == nil {
			s.deleted = map[staleState]bool{}
		}
		s.deleted[st] = true
	}
}

// fingerprintOf digests the settings that decide which entries are in
// scope and how they are identified.
func fingerprintOf(c *config) string {
	h := sha256.New()
	m := c.Mapping
	for _, v := range []string{c.URL, strings.ToLower(c.UserBaseDN), c.userFilter, strings.ToLower(c.GroupBaseDN), c.groupFilter,
		fmt.Sprint(c.scope), m.ID, fmt.Sprint(m.guidID()), m.UserName, strings.Join(m.DNMembers, ","), strings.Join(m.UIDMembers, ","), m.MemberUIDAttribute} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// generalizedTime formats t for a modifyTimestamp filter.
func generalizedTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }
