package filter

import (
	"fmt"
	"strings"
)

// Resource says which resource type a filter's names are resolved
// against.
type Resource uint8

// The resource types. Any resolves against the union of both: what a
// filter means does not depend on it, only which names are known.
const (
	Any Resource = iota
	Users
	Groups
)

// The schema URNs a path may be qualified with.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
)

// attrDef is one known attribute.
type attrDef struct {
	name      string // canonical
	typ       Type
	caseExact bool
	multi     bool
	users     bool
	groups    bool
	subs      []attrDef
	// value is the sub-attribute a bare reference means ("value"), for
	// complex multi-valued attributes and manager.
	value string
}

func s(name string) attrDef { return attrDef{name: name, typ: String} }

func exact(name string) attrDef { return attrDef{name: name, typ: String, caseExact: true} }

var (
	multiSubs = []attrDef{s("value"), s("type"), s("display"), {name: "primary", typ: Boolean}}
	nameSubs  = []attrDef{s("formatted"), s("familyName"), s("givenName"), s("middleName"), s("honorificPrefix"), s("honorificSuffix")}
	addrSubs  = []attrDef{s("formatted"), s("streetAddress"), s("locality"), s("region"), s("postalCode"), s("country"), s("type"), {name: "primary", typ: Boolean}}
	metaSubs  = []attrDef{{name: "created", typ: DateTime}, {name: "lastModified", typ: DateTime}, exact("version"), s("resourceType")}
)

// schema lists the attributes of the model (provision.User and
// provision.Group) that filters can name.
var schema = func() map[string]attrDef {
	u := func(d attrDef) attrDef { d.users = true; return d }
	g := func(d attrDef) attrDef { d.groups = true; return d }
	both := func(d attrDef) attrDef { d.users, d.groups = true, true; return d }
	defs := []attrDef{
		both(exact("id")),
		both(exact("externalId")),
		both(s("displayName")),
		both(attrDef{name: "meta", typ: Complex, subs: metaSubs}),
		u(s("userName")),
		u(attrDef{name: "name", typ: Complex, subs: nameSubs}),
		u(s("nickName")),
		u(s("profileUrl")),
		u(s("title")),
		u(s("userType")),
		u(s("preferredLanguage")),
		u(s("locale")),
		u(s("timezone")),
		u(attrDef{name: "active", typ: Boolean}),
		u(attrDef{name: "emails", typ: Complex, multi: true, subs: multiSubs, value: "value"}),
		u(attrDef{name: "phoneNumbers", typ: Complex, multi: true, subs: multiSubs, value: "value"}),
		u(attrDef{name: "addresses", typ: Complex, multi: true, subs: addrSubs}),
		u(attrDef{name: "roles", typ: Complex, multi: true, subs: multiSubs, value: "value"}),
		// Enterprise extension.
		u(s("employeeNumber")),
		u(s("costCenter")),
		u(s("organization")),
		u(s("division")),
		u(s("department")),
		u(attrDef{name: "manager", typ: Complex, subs: []attrDef{exact("value")}, value: "value"}),
		g(attrDef{name: "members", typ: Complex, multi: true, subs: []attrDef{exact("value"), s("display"), s("type")}, value: "value"}),
	}
	m := make(map[string]attrDef, len(defs))
	for _, d := range defs {
		m[strings.ToLower(d.name)] = d
	}
	return m
}()

var enterpriseNames = map[string]bool{
	"employeenumber": true, "costcenter": true, "organization": true,
	"division": true, "department": true, "manager": true,
}

// Resolve resolves an attribute path ("userName", "NAME.givenName",
// "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager") to
// its canonical Attr, as Parse does for the names in a filter. Stores use
// it for Search.SortBy. An unknown name resolves to a Custom attribute; a
// known attribute with an unknown sub-attribute is an error.
func Resolve(r Resource, path string) (Attr, error) {
	a, msg := resolve(r, path)
	if msg != "" {
		return Attr{}, &SyntaxError{Filter: path, Msg: msg}
	}
	return a, nil
}

// resolve returns the Attr, or a message saying why path is invalid.
func resolve(r Resource, path string) (Attr, string) {
	if path == "" {
		return Attr{}, "empty attribute path"
	}
	urn, rest := "", path
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		urn, rest = path[:i], path[i+1:]
		if rest == "" {
			return Attr{}, fmt.Sprintf("attribute path %q ends with ':'", path)
		}
	}
	name, sub, _ := strings.Cut(rest, ".")
	if strings.Contains(sub, ".") || name == "" || (strings.Contains(rest, ".") && sub == "") {
		return Attr{}, fmt.Sprintf("invalid attribute path %q", path)
	}
	lname := strings.ToLower(name)
	d, known := schema[lname]
	if known && urn != "" {
		switch {
		case strings.EqualFold(urn, EnterpriseSchema):
			known = enterpriseNames[lname]
		case strings.EqualFold(urn, UserSchema), strings.EqualFold(urn, GroupSchema):
			known = !enterpriseNames[lname]
		default:
			known = false
		}
	}
	if known {
		switch r {
		case Users:
			known = d.users
		case Groups:
			known = d.groups
		}
	}
	if !known {
		key := name
		if urn != "" {
			key = urn + ":" + name
		}
		a := Attr{Path: key, Type: Dynamic, Custom: true, Key: key, Sub: sub}
		if sub != "" {
			a.Path = key + "." + sub
		}
		return a, ""
	}
	if sub == "" {
		if d.value != "" {
			sub = d.value
		} else {
			return Attr{Path: d.name, Type: d.typ, CaseExact: d.caseExact, Multi: d.multi}, ""
		}
	}
	for _, sd := range d.subs {
		if strings.EqualFold(sd.name, sub) {
			return Attr{Path: d.name + "." + sd.name, Type: sd.typ, CaseExact: sd.caseExact, Multi: d.multi}, ""
		}
	}
	return Attr{}, fmt.Sprintf("attribute %q has no sub-attribute %q", d.name, sub)
}

// resolveSub resolves the sub-attribute name inside parent's value path.
func resolveSub(parent Attr, name string) (Attr, string) {
	if strings.ContainsAny(name, ".:") {
		return Attr{}, fmt.Sprintf("invalid sub-attribute %q in a value path", name)
	}
	if parent.Custom {
		return Attr{Path: parent.Key + "." + name, Type: Dynamic, Custom: true, Key: parent.Key, Sub: name}, ""
	}
	d := schema[strings.ToLower(parent.Path)]
	for _, sd := range d.subs {
		if strings.EqualFold(sd.name, name) {
			return Attr{Path: d.name + "." + sd.name, Type: sd.typ, CaseExact: sd.caseExact, Multi: true}, ""
		}
	}
	return Attr{}, fmt.Sprintf("attribute %q has no sub-attribute %q", parent.Path, name)
}

// multiValued reports whether a (resolved without a sub-attribute) may
// carry a value path.
func (a Attr) multiValued() bool {
	if a.Custom {
		return a.Sub == ""
	}
	d, ok := schema[strings.ToLower(a.Path)]
	return ok && d.multi
}

// parentOf returns the bare attribute a value path names: "emails" for
// "emails.value" (a bare "emails" resolves to its value).
func parentOf(r Resource, path string) (Attr, string) {
	urn, rest := "", path
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		urn, rest = path[:i], path[i+1:]
	}
	if strings.Contains(rest, ".") {
		return Attr{}, fmt.Sprintf("a value path needs a multi-valued attribute, not %q", path)
	}
	d, known := schema[strings.ToLower(rest)]
	if known && (urn == "" || strings.EqualFold(urn, UserSchema) || strings.EqualFold(urn, GroupSchema)) &&
		(r == Any || (r == Users && d.users) || (r == Groups && d.groups)) {
		if !d.multi {
			return Attr{}, fmt.Sprintf("a value path needs a multi-valued attribute, not %q", d.name)
		}
		return Attr{Path: d.name, Type: Complex, Multi: true}, ""
	}
	a, msg := resolve(r, path)
	if msg != "" {
		return Attr{}, msg
	}
	if !a.Custom {
		return Attr{}, fmt.Sprintf("a value path needs a multi-valued attribute, not %q", a.Path)
	}
	return a, ""
}
