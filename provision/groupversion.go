package provision

import (
	"context"
	"time"
)

// GroupVersionBumper is the optional capability that bumps a group's
// version without an expected version: the counter the engine moves on
// every membership change, so that the group's ETag follows its members.
//
// BumpGroupVersion adds one to the group's Version and sets its Modified,
// whatever the Version is, and returns the group as stored; it reads and
// writes the group's row only, never its members (its cost does not
// depend on their number). Inside Atomically it serializes with the other
// writers of the group (a row lock, or the store's single writer) instead
// of failing: concurrent membership changes never conflict. A missing
// group is ErrNotFound.
//
// Without it, the engine bumps the version with UpdateGroup at the
// expected version, and retries the ErrVersionConflict that concurrent
// membership changes of one group then cause one another (Config.MaxRetries).
// A change pinned by the client (If-Match) always takes that path, so
// that a concurrent change makes it fail, not pass.
type GroupVersionBumper interface {
	BumpGroupVersion(ctx context.Context, tenantID, id string, modified time.Time) (Group, error)
}
