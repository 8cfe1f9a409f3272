// Package provision is the heart of idprov: the identity model, the Store
// contract and the Engine that every protocol adapter (SCIM, SAML
// just-in-time, LDAP) goes through.
//
// # The model
//
// A Tenant is one customer company of the host application. It has
// Connections, its sources of identities: SCIM directories, SAML
// connections, LDAP sources. What a connection says about a person is an
// Identity, keyed by the connection's stable external id (never an e-mail
// address). A Link ties (tenant, connection, external id) to the tenant's
// User or Group; a user may have many links, one per connection. Users
// carry the SCIM core and enterprise attributes plus free-form
// Attributes; groups hold no members themselves: membership is a
// separate relation, so a change to a 100,000-member group costs the same
// as to a 10-member one.
//
// # The engine
//
// Tenants and their connections are data: registered in the Store's
// Registry (PutTenant, PutConnection, DeleteConnection) and followed by
// every engine sharing the Store, or declared by the host's configuration
// (Config.Tenants). One Connection carries the matching rules
// and the protocol settings its adapter reads (SCIM token hashes, SAML
// metadata, LDAP URL and bind, JIT switches), with its secrets sealed by
// Config.SecretKeys.
//
// NewEngine takes a Config with a Store and the tenants. Each lifecycle
// intent is one method (CreateUser, UpdateUser, DeactivateUser,
// ReactivateUser, DeleteUser, CreateGroup, UpdateGroup, ...), called with an
// Origin naming the tenant and the connection. The engine validates input,
// resolves identities through links (ProvisionIdentity applies the
// connection's match rules on first contact), enforces tenancy and
// ownership (a connection changes only what it owns, unless the tenant's
// adoption policy lets it take over), computes changed fields, and applies
// the change in one Store transaction together with the host's OnChange
// hook and the change's Events.
//
// The failure semantics are the same for every adapter: a change with no
// changed field writes nothing and emits nothing; a retried create of a
// user is a *ConflictError naming the existing user (as a SCIM POST must
// answer), of a group it returns the group; a membership change bumps the
// group's version; unknown or foreign member ids are refused and nothing
// is applied; a delete is a tombstone that no login brings back;
// version conflicts are retried unless the caller pinned a version.
//
// A change that crosses a safety threshold (a replace of a group's members
// that drops many of them, Config.HoldMemberDrops; an LDAP sync's mass
// deactivation) and a previewed change of access rules (PlanAccessRules)
// are held as a Plan: Plans lists a tenant's plans of every kind with their
// full size, Plan pages through one's changes, ConfirmPlan applies one,
// DiscardPlan drops one.
//
// What only protocol adapters need (per-tenant key-value state, locks
// across replicas, refusals for the audit trail, the meter provider) is
// not on the Engine: AdapterOf(engine) returns it, so that `go doc
// provision Engine` lists what a host calls.
//
// # Events
//
// Every change emits Events (user.created, user.deactivated, ...), ordered
// per tenant by Seq. With a Store that has the EventLog capability they
// are appended in the same transaction as the change, and Consume delivers
// them to a named consumer at least once, in order, resuming from a stored
// cursor: the way to end a fired employee's sessions reliably.
//
// # Setup links
//
// CreateSetupLink gives a host a link for one tenant's IT admin to set up
// its connections alone (the guided setups of packages saml, scim and
// ldap): the secret is stored as a SHA-256 digest only, the link expires
// and can be revoked (RevokeSetupLink), and what is done through it
// carries the link as Actor. SetupLinkBySecret resolves it;
// WithSetupLink hands it to the setup handlers.
//
// # Stores
//
// Store is small and typed; Searcher, EventLog, KV and Locker are optional
// capabilities, each with a fallback documented on its interface.
// store/memstore and store/sqlstore implement them all, and
// store/storetest is the conformance suite any implementation runs.
package provision
