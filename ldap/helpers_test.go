package ldap

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

const (
	tenant   = "acme"
	ldapConn = "corp-ldap"
	scimConn = "okta"
)

type env struct {
	t   *testing.T
	srv *ldaptest.Server
	eng *provision.Engine
	ctx context.Context
}

func newEnv(t *testing.T, opts ldaptest.Options) *env {
	t.Helper()
	srv := ldaptest.Start(t, opts)
	eng, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{
			{ID: ldapConn, Kind: provision.KindLDAP},
			{ID: scimConn, Kind: provision.KindSCIM},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &env{t: t, srv: srv, eng: eng, ctx: ctx}
}

func (e *env) config() Config {
	return Config{
		Engine:            e.eng,
		TenantID:          tenant,
		ConnectionID:      ldapConn,
		URL:               e.srv.URL,
		InsecurePlaintext: true,
		BindDN:            e.srv.SyncDN,
		BindPassword:      e.srv.SyncPassword,
		UserBaseDN:        e.srv.PeopleDN,
		GroupBaseDN:       e.srv.GroupsDN,
		PageSize:          7,
		RequestTimeout:    10 * time.Second,
	}
}

func (e *env) syncer(mod func(*Config)) *Syncer {
	e.t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSyncer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) userDN(uid string) string { return "uid=" + uid + "," + e.srv.PeopleDN }
func (e *env) groupDN(cn string) string { return "cn=" + cn + "," + e.srv.GroupsDN }

// addUser adds an inetOrgPerson and returns its DN.
func (e *env) addUser(uid, given, family string, extra map[string][]string) string {
	e.t.Helper()
	attrs := map[string][]string{
		"objectClass": {"inetOrgPerson"},
		"uid":         {uid},
		"cn":          {given + " " + family},
		"givenName":   {given},
		"sn":          {family},
		"mail":        {uid + "@acme.example"},
	}
	for k, v := range extra {
		attrs[k] = v
	}
	dn := e.userDN(uid)
	e.srv.Add(e.t, dn, attrs)
	return dn
}

func (e *env) addGroup(cn string, memberDNs ...string) string {
	e.t.Helper()
	dn := e.groupDN(cn)
	if len(memberDNs) == 0 {
		memberDNs = []string{e.srv.AdminDN} // groupOfNames needs a member
	}
	e.srv.Add(e.t, dn, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {cn}, "member": memberDNs})
	return dn
}

func (e *env) sync(s *Syncer) *Report {
	e.t.Helper()
	rep, err := s.Sync(e.ctx)
	if err != nil {
		e.t.Fatalf("Sync: %v (report %v)", err, rep)
	}
	return rep
}

func (e *env) changes(s *Syncer) *Report {
	e.t.Helper()
	rep, err := s.SyncChanges(e.ctx)
	if err != nil {
		e.t.Fatalf("SyncChanges: %v (report %v)", err, rep)
	}
	return rep
}

// user returns the user the LDAP connection knows by the entry's UUID.
func (e *env) user(dn string) provision.User {
	e.t.Helper()
	id := e.srv.EntryUUID(e.t, dn)
	u, err := e.eng.UserByExternalID(e.ctx, provision.Origin{TenantID: tenant, ConnectionID: ldapConn}, id)
	if err != nil {
		e.t.Fatalf("user %s (%s): %v", dn, id, err)
	}
	return u
}

func (e *env) userByID(id string) provision.User {
	e.t.Helper()
	u, err := e.eng.GetUser(e.ctx, provision.Origin{TenantID: tenant}, id)
	if err != nil {
		e.t.Fatalf("user %s: %v", id, err)
	}
	return u
}

// members returns the userNames of the group linked to the LDAP group dn.
func (e *env) members(groupEntryUUID string) []string {
	e.t.Helper()
	o := provision.Origin{TenantID: tenant, ConnectionID: ldapConn}
	g, err := e.eng.GroupByExternalID(e.ctx, o, groupEntryUUID)
	if err != nil {
		e.t.Fatalf("group %s: %v", groupEntryUUID, err)
	}
	ids, _, err := e.eng.ListMembers(e.ctx, o, g.ID, provision.Page{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, id := range ids {
		names = append(names, e.userByID(id).UserName)
	}
	slices.Sort(names)
	return names
}

func (e *env) events(kind provision.EventKind) int {
	e.t.Helper()
	evs, err := e.eng.Events(e.ctx, tenant, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

type counts struct{ created, updated, deactivated, reactivated, unchanged, skipped int }

func (e *env) expect(rep *Report, want counts) {
	e.t.Helper()
	got := counts{rep.Created, rep.Updated, rep.Deactivated, rep.Reactivated, rep.Unchanged, rep.Skipped}
	if got != want {
		e.t.Fatalf("report %+v\nwant %+v\n%s\nskips %v", got, want, rep, rep.Skips)
	}
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// reportTo returns an OnReport that sends reports to ch and fails the
// test on errors (logs them, with tolerate).
func reportTo(t *testing.T, ch chan<- *Report, tolerate bool) func(*Report, error) {
	return func(r *Report, err error) {
		if err != nil {
			if tolerate {
				t.Logf("round: %v", err)
			} else {
				t.Errorf("round: %v", err)
			}
			return
		}
		ch <- r
	}
}

// runUntilEnd starts s.Run until the test ends, and waits for it to stop then.
func runUntilEnd(t *testing.T, ctx context.Context, s *Syncer) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	})
}

// heldPlan returns the connection's held deactivations, with all their
// changes, as the engine lists them (ErrNotFound when none are held).
func (e *env) heldPlan() (provision.Plan, error) {
	plans, _, err := e.eng.Plans(e.ctx, tenant, provision.Page{Limit: 100})
	if err != nil {
		return provision.Plan{}, err
	}
	for _, p := range plans {
		if p.Kind == provision.PlanDeactivations && p.ConnectionID == ldapConn {
			return e.eng.Plan(e.ctx, tenant, p.ID, provision.Page{Limit: 1 << 20})
		}
	}
	return provision.Plan{}, provision.ErrNotFound
}

// confirm applies a held plan as an administrator.
func (e *env) confirm(id string) error {
	_, err := e.eng.ConfirmPlan(e.ctx, provision.Origin{TenantID: tenant, Actor: "admin"}, id)
	return err
}
