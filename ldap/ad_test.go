package ldap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func TestGUIDString(t *testing.T) {
	// Observed on Samba AD: objectGUID 8d1z9llQAkSCZ1URQPTHJw== is shown
	// by the server's extended DN as <GUID=f673ddf1-5059-4402-8267-551140f4c727>.
	raw := []byte{0xf1, 0xdd, 0x73, 0xf6, 0x59, 0x50, 0x02, 0x44, 0x82, 0x67, 0x55, 0x11, 0x40, 0xf4, 0xc7, 0x27}
	eq(t, "guid", guidString(raw), "f673ddf1-5059-4402-8267-551140f4c727")
	back, ok := guidBytes("F673DDF1-5059-4402-8267-551140F4C727")
	eq(t, "round trip", ok && bytes.Equal(back, raw), true)
	eq(t, "short", guidString(raw[:15]), "")
	eq(t, "filter", ActiveDirectory().idFilter("f673ddf1-5059-4402-8267-551140f4c727"), `(objectGUID=\f1\dd\73\f6\59\50\02\44\82\67\55\11\40\f4\c7\27)`)
	if _, err := goldap.CompileFilter(ActiveDirectory().idFilter(guidString(raw))); err != nil {
		t.Fatal(err)
	}
	e := &goldap.Entry{Attributes: []*goldap.EntryAttribute{{Name: "objectGUID", Values: []string{string(raw)}, ByteValues: [][]byte{raw}}}}
	eq(t, "entry id", ActiveDirectory().entryID(e), "f673ddf1-5059-4402-8267-551140f4c727")
}

func TestADDisabled(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := ActiveDirectory()
	m.Disabled = append(m.Disabled,
		DisabledRule{Attribute: "lockoutTime", Match: MatchNonZero},
		DisabledRule{Attribute: "accountExpires", Match: MatchExpired})
	ft := func(t time.Time) string { return fmt.Sprint(t.UnixNano()/100 + 116444736000000000) }
	for _, tc := range []struct {
		attrs map[string]string
		want  bool
	}{
		{map[string]string{"userAccountControl": "512"}, false},
		{map[string]string{"userAccountControl": "514"}, true},
		{map[string]string{"userAccountControl": "546"}, true},
		{map[string]string{"userAccountControl": "66048"}, false}, // NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD
		{map[string]string{"userAccountControl": "512", "lockoutTime": "0"}, false},
		{map[string]string{"userAccountControl": "512", "lockoutTime": "133000000000000000"}, true},
		{map[string]string{"accountExpires": "0"}, false},
		{map[string]string{"accountExpires": "9223372036854775807"}, false},
		{map[string]string{"accountExpires": ft(now.Add(-time.Hour))}, true},
		{map[string]string{"accountExpires": ft(now.Add(time.Hour))}, false},
	} {
		e := &goldap.Entry{}
		for k, v := range tc.attrs {
			e.Attributes = append(e.Attributes, &goldap.EntryAttribute{Name: k, Values: []string{v}})
		}
		eq(t, fmt.Sprint(tc.attrs), m.disabled(e, now), tc.want)
	}
	eq(t, "filetime", fileTime(116444736000000000).Unix(), 0)
}

func TestRangeEnd(t *testing.T) {
	for in, want := range map[string]int{"member;range=0-1499": 1499, "Member;Range=1500-*": -1} {
		got, err := rangeEnd(in, "member;range=")
		eq(t, in, fmt.Sprint(got, err), fmt.Sprint(want, nil))
	}
	if _, err := rangeEnd("member;range=0", "member;range="); err == nil {
		t.Fatal("malformed range accepted")
	}
}

// fakeEnv is a Syncer with the AD preset on a fakeAD.
type fakeEnv struct {
	*env
	f *fakeAD
}

func newFakeEnv(t *testing.T) *fakeEnv {
	eng, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{
			{ID: ldapConn, Kind: provision.KindLDAP},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &fakeEnv{env: &env{t: t, eng: eng, ctx: ctx}, f: newFakeAD()}
}

func (e *fakeEnv) syncer(mod func(*Config)) *Syncer {
	e.t.Helper()
	cfg := Config{
		Engine: e.eng, TenantID: tenant, ConnectionID: ldapConn,
		URL: "ldap://dc1.example.test", InsecurePlaintext: true,
		UserBaseDN: "OU=people," + e.f.nc, GroupBaseDN: "OU=groups," + e.f.nc,
		Mapping: ActiveDirectory(), MaxDeactivationShare: 1,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSyncer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	s.dialClient = e.f.client
	return s
}

func (e *fakeEnv) user(fe *fakeEntry) provision.User {
	e.t.Helper()
	u, err := e.eng.UserByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, guidString(fe.guid[:]))
	if err != nil {
		e.t.Fatalf("user %s: %v", fe.dn, err)
	}
	return u
}

func (e *fakeEnv) memberCount(g *fakeEntry) int {
	e.t.Helper()
	o := provision.Origin{TenantID: tenant, ConnectionID: ldapConn}
	grp, err := e.eng.GroupByExternalID(e.ctx, o, guidString(g.guid[:]))
	if err != nil {
		e.t.Fatalf("group %s: %v", g.dn, err)
	}
	_, total, err := e.eng.ListMembers(e.ctx, o, grp.ID, provision.Page{Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return total
}

// TestADPagesAndRanges: Windows caps a page at 1,000 entries whatever the
// client asks, and returns a 3,200-value member attribute as
// member;range=0-1499, then 1500-2999, then 3000-*.
func TestADPagesAndRanges(t *testing.T) {
	e := newFakeEnv(t)
	const n = 3200
	var dns []string
	for i := range n {
		dns = append(dns, e.f.addUser(fmt.Sprintf("u%04d", i), nil).dn)
	}
	all := e.f.addGroup("all", dns...)
	few := e.f.addGroup("few", dns[:3]...)
	s := e.syncer(func(c *Config) { c.PageSize = 5000 })
	rep := e.sync(s)
	e.expect(rep, counts{created: n})
	eq(t, "entries", rep.Entries, n)
	eq(t, "all members", e.memberCount(all), n)
	eq(t, "few members", e.memberCount(few), 3)
	eq(t, "ranged reads", e.f.rangedReads, 2)
	for _, size := range e.f.pageSizes {
		if size != 5000 && (size < 1 || size > groupPageSize) { // groups: 1, then sized by their members
			t.Fatalf("page size asked %d", size)
		}
	}

	// An unpaged search beyond the cap fails on Windows: the Syncer never
	// sends one (a Samba admin search would have returned all 3,200).
	c, _ := e.f.client(e.ctx)
	r := c.SearchAsync(e.ctx, goldap.NewSearchRequest(e.f.nc, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=user)", nil, nil), 0)
	for r.Next() {
	}
	eq(t, "unpaged", goldap.IsErrorWithCode(r.Err(), goldap.LDAPResultSizeLimitExceeded), true)
}

// TestADDirSyncReplies: DirSync answers in several replies with the
// more-data flag; each call carries the newest cookie; tombstones
// deactivate; changed objects are re-read whole.
func TestADDirSyncReplies(t *testing.T) {
	e := newFakeEnv(t)
	var users []*fakeEntry
	for i := range 30 {
		users = append(users, e.f.addUser(fmt.Sprintf("u%02d", i), nil))
	}
	eng := e.f.addGroup("engineering", users[0].dn, users[1].dn)
	e.f.addGroup("managers", users[2].dn)
	e.f.dirSyncBatch = 4
	s := e.syncer(nil)
	rep := e.sync(s)
	e.expect(rep, counts{created: 30})
	cur, _ := s.loadCursor(e.ctx)
	eq(t, "mode", cur.Mode, ModeDirSync)
	eq(t, "DC", cur.DC, e.f.dc)
	eq(t, "invocation", cur.InvocationID, guidString(e.f.invocation[:]))

	for _, u := range users[3:13] {
		e.f.modify(u, map[string][]string{"title": {"Engineer"}})
	}
	e.f.modify(users[13], map[string][]string{"userAccountControl": {"514"}})
	gone := e.user(users[14]).ID
	e.f.remove(users[14])
	for i := range 5 {
		e.f.addUser(fmt.Sprintf("new%d", i), nil)
	}
	e.f.modify(eng, map[string][]string{"member": {users[0].dn, users[1].dn, users[3].dn}})
	// A computer changes too: DirSync reports it, the re-read drops it.
	e.f.add("CN=pc1,OU=people,"+e.f.nc, map[string][]string{"objectClass": {"top", "computer"}, "objectCategory": {"computer"}})
	calls := len(e.f.dirSyncCookies)
	rep = e.changes(s)
	eq(t, "mode", rep.Mode, ModeDirSync)
	e.expect(rep, counts{created: 5, updated: 10, deactivated: 2})
	eq(t, "members added", rep.Groups.MembersAdded, 1)
	eq(t, "engineering", e.memberCount(eng), 3)
	eq(t, "deleted user inactive", e.userByID(gone).Active, false)
	eq(t, "disabled user inactive", e.user(users[13]).Active, false)
	eq(t, "title", e.user(users[5]).Title, "Engineer")
	sent := e.f.dirSyncCookies[calls:]
	if len(sent) < 5 {
		t.Fatalf("%d DirSync calls for 19 changes in replies of 4", len(sent))
	}
	for i := 1; i < len(sent); i++ {
		if bytes.Equal(sent[i], sent[i-1]) {
			t.Fatalf("call %d re-sent the cookie %q", i, sent[i])
		}
	}

	// Nothing changed: one call, nothing applied.
	rep = e.changes(s)
	e.expect(rep, counts{})
	eq(t, "entries", rep.Entries, 0)

	// Rehire: enabled again.
	e.f.modify(users[13], map[string][]string{"userAccountControl": {"512"}})
	rep = e.changes(s)
	e.expect(rep, counts{reactivated: 1})
}

// TestADOtherDC: a DirSync cookie another DC rejects, and a USN cursor
// from another DC, both run a full sync.
func TestADOtherDC(t *testing.T) {
	for _, inc := range []Incremental{IncrementalDirSync, IncrementalUSNChanged} {
		t.Run(string(inc), func(t *testing.T) {
			e := newFakeEnv(t)
			u := e.f.addUser("ann", nil)
			s := e.syncer(func(c *Config) { c.Incremental = inc })
			e.sync(s)
			e.f.modify(u, map[string][]string{"title": {"CTO"}})
			rep := e.changes(s)
			eq(t, "incremental", rep.Mode != ModeFull, true)
			e.f.dc = strings.Replace(e.f.dc, "DC1", "DC2", 1)
			e.f.rejectForeign = true
			rep = e.changes(s)
			eq(t, "mode", rep.Mode, ModeFull)
			want := "rejected the DirSync cookie from"
			if inc == IncrementalUSNChanged {
				want = "local to a domain controller"
			}
			if !strings.Contains(rep.FullReason, want) {
				t.Fatalf("FullReason %q, want %q", rep.FullReason, want)
			}
			cur, _ := s.loadCursor(e.ctx)
			eq(t, "cursor DC", cur.DC, e.f.dc)
			rep = e.changes(s)
			eq(t, "incremental again", rep.Mode != ModeFull, true)

			// A restore from backup changes the invocationId: full.
			e.f.invocation[0]++
			rep = e.changes(s)
			if rep.Mode != ModeFull || !strings.Contains(rep.FullReason, "restored") {
				t.Fatalf("after a restore: %s (%s)", rep.Mode, rep.FullReason)
			}
		})
	}
}

// TestADUSNFallback: an account without the replication right is refused
// DirSync; the Syncer polls uSNChanged, sees membership changes through
// the group and deletes through tombstones.
func TestADUSNFallback(t *testing.T) {
	e := newFakeEnv(t)
	a := e.f.addUser("ann", nil)
	b := e.f.addUser("ben", nil)
	g := e.f.addGroup("staff", a.dn)
	e.f.refuseDirSync = true
	s := e.syncer(nil)
	rep := e.sync(s)
	if !strings.Contains(rep.Note, "Replicating Directory Changes") {
		t.Fatalf("note %q", rep.Note)
	}
	cur, _ := s.loadCursor(e.ctx)
	eq(t, "mode", cur.Mode, ModeUSNChanged)

	usnA := a.usn
	e.f.modify(g, map[string][]string{"member": {a.dn, b.dn}})
	eq(t, "the member's own USN is untouched", a.usn, usnA)
	rep = e.changes(s)
	eq(t, "mode", rep.Mode, ModeUSNChanged)
	eq(t, "members added", rep.Groups.MembersAdded, 1)
	eq(t, "staff", e.memberCount(g), 2)

	bID := e.user(b).ID
	e.f.remove(b)
	rep = e.changes(s)
	eq(t, "deactivated", rep.Deactivated, 1)
	eq(t, "ben", e.userByID(bID).Active, false)
	eq(t, "staff after delete", e.memberCount(g), 1)
}

// TestADReferrals: continuation references are counted and ignored, or
// make the search incomplete with ReferralsIncomplete.
func TestADReferrals(t *testing.T) {
	e := newFakeEnv(t)
	e.f.addUser("ann", nil)
	e.f.referral = "ldap://example.test/CN=Configuration,DC=example,DC=test"
	rep := e.sync(e.syncer(nil))
	eq(t, "swept", rep.Swept, true)
	if rep.Referrals == 0 {
		t.Fatal("no referral counted")
	}
	_, err := e.syncer(func(c *Config) { c.ReferralsIncomplete = true }).Sync(e.ctx)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
}

// TestADNotificationFallback: a domain controller that does not offer
// change notification (the fake lists no 1.2.840.113556.1.4.528): Run
// polls DirSync every Interval, and says so. (Against Samba, which offers
// it, TestADNotification checks the notification.)
func TestADNotificationFallback(t *testing.T) {
	e := newFakeEnv(t)
	ann := e.f.addUser("ann", nil)
	reports := make(chan *Report, 100)
	s := e.syncer(func(c *Config) {
		c.Interval = 200 * time.Millisecond
		c.OnReport = reportTo(t, reports, false)
	})
	runUntilEnd(t, e.ctx, s)
	eq(t, "first round", (<-reports).Mode, ModeFull)
	e.f.modify(ann, map[string][]string{"userAccountControl": {"514"}})
	for deadline := time.Now().Add(5 * time.Second); e.user(ann).Active; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DirSync poll did not deactivate the disabled account")
		}
	}
	eq(t, "status", s.Status().Mode, StatusPoll)
	eq(t, "a later round", (<-reports).Mode, ModeDirSync)
}
