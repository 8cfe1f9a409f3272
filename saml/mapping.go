package saml

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/provision"
)

// Attribute names real identity providers send (research notes §4).
const (
	AttrEntraObjectID    = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	AttrEntraTenantID    = "http://schemas.microsoft.com/identity/claims/tenantid"
	AttrEntraDisplayName = "http://schemas.microsoft.com/identity/claims/displayname"
	AttrEntraGroups      = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
	// AttrEntraGroupsOverage is sent instead of AttrEntraGroups when the
	// user is in more groups than fit (150 in SAML): the groups are then
	// unknown, not none.
	AttrEntraGroupsOverage = "http://schemas.microsoft.com/claims/groups.link"
	AttrMSRole             = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	AttrMSEmail2008        = "http://schemas.microsoft.com/ws/2008/06/identity/claims/emailaddress"
	AttrMSWindowsAccount   = "http://schemas.microsoft.com/ws/2008/06/identity/claims/windowsaccountname"
	AttrClaimsEmail        = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
	AttrClaimsEmailShort   = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/email"
	AttrClaimsGivenName    = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"
	AttrClaimsSurname      = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"
	AttrClaimsName         = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	AttrClaimsUPN          = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	AttrADFSCommonName     = "http://schemas.xmlsoap.org/claims/CommonName"
	AttrADFSGroup          = "http://schemas.xmlsoap.org/claims/Group"
	AttrSubjectID          = "urn:oasis:names:tc:SAML:attribute:subject-id"
	AttrPairwiseID         = "urn:oasis:names:tc:SAML:attribute:pairwise-id"
	AttrEduPersonTargetID  = "urn:oid:1.3.6.1.4.1.5923.1.1.1.10"
	AttrEduPersonPrincipal = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
	AttrEduPersonEntitle   = "urn:oid:1.3.6.1.4.1.5923.1.1.1.7"
	AttrIsMemberOf         = "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
	AttrOIDMail            = "urn:oid:0.9.2342.19200300.100.1.3"
	AttrOIDUID             = "urn:oid:0.9.2342.19200300.100.1.1"
	AttrOIDGivenName       = "urn:oid:2.5.4.42"
	AttrOIDSurname         = "urn:oid:2.5.4.4"
	AttrOIDDisplayName     = "urn:oid:2.16.840.1.113730.3.1.241"
	AttrOIDCommonName      = "urn:oid:2.5.4.3"
)

// Mapping says which assertion attributes fill which Identity fields.
// Each field lists candidate attribute names, tried in order: the first
// present with a non-empty value wins. A name matches an attribute's Name
// exactly, or case-insensitively when it is a short name (no ':' or '/');
// FriendlyName is consulted only with AllowFriendlyName.
//
// The zero Mapping is DefaultMapping. Presets exist for the common
// identity providers (EntraIDMapping, ADFSMapping, OktaMapping,
// GoogleWorkspaceMapping, OneLoginMapping, ShibbolethMapping); copy one
// and change what a tenant's IdP sends differently.
type Mapping struct {
	// Name labels the mapping in logs ("entra", "okta", "default", ...).
	Name string
	// ExternalID lists the attributes holding a stable, immutable id of
	// the person, tried before the NameID. A persistent, unspecified or
	// emailAddress NameID is the fallback; a transient NameID never is, so
	// an assertion with only a transient NameID is refused (ErrNoSubject).
	ExternalID []string
	// NoNameID refuses the NameID as the external id: one of ExternalID
	// must be present.
	NoNameID    bool
	Email       []string
	GivenName   []string
	FamilyName  []string
	DisplayName []string
	// UserName falls back to the e-mail address, then to the NameID.
	UserName []string
	// Groups lists the group attributes. The first one present gives the
	// groups, even with no value (then: no groups). None present: the
	// login says nothing about groups (Identity.Groups nil).
	Groups []string
	// GroupsOverage lists attributes whose presence (without a Groups
	// attribute) means the groups are unknown: Identity.GroupsUnknown.
	GroupsOverage []string
	// GroupDelimiter, when set, splits each group value on it (PingFederate
	// sends "red,green,blue" as one value). Off by default.
	GroupDelimiter string
	// MaxGroups bounds the groups kept; a login with more has its groups
	// marked unknown. Default 1000.
	MaxGroups int
	// Roles lists the role attributes; their values become direct roles
	// (kept only where the jit connection allows roles).
	Roles []string
	// AllowFriendlyName lets FriendlyName match a candidate too. Off by
	// default: FriendlyName is a label, and one attribute can pass for
	// another by it.
	AllowFriendlyName bool
	// EntraTenantID, when set, refuses an assertion whose Entra tenantid
	// claim is absent or different (ErrTenantMismatch): the guard for
	// Entra multi-tenant applications.
	EntraTenantID string
}

// Errors of MapAssertion. Each refuses the login.
var (
	// ErrNoSubject: no stable subject (only a transient NameID, or none).
	ErrNoSubject = errors.New("saml: no stable subject in the assertion")
	// ErrTenantMismatch: the Entra tenantid claim is not the configured
	// tenant.
	ErrTenantMismatch = errors.New("saml: Entra tenant id mismatch")
)

// DefaultMapping tries the attribute names of every preset, in the order
// of the research notes (§4.2): Entra ID and ADFS claim URIs, then the
// OIDs of Shibboleth, then the short names of Okta, Google Workspace and
// OneLogin.
func DefaultMapping() Mapping {
	return Mapping{
		Name:          "default",
		ExternalID:    []string{AttrEntraObjectID, AttrSubjectID, AttrPairwiseID},
		Email:         []string{AttrClaimsEmail, AttrMSEmail2008, AttrOIDMail, "email", "mail", "emailAddress", "User.email", AttrClaimsEmailShort},
		GivenName:     []string{AttrClaimsGivenName, AttrOIDGivenName, "givenName", "firstName", "first_name", "firstname", "User.FirstName"},
		FamilyName:    []string{AttrClaimsSurname, AttrOIDSurname, "sn", "surname", "lastName", "last_name", "lastname", "User.LastName"},
		DisplayName:   []string{AttrEntraDisplayName, AttrOIDDisplayName, "displayName", "name", AttrOIDCommonName, "cn"},
		UserName:      []string{AttrClaimsUPN, AttrClaimsName, AttrEduPersonPrincipal, AttrOIDUID, "uid", "username", "nickname"},
		Groups:        []string{AttrEntraGroups, AttrADFSGroup, AttrIsMemberOf, "groups", "group", "memberOf"},
		GroupsOverage: []string{AttrEntraGroupsOverage},
		Roles:         []string{AttrMSRole, "role", "roles", AttrEduPersonEntitle},
	}
}

// EntraIDMapping is for Microsoft Entra ID (Azure AD): keyed on the
// objectidentifier claim, the UPN as userName, object-id groups with the
// overage claim, app roles. Set EntraTenantID for a multi-tenant app.
func EntraIDMapping() Mapping {
	return Mapping{
		Name:          "entra",
		ExternalID:    []string{AttrEntraObjectID},
		NoNameID:      true,
		Email:         []string{AttrClaimsEmail, AttrMSEmail2008},
		GivenName:     []string{AttrClaimsGivenName},
		FamilyName:    []string{AttrClaimsSurname},
		DisplayName:   []string{AttrEntraDisplayName},
		UserName:      []string{AttrClaimsName, AttrClaimsUPN},
		Groups:        []string{AttrEntraGroups},
		GroupsOverage: []string{AttrEntraGroupsOverage},
		Roles:         []string{AttrMSRole},
	}
}

// ADFSMapping is for Active Directory Federation Services: keyed on the
// NameID its "Name ID" claim rule issues (make it persistent, not
// transient), with the xmlsoap claim URIs.
func ADFSMapping() Mapping {
	return Mapping{
		Name:        "adfs",
		Email:       []string{AttrClaimsEmail},
		GivenName:   []string{AttrClaimsGivenName},
		FamilyName:  []string{AttrClaimsSurname},
		DisplayName: []string{AttrADFSCommonName, AttrClaimsName},
		UserName:    []string{AttrClaimsUPN, AttrMSWindowsAccount, AttrClaimsName},
		Groups:      []string{AttrADFSGroup, AttrEntraGroups},
		Roles:       []string{AttrMSRole},
	}
}

// OktaMapping is for Okta: keyed on the NameID (the Okta username, or a
// persistent id), with the attribute statements most Okta apps define.
func OktaMapping() Mapping {
	return Mapping{
		Name:        "okta",
		Email:       []string{"email"},
		GivenName:   []string{"firstName"},
		FamilyName:  []string{"lastName"},
		DisplayName: []string{"displayName"},
		UserName:    []string{"username", "login"},
		Groups:      []string{"groups", "group"},
		Roles:       []string{"role", "roles"},
	}
}

// GoogleWorkspaceMapping is for Google Workspace: keyed on the NameID
// (the primary e-mail), with admin-named app attributes.
func GoogleWorkspaceMapping() Mapping {
	return Mapping{
		Name:        "google",
		Email:       []string{"email"},
		GivenName:   []string{"firstName"},
		FamilyName:  []string{"lastName"},
		DisplayName: []string{"displayName", "name"},
		Groups:      []string{"groups"},
		Roles:       []string{"role", "roles"},
	}
}

// OneLoginMapping is for OneLogin: keyed on PersonImmutableID when it is
// set, else the NameID; User.* attributes; memberOf groups.
func OneLoginMapping() Mapping {
	return Mapping{
		Name:       "onelogin",
		ExternalID: []string{"PersonImmutableID"},
		Email:      []string{"User.email"},
		GivenName:  []string{"User.FirstName"},
		FamilyName: []string{"User.LastName"},
		UserName:   []string{"User.Username"},
		Groups:     []string{"memberOf"},
		Roles:      []string{"roles", "role"},
	}
}

// ShibbolethMapping is for Shibboleth and InCommon-style IdPs: keyed on
// subject-id, pairwise-id or eduPersonTargetedID (their NameID is
// transient by default), with the eduPerson and LDAP OIDs.
func ShibbolethMapping() Mapping {
	return Mapping{
		Name:        "shibboleth",
		ExternalID:  []string{AttrSubjectID, AttrPairwiseID, AttrEduPersonTargetID},
		Email:       []string{AttrOIDMail},
		GivenName:   []string{AttrOIDGivenName},
		FamilyName:  []string{AttrOIDSurname},
		DisplayName: []string{AttrOIDDisplayName, AttrOIDCommonName},
		UserName:    []string{AttrEduPersonPrincipal, AttrOIDUID},
		Groups:      []string{AttrIsMemberOf},
		Roles:       []string{AttrEduPersonEntitle},
	}
}

// Mappings returns the presets by name: "default", "entra", "adfs",
// "okta", "google", "onelogin", "shibboleth".
func Mappings() map[string]Mapping {
	out := map[string]Mapping{}
	for _, m := range []Mapping{DefaultMapping(), EntraIDMapping(), ADFSMapping(), OktaMapping(), GoogleWorkspaceMapping(), OneLoginMapping(), ShibbolethMapping()} {
		out[m.Name] = m
	}
	return out
}

func (m Mapping) isZero() bool {
	return m.Name == "" && m.ExternalID == nil && !m.NoNameID && m.Email == nil && m.GivenName == nil &&
		m.FamilyName == nil && m.DisplayName == nil && m.UserName == nil && m.Groups == nil &&
		m.GroupsOverage == nil && m.GroupDelimiter == "" && m.MaxGroups == 0 && m.Roles == nil &&
		!m.AllowFriendlyName && m.EntraTenantID == ""
}

// The keys MapAssertion adds to Identity.Raw besides the attributes.
const (
	RawNameID       = "saml:NameID"
	RawNameIDFormat = "saml:NameIDFormat"
	RawIssuer       = "saml:Issuer"
)

// MapAssertion maps a validated assertion to an Identity, as m says (the
// zero Mapping is DefaultMapping). It is a pure function: it reads only
// the assertion, and never checks signatures or conditions (ParseResponse
// did). The Identity's ConnectionID is left empty for the caller.
//
// It fails with ErrNoSubject when the assertion has no stable subject (no
// ExternalID attribute and only a transient NameID, or none), and with
// ErrTenantMismatch when m.EntraTenantID is set and the tenantid claim
// differs.
func MapAssertion(a *crewsaml.Assertion, m Mapping) (provision.Identity, error) {
	if a == nil {
		return provision.Identity{}, errors.New("saml: no assertion")
	}
	if m.isZero() {
		m = DefaultMapping()
	}
	attrs := collect(a)
	var id provision.Identity
	id.Raw = map[string][]string{}
	for _, at := range attrs {
		id.Raw[at.name] = append(id.Raw[at.name], at.values...)
	}
	var nameID, format string
	if a.Subject != nil && a.Subject.NameID != nil {
		nameID, format = strings.TrimSpace(a.Subject.NameID.Value), a.Subject.NameID.Format
		id.Raw[RawNameID] = []string{nameID}
		id.Raw[RawNameIDFormat] = []string{format}
	}
	if a.Issuer.Value != "" {
		id.Raw[RawIssuer] = []string{a.Issuer.Value}
	}

	if m.EntraTenantID != "" {
		if got := first(attrs, []string{AttrEntraTenantID}, m.AllowFriendlyName); !strings.EqualFold(got, m.EntraTenantID) {
			return provision.Identity{}, fmt.Errorf("%w: tenantid %q, want %q", ErrTenantMismatch, got, m.EntraTenantID)
		}
	}

	stableNameID := nameID != "" && (format == "" || format == string(crewsaml.PersistentNameIDFormat) ||
		format == string(crewsaml.UnspecifiedNameIDFormat) || format == string(crewsaml.EmailAddressNameIDFormat))
	id.ExternalID = first(attrs, m.ExternalID, m.AllowFriendlyName)
	if id.ExternalID == "" && !m.NoNameID && stableNameID {
		id.ExternalID = nameID
	}
	if id.ExternalID == "" {
		if format == string(crewsaml.TransientNameIDFormat) {
			return provision.Identity{}, fmt.Errorf("%w: only a transient NameID", ErrNoSubject)
		}
		return provision.Identity{}, fmt.Errorf("%w: none of %v, and no usable NameID (format %q)", ErrNoSubject, m.ExternalID, format)
	}

	u := &id.User
	u.Active = true
	email := first(attrs, m.Email, m.AllowFriendlyName)
	if email == "" && stableNameID && (format == string(crewsaml.EmailAddressNameIDFormat) || format == "" || format == string(crewsaml.UnspecifiedNameIDFormat)) && isAddress(nameID) {
		email = nameID
	}
	if email != "" {
		u.Emails = []provision.Email{{Value: email, Primary: true}}
	}
	u.Name.GivenName = first(attrs, m.GivenName, m.AllowFriendlyName)
	u.Name.FamilyName = first(attrs, m.FamilyName, m.AllowFriendlyName)
	u.DisplayName = first(attrs, m.DisplayName, m.AllowFriendlyName)
	if u.DisplayName == "" {
		u.DisplayName = strings.TrimSpace(u.Name.GivenName + " " + u.Name.FamilyName)
	}
	if u.Name.GivenName != "" || u.Name.FamilyName != "" {
		u.Name.Formatted = strings.TrimSpace(u.Name.GivenName + " " + u.Name.FamilyName)
	}
	u.UserName = first(attrs, m.UserName, m.AllowFriendlyName)
	if u.UserName == "" {
		u.UserName = email
	}
	if u.UserName == "" && stableNameID {
		u.UserName = nameID
	}

	maxGroups := m.MaxGroups
	if maxGroups <= 0 {
		maxGroups = 1000
	}
	if values, ok := all(attrs, m.Groups, m.AllowFriendlyName); ok {
		groups := []string{}
		for _, v := range values {
			parts := []string{v}
			if m.GroupDelimiter != "" {
				parts = strings.Split(v, m.GroupDelimiter)
			}
			for _, p := range parts {
				if p = strings.TrimSpace(p); p != "" && !slices.Contains(groups, p) {
					groups = append(groups, p)
				}
			}
		}
		if len(groups) > maxGroups {
			id.GroupsUnknown = true
		} else {
			id.Groups = groups
		}
	} else if _, overage := all(attrs, m.GroupsOverage, m.AllowFriendlyName); overage {
		id.GroupsUnknown = true
	}
	if values, ok := all(attrs, m.Roles, m.AllowFriendlyName); ok {
		for _, v := range values {
			if v = strings.TrimSpace(v); v != "" && !slices.ContainsFunc(u.Roles, func(r provision.Role) bool { return r.Value == v }) {
				u.Roles = append(u.Roles, provision.Role{Value: v, Source: "direct"})
			}
		}
	}
	return id, nil
}

type attr struct {
	name, friendly string
	values         []string
}

// collect flattens the attribute statements; a value carrying a NameID
// (eduPersonTargetedID) contributes the NameID's value.
func collect(a *crewsaml.Assertion) []attr {
	var out []attr
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			x := attr{name: at.Name, friendly: at.FriendlyName}
			for _, v := range at.Values {
				switch {
				case v.NameID != nil:
					x.values = append(x.values, v.NameID.Value)
				case !v.Nil:
					x.values = append(x.values, v.Value)
				}
			}
			out = append(out, x)
		}
	}
	return out
}

func short(name string) bool { return !strings.ContainsAny(name, ":/") }

// lookup finds the attribute named name: exact Name first, then a
// case-insensitive Name for short names, then FriendlyName if allowed.
func lookup(attrs []attr, name string, friendly bool) (attr, bool) {
	for _, a := range attrs {
		if a.name == name {
			return a, true
		}
	}
	if short(name) {
		for _, a := range attrs {
			if strings.EqualFold(a.name, name) {
				return a, true
			}
		}
	}
	if friendly {
		for _, a := range attrs {
			if a.friendly != "" && strings.EqualFold(a.friendly, name) {
				return a, true
			}
		}
	}
	return attr{}, false
}

// first returns the first non-empty value of the first candidate that has
// one.
func first(attrs []attr, names []string, friendly bool) string {
	for _, n := range names {
		if a, ok := lookup(attrs, n, friendly); ok {
			for _, v := range a.values {
				if v = strings.TrimSpace(v); v != "" {
					return v
				}
			}
		}
	}
	return ""
}

// all returns the values of the first candidate present, even with none.
func all(attrs []attr, names []string, friendly bool) ([]string, bool) {
	for _, n := range names {
		if a, ok := lookup(attrs, n, friendly); ok {
			return a.values, true
		}
	}
	return nil, false
}

func isAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && strings.Contains(s, "@")
}
