package scim

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per directory.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[dirKey]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rl RateLimit, now func() time.Time) *limiter {
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(rl.PerSecond)))
	}
	return &limiter{rate: rl.PerSecond, burst: float64(burst), now: now, buckets: map[dirKey]*bucket{}}
}

// allow takes a token for k, or says how long until one is free.
func (l *limiter) allow(k dirKey) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[k]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Second)
}
