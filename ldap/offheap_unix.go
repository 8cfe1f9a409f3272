//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ldap

import "syscall"

// mapAnon maps n bytes of private, zeroed memory; the kernel backs a
// page only once it is written.
func mapAnon(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapAnon unmaps b, a mapping mapAnon returned.
func unmapAnon(b []byte) { _ = syscall.Munmap(b) }

// offheapUnsupported reports whether this platform keeps every array on
// the heap (for tests).
func offheapUnsupported() bool { return false }
