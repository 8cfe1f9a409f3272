//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ldap

import "syscall"

// offheapMapped tells whether mapRegion maps memory outside the Go heap.
const offheapMapped = true

// mapRegion maps size bytes of anonymous memory (zeroed, rounded up to
// pages); off is false when it fell back to the Go heap.
func mapRegion(size int) (b []byte, off bool) {
	page := syscall.Getpagesize()
	n := (size + page - 1) / page * page
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, size), false
	}
	return b, true
}

func unmapRegion(b []byte) { _ = syscall.Munmap(b) }
