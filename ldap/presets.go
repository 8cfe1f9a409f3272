package ldap

import (
	"errors"
	"fmt"
	"strings"
)

// Preset is a directory product's or service's defaults for a Config: the
// Mapping, where users and groups live below the base DN, the URL of a
// hosted service and what its TLS demands. Presets names them for
// provision.LDAPSettings.Preset; Apply fills a Config from one.
type Preset struct {
	// Name is the preset's name in provision.LDAPSettings.Preset.
	Name string
	// Title is the product's name, for a settings form.
	Title string
	// Mapping is the attribute mapping.
	Mapping Mapping
	// URL is a hosted service's fixed address; empty when the customer
	// runs the server.
	URL string
	// UserRDN and GroupRDN are the containers of users and groups below
	// the base DN ("ou=Users"); empty means the base DN itself.
	UserRDN, GroupRDN string
	// BindDNHint shows the form of the sync account's DN, for a settings
	// form ("uid=<user>,ou=Users,o=<orgId>,dc=jumpcloud,dc=com").
	BindDNHint string
	// ClientCertificate says the service demands a TLS client
	// certificate; SASLExternal that it takes the certificate as the
	// identity (no bind password).
	ClientCertificate, SASLExternal bool
	// TLSRequired says the service accepts only ldaps:// or StartTLS.
	TLSRequired bool
}

// Presets returns every preset: openldap, 389, ad, and the hosted
// directories google (GoogleSecureLDAP), jumpcloud (JumpCloud), okta
// (OktaLDAPInterface) and freeipa (FreeIPA).
func Presets() []Preset {
	return []Preset{
		{Name: "openldap", Title: "OpenLDAP", Mapping: OpenLDAP()},
		{Name: "389", Title: "389 Directory Server / Red Hat Directory Server", Mapping: DirectoryServer389()},
		{Name: "ad", Title: "Active Directory", Mapping: ActiveDirectory()},
		{Name: "google", Title: "Google Secure LDAP", Mapping: GoogleSecureLDAP(), URL: "ldaps://ldap.google.com:636",
			UserRDN: "ou=Users", GroupRDN: "ou=Groups", BindDNHint: "none: the client certificate (or the generated access credentials as BindDN and BindPassword)",
			ClientCertificate: true, SASLExternal: true, TLSRequired: true},
		{Name: "jumpcloud", Title: "JumpCloud LDAP-as-a-Service", Mapping: JumpCloud(), URL: "ldaps://ldap.jumpcloud.com:636",
			UserRDN: "ou=Users", GroupRDN: "ou=Users", BindDNHint: "uid=<user>,ou=Users,o=<orgId>,dc=jumpcloud,dc=com", TLSRequired: true},
		{Name: "okta", Title: "Okta LDAP Interface", Mapping: OktaLDAPInterface(),
			UserRDN: "ou=users", GroupRDN: "ou=groups", BindDNHint: "uid=<user>,dc=<org>,dc=okta,dc=com", TLSRequired: true},
		{Name: "freeipa", Title: "FreeIPA / Red Hat Identity Management", Mapping: FreeIPA(),
			UserRDN: "cn=users,cn=accounts", GroupRDN: "cn=groups,cn=accounts", BindDNHint: "uid=<user>,cn=sysaccounts,cn=etc,<base>"},
	}
}

// PresetNamed returns the preset of that name (case-insensitive); ""
// is openldap.
func PresetNamed(name string) (Preset, bool) {
	if name == "" {
		name = "openldap"
	}
	for _, p := range Presets() {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Preset{}, false
}

// Apply fills the zero fields of c from the preset: the Mapping, the URL
// of a hosted service, UserBaseDN and GroupBaseDN below baseDN, and
// SASLExternal when the service takes the client certificate and c has
// no BindDN. It refuses a plaintext URL for a service that requires TLS,
// and a missing client certificate for one that demands it.
func (p Preset) Apply(c *Config, baseDN string) error {
	if c.Mapping.isZero() {
		c.Mapping = p.Mapping
	}
	if c.URL == "" {
		c.URL = p.URL
	}
	under := func(rdn string) string {
		if rdn == "" {
			return baseDN
		}
		return rdn + "," + baseDN
	}
	if c.UserBaseDN == "" && baseDN != "" {
		c.UserBaseDN = under(p.UserRDN)
	}
	if c.GroupBaseDN == "" && baseDN != "" {
		c.GroupBaseDN = under(p.GroupRDN)
	}
	if p.TLSRequired && strings.HasPrefix(strings.ToLower(c.URL), "ldap://") && !c.StartTLS {
		return fmt.Errorf("ldap: %s accepts only TLS: use ldaps:// or StartTLS, not %s", p.Title, c.URL)
	}
	if p.ClientCertificate {
		if c.TLSClientCertPEM == "" && (c.TLSConfig == nil || len(c.TLSConfig.Certificates) == 0) {
			return fmt.Errorf("%w: %s demands a TLS client certificate (TLSClientCertPEM and TLSClientKeyPEM)", ErrCertificate, p.Title)
		}
		if p.SASLExternal && c.BindDN == "" {
			c.SASLExternal = true
		}
	}
	if c.URL == "" {
		return errors.New("ldap: the preset " + p.Name + " has no URL of its own: set Config.URL")
	}
	return nil
}

// GoogleSecureLDAP returns the mapping for Google Workspace's and Cloud
// Identity's Secure LDAP service (ldaps://ldap.google.com:636; StartTLS on
// 389 too). Users are inetOrgPerson and posixAccount entries below
// ou=Users,dc=<domain>,dc=<tld> (in sub-OUs that mirror the Admin
// console's organizational units); groups are below ou=Groups with cn and
// member DNs. Google documents no entryUUID: the id is
// apple-generateduid, the UUID Google generates for every user and group
// (check that your Secure LDAP client returns it; set Mapping.ID
// otherwise). uid -> userName, mail, givenName, sn, displayName.
// Suspended users are not returned: they are swept as gone.
//
// What the customer's admin sets up, in the Admin console under Apps >
// LDAP: an LDAP client with "Read user information" and "Read group
// information" (for the whole domain or the OUs to sync), the client
// turned on, and its certificate and key downloaded: they go in
// Config.TLSClientCertPEM and TLSClientKeyPEM. Google takes the
// certificate as the identity (SASL EXTERNAL: Config.SASLExternal, which
// Preset.Apply sets); generated access credentials, when the admin made
// them, go in BindDN and BindPassword instead.
func GoogleSecureLDAP() Mapping {
	m := OpenLDAP()
	m.ID = "apple-generateduid"
	m.DisplayName = "displayName"
	m.Title, m.Department, m.EmployeeNumber, m.Phone = "", "", "", ""
	m.Attributes = map[string]string{"googleUid": "googleUid", "uidNumber": "uidNumber"}
	m.Disabled = nil
	m.UserFilter = "(objectClass=inetOrgPerson)"
	m.GroupFilter = "(objectClass=groupOfNames)"
	m.DNMembers = []string{"member"}
	m.UIDMembers, m.MemberUIDAttribute = []string{"memberUid"}, "uid"
	return m
}

// JumpCloud returns the mapping for JumpCloud's LDAP-as-a-Service
// (ldaps://ldap.jumpcloud.com:636). Users are inetOrgPerson entries in
// ou=Users,o=<orgId>,dc=jumpcloud,dc=com with uid, mail, givenName and
// sn; groups are groupOfNames with member DNs, in the same ou=Users, and
// only the groups the admin enabled for LDAP appear. The id is entryUUID.
//
// What the customer's admin sets up: an LDAP binding user (a JumpCloud
// user with "Enable as LDAP Bind DN"), bound to the JumpCloud LDAP
// directory, whose DN uid=<user>,ou=Users,o=<orgId>,dc=jumpcloud,dc=com
// and password go in BindDN and BindPassword; the users to sync and the
// groups to sync, each group with LDAP enabled, bound to the directory.
// The base DN is o=<orgId>,dc=jumpcloud,dc=com (the org id is in the
// admin console's settings).
func JumpCloud() Mapping {
	m := OpenLDAP()
	m.Title, m.Department, m.EmployeeNumber = "", "", ""
	m.Disabled = nil
	m.GroupFilter = "(objectClass=groupOfNames)"
	m.DNMembers = []string{"member"}
	m.UIDMembers, m.MemberUIDAttribute = nil, ""
	return m
}

// OktaLDAPInterface returns the mapping for the Okta LDAP Interface
// (ldaps://<org>.ldap.okta.com:636, or StartTLS on 389). Users are
// inetOrgPerson entries in ou=users,dc=<org>,dc=okta,dc=com with uid,
// givenName, sn, cn and mail; groups are groupOfUniqueNames in
// ou=groups with uniqueMember DNs. The id is entryUUID (Okta's user and
// group id as a UUID).
//
// What the customer's admin sets up: the LDAP Interface turned on
// (Directory > Directory Integrations > Add LDAP Interface), and an
// Okta user for the sync, with a read-only admin role, whose DN
// uid=<login>,dc=<org>,dc=okta,dc=com and password go in BindDN and
// BindPassword (a user under MFA cannot bind). The base DN is
// dc=<org>,dc=okta,dc=com.
func OktaLDAPInterface() Mapping {
	m := OpenLDAP()
	m.Title, m.Department, m.EmployeeNumber, m.Phone = "", "", "", ""
	m.Disabled = nil
	m.GroupFilter = "(objectClass=groupOfUniqueNames)"
	m.DNMembers = []string{"uniqueMember"}
	m.UIDMembers, m.MemberUIDAttribute = nil, ""
	return m
}

// FreeIPA returns the mapping for FreeIPA and Red Hat Identity
// Management (389 Directory Server inside). Users are in
// cn=users,cn=accounts,<base> (inetOrgPerson), groups in
// cn=groups,cn=accounts,<base> (groupOfNames with member DNs, nested
// groups flattened); the id is ipaUniqueID; nsAccountLock=TRUE means
// disabled (ipa user-disable). 389's syncrepl (the content sync plugin)
// makes changes incremental when the server runs it; otherwise
// modifyTimestamp is polled.
//
// What the customer's admin sets up: a system account that can read
// users and groups, e.g. ldapmodify of uid=idprov,cn=sysaccounts,cn=etc,
// <base> (objectClass account and simplesecurityobject, with a
// userPassword), whose DN and password go in BindDN and BindPassword;
// the server's CA (/etc/ipa/ca.crt) in Config.TLSCAPEM.
func FreeIPA() Mapping {
	m := DirectoryServer389()
	m.ID = "ipaUniqueID"
	m.UserFilter = "(objectClass=inetOrgPerson)"
	m.GroupFilter = "(objectClass=groupOfNames)"
	m.DNMembers = []string{"member"}
	m.UIDMembers, m.MemberUIDAttribute = nil, ""
	return m
}
