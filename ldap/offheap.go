package ldap

import (
	"sync"
	"unsafe"
)

// offheap is memory for a dirCache's pointer-free bulk state (user
// records, id arena, hash table slots) taken outside the Go heap where
// the platform allows (anonymous mmap, offheap_mmap.go), so that the
// collector neither scans it nor counts it in its heap goal: a full sync's
// peak RSS grows with the directory by the state itself, once, not by
// the state and as much again of garbage the collector lets accumulate
// before it runs (with GOGC 100 the heap grows to twice what is live).
// Pages of a region are resident only once written. Everything taken is
// given back when the cache it belongs to becomes unreachable (a cleanup
// registered by newDirCache), or earlier by release. Nothing outside the
// cache may hold a pointer into it: strings leave the arena as copies.
type offheap struct {
	mu      sync.Mutex
	regions map[unsafe.Pointer]int // start of each region taken, its size
}

// offSlice returns n zeroed Ts from m (T must hold no pointers); from
// the Go heap when m is nil.
func offSlice[T any](m *offheap, n int) []T {
	if m == nil {
		return make([]T, n)
	}
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size == 0 {
		return nil
	}
	b := m.alloc(size)
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// releaseSlice gives s, taken by offSlice, back now.
func releaseSlice[T any](m *offheap, s []T) {
	if m == nil || cap(s) == 0 {
		return
	}
	var zero T
	m.release(unsafe.Pointer(unsafe.SliceData(s)), cap(s)*int(unsafe.Sizeof(zero)))
}

func (m *offheap) alloc(size int) []byte {
	b, off := mapRegion(size)
	if off {
		m.mu.Lock()
		if m.regions == nil {
			m.regions = map[unsafe.Pointer]int{}
		}
		m.regions[unsafe.Pointer(unsafe.SliceData(b))] = len(b)
		m.mu.Unlock()
	}
	return b[:size]
}

func (m *offheap) release(p unsafe.Pointer, size int) {
	m.mu.Lock()
	n, ok := m.regions[p]
	delete(m.regions, p)
	m.mu.Unlock()
	if ok {
		unmapRegion(unsafe.Slice((*byte)(p), n))
	}
}

// free gives back everything m holds.
func (m *offheap) free() {
	m.mu.Lock()
	regions := m.regions
	m.regions = nil
	m.mu.Unlock()
	for p, n := range regions {
		unmapRegion(unsafe.Slice((*byte)(p), n))
	}
}

// inUse is the bytes m holds (resident or not).
func (m *offheap) inUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, size := range m.regions {
		n += size
	}
	return n
}
