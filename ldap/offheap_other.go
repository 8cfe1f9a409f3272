//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ldap

import "errors"

// mapAnon reports that this platform keeps the cache on the heap.
func mapAnon(int) ([]byte, error) { return nil, errors.New("no anonymous mappings") }

func unmapAnon([]byte) {}

func offheapUnsupported() bool { return true }
