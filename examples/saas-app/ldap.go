package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
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
type ldapFeature struct {
	url, bindDN, bindPassword, baseDN string
	userFilter, groupFilter           string
	preset                            string
	interval                          time.Duration
	connID                            string
	syncer                            *ldap.Syncer
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
	if f.url == "" {
		return nil
	}
	if f.baseDN == "" {
		return fmt.Errorf("-ldap-url needs -ldap-base-dn")
	}
	if _, err := f.mapping(); err != nil {
		return err
	}
	a.Tenant.Connections = append(a.Tenant.Connections, provision.Connection{ID: f.connID, Kind: provision.KindLDAP, Name: "LDAP directory"})
	return nil
}

// mapping is the -ldap-preset's Mapping.
func (f *ldapFeature) mapping() (ldap.Mapping, error) {
	switch f.preset {
	case "", "openldap":
		return ldap.OpenLDAP(), nil
	case "389":
		return ldap.DirectoryServer389(), nil
	case "ad":
		return ldap.ActiveDirectory(), nil
	}
	return ldap.Mapping{}, fmt.Errorf("-ldap-preset %q: want openldap, 389 or ad", f.preset)
}

func (f *ldapFeature) start(ctx context.Context, a *app) error {
	if f.url == "" {
		return nil
	}
	u, err := url.Parse(f.url)
	if err != nil {
		return fmt.Errorf("-ldap-url: %w", err)
	}
	m, err := f.mapping()
	if err != nil {
		return err
	}
	plainLoopback := false
	if u.Scheme == "ldap" {
		ip := net.ParseIP(u.Hostname())
		plainLoopback = u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	}
	f.syncer, err = ldap.NewSyncer(ldap.Config{
		Engine:            a.Engine,
		TenantID:          a.Tenant.ID,
		ConnectionID:      f.connID,
		URL:               f.url,
		StartTLS:          u.Scheme == "ldap" && !plainLoopback,
		InsecurePlaintext: plainLoopback,
		BindDN:            f.bindDN,
		BindPassword:      f.bindPassword,
		UserBaseDN:        f.baseDN,
		UserFilter:        f.userFilter,
		GroupBaseDN:       f.baseDN,
		GroupFilter:       f.groupFilter,
		Mapping:           m,
		Interval:          f.interval,
		Logger:            a.Log,
		OnReport: func(r *ldap.Report, err error) {
			switch {
			case err != nil:
				a.Log.Error("ldap sync failed", "error", err)
			case r.Held != nil:
				a.Log.Warn("ldap sync: deactivations held until confirmed (ldap.Syncer.Confirm)", "plan", r.Held.ID, "count", len(r.Held.Deactivations), "reason", r.Held.Reason)
			default:
				a.Log.Info(r.String())
			}
		},
	})
	if err != nil {
		return err
	}
	go func() { _ = f.syncer.Run(ctx) }()
	fmt.Fprintf(a.Stdout, "ldap: %s (%s) every %s\n", f.url, f.preset, f.interval)
	return nil
}
