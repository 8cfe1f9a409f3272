package provision

import (
	"math/rand/v2"
	"time"
)

// conflictPatience is how long a change that pinned no version is retried
// after version conflicts (beyond Config.MaxRetries attempts) before it
// fails with ErrUnavailable: a store that serializes the writers of a row
// (see Store.Atomically) never needs it.
const conflictPatience = 5 * time.Second

// conflictBackoff is the wait before retry attempt+1 of a version
// conflict: 1ms doubling up to 64ms, jittered into [d/2, d] so that the
// contending writers spread out.
func conflictBackoff(attempt int) time.Duration {
	d := time.Millisecond << min(attempt, 6)
	return d/2 + rand.N(d/2+1)
}
