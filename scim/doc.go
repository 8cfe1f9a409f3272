// Package scim is idprov's SCIM 2.0 server (RFC 7643, RFC 7644): an
// http.Handler that Okta, Microsoft Entra ID and other identity providers
// provision users and groups into, multi-tenant by bearer token.
//
// # Use
//
// Declare each customer's SCIM directory as a connection of its tenant to
// the provision.Engine with the hash of its bearer token (declared, or
// registered with Engine.PutConnection), and mount the handler under any
// prefix:
//
//	token, _ := scim.GenerateToken() // show it once to acme's Okta admin
//	engine, _ := provision.NewEngine(provision.Config{
//		Store: memstore.New(),
//		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{
//			{ID: "okta", Kind: provision.KindSCIM, SCIM: &provision.SCIMSettings{
//				TokenHashes: []provision.TokenHash{scim.HashToken(token)}}},
//		}}},
//	})
//	h, _ := scim.New(scim.Config{Engine: engine})
//	mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
//
// The identity provider's administrator enters the base URL
// (https://app.example.com/scim/v2) and the token. The bearer token
// selects the directory, and so the tenant and the connection every change
// is made as: one tenant's token never reaches another tenant's data.
//
// Tokens are kept only as SHA-256 hashes (HashToken, TokenHash.String and
// ParseTokenHash for configuration) and never logged. To rotate, put the
// connection with the old and the new hash (Engine.PutConnection), let the
// identity provider switch, then with the new hash only. A host that keeps
// its directories elsewhere sets Config.Authenticator (a TokenSet, or its
// own implementation) instead.
//
// # What the handler does
//
// A thin front authenticates the request (401 with a SCIM error body),
// applies the directory's rate limit (429 with Retry-After), limits the
// body (413), folds endpoint names to their canonical case and drops
// trailing slashes, and normalizes the dialects of Okta and Entra: "True"
// and "False" strings for booleans, a bare-string enterprise manager,
// attributes of extensions the server does not define (kept in
// User.Attributes and Group.Attributes under their fully qualified names),
// Entra's `emails[type eq "work"].value eq "x"` filters (parsed by
// provision/filter). One elimity-com/scim Server per handler then routes,
// validates bodies and PATCH operations against the schemas, and answers
// the discovery endpoints (/ServiceProviderConfig, /ResourceTypes,
// /Schemas). A POST of a user or group and a PATCH are validated by the
// front itself, with elimity's rules against schemas built once, and
// served without elimity's second decode and validation; a request elimity
// would refuse still goes to elimity, so every error answer is elimity's.
// The resource handlers of this package apply PATCH operations to the user
// or group and call the engine, which enforces tenancy and
// ownership, computes the change, stores it and records its events.
//
// Semantics, as Okta and Entra expect them:
//
//   - POST answers 201 with the full resource, its id, meta and ETag; a
//     taken userName (case-insensitive) or group displayName is 409 with
//     scimType uniqueness, and so is a second create of an existing user
//     (same userName and externalId: RFC 7644 section 3.3; Okta and Entra
//     then look it up); a group's retried create returns the group.
//   - PATCH accepts both Entra dialects and Okta's path-less replace (which
//     merges: {"active":false} touches only active), every member add and
//     remove style (idempotent), and value-path operations such as
//     emails[type eq "work"].value, which create the element when absent.
//     A user PATCH answers 200 with the user; a group PATCH answers 204.
//   - PUT replaces the attributes the body's schemas cover; extension
//     blocks it does not carry are kept, and so are active and externalId
//     when absent.
//   - active=false is a soft delete: the user is still returned by GET and
//     filters. DELETE is the engine's tombstone: 204, then 404.
//   - Lists are ListResponses with integer counts, Resources always an
//     array, a stable order and count clamped to MaxResults; an unknown
//     userName (Entra's Test Connection) is 200 with no resources.
//   - A password is write-only: handed once to Config.SetPassword, never
//     stored, returned or logged.
//   - Every error is a SCIM Error body; store unavailability is 503 with
//     Retry-After.
//
// # Beyond what Okta and Entra need
//
// The handler renders every resource itself (elimity's rendering lists
// the registered extensions in schemas whatever the resource holds, and
// projects nothing): schemas names the extension blocks the resource
// carries, custom ones included, and attributes / excludedAttributes
// shape every answer. A group's members are read only when the answer
// shows them. Lists and searches take sortBy and sortOrder. A resource's
// Version is its ETag (W/"3"): If-Match on PUT, PATCH and DELETE pins the
// change (412 when stale, never retried), If-None-Match on a GET answers
// 304. POST /Bulk runs operations with bulkId references and failOnErrors
// within Config.Bulk; POST /Users/.search, /Groups/.search and /.search
// search as a GET would. /ServiceProviderConfig advertises exactly this,
// with the limits.
//
// # Request log and health
//
// New returns the *Handler, which keeps each directory's recent requests
// and answers, redacted, with their correlation ids (X-Request-Id), and
// tells how the directory is doing: Handler.RequestLog, Handler.Health,
// Handler.Healths. See RequestLogConfig, Dialect and Health.
//
// # Guided setup
//
// NewSetup is the guided setup a customer's IT admin follows through a
// setup link (provision.Engine.CreateSetupLink): the IdP's steps and
// attribute mapping, a token shown once (rotation with overlap, revoke),
// and the requests received so far.
//
// # Testing a host's mount
//
// Package scimtest replays recorded Okta and Entra lifecycles against a
// host's own mounted handler and Store, step by step.
package scim
