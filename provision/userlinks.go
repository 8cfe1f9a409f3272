package provision

import "context"

// UserLinksGetter is the optional capability that reads a user and its
// links in one call: the first read of every change to a user (the
// engine needs both, and a SQL store answers both with one statement
// instead of two round trips).
//
// GetUserLinks returns what GetUser and LinksOf(ResourceUser) return for
// id: the user, tombstones included, and every link to it ordered by
// ConnectionID (an empty slice when it has none). Inside Atomically it
// locks the user's row as GetUser does. A missing user, or one of another
// tenant, is ErrNotFound.
//
// Without it, the engine calls GetUser, then LinksOf.
type UserLinksGetter interface {
	GetUserLinks(ctx context.Context, tenantID, id string) (User, []Link, error)
}

// userAndLinks reads user id and its links through st, in one call when st
// is a UserLinksGetter.
func userAndLinks(ctx context.Context, st Store, tenantID, id string) (u User, links []Link, err error) {
	if g, ok := st.(UserLinksGetter); ok {
		u, links, err = g.GetUserLinks(ctx, tenantID, id)
	} else if u, err = st.GetUser(ctx, tenantID, id); err == nil {
		links, err = st.LinksOf(ctx, tenantID, ResourceUser, id)
	}
	if err != nil {
		return User{}, nil, err
	}
	if links == nil {
		links = []Link{} // writeUser reads nil as "not read"
	}
	return u, links, nil
}
