package storetest

import (
	"testing"

	"github.com/idprov/idprov/provision"
)

// capability is a group of subtests for one optional capability of a
// Store, run only when the store has it.
type capability struct {
	name string
	has  func(provision.Store) bool
	run  func(t *testing.T, s *suite)
}

func implements[C any](st provision.Store) bool {
	_, ok := st.(C)
	return ok
}

// capabilities are the optional capabilities the suite tests. A new one
// (Searcher, with the filter engine) is one more line here and its own
// file with its subtests.
var capabilities = []capability{
	{"EventLog", implements[provision.EventLog], testEventLog},
	{"GroupVersionBumper", implements[provision.GroupVersionBumper], testGroupVersionBumper},
	{"UserLinksGetter", implements[provision.UserLinksGetter], testUserLinksGetter},
	{"EventBacklog", implements[provision.EventBacklog], testEventBacklog},
	{"KV", implements[provision.KV], testKV},
	{"Locker", implements[provision.Locker], testLocker},
	{"Searcher", implements[provision.Searcher], testSearcher},
	{"Registry", implements[provision.Registry], testRegistry},
}

// storeWith returns a fresh store and its capability C (named name).
func storeWith[C any](t *testing.T, s *suite, name string) (provision.Store, C) {
	t.Helper()
	st := s.store(t)
	c, ok := st.(C)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.%s, although the first store it returned was", st, name)
	}
	return st, c
}

// eventLog returns a fresh store and its EventLog.
func (s *suite) eventLog(t *testing.T) (provision.Store, provision.EventLog) {
	t.Helper()
	return storeWith[provision.EventLog](t, s, "EventLog")
}

func (s *suite) kv(t *testing.T) (provision.Store, provision.KV) {
	t.Helper()
	return storeWith[provision.KV](t, s, "KV")
}

func (s *suite) locker(t *testing.T) provision.Locker {
	t.Helper()
	_, l := storeWith[provision.Locker](t, s, "Locker")
	return l
}
