package ldap

import (
	"context"
	"errors"
	"fmt"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// controlNotification is Active Directory's change notification control
// (LDAP_SERVER_NOTIFICATION_OID): a search carrying it never ends, and
// the server sends an entry each time an object in its scope changes.
const controlNotification = "1.2.840.113556.1.4.528"

// StatusNotify: Run holds Active Directory change notification searches
// open (LDAP_SERVER_NOTIFICATION_OID) and runs a DirSync pass as soon as
// one fires, polling every Config.Interval besides.
const StatusNotify = "notification"

// errNoNotify says the server does not offer change notification (or
// refused it): Run polls every Config.Interval.
var errNoNotify = errors.New("ldap: the server offers no change notification")

// notifyDelay gathers the changes of a burst into one DirSync pass.
const notifyDelay = 200 * time.Millisecond

// notify waits for an Active Directory change notification on the user
// and group bases, up to Config.Interval. It returns true when a round is
// due (a notification fired, or the interval passed), false when Run must
// poll instead (the server offers no notification, or the search
// failed).
func (s *Syncer) notify(ctx context.Context) bool {
	fired, err := s.notifyOnce(ctx)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		s.status.update(func(st *Status) {
			st.Mode, st.Since = StatusPoll, time.Time{}
			if !errors.Is(err, errNoNotify) {
				st.LastError = err.Error()
			}
		})
		if !errors.Is(err, errNoNotify) {
			s.log().WarnContext(ctx, "ldap: change notification failed; polling", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err)
			if s.cfg.OnReport != nil {
				s.cfg.OnReport(nil, err)
			}
		}
		return false
	}
	if fired {
		s.status.update(func(st *Status) { st.Changes++ })
	}
	return true
}

// notifyOnce opens the notification searches and waits for the first
// entry, ctx or Config.Interval.
func (s *Syncer) notifyOnce(ctx context.Context) (fired bool, err error) {
	s.mu.Lock()
	cur, err := s.loadCursor(ctx)
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	if cur == nil || (cur.Mode != ModeDirSync && cur.Mode != ModeUSNChanged) {
		return false, errNoNotify
	}
	c, err := s.dial(ctx)
	if err != nil {
		return false, err
	}
	defer c.close()
	dse, err := c.rootDSE(ctx)
	if err != nil {
		return false, err
	}
	if !dse.supports(controlNotification) {
		return false, errNoNotify
	}
	nctx, cancel := context.WithTimeout(ctx, s.cfg.Interval)
	defer cancel()
	events := make(chan error, 2)
	bases := []string{s.cfg.UserBaseDN}
	if s.cfg.GroupBaseDN != "" && dnKey(s.cfg.GroupBaseDN) != dnKey(s.cfg.UserBaseDN) {
		bases = append(bases, s.cfg.GroupBaseDN)
	}
	for _, base := range bases {
		// Two searches of AD's five per connection (MaxNotificationPerConn).
		req := goldap.NewSearchRequest(base, s.cfg.scope, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{s.cfg.Mapping.ID},
			[]goldap.Control{goldap.NewControlString(controlNotification, true, "")})
		r := c.c.SearchAsync(nctx, req, 1)
		go func() {
			for r.Next() {
				if r.Entry() != nil {
					events <- nil
					return
				}
			}
			err := r.Err()
			switch {
			case nctx.Err() != nil:
				return
			case goldap.IsErrorAnyOf(err, goldap.LDAPResultUnavailableCriticalExtension, goldap.LDAPResultUnwillingToPerform):
				err = fmt.Errorf("%w: %s: %w", errNoNotify, base, err)
			case err != nil:
				err = fmt.Errorf("ldap: change notification on %q: %w", base, err)
			default:
				err = fmt.Errorf("%w: the server ended the change notification search of %q", ErrIncomplete, base)
			}
			events <- err
		}()
	}
	s.status.update(func(st *Status) { st.Mode, st.Since, st.LastError = StatusNotify, s.cfg.Now(), "" })
	select {
	case err := <-events:
		if err != nil {
			return false, err
		}
		// Let the rest of a burst arrive: one DirSync pass takes it all.
		select {
		case <-time.After(notifyDelay):
		case <-ctx.Done():
		}
		return true, nil
	case <-nctx.Done():
		return false, nil // the interval passed: the DirSync poll
	}
}
