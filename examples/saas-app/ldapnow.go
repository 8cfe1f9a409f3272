package main

import (
	"context"
	"fmt"
)

// The admin page's "Sync now" runs in the background: the request returns
// at once, and the connection's card shows the sync's progress
// (ldap.Syncer.Progress) while the page refreshes itself.

// manualSyncs runs the full syncs asked for with requestSync, until ctx
// (the source's) ends.
func (s *ldapSource) manualSyncs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncNow:
		}
		rep, err := s.Syncer.Sync(ctx)
		if ctx.Err() == nil {
			s.record(rep, err)
		}
		s.mu.Lock()
		s.manual = false
		s.mu.Unlock()
	}
}

// requestSync asks for a full sync now. It returns false, asking nothing,
// when a sync runs (a round of Run, an earlier "Sync now") or was asked
// for already.
func (s *ldapSource) requestSync() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, running := s.Syncer.Progress(); running || s.manual || s.syncNow == nil {
		return false
	}
	s.manual = true
	s.syncNow <- struct{}{} // empty: manual was false
	return true
}

// syncing describes the running sync for the admin page ("" when none
// runs nor was asked for).
func (s *ldapSource) syncing() string {
	if p, ok := s.Syncer.Progress(); ok {
		kind := "incremental sync"
		if p.Full {
			kind = "full sync"
		}
		return fmt.Sprintf("syncing: %d entries read, %.0f/s (%s, %s, %d applied)", p.Entries+p.GroupEntries, p.Rate, kind, p.Phase, p.Applied)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manual {
		return "syncing: starting"
	}
	return ""
}
