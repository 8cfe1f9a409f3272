package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// Registry is the optional capability that keeps tenants and their
// connections in the Store, as data: versioned, changed at run time (an
// admin API, a setup link) and followed by every engine sharing the Store.
//
// The Store keeps each tenant as one record whose Body the engine encodes
// (with every secret sealed: a Registry never sees a secret in clear), and
// indexes the two things requests look up before they know the tenant:
// the verified e-mail domains (home realm discovery) and the hashes of
// the SCIM bearer tokens. Every write takes the next registry-wide
// revision (Rev); RegistryChanges lists the tenants changed after a
// revision, in revision order, so that an engine refreshes only what
// changed. Revisions must become visible in order: a write may not commit
// with a revision lower than one already visible (a store serializes its
// registry writes, which are rare: one row counter locked until commit).
//
// Registry writes go through Atomically like every write, so the
// connection.* events the engine records commit with them.
//
// Without it, tenants are only the host's declared configuration
// (Config.Tenants), and the engine's registry calls (PutTenant,
// PutConnection, ...) fail with ErrNoRegistry.
type Registry interface {
	// GetTenantRecord returns the live record of the tenant, ErrNotFound
	// when there is none (never registered, or deleted).
	GetTenantRecord(ctx context.Context, tenantID string) (TenantRecord, error)
	// PutTenantRecord stores r. With expectedVersion 0 it creates the
	// record (ErrAlreadyExists when a live one exists; a deleted tenant
	// may be registered again); otherwise it replaces the live record
	// whose Version is expectedVersion (else ErrVersionConflict;
	// ErrNotFound when there is none). It sets Version to
	// expectedVersion+1, assigns the next Rev and Modified, and replaces
	// the record's domain and token index entries. A domain or a token
	// hash that another live tenant's record holds is ErrAlreadyExists
	// and nothing is stored.
	PutTenantRecord(ctx context.Context, r TenantRecord, expectedVersion int64) (TenantRecord, error)
	// DeleteTenantRecord deletes the live record whose Version is
	// expectedVersion (ErrNotFound, ErrVersionConflict), frees its domains
	// and token hashes, and takes the next Rev, so that followers see the
	// deletion in RegistryChanges.
	DeleteTenantRecord(ctx context.Context, tenantID string, expectedVersion int64) error
	// TenantByDomain returns the id of the live tenant whose record
	// holds domain (compared case-insensitively), ErrNotFound when none.
	TenantByDomain(ctx context.Context, domain string) (string, error)
	// ConnectionByTokenHash returns the tenant and connection whose
	// record holds the token hash, ErrNotFound when none. It is an indexed
	// lookup: its cost does not depend on the number of tenants.
	ConnectionByTokenHash(ctx context.Context, hash TokenHash) (tenantID, connectionID string, err error)
	// ListTenantRecords returns the live records in tenant ID order and
	// their exact total.
	ListTenantRecords(ctx context.Context, p Page) ([]TenantRecord, int, error)
	// RegistryChanges returns at most limit changes with Rev > afterRev,
	// in Rev order: the latest Rev of each tenant changed (created,
	// replaced or deleted) since, one entry per tenant.
	RegistryChanges(ctx context.Context, afterRev int64, limit int) ([]RegistryChange, error)
	// RegistryRev returns the highest Rev assigned so far (0 when none):
	// where an engine that starts begins to follow the feed, at a cost
	// that does not depend on the number of tenants.
	RegistryRev(ctx context.Context) (int64, error)
}

// RegistryWatcher is the optional capability of a Registry that hears
// the registry writes of every replica as they commit (PostgreSQL's
// LISTEN/NOTIFY). Engine.FollowRegistry uses it to see a change within
// milliseconds instead of at its next read of the revision feed.
type RegistryWatcher interface {
	// WatchRegistry calls fn with the tenant id of each committed registry
	// write, and with "" when notifications may have been missed (each
	// time the listening session starts or restarts). fn must return
	// quickly. live is false when no notification source is wired (fn is
	// then never called); stop ends the watch in every case.
	WatchRegistry(fn func(tenantID string)) (stop func(), live bool)
}

// TokenHash is the SHA-256 digest of a bearer token: what a host stores
// and configures instead of the token (SCIMSettings.TokenHashes); the
// registry indexes connections by it. Bearer tokens carry 256 random bits
// (scim.GenerateToken), so a fast unsalted digest is the right tool.
type TokenHash [sha256.Size]byte

// HashToken returns the hash of a bearer token.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// String renders h as "sha256:" followed by 64 hex digits, the form
// ParseTokenHash reads back (for configuration files and databases).
func (h TokenHash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// MarshalText renders h as String does (so JSON shows "sha256:...").
func (h TokenHash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads the form String renders.
func (h *TokenHash) UnmarshalText(b []byte) error {
	v, err := ParseTokenHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseTokenHash parses the form TokenHash.String renders; the "sha256:"
// prefix is optional.
func ParseTokenHash(s string) (TokenHash, error) {
	var h TokenHash
	b, err := hex.DecodeString(strings.TrimPrefix(s, "sha256:"))
	if err != nil || len(b) != len(h) {
		return TokenHash{}, errors.New("provision: a token hash is \"sha256:\" and 64 hex digits")
	}
	copy(h[:], b)
	return h, nil
}

// TenantRecord is a registered tenant as a Registry stores it.
type TenantRecord struct {
	// TenantID is the tenant's id. Required.
	TenantID string
	// Version is 1 on create and increases by one on every replace.
	Version int64
	// Rev is the registry-wide revision of the record's last write.
	Rev int64
	// Body is the tenant and its connections, encoded by the engine, with
	// every secret sealed. Opaque to the Store.
	Body []byte
	// Domains are the tenant's verified e-mail domains, lower case: no two
	// live records hold the same one.
	Domains []string
	// Tokens are the SCIM token hashes of the tenant's directories: no two
	// live records hold the same hash.
	Tokens []TokenRef
	// Modified is the time of the last write.
	Modified time.Time
}

// TokenRef indexes one token hash to the connection it authenticates.
type TokenRef struct {
	Hash         TokenHash
	ConnectionID string
}

// RegistryChange says that the tenant's record was written (or deleted)
// at revision Rev.
type RegistryChange struct {
	TenantID string
	Rev      int64
	// Deleted is set when the write deleted the record.
	Deleted bool
}
