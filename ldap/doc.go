// Package ldap syncs users and groups from an LDAP directory (OpenLDAP, 389
// Directory Server, Active Directory and Samba AD, FreeIPA, and the hosted
// Google Secure LDAP, JumpCloud and Okta LDAP Interface) into a
// provision.Engine: the pull side of idprov, next to SCIM's push and SAML's
// just-in-time.
//
// A Syncer serves one LDAP connection of one tenant:
//
//	s, err := ldap.NewSyncer(ldap.Config{
//		Engine: eng, TenantID: "acme", ConnectionID: "corp-ldap",
//		URL: "ldaps://ldap.acme.example", BindDN: "cn=idprov-sync,dc=acme,dc=example", BindPassword: pw,
//		UserBaseDN: "ou=people,dc=acme,dc=example", GroupBaseDN: "ou=groups,dc=acme,dc=example",
//	})
//	go s.Run(ctx) // push (syncrepl) or incremental every 5 minutes, full every 6 hours
//
// Plan reports what a sync would change without applying anything; Sync
// runs a full sync and SyncChanges an incremental one, each returning a
// Report (created, updated, deactivated, reactivated, unchanged, skipped
// with reasons, duration). While a sync runs, Progress reports its phase
// and the entries read so far, with the rate: a long full sync can be
// followed from another goroutine (an admin page).
//
// # Identity
//
// An entry is known by its server-assigned stable id (entryUUID,
// nsUniqueId, objectGUID: Mapping.ID), which becomes the Link's
// ExternalID, never by its DN: a rename (modrdn) or a move is an update of
// the same user. The DN is used only to resolve group members.
// objectGUID's 16 bytes are rendered in the mixed-endian form Active
// Directory itself shows (<GUID=f673ddf1-5059-4402-...>).
//
// # Full and incremental syncs
//
// A full sync streams every user and group entry in scope (SearchAsync
// with a paging control, two pages in memory at most: never
// SearchWithPaging, which holds the whole directory), applies each entry
// through Engine.ProvisionIdentity, and then sweeps: the users this
// connection owns whose entries it did not see are deactivated, never
// deleted. Users other connections own (SCIM, SAML, the admin API) are
// never touched, and an entry whose userName another connection's user
// holds is skipped with its reason.
//
// An incremental sync reads only the changes: with RFC 4533 syncrepl
// (refreshOnly, or refreshAndPersist under Run: see Push) from a cookie
// stored in the Engine's KV, where the server
// offers it (adds, modifications, renames, moves and deletes, all by
// entryUUID; a refresh without changes keeps the old cookie; deletes of
// unknown ids are ignored; e-syncRefreshRequired falls back to a full
// sync); on Active Directory with DirSync (below); otherwise by
// modifyTimestamp, which cannot see deletes, so the periodic full sync
// sweeps them.
//
// # Push
//
// Where the incremental mode is syncrepl, Run keeps an RFC 4533
// refreshAndPersist search open per base (users, groups) on one
// connection between full syncs (Config.Push): the refresh from the
// stored cookie applies what changed while no search was open, and then
// every change the server sends is applied as it arrives, a burst as one
// batch, with the cookie stored after each batch. A search that fails is
// reopened with a backoff from the stored cookie; nothing is deactivated
// by an outage (a present phase sweeps only when its refresh completed).
// e-syncRefreshRequired, a due full sync or an unusable cursor end it for
// a round of Run. Status says whether the connection is pushed
// (StatusPersist) or polled (StatusPoll). Deactivations pushed within the
// last Config.Interval count against the thresholds together. The search
// holds the connection's lock; the other replicas try to take it every
// 15 s (or Interval, if shorter), so one of them takes over the push
// when the pushing replica stops.
//
// # Restarts
//
// What an incremental sync needs besides the cookie (which DN and uid is
// which user, renamed users' old DNs, the groups' member DNs for
// flattening nested groups, the engine ids, a hash of the members last
// applied) is kept in the Engine's KV in buckets by entry id: a full
// sync writes them all under a new generation, an incremental sync
// appends a journal record of the entries it changed (checksummed; the
// cursor stored after it names it), and once the journal passes a bound
// a sync compacts it into the buckets it touched. What a full sync or a
// compaction replaced is deleted once the new cursor is stored; the
// cursor lists it until then, so a delete the store refused is tried
// again at the next sync, and the state a cursor names is never
// deleted. A new Syncer (a restarted process, another replica) loads the buckets, applies the
// journal and continues from the stored cookie; only a state it cannot
// read (a bucket or journal record missing, cut or damaged) runs a full
// sync. At 100,000 users its first sync after 1,000 changes took 1.4 to
// 4.0 % of a full sync (six runs of TestMeasure).
// In memory, a sync holds a page of entries and compact per-entry state,
// never entries: a 24-byte record per user (64-bit hashes of its DN and
// uid, references to its id and engine id in a byte arena, where a UUID
// takes 17 bytes), found through open-addressing tables of 4-byte record
// indexes, and per group its member DN hashes and the records of the
// members last applied: about 75 bytes a user. Past the first few
// thousand users, the records, the arena and the tables are kept in
// anonymous memory mappings off the Go heap, unmapped once the Syncer
// lets go of them: on the heap, the collector's pacing would let as much
// garbage again accumulate beside them, and they would cost twice their
// size. The idprov.ldap.state.size gauge reports both parts, since
// runtime.MemStats does not see the mapped one. A full sync into a store
// that discards peaked at 32 to 34 MB resident at 30,000 users, 44 to 47
// MB at 100,000 and 55 MB at 300,000 (1.6x), next to 23 to 45 MB for a
// bare go-ldap read of the same entries, and 34, 47 to 52 and 71 to 73
// MB with the state on the heap (TestMeasure). In a process with no heap
// of its own the collector then runs more often (the sync's CPU 1.5x); in
// one that holds a heap of 128 MB, as a host does, the CPU is the same.
//
// # Active Directory
//
// The ActiveDirectory mapping reads users by objectGUID,
// userPrincipalName, mail and the usual person attributes, disabled
// accounts from userAccountControl's ACCOUNTDISABLE bit (lockoutTime and
// accountExpires on request), and groups from member, nested groups
// flattened. Values AD returns in ranges (member;range=0-1499, past
// MaxValRange) are read to the end; pages are capped by the server
// (MaxPageSize, 1,000) and simply continue; continuation references
// (CN=Configuration below a domain root) are ignored and counted unless
// Config.ReferralsIncomplete.
//
// Under Run, where the DC offers change notification
// (LDAP_SERVER_NOTIFICATION_OID, 1.2.840.113556.1.4.528), two
// notification searches (the user and group bases, within AD's five per
// connection) wake a DirSync pass as soon as an object changes; the
// DirSync poll every Config.Interval stays as the fallback, and is all
// there is without the control (Status says StatusNotify or StatusPoll).
//
// Incremental syncs use DirSync (1.2.840.113556.1.4.841) from a cookie
// taken before the last full sync read: a fresh request per call, looping
// while the server sets the more-data flag. Deleted objects arrive as
// tombstones (isDeleted) and deactivate their users; changed objects
// arrive with only their changed attributes, so they are re-read whole by
// objectGUID within the configured bases and filters (an object that
// changed and is no longer in scope is gone). DirSync needs the
// "Replicating Directory Changes" right on the domain; when it is refused
// the Syncer polls uSNChanged instead (Report.Note says so), which sees
// deletes only as tombstones the account may read. Membership changes are
// read through groups: AD does not touch a user's uSNChanged when its
// groups change. The cursor records the domain controller it came from
// (dsServiceName, and invocationId, which a restore from backup changes):
// a uSNChanged cursor is useless on another DC, and a DirSync cookie
// another DC rejects, or any cursor of a restored DC, runs a full sync.
//
// # Safety
//
// A search that fails, times out, is cut off by a limit, ends without its
// final control (a connection killed mid-sync), or returns zero entries
// never counts as "entries gone": nothing is swept. Deactivations beyond
// Config.MaxDeactivations (500) or Config.MaxDeactivationShare (20 % of the
// connection's active users) in one sync are not applied: they are held as
// a plan of kind provision.PlanDeactivations, among the tenant's other held
// plans, while creates and updates go on; provision.Engine.ConfirmPlan
// applies it (waiting for a running sync), DiscardPlan drops it. Cancelling the context stops a
// sync promptly (the connection is closed).
//
// # Disabled users and groups
//
// An entry matching a Mapping.Disabled rule (OpenLDAP: pwdAccountLockedTime
// present; 389: nsAccountLock=TRUE) deactivates its user, and enabling it
// again reactivates the user. Groups (groupOfNames member,
// groupOfUniqueNames uniqueMember, posixGroup memberUid) become Engine
// groups owned by the connection, linked by the group's entryUUID, whose
// members are user ids; nested groups are flattened, cycles broken.
//
// # Hosted directories and presets
//
// Presets lists the defaults a host offers for provision.LDAPSettings.Preset
// (PresetNamed, Preset.Apply): openldap, 389 and ad, and four directories
// a SaaS reaches over the internet, each with its mapping, the
// containers of users and groups below the base DN and its TLS demands:
//
//   - google (GoogleSecureLDAP): ldaps://ldap.google.com:636 with a TLS
//     client certificate, bound by SASL EXTERNAL (Config.SASLExternal) or
//     with generated access credentials; ou=Users and ou=Groups. The
//     customer's admin adds an LDAP client in the Admin console (Apps >
//     LDAP) with "Read user information" and "Read group information",
//     turns it on, and hands over its certificate and key.
//   - jumpcloud (JumpCloud): ldaps://ldap.jumpcloud.com:636, users and the
//     LDAP-enabled groups in ou=Users,o=<orgId>,dc=jumpcloud,dc=com; the
//     admin makes a user an LDAP bind DN and enables LDAP on each group.
//   - okta (OktaLDAPInterface): ldaps://<org>.ldap.okta.com:636 or
//     StartTLS on 389, ou=users and ou=groups (groupOfUniqueNames) under
//     dc=<org>,dc=okta,dc=com; the admin turns on the LDAP Interface and
//     gives a read-only admin user without MFA to bind as.
//   - freeipa (FreeIPA): cn=users,cn=accounts and cn=groups,cn=accounts,
//     ipaUniqueID, nsAccountLock=TRUE disabled; the admin adds a system
//     account under cn=sysaccounts,cn=etc and hands over the IPA CA.
//
// # Guided setup
//
// NewSetup is the guided setup a customer's IT admin follows through a
// setup link (provision.Engine.CreateSetupLink): the settings, then a test
// that binds, reads the root DSE and shows the dry run of the first sync;
// the connection is held (SetupHeld) until the admin starts syncing.
//
// # Testing
//
// Package ldaptest starts a real slapd in a temporary directory for tests,
// with the overlays a sync needs (syncprov, memberof, refint, ppolicy);
// package adtest provisions a Samba AD domain controller.
package ldap
