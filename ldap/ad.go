package ldap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// Active Directory: DirSync and uSNChanged incremental syncs, the cursor's
// domain controller, ranged attribute values.

// resyncError says a stored cursor cannot be used: a full sync takes
// over, with the reason in Report.FullReason.
type resyncError struct{ reason string }

func (e *resyncError) Error() string { return "ldap: full sync needed: " + e.reason }

// dirSyncMaxBytes is DirSync's MaxBytes (go-ldap's maxAttrCount): 0 lets
// the server use its own cap. Windows splits a large answer into replies
// of about that size and sets the more-data flag; dirSync loops on it.
const dirSyncMaxBytes = 0

// rangedReadsMax bounds the ranged reads of one attribute of one entry
// (a million values at Windows' 1,500 a read).
const rangedReadsMax = 1000

// namingContext returns the naming context (partition) holding dn: the
// base a DirSync search must use.
func (d *rootDSE) namingContext(dn string) string {
	target, err := goldap.ParseDN(dn)
	if err != nil {
		return ""
	}
	best, bestLen := "", -1
	for _, nc := range append([]string{d.defaultNC}, d.namingContexts...) {
		p, err := goldap.ParseDN(nc)
		if nc == "" || err != nil {
			continue
		}
		if (p.EqualFold(target) || p.AncestorOfFold(target)) && len(p.RDNs) > bestLen {
			best, bestLen = nc, len(p.RDNs)
		}
	}
	return best
}

// dcIdentity returns the DC's dsServiceName and the invocationId of its
// database ("" when the account may not read it).
func (c *conn) dcIdentity(ctx context.Context, dse *rootDSE) (string, string, error) {
	if dse.dsServiceName == "" {
		return "", "", nil
	}
	e, err := c.readEntry(ctx, dse.dsServiceName, []string{"invocationId"})
	if err != nil {
		if ctx.Err() != nil || !isServerError(err) {
			return "", "", err
		}
		return dse.dsServiceName, "", nil
	}
	inv := ""
	if e != nil {
		inv = guidString(e.GetEqualFoldRawAttributeValue("invocationId"))
	}
	return dse.dsServiceName, inv, nil
}

// isServerError reports whether err is an LDAP result from the server
// (not a lost connection or a client-side failure).
func isServerError(err error) bool {
	var le *goldap.Error
	return errors.As(err, &le) && le.ResultCode > 0 && le.ResultCode < goldap.ErrorNetwork
}

// dirSyncRefused reports whether DirSync was refused for want of the
// "Replicating Directory Changes" right (or not offered at all).
func dirSyncRefused(err error) bool {
	return goldap.IsErrorAnyOf(err, goldap.LDAPResultInsufficientAccessRights, goldap.LDAPResultUnwillingToPerform,
		goldap.LDAPResultUnavailableCriticalExtension, goldap.LDAPResultConfidentialityRequired)
}

// adCursor takes the cursor of an Active Directory incremental mode
// before a full sync reads: a DirSync cookie for the current state, or
// the DC's highest committed USN when DirSync is refused (or asked for).
// It returns the mode the cursor is for.
func (s *Syncer) adCursor(ctx context.Context, c *conn, rep *Report, mode Mode, cur *cursor) (Mode, error) {
	dse, err := c.rootDSE(ctx)
	if err != nil {
		return mode, err
	}
	if cur.DC, cur.InvocationID, err = c.dcIdentity(ctx, dse); err != nil {
		return mode, err
	}
	if mode == ModeDirSync {
		nc := dse.namingContext(s.cfg.UserBaseDN)
		if nc == "" {
			return mode, fmt.Errorf("ldap: DirSync: no naming context of the root DSE holds %q", s.cfg.UserBaseDN)
		}
		// A filter that matches nothing: the answer is only a cookie.
		cookie, err := c.dirSync(ctx, nc, nothing, []string{s.cfg.Mapping.ID}, nil, func(*goldap.Entry) error { return nil })
		switch {
		case err == nil:
			cur.DirSyncCookie = cookie
			return ModeDirSync, nil
		case ctx.Err() == nil && dirSyncRefused(err):
			rep.Note = "DirSync refused (" + err.Error() + "): polling uSNChanged instead; grant the bind account \"Replicating Directory Changes\" on the domain to use DirSync"
			s.log().WarnContext(ctx, "ldap: DirSync refused; polling uSNChanged", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err)
		default:
			return mode, err
		}
	}
	if dse.highestUSN <= 0 {
		return mode, errors.New("ldap: uSNChanged polling: the root DSE has no highestCommittedUSN (is this Active Directory?)")
	}
	cur.USN = dse.highestUSN
	return ModeUSNChanged, nil
}

// dirSync runs a DirSync search from cookie until the server clears the
// more-data flag, handing every object to fn, and returns the last
// cookie. Each call is a fresh request: go-ldap's DirSync keeps the
// control (and so the first cookie) of a reused request.
func (c *conn) dirSync(ctx context.Context, base, filter string, attrs []string, cookie []byte, fn func(*goldap.Entry) error) ([]byte, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		req := goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
		r := c.c.DirSyncAsync(pctx, req, 64, 0, dirSyncMaxBytes, cookie)
		var done *goldap.ControlDirSync
		var ferr error
		for r.Next() {
			if e := r.Entry(); e != nil {
				if ferr = fn(e); ferr != nil {
					cancel()
					break
				}
			}
			if ref := r.Referral(); ref != "" {
				c.referrals.Add(1)
			}
			if ctl, ok := goldap.FindControl(r.Controls(), goldap.ControlTypeDirSync).(*goldap.ControlDirSync); ok {
				done = ctl
			}
		}
		err := searchErr(ctx, pctx, r.Err(), base)
		cancel()
		switch {
		case ferr != nil:
			return nil, ferr
		case err != nil:
			return nil, fmt.Errorf("ldap: DirSync: %w", err)
		case done == nil:
			return nil, fmt.Errorf("%w: the DirSync search of %q ended without its DirSync control", ErrIncomplete, base)
		}
		if len(done.Cookie) > 0 {
			cookie = done.Cookie
		}
		if done.Flags == 0 {
			return cookie, nil
		}
	}
}

// adChanges is what an Active Directory incremental sync works with.
type adChanges struct {
	c                     *conn
	r                     *run
	userQuery, groupQuery search
	users, groups         func([]*goldap.Entry) error
	changedGroups         map[string]bool
}

// adIncremental reads the changes since cur by DirSync or uSNChanged and
// applies the changed users and reads the changed groups; it returns the
// ids of the users and groups deleted (or gone out of scope). It fails
// with a resyncError when the cursor belongs to another DC (uSNChanged),
// the DC was restored from a backup, or the DC rejects the DirSync
// cookie.
func (s *Syncer) adIncremental(ctx context.Context, ch *adChanges, cur, next *cursor) (gone, goneGroups []string, err error) {
	c := ch.c
	dse, err := c.rootDSE(ctx)
	if err != nil {
		return nil, nil, err
	}
	dc, inv, err := c.dcIdentity(ctx, dse)
	if err != nil {
		return nil, nil, err
	}
	otherDC := cur.DC != "" && !strings.EqualFold(dc, cur.DC)
	if !otherDC && cur.InvocationID != "" && inv != "" && inv != cur.InvocationID {
		return nil, nil, &resyncError{fmt.Sprintf("the domain controller %s was restored (its invocationId changed from %s to %s)", dc, cur.InvocationID, inv)}
	}
	next.DC, next.InvocationID = dc, inv
	if cur.Mode == ModeUSNChanged {
		if otherDC {
			return nil, nil, &resyncError{fmt.Sprintf("the uSNChanged cursor came from %s, and %s answered: USNs are local to a domain controller", cur.DC, dc)}
		}
		return s.usnChanges(ctx, ch, dse, cur, next)
	}

	m := s.cfg.Mapping
	nc := dse.namingContext(s.cfg.UserBaseDN)
	if nc == "" {
		return nil, nil, fmt.Errorf("ldap: DirSync: no naming context of the root DSE holds %q", s.cfg.UserBaseDN)
	}
	// Tombstones keep objectClass but lose objectCategory: without
	// (isDeleted=TRUE) a user filter on objectCategory drops them.
	filter := "(|" + s.cfg.userFilter
	if s.cfg.GroupBaseDN != "" {
		filter += s.cfg.groupFilter
	}
	filter += "(isDeleted=TRUE))"
	changed := map[string]string{} // id -> DN
	var deleted []string
	cookie, err := c.dirSync(ctx, nc, filter, dirSyncAttributes(m), cur.DirSyncCookie, func(e *goldap.Entry) error {
		id := m.entryID(e)
		switch {
		case id == "":
		case strings.EqualFold(e.GetEqualFoldAttributeValue("isDeleted"), "TRUE"):
			deleted = append(deleted, id)
		default:
			changed[id] = e.DN
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil && isServerError(err) {
			from := ""
			if otherDC {
				from = " from " + cur.DC
			}
			return nil, nil, &resyncError{fmt.Sprintf("the domain controller %s rejected the DirSync cookie%s: %v", dc, from, err)}
		}
		return nil, nil, err
	}
	next.DirSyncCookie = cookie

	cache := s.cache
	cache.mu.Lock()
	for _, id := range deleted {
		delete(changed, id)
		if _, ok := cache.groups[id]; ok {
			goneGroups = append(goneGroups, id)
		} else {
			gone = append(gone, id)
		}
	}
	var userIDs, groupIDs []string
	userBase, groupBase := dnKey(s.cfg.UserBaseDN), dnKey(s.cfg.GroupBaseDN)
	for id, dn := range changed {
		isUser := cache.hasUser(id)
		_, isGroup := cache.groups[id]
		if !isUser && !isGroup && !below(dnKey(dn), userBase) && (s.cfg.GroupBaseDN == "" || !below(dnKey(dn), groupBase)) {
			continue // never in scope, and not there now: another OU's object
		}
		if !isGroup {
			userIDs = append(userIDs, id)
		}
		if !isUser && s.cfg.GroupBaseDN != "" {
			groupIDs = append(groupIDs, id)
		}
	}
	cache.mu.Unlock()
	slices.Sort(userIDs)
	slices.Sort(groupIDs)

	// DirSync sends only the changed attributes: re-read the objects,
	// whole, by id, in scope.
	if err := c.readByID(ctx, m, ch.userQuery, userIDs, ch.users); err != nil {
		return nil, nil, err
	}
	if err := c.readByID(ctx, m, ch.groupQuery, groupIDs, ch.groups); err != nil {
		return nil, nil, err
	}
	// Known objects that changed and are no longer in scope (moved out of
	// the base, or out of the filter) are gone.
	cache.mu.Lock()
	for _, id := range userIDs {
		if cache.hasUser(id) && !ch.r.touched[id] {
			gone = append(gone, id)
		}
	}
	for _, id := range groupIDs {
		if _, known := cache.groups[id]; known && !ch.changedGroups[id] {
			goneGroups = append(goneGroups, id)
		}
	}
	cache.mu.Unlock()
	return gone, goneGroups, nil
}

// below reports whether the DN key dn is base or under it.
func below(dn, base string) bool {
	return dn == base || strings.HasSuffix(dn, ","+base)
}

// readByIDBatch is how many ids one re-read search names.
const readByIDBatch = 100

// readByID reads the entries of q whose ids are in ids, in batches.
func (c *conn) readByID(ctx context.Context, m Mapping, q search, ids []string, fn func([]*goldap.Entry) error) error {
	for len(ids) > 0 {
		n := min(len(ids), readByIDBatch)
		var f strings.Builder
		f.WriteString("(&" + q.filter + "(|")
		for _, id := range ids[:n] {
			f.WriteString(m.idFilter(id))
		}
		f.WriteString("))")
		ids = ids[n:]
		qq := q
		qq.filter = f.String()
		if err := c.pagedSearch(ctx, qq, fn); err != nil {
			return err
		}
	}
	return nil
}

// dirSyncAttributes are the attributes a DirSync search asks for: DirSync
// reports an object only when one of them changed, so every mapped one.
func dirSyncAttributes(m Mapping) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range append(append(m.userAttributes(), m.groupAttributes()...), "objectGUID", "isDeleted", "name") {
		if l := strings.ToLower(a); a != "" && !seen[l] && l != "modifytimestamp" {
			seen[l] = true
			out = append(out, a)
		}
	}
	return out
}

// usnChanges polls the users, groups and tombstones whose uSNChanged is
// above cur.USN.
func (s *Syncer) usnChanges(ctx context.Context, ch *adChanges, dse *rootDSE, cur, next *cursor) (gone, goneGroups []string, err error) {
	c, rep := ch.c, ch.r.rep
	since := "(uSNChanged>=" + strconv.FormatInt(cur.USN+1, 10) + ")"
	q := ch.userQuery
	q.filter = "(&" + s.cfg.userFilter + since + ")"
	if err := c.pagedSearch(ctx, q, ch.users); err != nil {
		return nil, nil, err
	}
	if s.cfg.GroupBaseDN != "" {
		// A membership change moves the group's uSNChanged, not the
		// user's.
		q := ch.groupQuery
		q.filter = "(&" + s.cfg.groupFilter + since + ")"
		if err := c.pagedSearch(ctx, q, ch.groups); err != nil {
			return nil, nil, err
		}
	}
	rep.NotSwept = "uSNChanged polling sees neither entries moved out of scope nor deletes the bind account cannot read as tombstones: the periodic full sync sweeps"
	if nc := dse.namingContext(s.cfg.UserBaseDN); nc != "" {
		tq := search{base: nc, scope: goldap.ScopeWholeSubtree, filter: "(&(isDeleted=TRUE)" + since + ")", attrs: []string{s.cfg.Mapping.ID},
			controls: []goldap.Control{goldap.NewControlMicrosoftShowDeleted()}}
		err := c.pagedSearch(ctx, tq, func(entries []*goldap.Entry) error {
			s.cache.mu.Lock()
			defer s.cache.mu.Unlock()
			for _, e := range entries {
				id := s.cfg.Mapping.entryID(e)
				if _, ok := s.cache.groups[id]; ok {
					goneGroups = append(goneGroups, id)
				} else if id != "" {
					gone = append(gone, id)
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil || !isServerError(err) {
				return nil, nil, err
			}
			s.log().WarnContext(ctx, "ldap: tombstones unreadable; deletes wait for the full sync", "tenant", s.cfg.TenantID, "connection", s.cfg.ConnectionID, "error", err)
		}
	}
	next.USN = dse.highestUSN
	return gone, goneGroups, nil
}

// completeRanges reads the rest of the ranged values of attrs on e
// (Active Directory returns at most MaxValRange values of a multi-valued
// attribute per read, 1,500 by default, as member;range=0-1499) and
// replaces them with one attribute holding every value. A ranged read
// that fails or returns no entry makes the search incomplete.
func (c *conn) completeRanges(ctx context.Context, e *goldap.Entry, attrs []string) error {
	for _, a := range attrs {
		prefix := strings.ToLower(a) + ";range="
		idx := -1
		for i, at := range e.Attributes {
			if strings.HasPrefix(strings.ToLower(at.Name), prefix) {
				idx = i
				break
			}
		}
		if idx < 0 {
			continue
		}
		vals := e.Attributes[idx].Values
		hi, err := rangeEnd(e.Attributes[idx].Name, prefix)
		if err != nil {
			return fmt.Errorf("%w: %s of %q: %w", ErrIncomplete, a, e.DN, err)
		}
		for reads := 0; hi >= 0; reads++ {
			if reads == rangedReadsMax {
				return fmt.Errorf("%w: %s of %q: more than %d ranged reads", ErrIncomplete, a, e.DN, rangedReadsMax)
			}
			got, err := c.readEntry(ctx, e.DN, []string{fmt.Sprintf("%s;range=%d-*", a, hi+1)})
			if err != nil {
				return err
			}
			if got == nil {
				return fmt.Errorf("%w: the ranged read of %s of %q returned no entry", ErrIncomplete, a, e.DN)
			}
			next := -1 // no ranged attribute: no more values
			for _, at := range got.Attributes {
				if strings.HasPrefix(strings.ToLower(at.Name), prefix) {
					vals = append(vals, at.Values...)
					if next, err = rangeEnd(at.Name, prefix); err != nil {
						return fmt.Errorf("%w: %s of %q: %w", ErrIncomplete, a, e.DN, err)
					}
				}
			}
			if next >= 0 && next <= hi {
				return fmt.Errorf("%w: %s of %q: the range does not advance past %d", ErrIncomplete, a, e.DN, hi)
			}
			hi = next
		}
		e.Attributes[idx] = &goldap.EntryAttribute{Name: a, Values: vals}
	}
	return nil
}

// rangeEnd parses the end of "member;range=0-1499": 1499, or -1 for "*"
// (the last values).
func rangeEnd(name, prefix string) (int, error) {
	_, end, ok := strings.Cut(name[len(prefix):], "-")
	if !ok {
		return 0, fmt.Errorf("malformed range %q", name)
	}
	if end == "*" {
		return -1, nil
	}
	n, err := strconv.Atoi(end)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("malformed range %q", name)
	}
	return n, nil
}
