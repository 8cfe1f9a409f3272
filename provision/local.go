package provision

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// localLocker is the Locker fallback: correct within one process only.
type localLocker struct {
	mu   sync.Mutex
	held map[string]bool
}

func newLocalLocker() *localLocker { return &localLocker{held: map[string]bool{}} }

// TryLock takes the process-local lock. held ends on release and with
// ctx; the lock is never lost otherwise.
func (l *localLocker) TryLock(ctx context.Context, tenantID, name string) (context.Context, func(), error) {
	key := tenantID + "\x00" + name
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] {
		return nil, nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	l.held[key] = true
	held, cancel := context.WithCancel(ctx)
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel()
			l.mu.Lock()
			delete(l.held, key)
			l.mu.Unlock()
		})
	}, nil
}

// localKV is the KV fallback: process memory, lost on restart.
type localKV struct {
	mu sync.Mutex
	m  map[string]kvEntry
}

type kvEntry struct {
	v   []byte
	exp time.Time
}

func newLocalKV() *localKV { return &localKV{m: map[string]kvEntry{}} }

func (k *localKV) get(now time.Time, key string) ([]byte, bool) {
	e, ok := k.m[key]
	if !ok || (!e.exp.IsZero() && !now.Before(e.exp)) {
		return nil, false
	}
	return e.v, true
}

func (k *localKV) KVGet(_ context.Context, tenantID, key string, now time.Time) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.get(now, tenantID+"\x00"+key)
	if !ok {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	return append([]byte(nil), v...), nil
}

func (k *localKV) KVSet(_ context.Context, tenantID, key string, value []byte, ttl time.Duration, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := kvEntry{v: append([]byte(nil), value...)}
	if ttl > 0 {
		e.exp = now.Add(ttl)
	}
	k.m[tenantID+"\x00"+key] = e
}

func (k *localKV) KVInsert(_ context.Context, tenantID, key string, value []byte, ttl time.Duration, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	full := tenantID + "\x00" + key
	if _, ok := k.get(now, full); ok {
		return false
	}
	e := kvEntry{v: append([]byte(nil), value...)}
	if ttl > 0 {
		e.exp = now.Add(ttl)
	}
	k.m[full] = e
	return true
}

func (k *localKV) KVDelete(_ context.Context, tenantID, key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, tenantID+"\x00"+key)
}
