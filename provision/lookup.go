package provision

import (
	"context"
	"errors"
	"fmt"
)

// UserByExternalID returns the live user that o's connection knows by
// externalID (through its Link), with ExternalID filled. A missing link or
// a deleted user is ErrNotFound. Sync adapters use it to resolve the ids
// their source reports (an LDAP entryUUID deleted in syncrepl).
func (e *Engine) UserByExternalID(ctx context.Context, o Origin, externalID string) (User, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return User{}, err
	}
	if err := checkKey("user", externalID); err != nil {
		return User{}, err
	}
	l, err := e.store.GetLink(ctx, s.tenant.ID, ResourceUser, s.conn.ID, externalID)
	if err != nil {
		return User{}, err
	}
	u, err := e.liveUser(ctx, e.store, s, l.ResourceID)
	if err != nil {
		return User{}, err
	}
	u.ExternalID = externalID
	return u, nil
}

// GroupByExternalID returns the group that o's connection knows by
// externalID (through its Link), with ExternalID filled. A missing link is
// ErrNotFound.
func (e *Engine) GroupByExternalID(ctx context.Context, o Origin, externalID string) (Group, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return Group{}, err
	}
	if err := checkKey("group", externalID); err != nil {
		return Group{}, err
	}
	l, err := e.store.GetLink(ctx, s.tenant.ID, ResourceGroup, s.conn.ID, externalID)
	if err != nil {
		return Group{}, err
	}
	g, err := e.store.GetGroup(ctx, s.tenant.ID, l.ResourceID)
	if err != nil {
		return Group{}, err
	}
	g.ExternalID = externalID
	return g, nil
}

// ErrStop, returned by the function given to EachOwnedUser, stops the walk
// without an error.
var ErrStop = errors.New("provision: stop")

// eachOwnedUser is Adapter.EachOwnedUser.
func (e *Engine) eachOwnedUser(ctx context.Context, o Origin, fn func(User) error) error {
	s, err := e.scope(ctx, o)
	if err != nil {
		return err
	}
	const pageSize = 1000
	for off := 0; ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, total, err := e.store.ListUsers(ctx, s.tenant.ID, Page{Offset: off, Limit: pageSize})
		if err != nil {
			return fmt.Errorf("provision: list users: %w", err)
		}
		for _, u := range page {
			if u.Owner != s.conn.ID || u.IsDeleted() {
				continue
			}
			if err := fn(u); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		off += len(page)
		if len(page) == 0 || off >= total {
			return nil
		}
	}
}
