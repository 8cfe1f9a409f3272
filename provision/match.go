package provision

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idprov/idprov/provision/filter"
)

// MatchUser reports whether u satisfies expr, with externalID as the value
// of its externalId attribute (the id the calling connection knows u by;
// the Store never holds it). A nil expr matches every user. It is the
// reference evaluator: a Searcher must answer exactly the users MatchUser
// accepts (storetest checks it). To test many users, a UserMatcher saves
// the allocations.
func MatchUser(expr filter.Expr, u User, externalID string) (bool, error) {
	return NewUserMatcher(expr).Match(&u, externalID)
}

// UserMatcher evaluates one filter over many users as MatchUser does,
// reusing its scratch space: what a scan should use. It is not safe for
// concurrent use.
type UserMatcher struct {
	expr filter.Expr
	ev   filter.Evaluator
	obj  userObject
}

// NewUserMatcher returns a UserMatcher for expr (nil matches every user).
func NewUserMatcher(expr filter.Expr) *UserMatcher { return &UserMatcher{expr: expr} }

// Match reports whether *u satisfies the filter, with externalID as its
// externalId. It does not keep u.
func (m *UserMatcher) Match(u *User, externalID string) (bool, error) {
	if m.expr == nil {
		return true, nil
	}
	m.obj = userObject{u: u, ext: externalID}
	ok, err := m.ev.Eval(m.expr, &m.obj)
	m.obj = userObject{}
	return ok, err
}

// MatchGroup reports whether g satisfies expr, with externalID as its
// externalId. isMember answers "members eq id" (and members[value eq id])
// comparisons; it may be nil when expr names no members. Other
// comparisons of members are refused with a *ValidationError: a group's
// members are not loaded to evaluate a filter.
func MatchGroup(expr filter.Expr, g Group, externalID string, isMember func(userID string) (bool, error)) (bool, error) {
	return NewGroupMatcher(expr).Match(&g, externalID, isMember)
}

// GroupMatcher evaluates one filter over many groups as MatchGroup does.
// It is not safe for concurrent use.
type GroupMatcher struct {
	expr filter.Expr
	ev   filter.Evaluator
	// memberIDs are the user IDs the filter compares members with.
	memberIDs []string
	err       error
}

// NewGroupMatcher returns a GroupMatcher for expr (nil matches every
// group). A filter comparing members otherwise than with eq makes every
// Match fail with a *ValidationError.
func NewGroupMatcher(expr filter.Expr) *GroupMatcher {
	m := &GroupMatcher{expr: expr}
	filter.Walk(expr, func(e filter.Expr) bool {
		var a filter.Attr
		switch e := e.(type) {
		case *filter.Compare:
			a = e.Attr
			if a.Path == "members.value" && e.Op == filter.Eq {
				if !slices.Contains(m.memberIDs, e.Value.S) {
					m.memberIDs = append(m.memberIDs, e.Value.S)
				}
				return false
			}
		case *filter.ValuePath:
			if e.Attr.Path == "members" && !e.Attr.Custom {
				return true // its comparisons are checked one by one
			}
		}
		if !a.Custom && (a.Path == "members" || strings.HasPrefix(a.Path, "members.")) {
			m.err = errMembersFilter
			return false
		}
		return m.err == nil
	})
	return m
}

// Match reports whether *g satisfies the filter, with externalID as its
// externalId, asking isMember about the user IDs the filter compares
// members with. It does not keep g.
func (m *GroupMatcher) Match(g *Group, externalID string, isMember func(userID string) (bool, error)) (bool, error) {
	if m.expr == nil {
		return true, nil
	}
	if m.err != nil {
		return false, m.err
	}
	o := groupObject{g: g, ext: externalID}
	if len(m.memberIDs) > 0 && isMember == nil {
		return false, fmt.Errorf("provision: matching %s needs isMember", m.expr)
	}
	for _, id := range m.memberIDs {
		ok, err := isMember(id)
		if err != nil {
			return false, err
		}
		if ok {
			o.members = append(o.members, id)
		}
	}
	return m.ev.Eval(m.expr, &o)
}

// SortUsers sorts users by the attribute path sortBy ("userName",
// "name.familyName", "meta.created", ...; ExternalID is read from
// User.ExternalID), keeping the given order among equal keys. Users
// lacking the attribute come last in both directions. A multi-valued
// attribute sorts by its primary (else first) value. An empty sortBy
// leaves users as they are.
func SortUsers(users []User, sortBy string, descending bool) error {
	return sortBy2(filter.Users, users, sortBy, descending, func(u *User) filter.Object {
		return &userObject{u: u, ext: u.ExternalID}
	})
}

// SortUserRefs orders pointers to users like SortUsers sorts users,
// without copying them, and with top > 0 only as far as needed: the first
// top entries are then the first top of the full order, and the rest are
// in no particular order. A store answering a sorted page of a large
// tenant asks for offset+count and copies only the page.
func SortUserRefs(users []*User, sortBy string, descending bool, top int) error {
	return sortTop(filter.Users, users, sortBy, descending, top, func(u **User) filter.Object {
		return &userObject{u: *u, ext: (*u).ExternalID}
	})
}

// SortGroups sorts groups like SortUsers sorts users. Sorting by members
// is refused.
func SortGroups(groups []Group, sortBy string, descending bool) error {
	return sortBy2(filter.Groups, groups, sortBy, descending, func(g *Group) filter.Object {
		return &groupObject{g: g, ext: g.ExternalID}
	})
}

func sortBy2[T any](r filter.Resource, items []T, sortBy string, desc bool, obj func(*T) filter.Object) error {
	return sortTop(r, items, sortBy, desc, 0, obj)
}

// sortTop sorts items by sortBy; with 0 < top < len(items) it only
// selects and sorts the first top, in O(n log top).
func sortTop[T any](r filter.Resource, items []T, sortBy string, desc bool, top int, obj func(*T) filter.Object) error {
	if sortBy == "" {
		return nil
	}
	a, err := filter.Resolve(r, sortBy)
	if err != nil {
		return &ValidationError{Field: "sortBy", Reason: err.Error()}
	}
	if a.Path == "members.value" {
		return &ValidationError{Field: "sortBy", Reason: "groups cannot be sorted by members"}
	}
	type keyed struct {
		key filter.Value
		i   int
	}
	keys := make([]keyed, len(items))
	var buf []filter.Value
	for i := range items {
		buf, err = obj(&items[i]).AppendValues(buf[:0], a)
		if err != nil {
			return err
		}
		keys[i].i = i
		if len(buf) > 0 {
			keys[i].key = buf[0]
			if !a.CaseExact && buf[0].Kind == filter.Str {
				// Fold once per item, not once per comparison.
				keys[i].key.S = filter.Fold(buf[0].S)
			}
		}
	}
	less := func(x, y keyed) int {
		px, py := filter.Present(x.key), filter.Present(y.key)
		if !px || !py {
			if c := cmp.Compare(boolInt(!px), boolInt(!py)); c != 0 {
				return c
			}
			return cmp.Compare(x.i, y.i)
		}
		c := filter.CompareValues(x.key, y.key, true)
		if desc {
			c = -c
		}
		if c == 0 {
			return cmp.Compare(x.i, y.i) // stable among equal keys
		}
		return c
	}
	if top > 0 && top < len(keys)/4 {
		keys = selectTop(keys, top, less)
	} else {
		slices.SortFunc(keys, less)
	}
	sorted := make([]T, len(items))
	seen := make([]bool, len(items))
	for j, k := range keys {
		sorted[j] = items[k.i]
		seen[k.i] = true
	}
	j := len(keys)
	for i := range items {
		if !seen[i] {
			sorted[j] = items[i]
			j++
		}
	}
	copy(items, sorted)
	return nil
}

// selectTop returns the top smallest of keys under less, sorted, keeping a
// bounded max-heap: O(n log top) time, O(top) extra space.
func selectTop[K any](keys []K, top int, less func(a, b K) int) []K {
	h := make([]K, 0, top)
	// down restores the max-heap property from i.
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			m := l
			if r := l + 1; r < len(h) && less(h[r], h[l]) > 0 {
				m = r
			}
			if less(h[m], h[i]) <= 0 {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for _, k := range keys {
		switch {
		case len(h) < top:
			h = append(h, k)
			for i := len(h) - 1; i > 0; {
				p := (i - 1) / 2
				if less(h[i], h[p]) <= 0 {
					break
				}
				h[i], h[p] = h[p], h[i]
				i = p
			}
		case less(k, h[0]) < 0:
			h[0] = k
			down(0)
		}
	}
	slices.SortFunc(h, less)
	return h
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// userObject is a User as a filter.Object.
type userObject struct {
	u   *User
	ext string
}

func str(dst []filter.Value, s string) []filter.Value {
	if s == "" {
		return dst
	}
	return append(dst, filter.Value{Kind: filter.Str, S: s})
}

func present(dst []filter.Value, ok bool) []filter.Value {
	if !ok {
		return dst
	}
	return append(dst, filter.BoolValue(true))
}

func (o *userObject) AppendValues(dst []filter.Value, a filter.Attr) ([]filter.Value, error) {
	u := o.u
	if a.Custom {
		return customValues(dst, u.Attributes, a)
	}
	parent, sub, _ := strings.Cut(a.Path, ".")
	switch parent {
	case "id":
		return str(dst, u.ID), nil
	case "externalId":
		return str(dst, o.ext), nil
	case "userName":
		return str(dst, u.UserName), nil
	case "displayName":
		return str(dst, u.DisplayName), nil
	case "nickName":
		return str(dst, u.NickName), nil
	case "profileUrl":
		return str(dst, u.ProfileURL), nil
	case "title":
		return str(dst, u.Title), nil
	case "userType":
		return str(dst, u.UserType), nil
	case "preferredLanguage":
		return str(dst, u.PreferredLanguage), nil
	case "locale":
		return str(dst, u.Locale), nil
	case "timezone":
		return str(dst, u.Timezone), nil
	case "active":
		return append(dst, filter.BoolValue(u.Active)), nil
	case "employeeNumber":
		return str(dst, u.EmployeeNumber), nil
	case "costCenter":
		return str(dst, u.CostCenter), nil
	case "organization":
		return str(dst, u.Organization), nil
	case "division":
		return str(dst, u.Division), nil
	case "department":
		return str(dst, u.Department), nil
	case "manager":
		return str(dst, u.Manager), nil
	case "meta":
		return metaValues(dst, sub, "User", u.Version, u.Created, u.Modified), nil
	case "name":
		return nameValues(dst, sub, &u.Name), nil
	case "emails":
		return appendMulti(dst, u.Emails, sub, func(e *Email) (string, string, string, bool) { return e.Value, e.Type, e.Display, e.Primary }), nil
	case "phoneNumbers":
		return appendMulti(dst, u.PhoneNumbers, sub, func(e *PhoneNumber) (string, string, string, bool) { return e.Value, e.Type, e.Display, e.Primary }), nil
	case "roles":
		return appendMulti(dst, u.Roles, sub, func(e *Role) (string, string, string, bool) { return e.Value, e.Type, e.Display, e.Primary }), nil
	case "addresses":
		if sub == "" {
			return present(dst, len(u.Addresses) > 0), nil
		}
		for pass := range 2 {
			for i := range u.Addresses {
				if ad := &u.Addresses[i]; ad.Primary == (pass == 0) {
					dst = addressValue(dst, ad, sub)
				}
			}
		}
		return dst, nil
	}
	return dst, nil
}

func (o *userObject) Elements(a filter.Attr) ([]filter.Object, error) {
	u := o.u
	if a.Custom {
		return customElements(u.Attributes, a)
	}
	var out []filter.Object
	switch a.Path {
	case "emails":
		for _, e := range u.Emails {
			out = append(out, &multiElem{value: e.Value, typ: e.Type, display: e.Display, primary: e.Primary})
		}
	case "phoneNumbers":
		for _, e := range u.PhoneNumbers {
			out = append(out, &multiElem{value: e.Value, typ: e.Type, display: e.Display, primary: e.Primary})
		}
	case "roles":
		for _, e := range u.Roles {
			out = append(out, &multiElem{value: e.Value, typ: e.Type, display: e.Display, primary: e.Primary})
		}
	case "addresses":
		for i := range u.Addresses {
			out = append(out, &addressElem{&u.Addresses[i]})
		}
	}
	return out, nil
}

// appendMulti appends sub of every element of a multi-valued attribute,
// the primary elements first (an empty sub means presence).
func appendMulti[T any](dst []filter.Value, elems []T, sub string, get func(*T) (value, typ, display string, primary bool)) []filter.Value {
	if sub == "" {
		return present(dst, len(elems) > 0)
	}
	for pass := range 2 {
		for i := range elems {
			v, t, d, p := get(&elems[i])
			if p != (pass == 0) {
				continue
			}
			dst = multiValue(dst, sub, v, t, d, p)
		}
	}
	return dst
}

func multiValue(dst []filter.Value, sub, value, typ, display string, primary bool) []filter.Value {
	switch sub {
	case "value":
		return str(dst, value)
	case "type":
		return str(dst, typ)
	case "display":
		return str(dst, display)
	case "primary":
		return append(dst, filter.BoolValue(primary))
	}
	return dst
}

// multiElem is one element of emails, phoneNumbers or roles.
type multiElem struct {
	value, typ, display string
	primary             bool
}

func (m *multiElem) AppendValues(dst []filter.Value, a filter.Attr) ([]filter.Value, error) {
	_, sub, _ := strings.Cut(a.Path, ".")
	return multiValue(dst, sub, m.value, m.typ, m.display, m.primary), nil
}

func (m *multiElem) Elements(filter.Attr) ([]filter.Object, error) { return nil, nil }

type addressElem struct{ a *Address }

func (e *addressElem) AppendValues(dst []filter.Value, a filter.Attr) ([]filter.Value, error) {
	_, sub, _ := strings.Cut(a.Path, ".")
	return addressValue(dst, e.a, sub), nil
}

func (e *addressElem) Elements(filter.Attr) ([]filter.Object, error) { return nil, nil }

func addressValue(dst []filter.Value, ad *Address, sub string) []filter.Value {
	switch sub {
	case "formatted":
		return str(dst, ad.Formatted)
	case "streetAddress":
		return str(dst, ad.StreetAddress)
	case "locality":
		return str(dst, ad.Locality)
	case "region":
		return str(dst, ad.Region)
	case "postalCode":
		return str(dst, ad.PostalCode)
	case "country":
		return str(dst, ad.Country)
	case "type":
		return str(dst, ad.Type)
	case "primary":
		return append(dst, filter.BoolValue(ad.Primary))
	}
	return dst
}

func nameValues(dst []filter.Value, sub string, n *Name) []filter.Value {
	switch sub {
	case "":
		return present(dst, *n != Name{})
	case "formatted":
		return str(dst, n.Formatted)
	case "familyName":
		return str(dst, n.FamilyName)
	case "givenName":
		return str(dst, n.GivenName)
	case "middleName":
		return str(dst, n.MiddleName)
	case "honorificPrefix":
		return str(dst, n.HonorificPrefix)
	case "honorificSuffix":
		return str(dst, n.HonorificSuffix)
	}
	return dst
}

// metaValues answers meta's sub-attributes; meta.version is the ETag
// W/"<Version>".
func metaValues(dst []filter.Value, sub, resourceType string, version int64, created, modified time.Time) []filter.Value {
	switch sub {
	case "":
		return append(dst, filter.BoolValue(true))
	case "created", "lastModified":
		t := created
		if sub == "lastModified" {
			t = modified
		}
		if v := filter.TimeValue(t); filter.Present(v) {
			return append(dst, v)
		}
		return dst
	case "version":
		return str(dst, `W/"`+strconv.FormatInt(version, 10)+`"`)
	case "resourceType":
		return str(dst, resourceType)
	}
	return dst
}

// groupObject is a Group as a filter.Object. Its members are only those
// of the user IDs the filter compares members with, which MatchGroup
// checked: that answers every comparison the filter makes.
type groupObject struct {
	g       *Group
	ext     string
	members []string
}

func (o *groupObject) AppendValues(dst []filter.Value, a filter.Attr) ([]filter.Value, error) {
	g := o.g
	if a.Custom {
		return customValues(dst, g.Attributes, a)
	}
	parent, sub, _ := strings.Cut(a.Path, ".")
	switch parent {
	case "id":
		return str(dst, g.ID), nil
	case "externalId":
		return str(dst, o.ext), nil
	case "displayName":
		return str(dst, g.DisplayName), nil
	case "meta":
		return metaValues(dst, sub, "Group", g.Version, g.Created, g.Modified), nil
	case "members":
		if sub == "value" {
			for _, m := range o.members {
				dst = str(dst, m)
			}
		}
	}
	return dst, nil
}

func (o *groupObject) Elements(a filter.Attr) ([]filter.Object, error) {
	if a.Custom {
		return customElements(o.g.Attributes, a)
	}
	if a.Path != "members" {
		return nil, nil
	}
	out := make([]filter.Object, len(o.members))
	for i, m := range o.members {
		out[i] = &multiElem{value: m}
	}
	return out, nil
}

var errMembersFilter = &ValidationError{Field: "filter", Reason: `members can only be filtered with "members eq <user id>" (or members[value eq <user id>])`}

// customValues answers a free-form attribute from Attributes, by the JSON
// type of the stored value: strings, numbers and booleans as such, the
// elements of an array one by one, an object's member Sub (or, with no
// Sub, its "value" member, else presence); a scalar's "value" is itself,
// as SCIM names the elements of a multi-valued simple attribute.
func customValues(dst []filter.Value, attrs map[string]json.RawMessage, a filter.Attr) ([]filter.Value, error) {
	raw, ok := lookupAttr(attrs, a.Key)
	if !ok {
		return dst, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return dst, nil // stored as sent: an unreadable value matches nothing
	}
	if arr, ok := v.([]any); ok {
		for _, el := range arr {
			dst = jsonValue(dst, el, a.Sub)
		}
		return dst, nil
	}
	return jsonValue(dst, v, a.Sub), nil
}

func customElements(attrs map[string]json.RawMessage, a filter.Attr) ([]filter.Object, error) {
	raw, ok := lookupAttr(attrs, a.Key)
	if !ok {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		arr = []any{v}
	}
	out := make([]filter.Object, len(arr))
	for i, el := range arr {
		out[i] = jsonElem{el}
	}
	return out, nil
}

type jsonElem struct{ v any }

func (e jsonElem) AppendValues(dst []filter.Value, a filter.Attr) ([]filter.Value, error) {
	return jsonValue(dst, e.v, a.Sub), nil
}

func (e jsonElem) Elements(filter.Attr) ([]filter.Object, error) { return nil, nil }

func lookupAttr(attrs map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if raw, ok := attrs[key]; ok {
		return raw, true
	}
	for k, raw := range attrs {
		if strings.EqualFold(k, key) {
			return raw, true
		}
	}
	return nil, false
}

func jsonValue(dst []filter.Value, v any, sub string) []filter.Value {
	if m, ok := v.(map[string]any); ok {
		key := sub
		if key == "" {
			key = "value"
		}
		for k, mv := range m {
			if strings.EqualFold(k, key) {
				return jsonValue(dst, mv, "")
			}
		}
		return present(dst, sub == "" && len(m) > 0)
	}
	if sub != "" && !strings.EqualFold(sub, "value") {
		return dst // a scalar's only sub-attribute is its value
	}
	switch v := v.(type) {
	case string:
		return str(dst, v)
	case float64:
		return append(dst, filter.NumberValue(v))
	case bool:
		return append(dst, filter.BoolValue(v))
	}
	return dst
}
