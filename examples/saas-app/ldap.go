package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/ldap"
	"github.com/idprov/idprov/provision"
)

// ldapFeature syncs the tenant's LDAP connection in the background:
// -ldap-url and -ldap-base-dn turn it on.
//
//	go run ./examples/saas-app -ldap-url ldap://127.0.0.1:389 \
//	  -ldap-bind-dn cn=idprov-sync,dc=example,dc=com -ldap-bind-password ... \
//	  -ldap-base-dn dc=example,dc=com -ldap-interval 1m
//
// -ldap-preset picks the directory's attribute mapping: openldap (the
// default), 389, or ad (Active Directory, Samba AD: objectGUID,
// userPrincipalName, userAccountControl, DirSync).
//
// An ldap:// URL to a loopback address is used in clear; any other ldap://
// URL is upgraded with StartTLS; ldaps:// is TLS from the start. Both
// verify the server's certificate against the system roots. Users and
// groups it syncs show through SCIM GET like any other.
//
// The -config file's tenants declare theirs in "ldap" entries. One Syncer
// runs per LDAP connection; the admin page shows each one's last report
// and its held plan, and confirms it.
type ldapFeature struct {
	url, bindDN, bindPassword, baseDN string
	userFilter, groupFilter           string
	preset                            string
	interval                          time.Duration
	connID                            string
	// syncer is the -tenant's connection's (from the flags), if any.
	syncer *ldap.Syncer
	// sources are every declared LDAP connection of every tenant.
	sources []*ldapSource

	mu sync.Mutex
	// registered are the registered tenants' LDAP connections, by
	// tenant/connection, each with the settings it runs with.
	registered map[string]*ldapSource
}

// ldapSource is one LDAP connection and its Syncer.
type ldapSource struct {
	TenantID string
	Conf     ldapConfig
	Syncer   *ldap.Syncer
	// stop ends a registered connection's syncer; settings are the
	// registered settings it runs with.
	stop     context.CancelFunc
	settings provision.LDAPSettings

	// syncNow asks manualSyncs for a full sync (ldapnow.go); manual is
	// set from the request until that sync ends.
	syncNow chan struct{}

	mu         sync.Mutex
	manual     bool
	lastReport *ldap.Report
	lastErr    error
	lastTime   time.Time
}

// status returns the last sync's report, error and time.
func (s *ldapSource) status() (*ldap.Report, error, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReport, s.lastErr, s.lastTime
}

func (s *ldapSource) record(r *ldap.Report, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastReport, s.lastErr, s.lastTime = r, err, time.Now()
}

func (f *ldapFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "ldap-url", "", "LDAP server to sync users and groups from (ldap:// or ldaps://); empty: no LDAP sync")
	fs.StringVar(&f.bindDN, "ldap-bind-dn", "", "DN of the LDAP sync account")
	fs.StringVar(&f.bindPassword, "ldap-bind-password", "", "password of the LDAP sync account")
	fs.StringVar(&f.baseDN, "ldap-base-dn", "", "base DN of the users and groups to sync")
	fs.StringVar(&f.preset, "ldap-preset", "openldap", "directory mapping: openldap, 389 or ad (Active Directory)")
	fs.StringVar(&f.userFilter, "ldap-user-filter", "", "LDAP filter selecting users (default: the preset's, e.g. (objectClass=inetOrgPerson))")
	fs.StringVar(&f.groupFilter, "ldap-group-filter", "", "LDAP filter selecting groups (default: the preset's, e.g. groupOfNames, groupOfUniqueNames, posixGroup)")
	fs.DurationVar(&f.interval, "ldap-interval", time.Minute, "how often to sync LDAP changes (a full sync runs every 6h)")
	fs.StringVar(&f.connID, "ldap-connection", "ldap", "id of the LDAP connection")
}

func (f *ldapFeature) setup(a *app) error {
	if f.url != "" {
		if f.baseDN == "" {
			return fmt.Errorf("-ldap-url needs -ldap-base-dn")
		}
		if _, err := ldapMapping(f.preset); err != nil {
			return fmt.Errorf("-ldap-preset: %w", err)
		}
		a.Tenants[0].Conf.LDAP = append([]ldapConfig{{
			ID: f.connID, Name: "LDAP directory", URL: f.url, BindDN: f.bindDN, BindPassword: f.bindPassword,
			BaseDN: f.baseDN, Preset: f.preset, UserFilter: f.userFilter, GroupFilter: f.groupFilter, Interval: duration(f.interval),
		}}, a.Tenants[0].Conf.LDAP...)
	}
	for _, t := range a.Tenants {
		for _, c := range t.Conf.LDAP {
			if c.ID == "" || c.URL == "" || c.BaseDN == "" {
				return fmt.Errorf("-config: tenant %s: an LDAP source needs an id, a url and a baseDN", t.ID)
			}
			if _, err := ldapMapping(c.Preset); err != nil {
				return fmt.Errorf("-config: tenant %s, LDAP source %s: %w", t.ID, c.ID, err)
			}
			name := c.Name
			if name == "" {
				name = "LDAP directory " + c.ID
			}
			t.Connections = append(t.Connections, provision.Connection{ID: c.ID, Kind: provision.KindLDAP, Name: name})
			f.sources = append(f.sources, &ldapSource{TenantID: t.ID, Conf: c})
		}
	}
	return nil
}

// ldapMapping is a preset's Mapping.
func ldapMapping(preset string) (ldap.Mapping, error) {
	p, ok := ldap.PresetNamed(preset)
	if !ok {
		var names []string
		for _, p := range ldap.Presets() {
			names = append(names, p.Name)
		}
		return ldap.Mapping{}, fmt.Errorf("preset %q: want one of %s", preset, strings.Join(names, ", "))
	}
	return p.Mapping, nil
}

func (f *ldapFeature) start(ctx context.Context, a *app) error {
	for i, src := range f.sources {
		if err := f.startSource(ctx, a, src); err != nil {
			return err
		}
		if i == 0 && f.url != "" {
			f.syncer = src.Syncer
		}
	}
	a.admin.ldap = f
	return nil
}

func (f *ldapFeature) startSource(ctx context.Context, a *app, src *ldapSource) error {
	c := src.Conf
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("tenant %s: LDAP url: %w", src.TenantID, err)
	}
	m, err := ldapMapping(c.Preset)
	if err != nil {
		return err
	}
	plainLoopback := false
	if u.Scheme == "ldap" {
		ip := net.ParseIP(u.Hostname())
		plainLoopback = u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	}
	interval := time.Duration(c.Interval)
	if interval == 0 {
		interval = time.Minute
	}
	log := a.Log.With("tenant", src.TenantID, "connection", c.ID)
	src.Syncer, err = ldap.NewSyncer(ldap.Config{
		Engine:            a.Engine,
		TenantID:          src.TenantID,
		ConnectionID:      c.ID,
		URL:               c.URL,
		StartTLS:          u.Scheme == "ldap" && !plainLoopback,
		InsecurePlaintext: plainLoopback,
		BindDN:            c.BindDN,
		BindPassword:      c.BindPassword,
		UserBaseDN:        c.BaseDN,
		UserFilter:        c.UserFilter,
		GroupBaseDN:       c.BaseDN,
		GroupFilter:       c.GroupFilter,
		TLSCAPEM:          c.TLSCA,
		TLSClientCertPEM:  c.TLSClientCert,
		TLSClientKeyPEM:   c.TLSClientKey,
		Mapping:           m,
		Interval:          interval,
		Logger:            a.Log,
		OnReport: func(r *ldap.Report, err error) {
			src.record(r, err)
			switch {
			case err != nil:
				// The Syncer logged it, with the tenant and connection:
				// one line per failed round.
			case r.Held != nil:
				log.Warn("ldap sync: deactivations held until confirmed (on the admin page, or Engine.ConfirmPlan)", "plan", r.Held.ID, "count", r.Held.Size, "summary", r.Held.Summary)
			default:
				log.Info(r.String())
			}
		},
	})
	if err != nil {
		return err
	}
	go func() { _ = src.Syncer.Run(ctx) }()
	src.syncNow = make(chan struct{}, 1)
	go src.manualSyncs(ctx)
	preset := c.Preset
	if preset == "" {
		preset = "openldap"
	}
	if src.TenantID == a.Tenants[0].ID && c.ID == f.connID && f.url != "" {
		fmt.Fprintf(a.Stdout, "ldap: %s (%s) every %s\n", c.URL, preset, interval)
	} else {
		fmt.Fprintf(a.Stdout, "ldap %s/%s: %s (%s) every %s\n", src.TenantID, c.ID, c.URL, preset, interval)
	}
	return nil
}

// allSources returns the declared and the registered LDAP connections.
func (f *ldapFeature) allSources() []*ldapSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.sources)
	for _, k := range slices.Sorted(maps.Keys(f.registered)) {
		out = append(out, f.registered[k])
	}
	return out
}

// follow starts, restarts and stops the syncers of a registered tenant's
// LDAP connections as they are registered, changed and deleted (on any
// replica: the engine's FollowRegistry hands every change).
func (f *ldapFeature) follow(ctx context.Context, a *app, t provision.Tenant, removed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registered == nil {
		f.registered = map[string]*ldapSource{}
	}
	want := map[string]provision.Connection{}
	if !removed {
		for _, c := range t.Connections {
			// A connection saved through a setup link syncs once its
			// test passed and the IT admin started it (setup.go).
			if c.Kind == provision.KindLDAP && c.LDAP != nil && !c.Disabled && !ldap.SetupHeld(ctx, a.Engine, t.ID, c.ID) {
				want[t.ID+"/"+c.ID] = c
			}
		}
	}
	for k, src := range f.registered {
		if src.TenantID != t.ID {
			continue
		}
		c, keep := want[k]
		if keep && *c.LDAP == src.settings {
			delete(want, k)
			continue
		}
		src.stop()
		delete(f.registered, k)
		if !keep {
			fmt.Fprintf(a.Stdout, "ldap %s/%s: stopped\n", src.TenantID, src.Conf.ID)
		}
	}
	for k, c := range want {
		l := c.LDAP
		src := &ldapSource{TenantID: t.ID, settings: *l, Conf: ldapConfig{
			ID: c.ID, Name: c.Name, URL: l.URL, BindDN: l.BindDN, BindPassword: l.BindPassword.Reveal(), BaseDN: l.BaseDN,
			Preset: l.Preset, UserFilter: l.UserFilter, GroupFilter: l.GroupFilter, Interval: duration(l.Interval),
			TLSCA: l.TLSCAPEM, TLSClientCert: l.TLSClientCertPEM, TLSClientKey: l.TLSClientKey.Reveal(),
		}}
		sctx, cancel := context.WithCancel(ctx)
		src.stop = cancel
		if err := f.startSource(sctx, a, src); err != nil {
			cancel()
			a.Log.Error("saas-app: registered LDAP connection not started", "tenant", t.ID, "connection", c.ID, "err", err)
			src.record(nil, err)
		}
		f.registered[k] = src
	}
}
