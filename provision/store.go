package provision

import (
	"context"
	"errors"
	"time"

	"github.com/idprov/idprov/provision/filter"
)

// Page selects a window of a stable-ordered list: Offset entries skipped,
// at most Limit returned. Limit 0 means no entries (only the total).
type Page struct {
	Offset int
	Limit  int
}

// Store is the persistence the Engine writes through.
//
// Conventions every method follows: a Limit of 0 returns no entries;
// case-insensitive comparisons fold at least ASCII letters; times are kept
// with at least microsecond precision and returned in UTC; returned values
// are copies the caller may modify. It is the required
// core every implementation has: small, typed, context first, and scoped by
// tenant on every call: no call for one tenant may read or change another
// tenant's data, and a resource of another tenant is ErrNotFound.
//
// The Engine is the only writer. It validates input, computes diffs,
// enforces ownership and fills timestamps; a Store only persists and
// enforces the invariants below, reporting them with the sentinel errors
// (ErrNotFound, ErrAlreadyExists, ErrVersionConflict, ErrUnavailable),
// wrapped as it likes and checked with errors.Is.
//
// Run storetest.Run against an implementation: it is the definition of a
// correct Store.
type Store interface {
	// GetUser returns the user with id, tombstones included.
	GetUser(ctx context.Context, tenantID, id string) (User, error)
	// UserByUserName returns the live user whose UserName equals userName
	// case-insensitively (tombstones are ignored).
	UserByUserName(ctx context.Context, tenantID, userName string) (User, error)
	// UsersByEmail returns the live users having an e-mail address equal to
	// email case-insensitively, in ID order.
	UsersByEmail(ctx context.Context, tenantID, email string) ([]User, error)
	// ListUsers returns the live users in a stable order (the same order on
	// every call, new users after old ones or by ID) and their exact total.
	ListUsers(ctx context.Context, tenantID string, p Page) ([]User, int, error)
	// CreateUser stores u as a new user of u.TenantID. It assigns u.ID when
	// empty (a non-empty ID already used in the tenant is ErrAlreadyExists)
	// and sets Version to 1. A live user with the same UserName
	// (case-insensitive) is ErrAlreadyExists.
	CreateUser(ctx context.Context, u User) (User, error)
	// UpdateUser replaces the stored user u.ID with u if its Version is
	// expectedVersion (else ErrVersionConflict) and sets Version to
	// expectedVersion+1. Setting Deleted makes the user a tombstone. The
	// UserName uniqueness of CreateUser applies.
	UpdateUser(ctx context.Context, u User, expectedVersion int64) (User, error)
	// DeletedUsers returns at most limit tombstones deleted before the
	// given time, oldest first.
	DeletedUsers(ctx context.Context, tenantID string, before time.Time, limit int) ([]User, error)
	// PurgeUser removes a user for good, with its Links and memberships.
	PurgeUser(ctx context.Context, tenantID, id string) error

	// GetGroup returns the group with id.
	GetGroup(ctx context.Context, tenantID, id string) (Group, error)
	// GroupsByDisplayName returns the groups whose DisplayName equals name
	// case-insensitively (one per owner at most), in ID order.
	GroupsByDisplayName(ctx context.Context, tenantID, name string) ([]Group, error)
	// ListGroups returns the groups in a stable order and their exact
	// total.
	ListGroups(ctx context.Context, tenantID string, p Page) ([]Group, int, error)
	// CreateGroup stores g, assigning ID when empty (a non-empty ID
	// already used in the tenant is ErrAlreadyExists) and setting Version
	// 1. A group of the same Owner with the same DisplayName
	// (case-insensitive) is ErrAlreadyExists.
	CreateGroup(ctx context.Context, g Group) (Group, error)
	// UpdateGroup replaces the stored group like UpdateUser does. It
	// never touches the group's members, and its cost does not depend on
	// their number: in the transaction of a membership change the engine
	// bumps the group's Version (its ETag) and Modified with it, at the
	// expected Version, when the client pinned the version or the Store
	// has no GroupVersionBumper.
	UpdateGroup(ctx context.Context, g Group, expectedVersion int64) (Group, error)
	// DeleteGroup removes the group, its memberships and its Links, if its
	// Version is expectedVersion.
	DeleteGroup(ctx context.Context, tenantID, id string, expectedVersion int64) error

	// AddMembers and RemoveMembers leave the group's Version and Modified
	// alone (the engine bumps them: GroupVersionBumper, else UpdateGroup).
	//
	// AddMembers makes the users members of the group and returns the IDs
	// that were not members before, in the order given. Adding a member
	// again is not an error. The group and every user must exist, live
	// (not deleted), in the tenant, else ErrNotFound and nothing is added. Its cost does not
	// depend on the group's size.
	AddMembers(ctx context.Context, tenantID, groupID string, userIDs []string) ([]string, error)
	// RemoveMembers removes the users from the group and returns the IDs
	// that were members, in the order given. Removing a non-member is not
	// an error. A missing group is ErrNotFound.
	RemoveMembers(ctx context.Context, tenantID, groupID string, userIDs []string) ([]string, error)
	// ListMembers returns the group's member user IDs in a stable order and
	// their exact total.
	ListMembers(ctx context.Context, tenantID, groupID string, p Page) ([]string, int, error)
	// IsMember reports whether the user is a member of the group. An
	// unknown group is ErrNotFound.
	IsMember(ctx context.Context, tenantID, groupID, userID string) (bool, error)
	// GroupsOfUser returns the IDs of the groups the user is a member of,
	// in ID order. An unknown user is ErrNotFound.
	GroupsOfUser(ctx context.Context, tenantID, userID string) ([]string, error)

	// GetLink returns the link of (kind, connectionID, externalID).
	GetLink(ctx context.Context, tenantID string, kind ResourceKind, connectionID, externalID string) (Link, error)
	// LinksOf returns every link to the resource, ordered by ConnectionID.
	LinksOf(ctx context.Context, tenantID string, kind ResourceKind, resourceID string) ([]Link, error)
	// CreateLink stores l. A link with the same (Kind, ConnectionID,
	// ExternalID), or the same (Kind, ConnectionID, ResourceID), is
	// ErrAlreadyExists. The resource must exist in the tenant (a deleted
	// user counts: links outlive the tombstone), else ErrNotFound.
	CreateLink(ctx context.Context, l Link) error
	// DeleteLink removes the link of (kind, connectionID, externalID); a
	// missing link is ErrNotFound.
	DeleteLink(ctx context.Context, tenantID string, kind ResourceKind, connectionID, externalID string) error

	// Atomically runs fn with a Store whose calls all commit together when
	// fn returns nil, or not at all when it returns an error (which
	// Atomically returns) or panics (rolled back, then the panic goes on).
	// Reads through tx see tx's own writes. A call through tx that fails
	// with a sentinel error (a lookup's ErrNotFound, a uniqueness
	// ErrAlreadyExists) changes nothing and leaves tx usable (SQL stores
	// use savepoints). Calling Atomically on tx runs fn in the same
	// transaction as a savepoint: an error undoes that call's writes only,
	// and is returned to the enclosing fn, which decides. fn must use only
	// tx: calling the outer Store from fn may deadlock or run outside the
	// transaction.
	// Capabilities (EventLog, KV) reached through tx are part of the
	// transaction too; tx must not be used after Atomically returns.
	//
	// Writers of one resource should queue rather than conflict: GetUser
	// and GetGroup through tx lock the resource they read until the
	// transaction ends (SQL: SELECT ... FOR UPDATE), unless the store runs
	// one write transaction at a time anyway (memstore, SQLite). Then a
	// change that pinned no version never meets ErrVersionConflict; the
	// engine still retries the conflicts of a store that does not, with
	// backoff, for a few seconds.
	Atomically(ctx context.Context, fn func(ctx context.Context, tx Store) error) error
}

// Search is a query for a Searcher: a filter, a sort and a page.
type Search struct {
	// Filter selects the resources; nil selects all. It never names
	// externalId (nor does SortBy): externalId is per connection, and the
	// engine resolves it through Links before calling a Searcher. Matching
	// must agree with MatchUser and MatchGroup.
	Filter filter.Expr
	// SortBy is an attribute path ("userName", "name.familyName",
	// "meta.created"); empty means the store's stable order.
	SortBy string
	// Descending reverses the sort.
	Descending bool
	Page       Page
}

// Searcher is the optional filter pushdown capability: a Store that can
// answer a filter itself (from its indexes or in SQL).
//
// Without it, the engine answers filters from the core lookups (userName,
// email, displayName, externalId and id equality) and otherwise scans at
// most Config.ScanLimit resources of the tenant, answering ErrTooMany past
// that bound.
type Searcher interface {
	// SearchUsers returns the live users matching s.Filter, in s's order,
	// and the exact number of matches.
	SearchUsers(ctx context.Context, tenantID string, s Search) ([]User, int, error)
	// SearchGroups does the same for groups.
	SearchGroups(ctx context.Context, tenantID string, s Search) ([]Group, int, error)
}

// EventLog is the optional durable event log capability. When a Store has
// it, the engine appends every change's events through the transaction's
// Store, so they commit with the change and are lost with a rollback, and
// Engine.Consume reads them after a stored cursor.
//
// Without it, events are best-effort: handed to Consume's running
// consumers after commit, lost if none runs or the process ends, and the
// engine logs a warning saying so at construction.
type EventLog interface {
	// AppendEvents appends events (all of tenantID) and returns them with
	// Seq assigned: starting at 1, strictly increasing per tenant with no
	// gap among committed events, in the order given, and never reused
	// (not even after PurgeEvents).
	AppendEvents(ctx context.Context, tenantID string, events []Event) ([]Event, error)
	// ListEvents returns at most limit events of the tenant with Seq >
	// after, in Seq order.
	ListEvents(ctx context.Context, tenantID string, after int64, limit int) ([]Event, error)
	// LastSeq returns the highest Seq ever assigned in the tenant (purged
	// events included), 0 when none.
	LastSeq(ctx context.Context, tenantID string) (int64, error)
	// Cursor returns the consumer's stored cursor for the tenant, 0 when
	// none was stored.
	Cursor(ctx context.Context, tenantID, consumer string) (int64, error)
	// SetCursor stores the consumer's cursor for the tenant.
	SetCursor(ctx context.Context, tenantID, consumer string, seq int64) error
	// PurgeEvents removes the tenant's events older than before and returns
	// how many were removed.
	PurgeEvents(ctx context.Context, tenantID string, before time.Time) (int, error)
	// RedactEvents replaces the user snapshots of userID's events with a
	// copy holding only ID, TenantID and Deleted (personal data removed),
	// and returns how many events changed.
	RedactEvents(ctx context.Context, tenantID, userID string) (int, error)
}

// KV is the optional key-value capability with expiry, per tenant: the
// SAML replay cache, token hashes after a rotation, LDAP cursors, held
// plans.
//
// Without it, the engine keeps these values in process memory: lost on
// restart and not shared between replicas (so a SAML assertion could be
// replayed against another replica); the engine logs a warning.
type KV interface {
	// KVGet returns the live value of key, ErrNotFound when absent or
	// expired.
	KVGet(ctx context.Context, tenantID, key string) ([]byte, error)
	// KVSet stores value under key; ttl 0 keeps it forever.
	KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
	// KVInsert stores value under key only if no live value is there, and
	// reports whether it did.
	KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error)
	// KVDelete removes key; a missing key is not an error.
	KVDelete(ctx context.Context, tenantID, key string) error
}

// Locker is the optional capability that lets one replica at a time run a
// tenant's LDAP sync or event consumer.
//
// Without it, the engine uses a process-local lock: correct for one
// process, not across replicas; the engine logs a warning.
type Locker interface {
	// TryLock takes the lock name of the tenant if it is free, and returns
	// ErrLocked if another holder has it.
	//
	// On success it returns held, a context derived from ctx (its values,
	// and it ends when ctx ends), and release. held is cancelled when the
	// holding ends for any reason:
	//   - release is called (context.Cause(held) is context.Canceled);
	//   - the lock is lost: a lease could not be renewed before it could
	//     have lapsed, the connection a lock is tied to broke, another
	//     holder took it (context.Cause(held) wraps ErrLockLost);
	//   - ctx ends (the lock is still held until release).
	// A lost lock is never silently kept, and never taken back silently: a
	// Locker cancels held no later than the moment another holder could
	// take the lock (for a lease: before the lease can have lapsed, with a
	// margin, by the holder's clock), or, for a lock that can vanish under
	// the holder (a server session lock freed when its connection dies), as
	// soon as it sees the loss, within a bound the implementation
	// documents; and after a loss it does not renew or retake the lock.
	//
	// The holder does all the work the lock protects under held, and
	// checks held before each write of the protected state: once held has
	// ended through a loss, the holder must stop writing that state (a
	// cursor, a sync's changes) at once, since another holder may already
	// be writing it, and take the lock again before going on.
	//
	// A Locker may also fence: a write of its own Store made with held, or
	// with a context derived from it (context.WithoutCancel included),
	// verifies in its transaction that the lock is still this holding's,
	// and fails with ErrLockLost, writing nothing, when it is not. The
	// engine stores consumer cursors that way, so a fencing Store never
	// takes a cursor from a holder that lost its lock.
	//
	// The lock is held until release is called or the holder's process
	// dies (never forever); release must be called in every case, after a
	// loss or the end of ctx too. release is idempotent, never frees a
	// later holder's lock, and returns after held is cancelled.
	TryLock(ctx context.Context, tenantID, name string) (held context.Context, release func(), err error)
}

// ErrLockLost is the cause (context.Cause) of a Locker's held context
// when the lock was lost rather than released, and the error of a fenced
// write made after the loss. It is not ErrLocked: the holder had the lock
// and must stop; taking it again may well succeed later.
var ErrLockLost = errors.New("provision: lock lost")
