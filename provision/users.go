package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Precondition pins the version a change expects (SCIM If-Match). Zero
// means "any": the engine then retries version conflicts itself.
type Precondition struct {
	Version int64
}

// CreateUser creates a user of o's tenant owned by o's connection, or
// does what an identity provider's retry or rehire should get:
//
//   - A retried create (the connection already has a live user with the
//     same ExternalID and userName, and the create would change nothing)
//     is a *ConflictError (ErrAlreadyExists) whose ExistingID names that
//     user, and emits nothing. It is what a SCIM POST answers: RFC 7644
//     section 3.3 requires 409 for a create that conflicts with an
//     existing resource; Okta and Microsoft Entra ID then look the user
//     up. A caller that wants the user itself uses ExistingID, or
//     ProvisionIdentity, which resolves instead of creating.
//   - A create whose user is already known to the connection (by
//     ExternalID, or by userName for a user it owns) and deactivated
//     reactivates and updates it (user.reactivated).
//   - A create whose userName matches a live user that the connection's
//     match rules select and the tenant's adoption policy lets it take over
//     links and adopts that user (user.updated, with field "owner").
//   - Any other taken userName is a *ConflictError (ErrAlreadyExists).
//
// u.ExternalID becomes the connection's Link to the user.
func (e *Engine) CreateUser(ctx context.Context, o Origin, u User) (User, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return User{}, err
	}
	if err := validateUser(u); err != nil {
		return User{}, err
	}
	var out User
	err = e.atomically(ctx, s, false, func(ctx context.Context, tx Store, rec *recorder) error {
		var err error
		n := len(rec.changes)
		out, err = e.createUser(ctx, s, tx, rec, u)
		if err == nil && len(rec.changes) == n {
			// Nothing changed: the user already was what u says.
			return &ConflictError{Field: "userName", Value: u.UserName, ExistingID: out.ID, Owner: out.Owner}
		}
		return err
	})
	if err != nil {
		return User{}, err
	}
	return out, nil
}

func (e *Engine) createUser(ctx context.Context, s scope, tx Store, rec *recorder, u User) (User, error) {
	tid := s.tenant.ID
	if u.ExternalID != "" {
		l, err := tx.GetLink(ctx, tid, ResourceUser, s.conn.ID, u.ExternalID)
		switch {
		case err == nil:
			ex, err := tx.GetUser(ctx, tid, l.ResourceID)
			if err != nil {
				return User{}, fmt.Errorf("provision: linked user: %w", err)
			}
			if !ex.IsDeleted() {
				if !strings.EqualFold(ex.UserName, u.UserName) {
					return User{}, &ConflictError{Field: "externalId", Value: u.ExternalID, ExistingID: ex.ID, Owner: ex.Owner}
				}
				if ex.Active || !u.Active {
					ex.ExternalID = u.ExternalID
					return ex, nil // a retried create
				}
				return e.rehire(ctx, s, tx, rec, ex, u)
			}
			// The user this externalId named was deleted: the id now
			// names a new account.
			if err := tx.DeleteLink(ctx, tid, ResourceUser, s.conn.ID, u.ExternalID); err != nil {
				return User{}, err
			}
		case !errors.Is(err, ErrNotFound):
			return User{}, err
		}
	}
	if rules := s.matchRules(); len(rules) == 1 && rules[0] == MatchUserName {
		// The one rule is the userName, which the store keeps unique
		// among live users: insert, and only when the name is taken look
		// up who has it (one lookup fewer for every new user). A refused
		// CreateUser changes nothing and leaves tx usable (Store).
		created, err := e.storeNewUser(ctx, s, tx, u)
		if err == nil {
			return e.linkNewUser(ctx, s, tx, rec, created, u.ExternalID)
		}
		if !errors.Is(err, ErrAlreadyExists) {
			return User{}, err
		}
		ex, lerr := tx.UserByUserName(ctx, tid, u.UserName)
		if errors.Is(lerr, ErrNotFound) {
			return User{}, err
		}
		if lerr != nil {
			return User{}, lerr
		}
		return e.claim(ctx, s, tx, rec, ex, u)
	}
	ex, found, err := e.firstContact(ctx, s, tx, u)
	if err != nil {
		return User{}, err
	}
	if found && !ex.IsDeleted() {
		return e.claim(ctx, s, tx, rec, ex, u)
	}
	if !found && slices.Contains(s.matchRules(), MatchUserName) {
		// firstContact looked the userName up in this transaction and
		// found no live user.
		return e.insertUser(ctx, s, tx, rec, u)
	}
	if taken, err := tx.UserByUserName(ctx, tid, u.UserName); err == nil {
		return User{}, &ConflictError{Field: "userName", Value: u.UserName, ExistingID: taken.ID, Owner: taken.Owner}
	} else if !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	return e.insertUser(ctx, s, tx, rec, u)
}

// claim handles a create (or first contact) that matched an existing live
// user ex: the connection's own deactivated user is rehired; another
// owner's active user is adopted when the policy allows.
func (e *Engine) claim(ctx context.Context, s scope, tx Store, rec *recorder, ex, u User) (User, error) {
	relink := s.tenant.RelinkOnRehire && ex.Owner == s.conn.ID && !ex.Active
	if l, err := e.linkOf(ctx, tx, s, ex.ID); err == nil && l.ExternalID != u.ExternalID && !relink {
		return User{}, &ConflictError{Field: "userName", Value: u.UserName, ExistingID: ex.ID, Owner: ex.Owner}
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	if ex.Owner == s.conn.ID {
		if ex.Active {
			return User{}, &ConflictError{Field: "userName", Value: u.UserName, ExistingID: ex.ID, Owner: ex.Owner}
		}
		return e.rehire(ctx, s, tx, rec, ex, u)
	}
	if !ex.Active {
		return User{}, &ConflictError{Field: "userName", Value: u.UserName, ExistingID: ex.ID, Owner: ex.Owner}
	}
	if _, err := s.mayWrite(ex.Owner); err != nil {
		return User{}, &ConflictError{Field: "userName", Value: u.UserName, ExistingID: ex.ID, Owner: ex.Owner}
	}
	return e.writeUser(ctx, s, tx, rec, ex, nil, func(next *User) error {
		replaceUserAttrs(next, u)
		next.ExternalID = u.ExternalID
		return nil
	})
}

// rehire reactivates the connection's own deactivated user with the
// attributes of a new create.
func (e *Engine) rehire(ctx context.Context, s scope, tx Store, rec *recorder, ex, u User) (User, error) {
	return e.writeUser(ctx, s, tx, rec, ex, nil, func(next *User) error {
		replaceUserAttrs(next, u)
		next.Active = true
		next.ExternalID = u.ExternalID
		return nil
	})
}

// replaceUserAttrs copies every attribute an identity provider manages from
// src into dst, keeping dst's identity and bookkeeping fields.
func replaceUserAttrs(dst *User, src User) {
	keep := *dst
	*dst = cloneUser(src)
	dst.ID, dst.TenantID, dst.Owner = keep.ID, keep.TenantID, keep.Owner
	dst.Version, dst.Created, dst.Modified, dst.Deleted = keep.Version, keep.Created, keep.Modified, keep.Deleted
	dst.ExternalID = keep.ExternalID
}

func (e *Engine) insertUser(ctx context.Context, s scope, tx Store, rec *recorder, u User) (User, error) {
	created, err := e.storeNewUser(ctx, s, tx, u)
	if err != nil {
		return User{}, err
	}
	return e.linkNewUser(ctx, s, tx, rec, created, u.ExternalID)
}

// storeNewUser stores u as a new user of the connection: the first half
// of insertUser, which changes nothing when it fails.
func (e *Engine) storeNewUser(ctx context.Context, s scope, tx Store, u User) (User, error) {
	now := e.now().UTC()
	u = cloneUser(u)
	u.ID, u.ExternalID = "", ""
	u.TenantID = s.tenant.ID
	u.Owner = s.conn.ID
	u.Version = 0
	u.Created, u.Modified, u.Deleted = now, now, time.Time{}
	if err := e.withRoles(ctx, s, tx, &User{}, &u, map[string]bool{}); err != nil {
		return User{}, err
	}
	return tx.CreateUser(ctx, u)
}

// linkNewUser links the user storeNewUser created to the connection's ext
// and records its creation: the second half of insertUser.
func (e *Engine) linkNewUser(ctx context.Context, s scope, tx Store, rec *recorder, created User, ext string) (User, error) {
	if ext != "" {
		if err := tx.CreateLink(ctx, Link{TenantID: s.tenant.ID, Kind: ResourceUser, ConnectionID: s.conn.ID, ExternalID: ext, ResourceID: created.ID, Created: created.Created}); err != nil {
			return User{}, err
		}
	}
	after := cloneUser(created)
	rec.add(Change{Kind: UserCreated, Origin: s.origin, UserAfter: &after})
	created.ExternalID = ext
	return created, nil
}

// linkOf returns the calling connection's link to user id.
func (e *Engine) linkOf(ctx context.Context, st Store, s scope, id string) (Link, error) {
	return s.link(ctx, st, ResourceUser, id)
}

// link returns the calling connection's link to a resource.
func (s scope) link(ctx context.Context, st Store, kind ResourceKind, id string) (Link, error) {
	links, err := st.LinksOf(ctx, s.tenant.ID, kind, id)
	if err != nil {
		return Link{}, err
	}
	return s.linkIn(links)
}

// linkIn returns the calling connection's link among a resource's links.
func (s scope) linkIn(links []Link) (Link, error) {
	for _, l := range links {
		if l.ConnectionID == s.conn.ID {
			return l, nil
		}
	}
	return Link{}, fmt.Errorf("%w: no link of connection %q", ErrNotFound, s.conn.ID)
}

// externalID returns the id the calling connection knows a resource by,
// "" when it has no link (and always for the admin API).
func (s scope) externalID(ctx context.Context, st Store, kind ResourceKind, id string) (string, error) {
	if s.isAdmin() {
		return "", nil
	}
	l, err := s.link(ctx, st, kind, id)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return l.ExternalID, err
}

// firstContact applies the connection's match rules, in order, to find the
// existing user a new identity is.
func (e *Engine) firstContact(ctx context.Context, s scope, tx Store, u User) (User, bool, error) {
	tid := s.tenant.ID
	for _, rule := range s.matchRules() {
		switch rule {
		case MatchUserName:
			ex, err := tx.UserByUserName(ctx, tid, u.UserName)
			if err == nil {
				return ex, true, nil
			}
			if !errors.Is(err, ErrNotFound) {
				return User{}, false, err
			}
		case MatchEmail:
			email := u.PrimaryEmail()
			if email == "" || !s.verifiedDomain(email) {
				continue
			}
			users, err := tx.UsersByEmail(ctx, tid, email)
			if err != nil {
				return User{}, false, err
			}
			if len(users) == 1 {
				return users[0], true, nil
			}
		case MatchPairedExternalID:
			if u.ExternalID == "" {
				continue
			}
			l, err := tx.GetLink(ctx, tid, ResourceUser, s.conn.PairedWith, u.ExternalID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return User{}, false, err
			}
			ex, err := tx.GetUser(ctx, tid, l.ResourceID)
			if err != nil {
				return User{}, false, err
			}
			return ex, true, nil // a tombstone too: the caller refuses it
		}
	}
	return User{}, false, nil
}

func (s scope) verifiedDomain(email string) bool {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	domain := email[at+1:]
	for _, d := range s.tenant.VerifiedDomains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// UpdateUser applies mutate to a copy of user id and stores the result if
// anything changed: no changed field means no write, no version bump and
// no event. Changing Active emits user.deactivated or user.reactivated
// (with every changed field in Fields); any other change user.updated.
// Changing ExternalID moves the calling connection's Link.
//
// mutate may run more than once (the engine retries version conflicts when
// pre.Version is 0); it must not have side effects. ID, TenantID, Owner,
// Version and the timestamps are kept whatever mutate does.
//
// Only the owning connection (or an admin call, or a connection the
// tenant's adoption policy lets take the user over) may write;
// otherwise *OwnerError (ErrForbidden). A deleted user is ErrNotFound.
// A pinned version that does not match is ErrVersionConflict.
func (e *Engine) UpdateUser(ctx context.Context, o Origin, id string, pre Precondition, mutate func(u *User) error) (User, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return User{}, err
	}
	var out User
	err = e.atomically(ctx, s, pre.Version != 0, func(ctx context.Context, tx Store, rec *recorder) error {
		cur, links, err := e.liveUserLinks(ctx, tx, s, id)
		if err != nil {
			return err
		}
		if pre.Version != 0 && cur.Version != pre.Version {
			return fmt.Errorf("%w: user %s is at version %d, not %d", ErrVersionConflict, id, cur.Version, pre.Version)
		}
		out, err = e.writeUser(ctx, s, tx, rec, cur, links, mutate)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return out, nil
}

// ReplaceUser replaces every attribute of user id with u's (a SCIM PUT):
// what u leaves empty is cleared. Ownership and no-op rules are
// UpdateUser's.
func (e *Engine) ReplaceUser(ctx context.Context, o Origin, id string, pre Precondition, u User) (User, error) {
	if err := validateUser(u); err != nil {
		return User{}, err
	}
	return e.UpdateUser(ctx, o, id, pre, func(cur *User) error {
		ext := u.ExternalID
		replaceUserAttrs(cur, u)
		cur.ExternalID = ext
		return nil
	})
}

// DeactivateUser sets Active false (user.deactivated): the offboarding.
// Deactivating an inactive user changes nothing.
func (e *Engine) DeactivateUser(ctx context.Context, o Origin, id string) (User, error) {
	return e.UpdateUser(ctx, o, id, Precondition{}, func(u *User) error { u.Active = false; return nil })
}

// ReactivateUser sets Active true (user.reactivated): the rehire. Only
// the owning connection or an admin call may do it.
func (e *Engine) ReactivateUser(ctx context.Context, o Origin, id string) (User, error) {
	return e.UpdateUser(ctx, o, id, Precondition{}, func(u *User) error { u.Active = true; return nil })
}

func (e *Engine) liveUser(ctx context.Context, st Store, s scope, id string) (User, error) {
	if err := checkKey("user", id); err != nil {
		return User{}, err
	}
	u, err := st.GetUser(ctx, s.tenant.ID, id)
	if err != nil {
		return User{}, err
	}
	if u.IsDeleted() {
		return User{}, fmt.Errorf("%w: user %s is deleted", ErrNotFound, id)
	}
	return u, nil
}

// liveUserLinks is liveUser with the user's links, read together (one
// call on a UserLinksGetter).
func (e *Engine) liveUserLinks(ctx context.Context, st Store, s scope, id string) (User, []Link, error) {
	if err := checkKey("user", id); err != nil {
		return User{}, nil, err
	}
	u, links, err := userAndLinks(ctx, st, s.tenant.ID, id)
	if err != nil {
		return User{}, nil, err
	}
	if u.IsDeleted() {
		return User{}, nil, fmt.Errorf("%w: user %s is deleted", ErrNotFound, id)
	}
	return u, links, nil
}

// writeUser is the one place a user changes: ownership, mutate, validate,
// diff, store, link, record. links are cur's links when the caller read
// them with it (non-nil, maybe empty), nil to read them here.
func (e *Engine) writeUser(ctx context.Context, s scope, tx Store, rec *recorder, cur User, links []Link, mutate func(*User) error) (User, error) {
	adopt, err := s.mayWrite(cur.Owner)
	if err != nil {
		return User{}, err
	}
	var link Link
	if links != nil {
		link, err = s.linkIn(links)
	} else {
		link, err = e.linkOf(ctx, tx, s, cur.ID)
	}
	hasLink := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	cur.ExternalID = link.ExternalID
	next := cloneUser(cur)
	if err := mutate(&next); err != nil {
		return User{}, err
	}
	owner := cur.Owner
	if adopt {
		if !cur.Active {
			// Nobody adopts a deprovisioned user: only its owner or an
			// admin call brings it back.
			return User{}, &OwnerError{Owner: cur.Owner, Writer: s.conn.ID}
		}
		owner = s.conn.ID
	}
	next.ID, next.TenantID, next.Owner = cur.ID, cur.TenantID, owner
	next.Version, next.Created, next.Modified, next.Deleted = cur.Version, cur.Created, cur.Modified, cur.Deleted
	if err := e.withRoles(ctx, s, tx, &cur, &next, nil); err != nil {
		return User{}, err
	}
	if err := validateUser(next); err != nil {
		return User{}, err
	}
	fields := userChanges(cur, next)
	if owner != cur.Owner {
		fields = append(fields, "owner")
	}
	if next.Active != cur.Active && !next.Active && !(s.isAdmin() || owner == s.conn.ID) {
		return User{}, &OwnerError{Owner: cur.Owner, Writer: s.conn.ID}
	}
	linkChanged := next.ExternalID != cur.ExternalID && !s.isAdmin()
	if len(fields) == 0 && !linkChanged {
		return cur, nil
	}
	if linkChanged {
		if hasLink {
			if err := tx.DeleteLink(ctx, s.tenant.ID, ResourceUser, s.conn.ID, link.ExternalID); err != nil {
				return User{}, err
			}
		}
		if next.ExternalID != "" {
			if other, err := tx.GetLink(ctx, s.tenant.ID, ResourceUser, s.conn.ID, next.ExternalID); err == nil {
				return User{}, &ConflictError{Field: "externalId", Value: next.ExternalID, ExistingID: other.ResourceID}
			}
			if err := tx.CreateLink(ctx, Link{TenantID: s.tenant.ID, Kind: ResourceUser, ConnectionID: s.conn.ID, ExternalID: next.ExternalID, ResourceID: cur.ID, Created: e.now().UTC()}); err != nil {
				return User{}, err
			}
		}
	}
	if len(fields) == 0 {
		return next, nil
	}
	ext := next.ExternalID
	next.ExternalID = ""
	next.Modified = e.now().UTC()
	stored, err := tx.UpdateUser(ctx, next, cur.Version)
	if err != nil {
		return User{}, err
	}
	kind := UserUpdated
	if stored.Active != cur.Active {
		kind = UserReactivated
		if !stored.Active {
			kind = UserDeactivated
		}
	}
	before, after := cloneUser(cur), cloneUser(stored)
	rec.add(Change{Kind: kind, Origin: s.origin, Fields: fields, UserBefore: &before, UserAfter: &after})
	stored.ExternalID = ext
	return stored, nil
}

// DeleteUser deletes user id: a tombstone. Reads answer ErrNotFound after
// it, its userName is free again, its Links stay (so just-in-time
// provisioning treats it as deprovisioned), and it leaves all its groups.
// Deleting an active user emits user.deactivated, then user.deleted, then
// group.members_removed for each group, in one transaction.
func (e *Engine) DeleteUser(ctx context.Context, o Origin, id string, pre Precondition) error {
	s, err := e.scope(ctx, o)
	if err != nil {
		return err
	}
	return e.atomically(ctx, s, pre.Version != 0, func(ctx context.Context, tx Store, rec *recorder) error {
		cur, err := e.liveUser(ctx, tx, s, id)
		if err != nil {
			return err
		}
		if pre.Version != 0 && cur.Version != pre.Version {
			return fmt.Errorf("%w: user %s is at version %d, not %d", ErrVersionConflict, id, cur.Version, pre.Version)
		}
		if _, err := s.mayWrite(cur.Owner); err != nil {
			return err
		}
		groups, err := tx.GroupsOfUser(ctx, s.tenant.ID, id)
		if err != nil {
			return err
		}
		now := e.now().UTC()
		next := cloneUser(cur)
		next.Active = false
		next.Deleted = now
		next.Modified = now
		stored, err := tx.UpdateUser(ctx, next, cur.Version)
		if err != nil {
			return err
		}
		before, after := cloneUser(cur), cloneUser(stored)
		if cur.Active {
			inactive := cloneUser(cur)
			inactive.Active = false
			rec.add(Change{Kind: UserDeactivated, Origin: s.origin, Fields: []string{"active"}, UserBefore: &before, UserAfter: &inactive})
		}
		rec.add(Change{Kind: UserDeleted, Origin: s.origin, UserBefore: &before, UserAfter: &after})
		for _, gid := range groups {
			removed, err := tx.RemoveMembers(ctx, s.tenant.ID, gid, []string{id})
			if err != nil {
				return err
			}
			if len(removed) == 0 {
				continue
			}
			g, err := tx.GetGroup(ctx, s.tenant.ID, gid)
			if err != nil {
				return err
			}
			if g, err = e.touchGroup(ctx, tx, g, false); err != nil {
				return err
			}
			rec.add(Change{Kind: GroupMembersRemoved, Origin: s.origin, GroupAfter: &g, Members: removed})
		}
		return nil
	})
}

// GetUser returns user id of o's tenant, with ExternalID as o's connection
// knows it. A deleted user is ErrNotFound.
func (e *Engine) GetUser(ctx context.Context, o Origin, id string) (User, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return User{}, err
	}
	u, err := e.liveUser(ctx, e.store, s, id)
	if err != nil {
		return User{}, err
	}
	return e.withExternalID(ctx, s, u)
}

func (e *Engine) withExternalID(ctx context.Context, s scope, u User) (User, error) {
	ext, err := s.externalID(ctx, e.store, ResourceUser, u.ID)
	if err != nil {
		return User{}, err
	}
	u.ExternalID = ext
	return u, nil
}

// ListUsers returns the live users of o's tenant that q selects, in q's
// order, and the exact number of matches.
func (e *Engine) ListUsers(ctx context.Context, o Origin, q Query) ([]User, int, error) {
	s, err := e.scope(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	if q.Page.Offset < 0 || q.Page.Limit < 0 {
		return nil, 0, &ValidationError{Field: "page", Reason: "negative offset or limit"}
	}
	users, total, err := e.findUsers(ctx, s, q)
	if err != nil {
		return nil, 0, err
	}
	for i := range users {
		if users[i], err = e.withExternalID(ctx, s, users[i]); err != nil {
			return nil, 0, err
		}
	}
	return users, total, nil
}

// ProvisionOptions says what ProvisionIdentity may do beyond resolving.
type ProvisionOptions struct {
	// Create allows creating a user on first contact when no rule matched.
	Create bool
	// Update allows writing the identity's attributes to the user (only
	// when the connection may write it; otherwise the update is skipped).
	Update bool
	// SetActive lets the identity's Active flag deactivate or reactivate
	// the user (an LDAP source that owns the user). Without it a
	// deactivated or deleted user is refused with ErrDeprovisioned.
	SetActive bool
	// KeepRoles makes an update leave the user's roles as they are,
	// ignoring the identity's (a login whose connection is not trusted to
	// assign roles).
	KeepRoles bool
	// DryRun computes what ProvisionIdentity would do and returns it
	// (the user as it would be stored and the result) without applying
	// anything: the transaction is rolled back, no event is emitted and no
	// refusal is audited. An LDAP Plan uses it.
	DryRun bool
}

// ProvisionResult says what ProvisionIdentity did.
type ProvisionResult string

// The outcomes of ProvisionIdentity.
const (
	Created     ProvisionResult = "created"
	Linked      ProvisionResult = "linked"
	Updated     ProvisionResult = "updated"
	Unchanged   ProvisionResult = "unchanged"
	Deactivated ProvisionResult = "deactivated"
	Reactivated ProvisionResult = "reactivated"
)

// ProvisionIdentity resolves what a connection says about a person to the
// tenant's user, in one transaction: through the connection's Link, else
// by the connection's match rules on first contact (writing the Link),
// else by creating the user when opts.Create. It then updates the user when
// opts.Update and the connection may write it.
//
// A deactivated or deleted user is refused with ErrDeprovisioned and left
// untouched, unless opts.SetActive and the connection owns it. No user and
// no creation is ErrNotFound.
func (e *Engine) ProvisionIdentity(ctx context.Context, o Origin, id Identity, opts ProvisionOptions) (User, ProvisionResult, error) {
	if o.ConnectionID == "" {
		o.ConnectionID = id.ConnectionID
	}
	if id.ConnectionID != "" && id.ConnectionID != o.ConnectionID {
		return User{}, "", &ValidationError{Field: "identity.connectionId", Reason: "differs from the origin's connection"}
	}
	s, err := e.scope(ctx, o)
	if err != nil {
		return User{}, "", err
	}
	if id.ExternalID == "" {
		return User{}, "", &ValidationError{Field: "identity.externalId", Reason: "required"}
	}
	u := cloneUser(id.User)
	u.ExternalID = id.ExternalID
	if err := checkLookupKeys(u); err != nil {
		return User{}, "", err
	}
	if opts.Create || opts.Update {
		if err := validateUser(u); err != nil {
			return User{}, "", err
		}
	}
	var out User
	var res ProvisionResult
	err = e.atomically(ctx, s, false, func(ctx context.Context, tx Store, rec *recorder) error {
		var err error
		out, res, err = e.provision(ctx, s, tx, rec, u, opts)
		if err == nil && opts.DryRun {
			return errDryRun
		}
		return err
	})
	if opts.DryRun && errors.Is(err, errDryRun) {
		return out, res, nil
	}
	if err != nil {
		if errors.Is(err, ErrDeprovisioned) && !opts.DryRun {
			e.refuse(ctx, s.origin, "provision.identity", err.Error(), err)
		}
		return out, "", err
	}
	return out, res, nil
}

// errDryRun rolls back the transaction of a ProvisionOptions.DryRun call.
var errDryRun = errors.New("provision: dry run")

func (e *Engine) provision(ctx context.Context, s scope, tx Store, rec *recorder, u User, opts ProvisionOptions) (User, ProvisionResult, error) {
	tid := s.tenant.ID
	var ex User
	res := Unchanged
	l, err := tx.GetLink(ctx, tid, ResourceUser, s.conn.ID, u.ExternalID)
	switch {
	case err == nil:
		if ex, err = tx.GetUser(ctx, tid, l.ResourceID); err != nil {
			return User{}, "", err
		}
	case errors.Is(err, ErrNotFound):
		found := false
		if ex, found, err = e.firstContact(ctx, s, tx, u); err != nil {
			return User{}, "", err
		}
		if !found {
			if !opts.Create {
				return User{}, "", fmt.Errorf("%w: no user for %s %q and creation is off", ErrNotFound, s.conn.ID, u.ExternalID)
			}
			if taken, err := tx.UserByUserName(ctx, tid, u.UserName); err == nil {
				return User{}, "", &ConflictError{Field: "userName", Value: u.UserName, ExistingID: taken.ID, Owner: taken.Owner}
			}
			created, err := e.insertUser(ctx, s, tx, rec, u)
			return created, Created, err
		}
		if ex.IsDeleted() || !ex.Active {
			return ex, "", fmt.Errorf("%w: user %s matched on first contact", ErrDeprovisioned, ex.ID)
		}
		if _, err := e.linkOf(ctx, tx, s, ex.ID); err == nil {
			return User{}, "", &ConflictError{Field: "externalId", Value: u.ExternalID, ExistingID: ex.ID, Owner: ex.Owner}
		}
		if err := tx.CreateLink(ctx, Link{TenantID: tid, Kind: ResourceUser, ConnectionID: s.conn.ID, ExternalID: u.ExternalID, ResourceID: ex.ID, Created: e.now().UTC()}); err != nil {
			return User{}, "", err
		}
		res = Linked
	default:
		return User{}, "", err
	}
	ex.ExternalID = u.ExternalID
	mayActivate := opts.SetActive && (ex.Owner == s.conn.ID)
	if ex.IsDeleted() || (!ex.Active && !mayActivate) {
		return ex, "", fmt.Errorf("%w: user %s", ErrDeprovisioned, ex.ID)
	}
	if !opts.Update && !mayActivate {
		return ex, res, nil
	}
	if _, err := s.mayWrite(ex.Owner); err != nil {
		return ex, res, nil // another connection manages this user: resolve only
	}
	wasActive := ex.Active
	out, err := e.writeUser(ctx, s, tx, rec, ex, nil, func(next *User) error {
		active := next.Active
		if opts.Update {
			replaceUserAttrs(next, u)
			next.ExternalID = u.ExternalID
			if opts.KeepRoles {
				next.Roles = ex.Roles
			}
		}
		next.Active = active
		if mayActivate {
			next.Active = u.Active
		}
		return nil
	})
	if err != nil {
		return User{}, "", err
	}
	switch {
	case out.Version == ex.Version:
	case out.Active && !wasActive:
		res = Reactivated
	case !out.Active && wasActive:
		res = Deactivated
	case res == Unchanged:
		res = Updated
	}
	return out, res, nil
}
