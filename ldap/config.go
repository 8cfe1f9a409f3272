package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
)

// Config configures a Syncer for one LDAP connection of a tenant. Engine,
// TenantID, ConnectionID, URL and UserBaseDN are required; every other
// field has a default.
type Config struct {
	// Engine applies the changes. Required.
	Engine *provision.Engine
	// TenantID and ConnectionID name the connection (of kind
	// provision.KindLDAP) that owns the users and groups this Syncer
	// creates. Required.
	TenantID     string
	ConnectionID string

	// URL is the server: ldap://host[:389] or ldaps://host[:636].
	// Required.
	URL string
	// StartTLS upgrades an ldap:// connection to TLS before binding.
	StartTLS bool
	// TLSConfig is used for ldaps:// and StartTLS. Nil means the system
	// roots and the URL's host as the server name. Certificates are
	// verified unless the host's own TLSConfig says otherwise.
	TLSConfig *tls.Config
	// TLSCAPEM pins the server's certificate authority: PEM certificates
	// that are the only roots trusted, instead of the system's (or
	// TLSConfig's RootCAs). For a private CA, in the connection's
	// settings.
	TLSCAPEM string
	// TLSClientCertPEM and TLSClientKeyPEM are a client certificate and
	// its private key, in PEM, presented in the TLS handshake (Google
	// Secure LDAP requires one). Both or neither.
	TLSClientCertPEM string
	TLSClientKeyPEM  string
	// InsecurePlaintext allows an ldap:// URL without StartTLS: the bind
	// password and every entry cross the network in clear. Without it
	// such a Config is refused.
	InsecurePlaintext bool
	// BindDN and BindPassword are the sync account's credentials (a simple
	// bind). An empty BindDN binds anonymously. Active Directory also
	// takes a userPrincipalName (idprov-sync@corp.example) or a
	// down-level name (CORP\idprov-sync) here.
	BindDN       string
	BindPassword string
	// SASLExternal binds with SASL EXTERNAL instead of a simple bind: the
	// server takes the identity of the TLS client certificate (Google
	// Secure LDAP's certificate mode). It needs a client certificate
	// (TLSClientCertPEM, or TLSConfig's Certificates) and no BindDN.
	SASLExternal bool

	// UserBaseDN is where users are searched. Required.
	UserBaseDN string
	// UserFilter selects user entries. Default: the Mapping's UserFilter.
	UserFilter string
	// GroupBaseDN is where groups are searched; empty means groups are not
	// synced.
	GroupBaseDN string
	// GroupFilter selects group entries. Default: the Mapping's
	// GroupFilter.
	GroupFilter string
	// Scope of both searches: ScopeSubtree (the default) or ScopeOneLevel.
	Scope Scope
	// PageSize is the number of entries per page of a paged search.
	// Default 500 (OpenLDAP's default size limit; Active Directory's cap
	// is 1,000).
	PageSize int

	// DialTimeout bounds connecting, the TLS handshake and the bind.
	// Default 10s.
	DialTimeout time.Duration
	// RequestTimeout bounds each LDAP request: one page of a paged
	// search, or a whole syncrepl refresh. Default 2m.
	RequestTimeout time.Duration

	// Mapping says which attributes carry what. The zero Mapping means
	// OpenLDAP().
	Mapping Mapping

	// Incremental chooses how SyncChanges (and Run between full syncs)
	// finds changes. Default IncrementalAuto.
	Incremental Incremental
	// Interval is how often Run syncs changes. Default 5m.
	Interval time.Duration
	// Push says whether Run keeps a persistent search open between full
	// syncs, so that changes apply within a second. Default PushAuto:
	// when the incremental mode is syncrepl. Its changes arrive one by
	// one: the deactivations it applied within the last Interval count
	// against MaxDeactivations and MaxDeactivationShare together.
	Push Push
	// ReconnectMin and ReconnectMax bound the backoff between attempts
	// to reopen a persistent search that failed. Default 1s and 1m.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// FullInterval is how often Run runs a full sync, the only one that
	// sees deletes when changes are polled by modifyTimestamp. Default 6h.
	FullInterval time.Duration

	// MaxDeactivations is the number of deactivations one sync may apply
	// on its own; more are held as a provision.Plan (PlanDeactivations)
	// until provision.Engine.ConfirmPlan. Default 500;
	// a negative value removes the limit.
	MaxDeactivations int
	// MaxDeactivationShare is the share (0..1) of the connection's users
	// one sync may deactivate on its own; more are held (a single
	// deactivation never is). Default 0.2; a negative value removes the
	// limit.
	MaxDeactivationShare float64
	// Workers is the number of entries applied concurrently. Default 4.
	Workers int

	// ReferralsIncomplete makes a continuation reference in a search
	// result (a part of the subtree that another server or naming context
	// holds: Active Directory returns them for CN=Configuration and the
	// DNS partitions below a domain root) end the search as incomplete,
	// so nothing is swept. By default references are not followed: they
	// are ignored and counted in Report.Referrals.
	ReferralsIncomplete bool

	// OnReport, when set, receives the outcome of every round Run makes,
	// of every batch of changes a persistent search applies, and the
	// errors that end a persistent search (with a nil Report). It runs on
	// Run's goroutine, at times under the connection's lock: to call Sync,
	// SyncChanges or Confirm from it, start a goroutine.
	OnReport func(*Report, error)
	// Logger receives the Syncer's diagnostics. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Scope is the search scope.
type Scope int

// The search scopes.
const (
	ScopeSubtree  Scope = iota // the base and everything below it
	ScopeOneLevel              // the base's immediate children only
)

// Incremental is a way to find the changes since the previous sync.
type Incremental string

// The incremental sync strategies.
const (
	// IncrementalAuto uses syncrepl when the server's root DSE lists the
	// RFC 4533 sync request control, DirSync when it lists Active
	// Directory's DirSync control (uSNChanged polling when the account may
	// not use it), modifyTimestamp otherwise.
	IncrementalAuto Incremental = ""
	// IncrementalSyncrepl uses RFC 4533 syncrepl refreshOnly with a stored
	// cookie: adds, modifications, renames, moves and deletes.
	IncrementalSyncrepl Incremental = "syncrepl"
	// IncrementalModifyTimestamp polls entries whose modifyTimestamp is
	// newer than the last sync's. It cannot see deletes: the periodic full
	// sync does.
	IncrementalModifyTimestamp Incremental = "modifyTimestamp"
	// IncrementalDirSync uses Active Directory's DirSync control
	// (1.2.840.113556.1.4.841) with a stored cookie: adds, modifications,
	// renames, moves and deletes (tombstones). It needs the "Replicating
	// Directory Changes" right on the domain; without it (DirSync refused)
	// the Syncer polls uSNChanged instead.
	IncrementalDirSync Incremental = "dirsync"
	// IncrementalUSNChanged polls Active Directory entries whose uSNChanged
	// is above the one stored from the last sync. uSNChanged is local to a
	// domain controller: the cursor is tied to the DC, and talking to
	// another one runs a full sync. Deletes are seen only when the bind
	// account can read tombstones; otherwise the periodic full sync
	// sweeps them.
	IncrementalUSNChanged Incremental = "uSNChanged"
	// IncrementalNone makes every sync a full sync.
	IncrementalNone Incremental = "none"
)

// Mapping says which LDAP attributes carry the identity, the user's
// attributes, the disabled state and group membership. Attribute names are
// matched case-insensitively. Start from a preset (OpenLDAP,
// DirectoryServer389) and change what differs.
type Mapping struct {
	// ID is the server-assigned stable id: entryUUID (OpenLDAP, 389 with
	// its plugin), nsUniqueId (389) or objectGUID (Active Directory).
	// Never the DN, which changes on rename and move. It becomes the
	// Link's ExternalID, in the canonical 8-4-4-4-12 lower-case form when
	// it is 32 hex digits.
	ID string
	// IDFormat says how the ID attribute's value is read. objectGUID is
	// always IDMicrosoftGUID.
	IDFormat IDFormat
	// UserName is required on every user entry (uid).
	UserName string
	// Email is the primary e-mail (mail); further values are kept as
	// secondary addresses.
	Email string
	// GivenName, FamilyName, DisplayName, Title, Department,
	// EmployeeNumber and Phone fill the User fields of the same name (an
	// empty name leaves the field empty).
	GivenName      string
	FamilyName     string
	DisplayName    string
	Title          string
	Department     string
	EmployeeNumber string
	Phone          string
	// Attributes copies more LDAP attributes into User.Attributes: LDAP
	// attribute name -> key. A single value is stored as a JSON string,
	// several as an array.
	Attributes map[string]string
	// Disabled lists the rules that mark an entry disabled; any match
	// disables it (the user is deactivated, and reactivated when no rule
	// matches any more).
	Disabled []DisabledRule

	// UserFilter and GroupFilter are the default filters of the preset.
	UserFilter  string
	GroupFilter string
	// GroupName is the group's display name (cn).
	GroupName string
	// DNMembers are the group attributes holding member DNs (member,
	// uniqueMember). A member DN naming another group in the group scope
	// nests it: its users are members too, cycles broken.
	DNMembers []string
	// UIDMembers are the group attributes holding bare user names
	// (memberUid), resolved through MemberUIDAttribute.
	UIDMembers []string
	// MemberUIDAttribute is the user attribute that UIDMembers values name
	// (uid).
	MemberUIDAttribute string
}

// IDFormat says how a Mapping.ID value is read.
type IDFormat int

// The id formats.
const (
	// IDText is a string id (entryUUID, nsUniqueId); 32 hex digits,
	// however grouped, become the 8-4-4-4-12 lower-case form.
	IDText IDFormat = iota
	// IDMicrosoftGUID is 16 raw bytes in Microsoft's GUID layout
	// (objectGUID), rendered in the canonical mixed-endian string form
	// that Active Directory itself shows (<GUID=...>): the first three
	// groups byte-swapped, lower case.
	IDMicrosoftGUID
)

// DisabledRule matches a disabled entry. With the zero Match: Attribute
// present (Value empty), or having a value equal to Value
// (case-insensitive).
type DisabledRule struct {
	// Attribute is the LDAP attribute to test (pwdAccountLockedTime,
	// userAccountControl).
	Attribute string
	// Value, when set, must equal one of the attribute's values; with
	// MatchAnyBit it is the bit mask, in decimal.
	Value string
	// Match says how the attribute is tested.
	Match DisabledMatch
}

// DisabledMatch is how a DisabledRule tests its attribute.
type DisabledMatch string

// The ways a DisabledRule matches.
const (
	// MatchPresentOrEqual: the attribute is present (Value empty) or has
	// a value equal to Value, case-insensitive.
	MatchPresentOrEqual DisabledMatch = ""
	// MatchAnyBit: an integer value with any bit of the mask in Value set
	// (Active Directory's userAccountControl with "2", ACCOUNTDISABLE).
	MatchAnyBit DisabledMatch = "anyBit"
	// MatchNonZero: an integer value other than 0 (Active Directory's
	// lockoutTime: set when the account is locked out, reset to 0 by an
	// unlock or the next successful logon).
	MatchNonZero DisabledMatch = "nonZero"
	// MatchExpired: a Windows FILETIME (100 ns intervals since 1601)
	// before now, by Config.Now (Active Directory's accountExpires; 0 and
	// 0x7FFFFFFFFFFFFFFF mean never). Expiry changes nothing in the
	// directory, so only a full sync notices it.
	MatchExpired DisabledMatch = "expired"
)

// OpenLDAP returns the mapping for OpenLDAP's inetOrgPerson entries:
// entryUUID, uid -> userName, mail, givenName and sn, cn -> displayName,
// title, departmentNumber -> department, employeeNumber, telephoneNumber;
// a present pwdAccountLockedTime (ppolicy) means disabled; groups are
// groupOfNames (member), groupOfUniqueNames (uniqueMember) and posixGroup
// (memberUid) with cn as displayName.
func OpenLDAP() Mapping {
	return Mapping{
		ID:                 "entryUUID",
		UserName:           "uid",
		Email:              "mail",
		GivenName:          "givenName",
		FamilyName:         "sn",
		DisplayName:        "cn",
		Title:              "title",
		Department:         "departmentNumber",
		EmployeeNumber:     "employeeNumber",
		Phone:              "telephoneNumber",
		Disabled:           []DisabledRule{{Attribute: "pwdAccountLockedTime"}},
		UserFilter:         "(objectClass=inetOrgPerson)",
		GroupFilter:        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
		GroupName:          "cn",
		DNMembers:          []string{"member", "uniqueMember"},
		UIDMembers:         []string{"memberUid"},
		MemberUIDAttribute: "uid",
	}
}

// DirectoryServer389 returns the mapping for 389 Directory Server (and Red
// Hat Directory Server, FreeIPA): OpenLDAP's with nsUniqueId as the id and
// nsAccountLock=TRUE as disabled.
func DirectoryServer389() Mapping {
	m := OpenLDAP()
	m.ID = "nsUniqueId"
	m.Disabled = []DisabledRule{{Attribute: "nsAccountLock", Value: "TRUE"}}
	return m
}

// ActiveDirectory returns the mapping for Active Directory (and Samba
// AD): objectGUID as the id, in its canonical mixed-endian string form;
// userPrincipalName -> userName (the login name Entra ID and AD FS also
// send, unique in the forest; set UserName to "sAMAccountName" for the
// pre-Windows 2000 name), mail, givenName and sn, displayName, title,
// department, employeeID -> employeeNumber, telephoneNumber, and
// sAMAccountName kept in User.Attributes; userAccountControl with the
// ACCOUNTDISABLE bit (0x2) means disabled. Users are
// (&(objectCategory=person)(objectClass=user)), groups (objectClass=group)
// with cn as displayName and member DNs, nested groups flattened.
//
// Locked-out and expired accounts are not disabled by default; to treat
// them so, append
//
//	ldap.DisabledRule{Attribute: "lockoutTime", Match: ldap.MatchNonZero}
//	ldap.DisabledRule{Attribute: "accountExpires", Match: ldap.MatchExpired}
//
// to Disabled.
func ActiveDirectory() Mapping {
	return Mapping{
		ID:             "objectGUID",
		IDFormat:       IDMicrosoftGUID,
		UserName:       "userPrincipalName",
		Email:          "mail",
		GivenName:      "givenName",
		FamilyName:     "sn",
		DisplayName:    "displayName",
		Title:          "title",
		Department:     "department",
		EmployeeNumber: "employeeID",
		Phone:          "telephoneNumber",
		Attributes:     map[string]string{"sAMAccountName": "sAMAccountName"},
		Disabled:       []DisabledRule{{Attribute: "userAccountControl", Value: "2", Match: MatchAnyBit}},
		UserFilter:     "(&(objectCategory=person)(objectClass=user))",
		GroupFilter:    "(objectClass=group)",
		GroupName:      "cn",
		DNMembers:      []string{"member"},
	}
}

// guidID reports whether the id is a binary Microsoft GUID.
func (m Mapping) guidID() bool {
	return m.IDFormat == IDMicrosoftGUID || strings.EqualFold(m.ID, "objectGUID")
}

func (m Mapping) isZero() bool {
	return m.ID == "" && m.UserName == "" && m.UserFilter == "" && len(m.DNMembers) == 0
}

// userAttributes lists the attributes a user search asks for.
func (m Mapping) userAttributes() []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			out = append(out, a)
		}
	}
	for _, a := range []string{m.ID, m.UserName, m.Email, m.GivenName, m.FamilyName, m.DisplayName,
		m.Title, m.Department, m.EmployeeNumber, m.Phone, m.MemberUIDAttribute, "modifyTimestamp"} {
		add(a)
	}
	for a := range m.Attributes {
		add(a)
	}
	for _, r := range m.Disabled {
		add(r.Attribute)
	}
	return out
}

func (m Mapping) groupAttributes() []string {
	out := []string{m.ID, m.GroupName, "modifyTimestamp"}
	out = append(out, m.DNMembers...)
	return append(out, m.UIDMembers...)
}

// config is a validated Config with its defaults applied.
type config struct {
	Config
	tls         *tls.Config
	userFilter  string
	groupFilter string
	scope       int
}

func (c Config) validate() (*config, error) {
	v := &config{Config: c}
	switch {
	case c.Engine == nil:
		return nil, errors.New("ldap: Config.Engine is required")
	case c.TenantID == "" || c.ConnectionID == "":
		return nil, errors.New("ldap: Config.TenantID and ConnectionID are required")
	case c.UserBaseDN == "":
		return nil, errors.New("ldap: Config.UserBaseDN is required")
	}
	t, err := c.Engine.Tenant(context.Background(), c.TenantID)
	if err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	found := false
	for _, conn := range t.Connections {
		if conn.ID == c.ConnectionID {
			if conn.Kind != provision.KindLDAP {
				return nil, fmt.Errorf("ldap: connection %q of tenant %q is of kind %q, not %q", c.ConnectionID, c.TenantID, conn.Kind, provision.KindLDAP)
			}
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("ldap: tenant %q declares no connection %q", c.TenantID, c.ConnectionID)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap: Config.URL: %w", err)
	}
	host := u.Hostname()
	switch {
	case host == "":
		return nil, fmt.Errorf("ldap: Config.URL %q names no host", c.URL)
	case u.Scheme == "ldaps":
		if c.StartTLS {
			return nil, errors.New("ldap: StartTLS on an ldaps:// URL: the connection is already encrypted")
		}
	case u.Scheme == "ldap":
		if !c.StartTLS && !c.InsecurePlaintext {
			return nil, fmt.Errorf("ldap: %s is plaintext: set StartTLS, use ldaps://, or set InsecurePlaintext", c.URL)
		}
	default:
		return nil, fmt.Errorf("ldap: Config.URL %q: the scheme must be ldap or ldaps", c.URL)
	}
	if c.TLSConfig != nil {
		v.tls = c.TLSConfig.Clone()
	} else {
		v.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if v.tls.ServerName == "" {
		v.tls.ServerName = host
	}
	if c.TLSCAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.TLSCAPEM)) {
			return nil, fmt.Errorf("%w: Config.TLSCAPEM holds no PEM certificate", ErrCertificate)
		}
		v.tls.RootCAs = pool
	}
	switch {
	case (c.TLSClientCertPEM == "") != (c.TLSClientKeyPEM == ""):
		return nil, fmt.Errorf("%w: Config.TLSClientCertPEM and TLSClientKeyPEM go together", ErrCertificate)
	case c.TLSClientCertPEM != "":
		pair, err := tls.X509KeyPair([]byte(c.TLSClientCertPEM), []byte(c.TLSClientKeyPEM))
		if err != nil {
			return nil, fmt.Errorf("%w: Config.TLSClientCertPEM and TLSClientKeyPEM: %w", ErrCertificate, err)
		}
		v.tls.Certificates = append(v.tls.Certificates, pair)
	}
	if (c.TLSCAPEM != "" || c.TLSClientCertPEM != "") && u.Scheme == "ldap" && !c.StartTLS {
		return nil, fmt.Errorf("ldap: Config.TLSCAPEM and TLSClientCertPEM need ldaps:// or StartTLS, not plaintext %s", c.URL)
	}
	if c.SASLExternal {
		switch {
		case c.BindDN != "" || c.BindPassword != "":
			return nil, errors.New("ldap: Config.SASLExternal binds with the client certificate: leave BindDN and BindPassword empty")
		case len(v.tls.Certificates) == 0 && v.tls.GetClientCertificate == nil:
			return nil, fmt.Errorf("%w: Config.SASLExternal needs a TLS client certificate (TLSClientCertPEM and TLSClientKeyPEM)", ErrCertificate)
		}
	}
	if c.BindDN == "" && c.BindPassword != "" {
		return nil, errors.New("ldap: Config.BindPassword without a BindDN")
	}
	for _, dn := range []struct{ name, v string }{{"UserBaseDN", c.UserBaseDN}, {"GroupBaseDN", c.GroupBaseDN}, {"BindDN", c.BindDN}} {
		if dn.v == "" || (dn.name == "BindDN" && !strings.Contains(dn.v, "=")) {
			continue // AD binds by userPrincipalName or DOMAIN\user too
		}
		if _, err := goldap.ParseDN(dn.v); err != nil {
			return nil, fmt.Errorf("ldap: Config.%s %q: %w", dn.name, dn.v, err)
		}
	}
	if c.Mapping.isZero() {
		v.Mapping = OpenLDAP()
	}
	m := v.Mapping
	if m.ID == "" || m.UserName == "" {
		return nil, errors.New("ldap: Mapping.ID and Mapping.UserName are required")
	}
	if len(m.UIDMembers) > 0 && m.MemberUIDAttribute == "" {
		return nil, errors.New("ldap: Mapping.UIDMembers needs Mapping.MemberUIDAttribute")
	}
	if c.GroupBaseDN != "" && m.GroupName == "" {
		return nil, errors.New("ldap: Mapping.GroupName is required to sync groups")
	}
	for _, r := range m.Disabled {
		if r.Attribute == "" {
			return nil, errors.New("ldap: a Mapping.Disabled rule names no attribute")
		}
		switch r.Match {
		case MatchPresentOrEqual, MatchNonZero, MatchExpired:
		case MatchAnyBit:
			if mask, err := strconv.ParseInt(r.Value, 10, 64); err != nil || mask == 0 {
				return nil, fmt.Errorf("ldap: Mapping.Disabled rule on %s: MatchAnyBit needs a non-zero decimal mask in Value, not %q", r.Attribute, r.Value)
			}
		default:
			return nil, fmt.Errorf("ldap: Mapping.Disabled rule on %s: unknown Match %q", r.Attribute, r.Match)
		}
	}
	switch m.IDFormat {
	case IDText, IDMicrosoftGUID:
	default:
		return nil, fmt.Errorf("ldap: Mapping.IDFormat %d is unknown", m.IDFormat)
	}
	v.userFilter = firstNonEmpty(c.UserFilter, m.UserFilter, "(objectClass=*)")
	v.groupFilter = firstNonEmpty(c.GroupFilter, m.GroupFilter, "(objectClass=*)")
	for _, f := range []struct{ name, v string }{{"UserFilter", v.userFilter}, {"GroupFilter", v.groupFilter}} {
		if _, err := goldap.CompileFilter(f.v); err != nil {
			return nil, fmt.Errorf("ldap: Config.%s %q: %w", f.name, f.v, err)
		}
	}
	switch c.Scope {
	case ScopeSubtree:
		v.scope = goldap.ScopeWholeSubtree
	case ScopeOneLevel:
		v.scope = goldap.ScopeSingleLevel
	default:
		return nil, fmt.Errorf("ldap: Config.Scope %d is unknown", c.Scope)
	}
	switch c.Incremental {
	case IncrementalAuto, IncrementalSyncrepl, IncrementalModifyTimestamp, IncrementalDirSync, IncrementalUSNChanged, IncrementalNone:
	default:
		return nil, fmt.Errorf("ldap: Config.Incremental %q is unknown", c.Incremental)
	}
	switch c.Push {
	case PushAuto, PushOff:
	default:
		return nil, fmt.Errorf("ldap: Config.Push %q is unknown", c.Push)
	}
	if c.ReconnectMin < 0 || c.ReconnectMax < 0 {
		return nil, errors.New("ldap: Config.ReconnectMin and ReconnectMax must not be negative")
	}
	if c.PageSize < 0 || c.Workers < 0 || c.DialTimeout < 0 || c.RequestTimeout < 0 || c.Interval < 0 || c.FullInterval < 0 {
		return nil, errors.New("ldap: Config.PageSize, Workers, DialTimeout, RequestTimeout, Interval and FullInterval must not be negative")
	}
	if c.MaxDeactivationShare > 1 {
		return nil, errors.New("ldap: Config.MaxDeactivationShare is a share: at most 1")
	}
	v.PageSize = defaultInt(c.PageSize, 500)
	v.Workers = defaultInt(c.Workers, 4)
	v.DialTimeout = defaultDuration(c.DialTimeout, 10*time.Second)
	v.RequestTimeout = defaultDuration(c.RequestTimeout, 2*time.Minute)
	v.Interval = defaultDuration(c.Interval, 5*time.Minute)
	v.FullInterval = defaultDuration(c.FullInterval, 6*time.Hour)
	v.ReconnectMin = defaultDuration(c.ReconnectMin, time.Second)
	v.ReconnectMax = max(v.ReconnectMin, defaultDuration(c.ReconnectMax, time.Minute))
	if c.MaxDeactivations == 0 {
		v.MaxDeactivations = 500
	}
	if c.MaxDeactivationShare == 0 {
		v.MaxDeactivationShare = 0.2
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

// hostPort returns the URL's address with the scheme's default port.
func hostPort(raw string) (scheme, addr string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	port := u.Port()
	if port == "" {
		port = "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
	}
	return u.Scheme, net.JoinHostPort(u.Hostname(), port), nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func defaultInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func defaultDuration(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}
