package provision

import (
	"encoding/json"
	"time"
)

// APIConnection is the Owner (and Origin.ConnectionID) of users and groups
// created through the host's own admin calls rather than by an identity
// provider. An Origin with an empty ConnectionID acts as APIConnection.
const APIConnection = "api"

// Tenant is one customer company of the host application. A tenant is
// either declared by the host's configuration (Config.Tenants) or
// registered as data in the Store's Registry
// (Engine.PutTenant, PutConnection), which every engine sharing the Store
// follows.
type Tenant struct {
	// ID is the host's identifier for the tenant. Required.
	ID string
	// Name is a human-readable label, used in logs and admin pages only.
	Name string
	// Connections are the tenant's sources of identities.
	Connections []Connection
	// VerifiedDomains are the e-mail domains the tenant has proven it owns.
	// Matching an existing user by e-mail on first contact (MatchEmail) is
	// allowed only for addresses in these domains.
	VerifiedDomains []string
	// Adopt decides whether connection writer may take over a user or group
	// owned by owner (a Connection, or one of Kind APIConnection). Nil means
	// the default policy: a SCIM directory adopts what SAML just-in-time
	// provisioning or the admin API created; nobody adopts from an LDAP
	// source or another directory.
	Adopt func(writer, owner Connection) bool
	// RelinkOnRehire lets a create whose userName names a deactivated user
	// of the same connection under another external id (the person was
	// re-created in the identity provider) reactivate that user and move
	// the connection's link to the new id. Without it such a create is a
	// *ConflictError, and only the same external id rehires.
	RelinkOnRehire bool
	// AccessRules map groups and attributes to the host's roles (see
	// AccessRule). They are taken when the tenant is first declared;
	// later changes go through PlanAccessRules and ConfirmPlan, so
	// that no rule change lands without a preview.
	AccessRules []AccessRule
	// Webhook, when set, is where the host delivers the tenant's events
	// (package webhook reads it).
	Webhook *WebhookSettings

	// Version is the registered tenant's version (PutTenant), 0 for a
	// declared one.
	Version int64
	// Registered is set on a tenant that the engine read from the Store's
	// Registry rather than from the host's declarations.
	Registered bool

	access *accessSet
}

// ConnectionKind says which protocol a Connection speaks.
type ConnectionKind string

// The kinds of Connection.
const (
	KindSCIM ConnectionKind = "scim"
	KindSAML ConnectionKind = "saml"
	KindLDAP ConnectionKind = "ldap"
	KindAPI  ConnectionKind = "api"
)

// MatchRule says how a connection's identity is matched to an existing user
// of the tenant the first time the connection mentions it (when no Link
// exists yet). Once linked, the Link alone is used.
type MatchRule string

// The match rules for first contact.
const (
	// MatchNone never matches: first contact creates a new user (or fails
	// with ErrAlreadyExists when the userName is taken).
	MatchNone MatchRule = "none"
	// MatchUserName matches a live user with the same userName
	// (case-insensitive).
	MatchUserName MatchRule = "userName"
	// MatchEmail matches the single live user whose e-mail equals the
	// identity's primary e-mail, and only when that address is in one of
	// the tenant's VerifiedDomains.
	MatchEmail MatchRule = "email"
	// MatchPairedExternalID matches the user that Connection.PairedWith
	// knows by the identity's ExternalID (for SAML paired with a SCIM
	// directory whose externalId is the IdP's immutable user id).
	MatchPairedExternalID MatchRule = "pairedExternalId"
)

// Connection is one source of identities in a tenant: a SCIM directory, a
// SAML connection, an LDAP source. A tenant may have several of each kind.
// Protocol settings (tokens, IdP metadata, LDAP URLs) belong to the adapter
// packages; the engine needs only what decides identity resolution.
type Connection struct {
	// ID is unique within the tenant. It must not be APIConnection.
	ID string
	// Kind is the protocol. Required.
	Kind ConnectionKind
	// Name is a human-readable label.
	Name string
	// Match lists the rules tried in order on first contact. Empty means
	// the kind's default: MatchUserName for SCIM; MatchPairedExternalID
	// for SAML with PairedWith set (SCIM and SSO from one identity
	// provider match out of the box); none otherwise. []MatchRule{MatchNone}
	// matches nothing.
	Match []MatchRule
	// PairedWith names the connection whose Links MatchPairedExternalID
	// consults: only that connection's users, in this tenant, are in reach.
	PairedWith string
	// Disabled refuses every write from this connection with ErrForbidden.
	Disabled bool
	// Domains are the e-mail domains whose people sign in through this
	// connection (home realm discovery: Engine.Discover). Each must be one
	// of the tenant's VerifiedDomains (or a subdomain of one).
	Domains []string `json:"domains,omitempty"`

	// Protocol settings: the one of the connection's Kind, read by its
	// adapter (package scim, saml or ldap). A host that configures its
	// adapters itself (scim.TokenSet, saml.Config.Connections, ldap.Config)
	// may leave them nil; a registered connection (PutConnection) carries
	// them.
	SCIM *SCIMSettings `json:"scim,omitempty"`
	SAML *SAMLSettings `json:"saml,omitempty"`
	LDAP *LDAPSettings `json:"ldap,omitempty"`
	// JIT are the just-in-time switches of a login connection (SAML, or a
	// host's OpenID Connect code through package jit).
	JIT *JITSettings `json:"jit,omitempty"`
}

// SCIMSettings are a SCIM directory's protocol settings.
type SCIMSettings struct {
	// TokenHashes are the hashes (SHA-256) of the bearer tokens valid now;
	// during a rotation the old and the new one. Tokens themselves are
	// never stored.
	TokenHashes []TokenHash `json:"tokenHashes,omitempty"`
}

// SAMLSettings are a SAML connection's protocol settings.
type SAMLSettings struct {
	// IDPMetadataURL is where the IdP publishes its metadata; it is
	// fetched, and refreshed daily and after a signature failure, so a
	// certificate rotation at the IdP does not break sign-in.
	IDPMetadataURL string `json:"idpMetadataURL,omitempty"`
	// IDPMetadataXML is the IdP's metadata document itself, when it is
	// given as a file rather than a URL. One of the two is required.
	IDPMetadataXML string `json:"idpMetadataXML,omitempty"`
	// Mapping names a preset of package saml (okta, entra, adfs, google,
	// onelogin, shibboleth); empty is the default mapping.
	Mapping string `json:"mapping,omitempty"`
	// AllowIDPInitiated accepts unsolicited responses. Off by default:
	// they are prone to login CSRF.
	AllowIDPInitiated bool `json:"allowIdpInitiated,omitempty"`
	// InsecureAllowSHA1 accepts RSA-SHA1 signatures (an old ADFS). Off by
	// default.
	InsecureAllowSHA1 bool `json:"insecureAllowSHA1,omitempty"`
}

// LDAPSettings are an LDAP source's protocol settings.
type LDAPSettings struct {
	URL          string `json:"url"`
	BindDN       string `json:"bindDN,omitempty"`
	BindPassword Secret `json:"bindPassword,omitzero"`
	BaseDN       string `json:"baseDN"`
	// Preset names a preset of package ldap (ldap.Presets): openldap, 389,
	// ad, google, jumpcloud, okta, freeipa.
	Preset      string `json:"preset,omitempty"`
	UserFilter  string `json:"userFilter,omitempty"`
	GroupFilter string `json:"groupFilter,omitempty"`
	// Interval is the time between two syncs; zero is the ldap package's
	// default.
	Interval time.Duration `json:"interval,omitempty"`
	// TLSCAPEM pins the server's certificate authority (PEM); empty
	// trusts the system roots.
	TLSCAPEM string `json:"tlsCA,omitempty"`
	// TLSClientCertPEM and TLSClientKey are a client certificate and its
	// key (PEM), for a directory that demands one (Google Secure LDAP).
	TLSClientCertPEM string `json:"tlsClientCert,omitempty"`
	TLSClientKey     Secret `json:"tlsClientKey,omitzero"`
}

// JITSettings are the just-in-time provisioning switches of a login
// connection (see package jit).
type JITSettings struct {
	// Create lets a login create a user when none matched.
	Create bool `json:"create,omitempty"`
	// Update writes the login's attributes on every login.
	Update bool `json:"update,omitempty"`
	// AllowedEmailDomains, when not empty, refuses logins whose primary
	// e-mail is outside them.
	AllowedEmailDomains []string `json:"allowedEmailDomains,omitempty"`
	// Roles lets the login's roles become the user's direct roles.
	Roles bool `json:"roles,omitempty"`
}

// WebhookSettings say where a tenant's events are delivered.
type WebhookSettings struct {
	URL    string `json:"url"`
	Secret Secret `json:"secret,omitzero"`
}

// ResourceKind says whether a Link points at a user or a group.
type ResourceKind string

// The kinds of linked resource.
const (
	ResourceUser  ResourceKind = "user"
	ResourceGroup ResourceKind = "group"
)

// Link records that connection ConnectionID knows resource ResourceID by
// ExternalID. (TenantID, Kind, ConnectionID, ExternalID) is unique, and so is
// (TenantID, Kind, ConnectionID, ResourceID): a connection knows a resource
// by one id only. A resource may have many Links, one per connection.
type Link struct {
	TenantID     string
	Kind         ResourceKind
	ConnectionID string
	ExternalID   string
	ResourceID   string
	Created      time.Time
}

// Identity is what one connection says about one person: its stable
// external id and the attributes normalized into a User. Adapters produce
// Identities; they never name a User.
type Identity struct {
	// ConnectionID is the connection that asserted the identity.
	ConnectionID string
	// ExternalID is the connection's stable, immutable id for the person:
	// SCIM externalId, LDAP entryUUID or objectGUID, a SAML persistent
	// subject or a configured immutable attribute. Never an e-mail address.
	ExternalID string
	// User holds the normalized attributes. Its ID, Owner, Version and
	// timestamps are ignored.
	User User
	// Raw holds the attributes as the source sent them, for the audit trail
	// and for host-specific mappings. The engine does not store it.
	Raw map[string][]string
	// Groups are the source's references to the groups the person is in,
	// as a login sent them (group object ids, names or DNs), for access
	// mapping. Nil means the source said nothing about groups; non-nil and
	// empty means it said "no groups".
	Groups []string
	// GroupsUnknown says the source could not list the groups (Microsoft
	// Entra ID's groups overage claim): the membership is unknown, not
	// empty, and must be left as it is. Groups is nil then.
	GroupsUnknown bool
}

// Name is a person's name, as SCIM's name complex attribute.
type Name struct {
	Formatted       string `json:"formatted,omitempty"`
	FamilyName      string `json:"familyName,omitempty"`
	GivenName       string `json:"givenName,omitempty"`
	MiddleName      string `json:"middleName,omitempty"`
	HonorificPrefix string `json:"honorificPrefix,omitempty"`
	HonorificSuffix string `json:"honorificSuffix,omitempty"`
}

// Email is one e-mail address of a user.
type Email struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Display string `json:"display,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// PhoneNumber is one phone number of a user.
type PhoneNumber struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Display string `json:"display,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// Address is one postal address of a user.
type Address struct {
	Formatted     string `json:"formatted,omitempty"`
	StreetAddress string `json:"streetAddress,omitempty"`
	Locality      string `json:"locality,omitempty"`
	Region        string `json:"region,omitempty"`
	PostalCode    string `json:"postalCode,omitempty"`
	Country       string `json:"country,omitempty"`
	Type          string `json:"type,omitempty"`
	Primary       bool   `json:"primary,omitempty"`
}

// Role is one role of a user, with where it came from.
type Role struct {
	// Value is the host-defined role name.
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	// Source is the provenance: "direct" for a role the identity provider
	// assigned, "rule:<id>" for one an access rule mapped.
	Source string `json:"source,omitempty"`
}

// User is an account in a tenant. It carries the SCIM core and enterprise
// attributes; anything else an identity provider sends is kept in
// Attributes as sent.
type User struct {
	// ID is assigned by the Store on create and never changes.
	ID       string `json:"id"`
	TenantID string `json:"tenantId"`
	// ExternalID is the id the calling connection knows this user by. The
	// engine keeps it as a Link, fills it on reads for the calling
	// connection, and clears it before handing a User to the Store.
	ExternalID string `json:"externalId,omitempty"`
	// UserName is unique per tenant among live (not deleted) users,
	// compared case-insensitively. Required.
	UserName          string        `json:"userName"`
	Name              Name          `json:"name"`
	DisplayName       string        `json:"displayName,omitempty"`
	NickName          string        `json:"nickName,omitempty"`
	ProfileURL        string        `json:"profileUrl,omitempty"`
	Title             string        `json:"title,omitempty"`
	UserType          string        `json:"userType,omitempty"`
	PreferredLanguage string        `json:"preferredLanguage,omitempty"`
	Locale            string        `json:"locale,omitempty"`
	Timezone          string        `json:"timezone,omitempty"`
	Active            bool          `json:"active"`
	Emails            []Email       `json:"emails,omitempty"`
	PhoneNumbers      []PhoneNumber `json:"phoneNumbers,omitempty"`
	Addresses         []Address     `json:"addresses,omitempty"`
	Roles             []Role        `json:"roles,omitempty"`

	// Enterprise extension (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User).
	EmployeeNumber string `json:"employeeNumber,omitempty"`
	CostCenter     string `json:"costCenter,omitempty"`
	Organization   string `json:"organization,omitempty"`
	Division       string `json:"division,omitempty"`
	Department     string `json:"department,omitempty"`
	// Manager is the manager's user ID in this tenant, or the value the
	// identity provider sent when it names no user here.
	Manager string `json:"manager,omitempty"`

	// Attributes holds every other attribute as sent, keyed by its name
	// (fully qualified with its schema URN for extension attributes).
	Attributes map[string]json.RawMessage `json:"attributes,omitempty"`

	// Owner is the ConnectionID that manages this user, or APIConnection.
	Owner string `json:"owner"`
	// Version increases by one on every stored change. It is the SCIM ETag.
	Version int64     `json:"version"`
	Created time.Time `json:"created"`
	// Modified is the time of the last stored change.
	Modified time.Time `json:"modified"`
	// Deleted is the tombstone time; zero for a live user. A deleted user
	// is invisible to reads through the engine and ignored by userName
	// uniqueness, but its Links are kept.
	Deleted time.Time `json:"deleted,omitzero"`
}

// IsDeleted reports whether u is a tombstone.
func (u User) IsDeleted() bool { return !u.Deleted.IsZero() }

// PrimaryEmail returns the primary e-mail address, else the first one,
// else "".
func (u User) PrimaryEmail() string {
	for _, e := range u.Emails {
		if e.Primary {
			return e.Value
		}
	}
	if len(u.Emails) > 0 {
		return u.Emails[0].Value
	}
	return ""
}

// Group is a group of users in a tenant. Membership is a separate relation
// (Store.AddMembers and friends), so a Group value never holds its members;
// a membership change bumps Version (and Modified) once, whatever the
// group's size, so the group's ETag protects a replace of its members.
type Group struct {
	ID       string `json:"id"`
	TenantID string `json:"tenantId"`
	// ExternalID is the id the calling connection knows this group by; see
	// User.ExternalID.
	ExternalID string `json:"externalId,omitempty"`
	// DisplayName is unique among the groups of one Owner,
	// case-insensitively. Required.
	DisplayName string                     `json:"displayName"`
	Attributes  map[string]json.RawMessage `json:"attributes,omitempty"`
	Owner       string                     `json:"owner"`
	Version     int64                      `json:"version"`
	Created     time.Time                  `json:"created"`
	Modified    time.Time                  `json:"modified"`
}

// Origin says who asks for a change or a read: the tenant, the connection
// (empty or APIConnection for the host's admin calls), and for the audit
// trail the actor and the request id.
type Origin struct {
	TenantID     string
	ConnectionID string
	Actor        string
	RequestID    string
}

func (o Origin) connection() string {
	if o.ConnectionID == "" {
		return APIConnection
	}
	return o.ConnectionID
}

// EventKind names what happened.
type EventKind string

// The kinds of Event.
const (
	UserCreated         EventKind = "user.created"
	UserUpdated         EventKind = "user.updated"
	UserDeactivated     EventKind = "user.deactivated"
	UserReactivated     EventKind = "user.reactivated"
	UserDeleted         EventKind = "user.deleted"
	GroupCreated        EventKind = "group.created"
	GroupUpdated        EventKind = "group.updated"
	GroupDeleted        EventKind = "group.deleted"
	GroupMembersAdded   EventKind = "group.members_added"
	GroupMembersRemoved EventKind = "group.members_removed"
	ConnectionActivated EventKind = "connection.activated"
	ConnectionUpdated   EventKind = "connection.updated"
	ConnectionDeleted   EventKind = "connection.deleted"
)

// Change is one atomic intent the engine applied, handed to Config.OnChange
// inside the transaction. Before is nil for a create; After is the last
// snapshot for a delete.
type Change struct {
	Kind   EventKind
	Origin Origin
	// Fields names the attributes that changed (SCIM names, dotted for
	// sub-attributes: "name.givenName", "emails", "active").
	Fields      []string
	UserBefore  *User
	UserAfter   *User
	GroupBefore *Group
	GroupAfter  *Group
	// Members are the user IDs added or removed by a membership change.
	Members []string
	// Connection is the connection activated or deleted, for
	// connection.activated and connection.deleted.
	Connection *Connection
}

// Event is what happened, as the host sees it: the audit trail and how it
// reacts (end sessions on user.deactivated, send webhooks).
type Event struct {
	// Seq increases strictly, without gaps, per tenant. It is assigned by
	// the EventLog when the event is appended; 0 for best-effort events
	// from a store without EventLog.
	Seq          int64     `json:"seq"`
	Kind         EventKind `json:"kind"`
	TenantID     string    `json:"tenantId"`
	ConnectionID string    `json:"connectionId,omitempty"`
	Actor        string    `json:"actor,omitempty"`
	RequestID    string    `json:"requestId,omitempty"`
	Time         time.Time `json:"time"`
	// User is the user after the change (the last snapshot for a delete).
	User *User `json:"user,omitempty"`
	// Group is the group after the change (the last snapshot for a
	// delete, or the group whose members changed).
	Group *Group `json:"group,omitempty"`
	// Fields names the attributes that changed.
	Fields []string `json:"fields,omitempty"`
	// PreviousUser and PreviousGroup hold the values before the change;
	// read the attributes named in Fields from them.
	PreviousUser  *User  `json:"previousUser,omitempty"`
	PreviousGroup *Group `json:"previousGroup,omitempty"`
	// Members are the user IDs added or removed.
	Members []string `json:"members,omitempty"`
	// Connection is the connection activated or deleted (its ID is also
	// ConnectionID), for connection.activated and connection.deleted.
	Connection *Connection `json:"connection,omitempty"`
}
