package jit_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

const tenant = "acme"

var (
	scimOrg = provision.Origin{TenantID: tenant, ConnectionID: "okta-scim"}
	admin   = provision.Origin{TenantID: tenant}
)

type fixture struct {
	store    provision.Store
	engine   *provision.Engine
	p        *jit.Provisioner
	mu       sync.Mutex
	refusals []provision.Refusal
}

func newFixture(t testing.TB, s provision.JITSettings) *fixture {
	return newFixtureOn(t, memstore.New(), s)
}

// newFixtureOn is newFixture on st: a second fixture on the same store is
// the same tenant with other JIT settings.
func newFixtureOn(t testing.TB, st provision.Store, s provision.JITSettings) *fixture {
	t.Helper()
	f := &fixture{store: st}
	e, err := provision.NewEngine(provision.Config{
		Store: st,
		Tenants: []provision.Tenant{{
			ID:              tenant,
			VerifiedDomains: []string{"acme.example"},
			Connections: []provision.Connection{
				{ID: "okta-scim", Kind: provision.KindSCIM},
				{ID: "okta-saml", Kind: provision.KindSAML, Match: []provision.MatchRule{provision.MatchPairedExternalID, provision.MatchEmail}, PairedWith: "okta-scim", JIT: &s},
			},
		}},
		Audit: func(_ context.Context, r provision.Refusal) {
			f.mu.Lock()
			f.refusals = append(f.refusals, r)
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	f.engine, f.p = e, p
	return f
}

// counts returns the number of live users and of events of the tenant.
func (f *fixture) counts(t testing.TB) (users, events int) {
	t.Helper()
	ctx := context.Background()
	_, n, err := provision.AdapterOf(f.engine).Store().ListUsers(ctx, tenant, provision.Page{})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := f.engine.Events(ctx, tenant, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return n, len(evs)
}

func (f *fixture) lastRefusal(t testing.TB) provision.Refusal {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.refusals) == 0 {
		t.Fatal("no refusal reached the audit hook")
	}
	return f.refusals[len(f.refusals)-1]
}

func identity(ext, email, given string) provision.Identity {
	return provision.Identity{
		ExternalID: ext,
		User: provision.User{
			UserName: email,
			Name:     provision.Name{GivenName: given, FamilyName: "Doe"},
			Emails:   []provision.Email{{Value: email, Primary: true}},
			Roles:    []provision.Role{{Value: "admin"}},
		},
	}
}

func withUserName(id provision.Identity, name string) provision.Identity {
	id.User.UserName = name
	return id
}

func TestNewValidates(t *testing.T) {
	if _, err := jit.New(jit.Config{}); err == nil {
		t.Error("New without an Engine: no error")
	}
	e, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	_ = e
	// A connection's JIT settings are checked where they are declared.
	for _, s := range []provision.JITSettings{
		{AllowedEmailDomains: []string{"a@b"}},
		{AllowedEmailDomains: []string{" "}},
	} {
		_, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{{ID: "t",
			Connections: []provision.Connection{{ID: "c", Kind: provision.KindSAML, JIT: &s}}}}})
		if !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("NewEngine with JIT %+v: %v, want ErrInvalid", s, err)
		}
	}
}

func TestCreateThenResolve(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Create: true, Update: true})
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatal(err)
	}
	if !u.Active || u.Owner != "okta-saml" || u.UserName != "jane@acme.example" {
		t.Fatalf("created %+v", u)
	}
	if len(u.Roles) != 0 {
		t.Errorf("roles taken from a connection not trusted with roles: %+v", u.Roles)
	}
	users, events := f.counts(t)
	if users != 1 || events != 1 {
		t.Fatalf("after the first login: %d users, %d events; want 1, 1", users, events)
	}

	again, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != u.ID || again.Version != u.Version {
		t.Fatalf("returning login: %s v%d, want %s v%d", again.ID, again.Version, u.ID, u.Version)
	}
	if _, events := f.counts(t); events != 1 {
		t.Errorf("an unchanged login wrote %d events", events-1)
	}

	renamed, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Janet"))
	if err != nil {
		t.Fatal(err)
	}
	if renamed.ID != u.ID || renamed.Name.GivenName != "Janet" || renamed.Version != u.Version+1 {
		t.Fatalf("update on login: %+v", renamed)
	}
}

func TestUpdateOff(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Create: true})
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Janet"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Name.GivenName != "Jane" || again.Version != u.Version {
		t.Fatalf("updated with Update off: %+v", again)
	}
}

func TestRoles(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Create: true, Update: true, Roles: true})
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Roles) != 1 || u.Roles[0].Value != "admin" || u.Roles[0].Source != "direct" {
		t.Fatalf("roles = %+v, want admin (direct)", u.Roles)
	}
	// Roles switched off: a login no longer changes them.
	f = newFixtureOn(t, f.store, provision.JITSettings{Create: true, Update: true})
	id := identity("00u1", "jane@acme.example", "Jane")
	id.User.Roles = []provision.Role{{Value: "owner"}}
	u, err = f.p.Provision(ctx, tenant, "okta-saml", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Roles) != 1 || u.Roles[0].Value != "admin" {
		t.Fatalf("roles = %+v, want admin kept", u.Roles)
	}
}

func TestRefusals(t *testing.T) {
	type setup func(t *testing.T, f *fixture)
	deactivated := func(del bool) setup {
		return func(t *testing.T, f *fixture) {
			ctx := context.Background()
			u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
			if err != nil {
				t.Fatal(err)
			}
			if del {
				err = f.engine.DeleteUser(ctx, admin, u.ID, provision.Precondition{})
			} else {
				_, err = f.engine.DeactivateUser(ctx, admin, u.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name     string
		settings provision.JITSettings
		setup    setup
		connID   string
		id       provision.Identity
		want     error
	}{
		{name: "creation off", settings: provision.JITSettings{Update: true}, want: jit.ErrNoAccount},
		{name: "email outside allowed domains", settings: provision.JITSettings{Create: true, AllowedEmailDomains: []string{"acme.example"}},
			id: identity("00u1", "jane@evil.example", "Jane"), want: jit.ErrEmailDomain},
		{name: "no email with allowed domains", settings: provision.JITSettings{Create: true, AllowedEmailDomains: []string{"acme.example"}},
			id: provision.Identity{ExternalID: "00u1", User: provision.User{UserName: "jane"}}, want: jit.ErrEmailDomain},
		{name: "no subject", settings: provision.JITSettings{Create: true}, id: identity("", "jane@acme.example", "Jane"), want: jit.ErrNoSubject},
		{name: "unknown connection", settings: provision.JITSettings{Create: true}, connID: "other", want: jit.ErrUnknownConnection},
		{name: "invalid identity", settings: provision.JITSettings{Create: true}, id: provision.Identity{ExternalID: "00u9"}, want: jit.ErrInvalidIdentity},
		{name: "deactivated", settings: provision.JITSettings{Create: true, Update: true}, setup: deactivated(false), want: jit.ErrDeprovisioned},
		{name: "deleted", settings: provision.JITSettings{Create: true, Update: true}, setup: deactivated(true), want: jit.ErrDeprovisioned},
		{name: "userName taken", settings: provision.JITSettings{Create: true}, setup: func(t *testing.T, f *fixture) {
			if _, err := f.engine.CreateUser(context.Background(), admin, provision.User{UserName: "jane@acme.example", Active: true}); err != nil {
				t.Fatal(err)
			}
		}, id: withUserName(identity("00u1", "jane@other.example", "Jane"), "jane@acme.example"), want: jit.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, tc.settings)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			if tc.connID == "" {
				tc.connID = "okta-saml"
			}
			if tc.id.ExternalID == "" && tc.id.User.UserName == "" && tc.want != jit.ErrNoSubject {
				tc.id = identity("00u1", "jane@acme.example", "Jane")
			}
			users, events := f.counts(t)
			before, _, _ := provision.AdapterOf(f.engine).Store().ListUsers(ctx, tenant, provision.Page{Limit: 10})
			_, err := f.p.Provision(ctx, tenant, tc.connID, tc.id)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Provision: %v, want %v", err, tc.want)
			}
			var re *jit.RefusedError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("Provision: %v is not a *RefusedError with a reason", err)
			}
			if tc.want == jit.ErrDeprovisioned && !errors.Is(err, provision.ErrDeprovisioned) {
				t.Errorf("errors.Is(err, provision.ErrDeprovisioned) = false")
			}
			if r := f.lastRefusal(t); r.Reason == "" || r.Origin.TenantID != tenant {
				t.Errorf("audited refusal %+v", r)
			}
			u2, e2 := f.counts(t)
			after, _, _ := provision.AdapterOf(f.engine).Store().ListUsers(ctx, tenant, provision.Page{Limit: 10})
			if u2 != users || e2 != events {
				t.Errorf("a refusal changed the store: users %d -> %d, events %d -> %d", users, u2, events, e2)
			}
			for i := range after {
				if after[i].Version != before[i].Version || after[i].Active != before[i].Active {
					t.Errorf("a refusal changed user %s: %+v -> %+v", after[i].ID, before[i], after[i])
				}
			}
		})
	}
}

func TestDeprovisionedNeverReactivated(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Create: true, Update: true})
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.DeactivateUser(ctx, admin, u.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Janet")); !errors.Is(err, jit.ErrDeprovisioned) {
			t.Fatalf("login of a deactivated user: %v", err)
		}
	}
	got, err := f.engine.GetUser(ctx, admin, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Active || got.Name.GivenName != "Jane" {
		t.Fatalf("deactivated user changed by a login: %+v", got)
	}
}

func TestPairedSCIMUser(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Update: true}) // the directory creates, logins link
	scim, err := f.engine.CreateUser(ctx, scimOrg, provision.User{
		ExternalID: "00u1", UserName: "jane.doe", Active: true,
		Name:   provision.Name{GivenName: "Jane", FamilyName: "Doe"},
		Emails: []provision.Email{{Value: "jane@acme.example", Primary: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, events := f.counts(t)
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Janet"))
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != scim.ID || u.Owner != "okta-scim" || u.Name.GivenName != "Jane" {
		t.Fatalf("first SSO of a directory user: %+v", u)
	}
	users, e2 := f.counts(t)
	if users != 1 || e2 != events {
		t.Fatalf("linking wrote: %d users, %d new events", users, e2-events)
	}
	// The link is kept: the next login resolves it directly.
	if again, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "other@acme.example", "X")); err != nil || again.ID != scim.ID {
		t.Fatalf("second SSO: %v, %v", again.ID, err)
	}
}

func TestMatchVerifiedEmail(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{})
	ex, err := f.engine.CreateUser(ctx, admin, provision.User{UserName: "jane", Active: true, Emails: []provision.Email{{Value: "jane@acme.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u7", "jane@acme.example", "Jane"))
	if err != nil || u.ID != ex.ID {
		t.Fatalf("match by verified e-mail: %v, %v", u.ID, err)
	}
	// An unverified domain never matches by e-mail.
	if _, err := f.engine.CreateUser(ctx, admin, provision.User{UserName: "bob", Active: true, Emails: []provision.Email{{Value: "bob@gmail.example"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u8", "bob@gmail.example", "Bob")); !errors.Is(err, jit.ErrNoAccount) {
		t.Fatalf("match by unverified e-mail: %v", err)
	}
}

func TestConcurrentFirstLogins(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, provision.JITSettings{Create: true, Update: true})
	const n = 16
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u, err := f.p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
			ids[i], errs[i] = u.ID, err
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("login %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("login %d got user %s, login 0 got %s", i, ids[i], ids[0])
		}
	}
	if users, events := f.counts(t); users != 1 || events != 1 {
		t.Fatalf("%d concurrent first logins made %d users and %d events", n, users, events)
	}
}

// staleStore makes the first transaction read as if another replica had
// not yet committed: just before it, the winner's login commits, and the
// transaction's link and userName lookups miss, so its insert meets the
// store's uniqueness (ErrAlreadyExists), as on a real database race.
type staleStore struct {
	provision.Store
	once   sync.Once
	winner func()
}

func (s *staleStore) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) error {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.Store.Atomically(ctx, fn)
	}
	s.winner()
	return s.Store.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		return fn(ctx, staleTx{tx})
	})
}

type staleTx struct{ provision.Store }

func (staleTx) GetLink(context.Context, string, provision.ResourceKind, string, string) (provision.Link, error) {
	return provision.Link{}, provision.ErrNotFound
}

func (staleTx) UserByUserName(context.Context, string, string) (provision.User, error) {
	return provision.User{}, provision.ErrNotFound
}

func TestLosingFirstLoginResolvesTheWinner(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	tenants := []provision.Tenant{{ID: tenant, Connections: []provision.Connection{{ID: "okta-saml", Kind: provision.KindSAML,
		JIT: &provision.JITSettings{Create: true, Update: true}}}}}
	other, err := provision.NewEngine(provision.Config{Store: mem, Tenants: tenants})
	if err != nil {
		t.Fatal(err)
	}
	otherP, err := jit.New(jit.Config{Engine: other})
	if err != nil {
		t.Fatal(err)
	}
	var winner provision.User
	st := &staleStore{Store: mem, winner: func() {
		var err error
		if winner, err = otherP.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane")); err != nil {
			t.Error(err)
		}
	}}
	e, err := provision.NewEngine(provision.Config{Store: st, Tenants: tenants})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	u, err := p.Provision(ctx, tenant, "okta-saml", identity("00u1", "jane@acme.example", "Jane"))
	if err != nil {
		t.Fatalf("the losing login: %v", err)
	}
	if u.ID != winner.ID {
		t.Fatalf("the losing login got user %s, the winner %s", u.ID, winner.ID)
	}
	if _, n, _ := mem.ListUsers(ctx, tenant, provision.Page{}); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
}
