//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ldap

// offheapMapped tells whether mapRegion maps memory outside the Go heap.
const offheapMapped = false

// mapRegion takes size bytes from the Go heap: this platform has no
// anonymous mmap here.
func mapRegion(size int) ([]byte, bool) { return make([]byte, size), false }

func unmapRegion([]byte) {}
