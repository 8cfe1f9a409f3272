//go:build samba

// The Active Directory tests against a real Samba AD DC:
//
//	go test -tags samba -p 1 -count=1 ./ldap/...
//
// They need root (Samba listens on 127.0.0.1:389 and 636) and the samba
// packages; with CI=true a missing Samba fails them.

package ldap

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/ldap/adtest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

var (
	adSrv      *adtest.Server
	adStartErr error
)

func TestMain(m *testing.M) {
	var dir string
	if adtest.Available() {
		var err error
		if dir, err = os.MkdirTemp("", "idprov-adtest-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		adSrv, adStartErr = adtest.Start(dir)
		if adSrv != nil {
			fmt.Fprintf(os.Stderr, "adtest: Samba AD provisioned in %s, answering in %s\n", adSrv.Provisioned.Round(time.Millisecond), adSrv.Started.Round(time.Millisecond))
		}
	}
	code := m.Run()
	if adSrv != nil {
		adSrv.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// adEnv is one test's corner of the shared domain: its own OU with
// people and groups below it.
type adEnv struct {
	*env
	ad                 *adtest.Server
	ou, people, groups string
}

func newADEnv(t *testing.T) *adEnv {
	ad := adtest.Require(t, adSrv, adStartErr)
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
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	e := &adEnv{env: &env{t: t, eng: eng, ctx: ctx}, ad: ad}
	e.ou = ad.OU(t, name)
	t.Cleanup(func() { ad.DeleteTree(t, e.ou) })
	e.people, e.groups = "OU=people,"+e.ou, "OU=groups,"+e.ou
	ad.Add(t, e.people, map[string][]string{"objectClass": {"organizationalUnit"}})
	ad.Add(t, e.groups, map[string][]string{"objectClass": {"organizationalUnit"}})
	return e
}

func (e *adEnv) syncer(mod func(*Config)) *Syncer {
	e.t.Helper()
	cfg := Config{
		Engine: e.eng, TenantID: tenant, ConnectionID: ldapConn,
		URL: e.ad.URL, InsecurePlaintext: true,
		BindDN: e.ad.AdminDN, BindPassword: e.ad.AdminPassword,
		UserBaseDN: e.people, GroupBaseDN: e.groups,
		Mapping: ActiveDirectory(), PageSize: 7, RequestTimeout: 30 * time.Second,
		MaxDeactivationShare: 1,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSyncer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// user returns the user linked to the entry's objectGUID, as the server
// renders it in its extended DN.
func (e *adEnv) user(dn string) provision.User {
	e.t.Helper()
	u, err := e.eng.UserByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, e.ad.GUID(e.t, dn))
	if err != nil {
		e.t.Fatalf("user %s: %v", dn, err)
	}
	return u
}

// TestADLifecycle walks the five seed scenarios on Samba AD, with DirSync
// (the administrator holds "Replicating Directory Changes") and with
// uSNChanged polling (an account without it, refused DirSync).
func TestADLifecycle(t *testing.T) {
	for _, mode := range []Mode{ModeDirSync, ModeUSNChanged} {
		t.Run(string(mode), func(t *testing.T) {
			e := newADEnv(t)
			ad := e.ad
			ada := ad.AddUser(t, e.people, "ada", "Ada", "Lovelace", map[string][]string{"title": {"Engineer"}, "department": {"R&D"}, "employeeID": {"1815"}})
			bob := ad.AddUser(t, e.people, "bob", "Bob", "Babbage", nil)
			cy := ad.AddUser(t, e.people, "cy", "Cy", "Clark", nil)
			eng := ad.AddGroup(t, e.groups, "engineering", ada, bob)
			mgr := ad.AddGroup(t, e.groups, "managers", cy)
			bindDN, bindPW := ad.AdminDN, ad.AdminPassword
			if mode == ModeUSNChanged {
				bindPW = "Sync-Passw0rd!"
				bindDN = ad.AddAccount(t, e.ou, "sync-"+fmt.Sprint(time.Now().UnixNano()%100000), bindPW)
			}
			s := e.syncer(func(c *Config) { c.BindDN, c.BindPassword = bindDN, bindPW })

			// Onboarding.
			rep := e.sync(s)
			e.expect(rep, counts{created: 3})
			eq(t, "groups created", rep.Groups.Created, 2)
			cur, _ := s.loadCursor(e.ctx)
			eq(t, "cursor mode", cur.Mode, mode)
			if cur.DC == "" || !strings.Contains(cur.DC, "NTDS Settings") {
				t.Fatalf("cursor DC %q", cur.DC)
			}
			if mode == ModeUSNChanged && !strings.Contains(rep.Note, "DirSync refused") {
				t.Fatalf("note %q", rep.Note)
			}
			u := e.user(ada)
			eq(t, "ada", []any{u.UserName, u.Name.GivenName, u.Name.FamilyName, u.DisplayName, u.PrimaryEmail(), u.Title, u.Department, u.EmployeeNumber, u.Active, string(u.Attributes["sAMAccountName"])},
				[]any{"ada@example.test", "Ada", "Lovelace", "Ada Lovelace", "ada@example.test", "Engineer", "R&D", "1815", true, `"ada"`})
			engID, mgrID := ad.GUID(t, eng), ad.GUID(t, mgr)
			eq(t, "engineering", e.members(engID), []string{"ada@example.test", "bob@example.test"})

			// Unchanged: an incremental sync finds nothing.
			rep = e.changes(s)
			eq(t, "mode", rep.Mode, mode)
			e.expect(rep, counts{})

			// Attribute change and rename: the same user.
			ad.Replace(t, ada, map[string][]string{"title": {"Principal Engineer"}})
			ad.Rename(t, bob, "CN=robert", "")
			bob = "CN=robert," + e.people
			ad.Replace(t, bob, map[string][]string{"userPrincipalName": {"robert@example.test"}, "sAMAccountName": {"robert"}})
			rep = e.changes(s)
			if rep.Updated != 2 || rep.Created != 0 || rep.Deactivated != 0 {
				t.Fatalf("rename round: %v %v", rep, rep.Skips)
			}
			eq(t, "ada's title", e.user(ada).Title, "Principal Engineer")
			eq(t, "bob renamed", e.user(bob).UserName, "robert@example.test")
			eq(t, "engineering after rename", e.members(engID), []string{"ada@example.test", "robert@example.test"})

			// Promotion: group changes, seen through the groups (AD does
			// not touch the members' uSNChanged).
			ad.AddValues(t, eng, "member", cy)
			ad.AddValues(t, mgr, "member", ada)
			rep = e.changes(s)
			eq(t, "members added", rep.Groups.MembersAdded, 2)
			eq(t, "engineering", e.members(engID), []string{"ada@example.test", "cy@example.test", "robert@example.test"})
			eq(t, "managers", e.members(mgrID), []string{"ada@example.test", "cy@example.test"})
			e.expect(rep, counts{})

			// Offboarding: cy disabled (userAccountControl), robert deleted
			// (a tombstone).
			cyID := e.user(cy).ID
			robertID := e.user(bob).ID
			ad.Disable(t, cy)
			ad.Delete(t, bob)
			rep = e.changes(s)
			eq(t, "cy active after disable", e.userByID(cyID).Active, false)
			if mode == ModeDirSync {
				eq(t, "deactivated (disable + tombstone)", rep.Deactivated, 2)
			} else {
				// The sync account cannot read tombstones: the delete
				// waits for the full sync.
				eq(t, "deactivated (disable)", rep.Deactivated, 1)
				rep = e.sync(s)
				eq(t, "full sync sweeps the deleted entry", rep.Deactivated, 1)
			}
			eq(t, "robert inactive", e.userByID(robertID).Active, false)
			eq(t, "user.deactivated events", e.events(provision.UserDeactivated), 2)
			eq(t, "engineering after delete", e.members(engID), []string{"ada@example.test", "cy@example.test"})

			// Rehire: cy enabled again.
			ad.Enable(t, cy)
			rep = e.changes(s)
			eq(t, "reactivated", rep.Reactivated, 1)
			eq(t, "cy active", e.userByID(cyID).Active, true)
			eq(t, "user.deleted events", e.events(provision.UserDeleted), 0)
		})
	}
}

// TestADNestedGroups flattens nested groups, cycle included, and agrees
// with the server's own in-chain matching rule.
func TestADNestedGroups(t *testing.T) {
	e := newADEnv(t)
	ad := e.ad
	u1 := ad.AddUser(t, e.people, "u1", "U", "One", nil)
	u2 := ad.AddUser(t, e.people, "u2", "U", "Two", nil)
	u3 := ad.AddUser(t, e.people, "u3", "U", "Three", nil)
	ad.AddUser(t, e.people, "u4", "U", "Four", nil)
	// AD checks member DNs: nested groups first.
	backend := ad.AddGroup(t, e.groups, "backend", u2)
	eng := ad.AddGroup(t, e.groups, "eng", u1, backend)
	all := ad.AddGroup(t, e.groups, "all", u3, eng)
	ad.AddValues(t, backend, "member", all) // a cycle: all -> eng -> backend -> all
	s := e.syncer(nil)
	rep := e.sync(s)
	e.expect(rep, counts{created: 4})
	if rep.Groups.Cycles == 0 {
		t.Fatalf("no cycle broken: %+v", rep.Groups)
	}
	want := []string{"u1@example.test", "u2@example.test", "u3@example.test"}
	for _, g := range []string{all, eng, backend} {
		eq(t, g, e.members(ad.GUID(t, g)), want)
		var chain []string
		for _, dn := range ad.InChain(t, e.people, g) {
			chain = append(chain, e.user(dn).UserName)
		}
		slices.Sort(chain)
		eq(t, "in-chain "+g, chain, want)
	}

	// A nested change is seen through the group that changed.
	ad.DeleteValues(t, eng, "member", backend)
	rep = e.changes(s)
	eq(t, "all after unnesting backend", e.members(ad.GUID(t, all)), []string{"u1@example.test", "u3@example.test"})
	eq(t, "backend", e.members(ad.GUID(t, backend)), want)
}

// TestADDirSync covers what DirSync does beyond the lifecycle: changes
// of unmapped attributes are not reported, a move out of the base is a
// departure, a new user arrives, and a cookie the DC rejects (a cursor
// from another DC) runs a full sync.
func TestADDirSync(t *testing.T) {
	e := newADEnv(t)
	ad := e.ad
	former := ad.OU(t, "former-dirsync")
	t.Cleanup(func() { ad.DeleteTree(t, former) })
	ann := ad.AddUser(t, e.people, "ann", "Ann", "A", nil)
	ben := ad.AddUser(t, e.people, "ben", "Ben", "B", nil)
	s := e.syncer(nil)
	e.expect(e.sync(s), counts{created: 2})

	ad.Replace(t, ann, map[string][]string{"description": {"not mapped"}})
	rep := e.changes(s)
	eq(t, "mode", rep.Mode, ModeDirSync)
	eq(t, "entries (description is not requested)", rep.Entries, 0)

	benID := e.user(ben).ID
	ad.Rename(t, ben, "CN=ben", former)
	ad.AddUser(t, e.people, "cat", "Cat", "C", nil)
	rep = e.changes(s)
	e.expect(rep, counts{created: 1, deactivated: 1})
	eq(t, "ben moved out", e.userByID(benID).Active, false)

	// The cursor belongs to this DC; pretend it came from another one
	// whose cookie this DC cannot read.
	cur, _ := s.loadCursor(e.ctx)
	cur.DC = strings.Replace(cur.DC, "CN=Servers", "CN=DC2,CN=Servers", 1)
	cur.DirSyncCookie = []byte("a cookie from another DC")
	token, err := s.saveCursor(e.ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	s.cache.token = token
	rep = e.changes(s)
	eq(t, "mode", rep.Mode, ModeFull)
	if !strings.Contains(rep.FullReason, "rejected the DirSync cookie") {
		t.Fatalf("FullReason %q", rep.FullReason)
	}
	e.expect(rep, counts{unchanged: 2})
	rep = e.changes(s)
	eq(t, "incremental again", rep.Mode, ModeDirSync)
}

// TestADNotification: under Run, Active Directory's change notification
// control (1.2.840.113556.1.4.528) wakes a DirSync pass at once: a
// disabled account is deactivated within seconds while the poll interval
// is an hour. Where the server lacks the control, the test says so and
// checks the fallback, the DirSync poll every Interval.
func TestADNotification(t *testing.T) {
	e := newADEnv(t)
	ann := e.ad.AddUser(t, e.people, "ann-n", "Ann", "N", nil)
	e.ad.AddUser(t, e.people, "bob-n", "Bob", "N", nil)
	c := e.ad.Conn(t)
	res, err := c.Search(goldap.NewSearchRequest("", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"supportedControl"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	offered := slices.Contains(res.Entries[0].GetAttributeValues("supportedControl"), controlNotification)
	interval := time.Hour
	if !offered {
		t.Logf("Samba does not list the change notification control %s: testing the DirSync poll", controlNotification)
		interval = 500 * time.Millisecond
	}
	reports := make(chan *Report, 100)
	s := e.syncer(func(c *Config) {
		c.Interval = interval
		c.OnReport = reportTo(t, reports, true)
	})
	runUntilEnd(t, e.ctx, s)
	if first := <-reports; first.Mode != ModeFull || first.Created != 2 {
		t.Fatalf("first round: %v", first)
	}
	want := StatusNotify
	if !offered {
		want = StatusPoll
	}
	for deadline := time.Now().Add(10 * time.Second); s.Status().Mode != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want %s", s.Status(), want)
		}
	}
	t0 := time.Now()
	e.ad.Disable(t, ann)
	for {
		if u := e.user(ann); !u.Active {
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("the disabled account was not deactivated within 10 s (status %+v)", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("disabled account deactivated in %s (%s)", time.Since(t0).Round(time.Millisecond), want)
	for len(reports) > 0 {
		if r := <-reports; r.Mode != ModeDirSync {
			t.Fatalf("a round after the first ran as %s", r.Mode)
		}
	}
}
