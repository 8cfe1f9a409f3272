package ldap

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// offheap keeps the large arrays of one directory cache (its record
// chunks, string arena chunks and tables, none of which holds a pointer)
// in anonymous memory mappings outside the Go heap, and unmaps them when
// the cache is collected.
//
// The reason is the collector's pacing: it lets the heap grow to twice
// what was live at the last collection before it collects again, so
// state held on the heap costs twice its size in resident memory while a
// sync allocates as fast as go-ldap decodes (about 38 KB a user). Off
// the heap it costs its size once, and the host's own heap, not the
// directory's size, sets how often the collector runs. (VictoriaMetrics'
// fastcache keeps its buckets off the heap for the same reason.)
//
// Only what is read and written through the cache's own methods lives
// there: no string or slice handed out by the cache points into it
// (arena.str copies), so nothing can outlive the mapping; a cache is
// always reached through the Syncer or the sync that holds it, so it
// stays reachable, and mapped, while its methods run. Arrays smaller
// than offheapMin, and every array on a platform without anonymous
// mappings or when a mapping fails, are ordinary heap memory: a small
// directory takes no mappings (Linux allows a process 65,530 by
// default).
type offheap struct {
	mu     sync.Mutex
	mapped map[unsafe.Pointer][]byte // the live mappings by their address
}

// offheapMin is the size of the smallest array kept off the heap.
const offheapMin = 64 << 10

// offheapOff keeps every array on the heap (for tests and measurements).
var offheapOff atomic.Bool

// offheapSlice returns n zero values of a pointer-free T, off the heap
// when m is not nil and the array is large enough.
func offheapSlice[T userRec | uint32 | byte](m *offheap, n int) []T {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if m == nil || size < offheapMin || offheapOff.Load() {
		return make([]T, n)
	}
	b, err := mapAnon(size)
	if err != nil {
		return make([]T, n)
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	m.mu.Lock()
	if m.mapped == nil {
		m.mapped = map[unsafe.Pointer][]byte{}
	}
	m.mapped[p] = b
	m.mu.Unlock()
	return unsafe.Slice((*T)(p), n)
}

// offheapFree unmaps the array s if it is one of m's mappings; a heap
// array is left to the collector. Nothing may use s afterwards.
func offheapFree[T userRec | uint32 | byte](m *offheap, s []T) {
	if m == nil || cap(s) == 0 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s[:1]))
	m.mu.Lock()
	b, ok := m.mapped[p]
	delete(m.mapped, p)
	m.mu.Unlock()
	if ok {
		unmapAnon(b)
	}
}

// freeAll unmaps all of m's mappings: the cleanup of a collected cache.
func (m *offheap) freeAll() {
	m.mu.Lock()
	mapped := m.mapped
	m.mapped = nil
	m.mu.Unlock()
	for _, b := range mapped {
		unmapAnon(b)
	}
}
