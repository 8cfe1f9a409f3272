package ldap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// fakeAD is an in-memory Active Directory behind go-ldap's Client
// interface, for what Samba does not enforce but Windows does: at most
// maxPage entries per page (MaxPageSize) and sizeLimitExceeded on an
// unpaged search beyond it, member values in ranges of maxValRange
// (MaxValRange), DirSync answers split into replies of dirSyncBatch
// objects with the more-data flag. It evaluates the filters the Syncer
// sends (and, or, not, equality, presence, >=).
type fakeAD struct {
	mu           sync.Mutex
	nc           string
	entries      []*fakeEntry
	usn          int64
	dc           string // dsServiceName
	invocation   [16]byte
	maxPage      int
	maxValRange  int
	dirSyncBatch int // objects per DirSync reply; 0: all in one
	// refuseDirSync answers DirSync with insufficientAccessRights (an
	// account without "Replicating Directory Changes").
	refuseDirSync bool
	// rejectForeign rejects DirSync cookies another DC issued.
	rejectForeign bool
	// referral, when set, is returned by every subtree search.
	referral string

	// What the Syncer asked for.
	dirSyncCookies [][]byte
	pageSizes      []uint32
	rangedReads    int
}

type fakeEntry struct {
	dn      string
	attrs   map[string][]string // lower-cased name -> values
	names   map[string]string   // lower-cased name -> name as written
	guid    [16]byte
	usn     int64
	deleted bool
}

func newFakeAD() *fakeAD {
	f := &fakeAD{nc: "DC=example,DC=test", maxPage: 1000, maxValRange: 1500,
		dc: "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=example,DC=test"}
	_, _ = rand.Read(f.invocation[:])
	return f
}

func (f *fakeAD) client(context.Context) (goldap.Client, error) { return &fakeClient{f: f}, nil }

func (e *fakeEntry) set(name string, vals ...string) {
	l := strings.ToLower(name)
	if len(vals) == 0 {
		delete(e.attrs, l)
		delete(e.names, l)
		return
	}
	e.attrs[l], e.names[l] = vals, name
}

func (f *fakeAD) add(dn string, attrs map[string][]string) *fakeEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := &fakeEntry{dn: dn, attrs: map[string][]string{}, names: map[string]string{}}
	_, _ = rand.Read(e.guid[:])
	for k, v := range attrs {
		e.set(k, v...)
	}
	e.set("objectGUID", string(e.guid[:]))
	f.usn++
	e.usn = f.usn
	f.entries = append(f.entries, e)
	return e
}

func (f *fakeAD) userDN(name string) string  { return "CN=" + name + ",OU=people," + f.nc }
func (f *fakeAD) groupDN(name string) string { return "CN=" + name + ",OU=groups," + f.nc }

func (f *fakeAD) addUser(name string, extra map[string][]string) *fakeEntry {
	attrs := map[string][]string{
		"objectClass": {"top", "person", "organizationalPerson", "user"}, "objectCategory": {"person"},
		"sAMAccountName": {name}, "userPrincipalName": {name + "@example.test"}, "givenName": {name}, "sn": {"Fake"},
		"displayName": {name + " Fake"}, "mail": {name + "@example.test"}, "userAccountControl": {"512"},
	}
	for k, v := range extra {
		attrs[k] = v
	}
	return f.add(f.userDN(name), attrs)
}

func (f *fakeAD) addGroup(name string, members ...string) *fakeEntry {
	return f.add(f.groupDN(name), map[string][]string{"objectClass": {"top", "group"}, "cn": {name}, "member": members})
}

// modify replaces attributes and moves the entry's uSNChanged.
func (f *fakeAD) modify(e *fakeEntry, attrs map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range attrs {
		e.set(k, v...)
	}
	f.usn++
	e.usn = f.usn
}

// remove deletes the entry: it becomes a tombstone under Deleted Objects
// that keeps objectClass, objectGUID, isDeleted and name.
func (f *fakeAD) remove(e *fakeEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rdn, _, _ := strings.Cut(e.dn, ",")
	e.dn = rdn + "\\0ADEL:" + guidString(e.guid[:]) + ",CN=Deleted Objects," + f.nc
	keep := map[string]bool{"objectclass": true, "objectguid": true}
	for k := range e.attrs {
		if !keep[k] {
			e.set(k)
		}
	}
	e.set("isDeleted", "TRUE")
	e.set("name", strings.TrimPrefix(rdn, "CN="))
	e.deleted = true
	f.usn++
	e.usn = f.usn
}

func (e *fakeEntry) values(attr string) []string {
	if strings.EqualFold(attr, "uSNChanged") {
		return []string{strconv.FormatInt(e.usn, 10)}
	}
	return e.attrs[strings.ToLower(attr)]
}

// match evaluates a compiled filter.
func (e *fakeEntry) match(p *ber.Packet) bool {
	switch p.Tag {
	case goldap.FilterAnd:
		for _, c := range p.Children {
			if !e.match(c) {
				return false
			}
		}
		return true
	case goldap.FilterOr:
		for _, c := range p.Children {
			if e.match(c) {
				return true
			}
		}
		return false
	case goldap.FilterNot:
		return !e.match(p.Children[0])
	case goldap.FilterPresent:
		return len(e.values(p.Data.String())) > 0
	case goldap.FilterEqualityMatch, goldap.FilterGreaterOrEqual:
		attr, want := p.Children[0].Data.String(), p.Children[1].Data.String()
		for _, v := range e.values(attr) {
			if p.Tag == goldap.FilterEqualityMatch {
				if v == want || (!strings.EqualFold(attr, "objectGUID") && strings.EqualFold(v, want)) {
					return true
				}
				continue
			}
			a, err1 := strconv.ParseInt(v, 10, 64)
			b, err2 := strconv.ParseInt(want, 10, 64)
			if err1 == nil && err2 == nil && a >= b {
				return true
			}
		}
		return false
	}
	return false
}

// under reports whether dn is base or below it (scope subtree), or base
// itself (scope base), or a child (one level).
func under(dn, base string, scope int) bool {
	d, b := dnKey(dn), dnKey(base)
	switch scope {
	case goldap.ScopeBaseObject:
		return d == b
	case goldap.ScopeSingleLevel:
		_, parent, _ := strings.Cut(d, ",")
		return parent == b
	}
	return d == b || strings.HasSuffix(d, ","+b)
}

// entry renders e with the requested attributes, member values ranged.
func (f *fakeAD) entry(e *fakeEntry, attrs []string) *goldap.Entry {
	out := &goldap.Entry{DN: e.dn}
	addAttr := func(name string, vals []string) {
		a := &goldap.EntryAttribute{Name: name, Values: vals}
		for _, v := range vals {
			a.ByteValues = append(a.ByteValues, []byte(v))
		}
		out.Attributes = append(out.Attributes, a)
	}
	for _, want := range attrs {
		name, rng, ranged := strings.Cut(want, ";range=")
		vals := e.values(name)
		if len(vals) == 0 {
			continue
		}
		lo := 0
		if ranged {
			f.rangedReads++
			lo, _ = strconv.Atoi(strings.TrimSuffix(rng, "-*"))
		}
		if !ranged && len(vals) <= f.maxValRange {
			addAttr(e.names[strings.ToLower(name)], vals)
			continue
		}
		if lo >= len(vals) {
			continue
		}
		hi := min(lo+f.maxValRange, len(vals)) - 1
		end := strconv.Itoa(hi)
		if hi == len(vals)-1 {
			end = "*"
		}
		addAttr(fmt.Sprintf("%s;range=%d-%s", e.names[strings.ToLower(name)], lo, end), vals[lo:hi+1])
	}
	return out
}

type fakeClient struct {
	goldap.Client // nil: methods the Syncer does not use panic
	f             *fakeAD
	closed        atomic.Bool
}

func (c *fakeClient) Close() error    { c.closed.Store(true); return nil }
func (c *fakeClient) IsClosing() bool { return c.closed.Load() }

type fakeResult struct {
	entry    *goldap.Entry
	referral string
	controls []goldap.Control
	err      error
}

type fakeResponse struct {
	results []fakeResult
	cur     fakeResult
	err     error
}

func (r *fakeResponse) Next() bool {
	if len(r.results) == 0 {
		return false
	}
	r.cur, r.results = r.results[0], r.results[1:]
	if r.cur.err != nil {
		r.err = r.cur.err
		return false
	}
	return true
}
func (r *fakeResponse) Entry() *goldap.Entry       { return r.cur.entry }
func (r *fakeResponse) Referral() string           { return r.cur.referral }
func (r *fakeResponse) Controls() []goldap.Control { return r.cur.controls }
func (r *fakeResponse) Err() error                 { return r.err }

func ldapErr(code uint16, msg string) error {
	return &goldap.Error{ResultCode: code, Err: errors.New(msg)}
}

func (c *fakeClient) SearchAsync(ctx context.Context, req *goldap.SearchRequest, _ int) goldap.Response {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.closed.Load() {
		return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.ErrorNetwork, "closed")}}}
	}
	if req.BaseDN == "" && req.Scope == goldap.ScopeBaseObject {
		dse := &goldap.Entry{Attributes: []*goldap.EntryAttribute{
			{Name: "supportedControl", Values: []string{goldap.ControlTypePaging, goldap.ControlTypeDirSync, goldap.ControlTypeMicrosoftShowDeleted}},
			{Name: "dsServiceName", Values: []string{f.dc}},
			{Name: "defaultNamingContext", Values: []string{f.nc}},
			{Name: "namingContexts", Values: []string{f.nc, "CN=Configuration," + f.nc}},
			{Name: "highestCommittedUSN", Values: []string{strconv.FormatInt(f.usn, 10)}},
		}}
		return &fakeResponse{results: []fakeResult{{entry: dse}, {}}}
	}
	if strings.EqualFold(req.BaseDN, f.dc) {
		inv := &goldap.Entry{DN: f.dc, Attributes: []*goldap.EntryAttribute{{Name: "invocationId", Values: []string{string(f.invocation[:])}, ByteValues: [][]byte{f.invocation[:]}}}}
		return &fakeResponse{results: []fakeResult{{entry: inv}, {}}}
	}
	filter, err := goldap.CompileFilter(req.Filter)
	if err != nil {
		return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.LDAPResultFilterError, err.Error())}}}
	}
	showDeleted := goldap.FindControl(req.Controls, goldap.ControlTypeMicrosoftShowDeleted) != nil
	var match []*fakeEntry
	for _, e := range f.entries {
		if (!e.deleted || showDeleted) && under(e.dn, req.BaseDN, req.Scope) && e.match(filter) {
			match = append(match, e)
		}
	}
	var out []fakeResult
	paging, _ := goldap.FindControl(req.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging)
	if paging == nil {
		for i, e := range match {
			if i == f.maxPage {
				return &fakeResponse{results: append(out, fakeResult{err: ldapErr(goldap.LDAPResultSizeLimitExceeded, "Size Limit Exceeded")})}
			}
			out = append(out, fakeResult{entry: f.entry(e, req.Attributes)})
		}
		return &fakeResponse{results: append(out, fakeResult{})}
	}
	f.pageSizes = append(f.pageSizes, paging.PagingSize)
	off, _ := strconv.Atoi(string(paging.Cookie))
	end := min(off+min(int(paging.PagingSize), f.maxPage), len(match))
	for _, e := range match[off:end] {
		out = append(out, fakeResult{entry: f.entry(e, req.Attributes)})
	}
	if f.referral != "" && req.Scope == goldap.ScopeWholeSubtree {
		out = append(out, fakeResult{referral: f.referral})
	}
	next := &goldap.ControlPaging{}
	if end < len(match) {
		next.Cookie = []byte(strconv.Itoa(end))
	}
	return &fakeResponse{results: append(out, fakeResult{controls: []goldap.Control{next}})}
}

// DirSyncAsync answers from a cookie "dc|usn": every object changed
// since, in USN order, dirSyncBatch at a time with the more-data flag.
func (c *fakeClient) DirSyncAsync(ctx context.Context, req *goldap.SearchRequest, _ int, flags, maxBytes int64, cookie []byte) goldap.Response {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirSyncCookies = append(f.dirSyncCookies, slices.Clone(cookie))
	if f.refuseDirSync {
		return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.LDAPResultInsufficientAccessRights, "insufficient access rights")}}}
	}
	if !strings.EqualFold(req.BaseDN, f.nc) {
		return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.LDAPResultUnwillingToPerform, "DirSync must be rooted at a naming context")}}}
	}
	var since int64
	if len(cookie) > 0 {
		dc, usn, ok := strings.Cut(string(cookie), "|")
		n, err := strconv.ParseInt(usn, 10, 64)
		if !ok || err != nil || (f.rejectForeign && dc != f.dc) {
			return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.LDAPResultUnavailableCriticalExtension, "Unable to unmarshall cookie")}}}
		}
		since = n
	}
	filter, err := goldap.CompileFilter(req.Filter)
	if err != nil {
		return &fakeResponse{results: []fakeResult{{err: ldapErr(goldap.LDAPResultFilterError, err.Error())}}}
	}
	var changed []*fakeEntry
	for _, e := range f.entries {
		if e.usn > since && e.match(filter) {
			changed = append(changed, e)
		}
	}
	slices.SortFunc(changed, func(a, b *fakeEntry) int { return int(a.usn - b.usn) })
	more := int64(0)
	last := f.usn
	if f.dirSyncBatch > 0 && len(changed) > f.dirSyncBatch {
		changed = changed[:f.dirSyncBatch]
		more, last = 1, changed[len(changed)-1].usn
	}
	var out []fakeResult
	for _, e := range changed {
		out = append(out, fakeResult{entry: f.entry(e, append(slices.Clone(req.Attributes), "objectGUID", "isDeleted"))})
	}
	ctl := &goldap.ControlDirSync{Flags: more, Cookie: []byte(f.dc + "|" + strconv.FormatInt(last, 10))}
	return &fakeResponse{results: append(out, fakeResult{controls: []goldap.Control{ctl}})}
}

var _ goldap.Client = (*fakeClient)(nil)
