package provision

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Stores and the engine wrap them; check with errors.Is.
var (
	// ErrNotFound: no such resource in the tenant (or it is deleted).
	ErrNotFound = errors.New("provision: not found")
	// ErrAlreadyExists: a uniqueness rule refused the write.
	ErrAlreadyExists = errors.New("provision: already exists")
	// ErrVersionConflict: the resource changed since the expected version.
	ErrVersionConflict = errors.New("provision: version conflict")
	// ErrUnavailable: the store cannot serve now; retry later (SCIM 503
	// with Retry-After).
	ErrUnavailable = errors.New("provision: store unavailable")
	// ErrInvalid: the input is malformed or breaks a rule of the model.
	ErrInvalid = errors.New("provision: invalid input")
	// ErrForbidden: the origin may not make this change (another
	// connection owns the resource, or the connection is disabled or
	// unknown).
	ErrForbidden = errors.New("provision: forbidden")
	// ErrDeprovisioned: the identity resolves to a deactivated or deleted
	// user, and the caller may not bring it back.
	ErrDeprovisioned = errors.New("provision: user is deprovisioned")
	// ErrTooMany: a query would scan more than the configured bound.
	ErrTooMany = errors.New("provision: too many results to scan")
	// ErrLocked: a Locker lock is held by another holder.
	ErrLocked = errors.New("provision: locked")
	// ErrUnknownTenant: the tenant was not declared to the engine.
	ErrUnknownTenant = errors.New("provision: unknown tenant")
)

// ValidationError says which field of the input is wrong and why. It
// matches ErrInvalid with errors.Is.
type ValidationError struct {
	Field  string
	Reason string
}

// Error says which field is wrong and why.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("provision: invalid %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// MembersError lists member IDs that are unknown in the tenant (or belong
// to another tenant). Nothing was applied. It matches ErrInvalid.
type MembersError struct {
	Unknown []string
}

// Error lists the unknown member ids.
func (e *MembersError) Error() string {
	return fmt.Sprintf("provision: unknown member ids: %s", strings.Join(e.Unknown, ", "))
}

// Is reports whether target is ErrInvalid.
func (e *MembersError) Is(target error) bool { return target == ErrInvalid }

// ConflictError says which uniqueness rule a write broke and, where known,
// the resource already holding the value. It matches ErrAlreadyExists.
type ConflictError struct {
	// Field is "userName", "displayName", "externalId" or "id".
	Field string
	Value string
	// ExistingID is the resource that holds the value, when known.
	ExistingID string
	// Owner is the connection owning that resource, when known.
	Owner string
}

// Error names the field, the value and, when known, the owner.
func (e *ConflictError) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("provision: %s %q is already taken by a resource owned by connection %q", e.Field, e.Value, e.Owner)
	}
	return fmt.Sprintf("provision: %s %q is already taken", e.Field, e.Value)
}

// Is reports whether target is ErrAlreadyExists.
func (e *ConflictError) Is(target error) bool { return target == ErrAlreadyExists }

// OwnerError says that another connection owns the resource. It matches
// ErrForbidden.
type OwnerError struct {
	// Owner is the ConnectionID owning the resource.
	Owner string
	// Writer is the connection that attempted the change.
	Writer string
}

// Error names the owning and the writing connection.
func (e *OwnerError) Error() string {
	return fmt.Sprintf("provision: resource is owned by connection %q, not %q", e.Owner, e.Writer)
}

// Is reports whether target is ErrForbidden.
func (e *OwnerError) Is(target error) bool { return target == ErrForbidden }
