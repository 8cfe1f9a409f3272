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
	{"EventBacklog", implements[provision.EventBacklog], testEventBacklog},
	{"KV", implements[provision.KV], testKV},
	{"Locker", implements[provision.Locker], testLocker},
	{"Searcher", implements[provision.Searcher], testSearcher},
}

// eventLog returns a fresh store and its EventLog.
func (s *suite) eventLog(t *testing.T) (provision.Store, provision.EventLog) {
	t.Helper()
	st := s.store(t)
	el, ok := st.(provision.EventLog)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.EventLog, although the first store it returned was", st)
	}
	return st, el
}

func (s *suite) kv(t *testing.T) (provision.Store, provision.KV) {
	t.Helper()
	st := s.store(t)
	kv, ok := st.(provision.KV)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.KV, although the first store it returned was", st)
	}
	return st, kv
}

func (s *suite) locker(t *testing.T) provision.Locker {
	t.Helper()
	st := s.store(t)
	l, ok := st.(provision.Locker)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.Locker, although the first store it returned was", st)
	}
	return l
}
