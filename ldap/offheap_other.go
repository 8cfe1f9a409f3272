//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ldap

import "errors"

// mapAnon reports that this platform keeps the cache on the heap.
func mapAnon(int) ([]byte, error) { return nil, errors.New("no anonymous mappings") }

func unmapAnon([]byte) {}

// offheapUnsupported reports whether this platform keeps every array on
// the heap (for tests).
func offheapUnsupported() bool { return true }
