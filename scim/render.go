package scim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"

	"github.com/idprov/idprov/provision"
)

// The handler renders every resource and list it answers itself, and
// hands elimity only the resource's id and version (for Location and
// ETag): elimity's rendering lists the registered extensions in schemas
// whatever the resource holds, and applies no projection.

const listResponseURN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

// location is the resource's meta.location, as elimity computes it.
func (h *Handler) location(k kind, id string) string {
	p := "Users/"
	if k == groupKind {
		p = "Groups/"
	}
	p += url.PathEscape(id)
	if h.baseURL == "" {
		return p
	}
	return h.baseURL + "/" + p
}

func metaDoc(resourceType, location string, created, modified time.Time, version int64) map[string]any {
	return map[string]any{
		"resourceType": resourceType,
		"created":      created.Format(time.RFC3339),
		"lastModified": modified.Format(time.RFC3339),
		"location":     location,
		"version":      etag(version),
	}
}

// renderUser is the full SCIM representation of u, projected by p.
func (h *Handler) renderUser(u provision.User, p *projection) map[string]any {
	d := userDoc(u)
	groupExtensions(d)
	d["id"] = u.ID
	// The enterprise extension is listed only when the user has one of
	// its attributes (appendBlocks finds its block).
	schemas := appendBlocks([]string{userURN}, d)
	d["schemas"] = schemas
	d["meta"] = metaDoc("User", h.location(userKind, u.ID), u.Created, u.Modified, u.Version)
	return p.apply(d, userKind)
}

// renderGroup is the SCIM representation of g, projected by p; members is
// added as given when withMembers (the caller lists them only when p
// wants them).
func (h *Handler) renderGroup(g provision.Group, members []string, withMembers bool, p *projection) map[string]any {
	d := groupDoc(g)
	groupExtensions(d)
	d["id"] = g.ID
	d["schemas"] = appendBlocks([]string{groupURN}, d)
	d["meta"] = metaDoc("Group", h.location(groupKind, g.ID), g.Created, g.Modified, g.Version)
	if withMembers {
		l := make([]any, len(members))
		for i, id := range members {
			l[i] = map[string]any{"value": id}
		}
		d["members"] = l
	}
	return p.apply(d, groupKind)
}

// appendBlocks adds to schemas the URN of every extension block in d
// (custom extensions included), once.
func appendBlocks(schemas []string, d map[string]any) []string {
	for k, v := range d {
		if !isURN(k) {
			continue
		}
		if _, ok := v.(map[string]any); !ok {
			continue
		}
		if !slices.ContainsFunc(schemas, func(s string) bool { return strings.EqualFold(s, k) }) {
			schemas = append(schemas, k)
		}
	}
	if len(schemas) > 2 {
		slices.Sort(schemas[1:]) // stable output: the core schema first
	}
	return schemas
}

// resource is what the handler gives elimity for a rendered resource: the
// id (for Location) and the version (for ETag); attributes must not be
// empty, or a PATCH would answer 204.
func resource(id string, version int64) elimity.Resource {
	return elimity.Resource{ID: id, Attributes: elimity.ResourceAttributes{"id": id}, Meta: elimity.Meta{Version: etag(version)}}
}

// rendered is a resource already written as JSON (the fast path).
type rendered []byte

// MarshalJSON implements json.Marshaler.
func (r rendered) MarshalJSON() ([]byte, error) { return r, nil }

// userJSON renders u, by the fast path when it applies.
func (h *Handler) userJSON(u *provision.User, p *projection) any {
	if p == nil && len(u.Attributes) == 0 {
		return rendered(h.appendUser(make([]byte, 0, 1024), u)) // one allocation for a usual user
	}
	return h.renderUser(*u, p)
}

// groupJSON renders g, by the fast path when it applies.
func (h *Handler) groupJSON(g *provision.Group, members []string, withMembers bool, p *projection) any {
	if p == nil && len(g.Attributes) == 0 {
		size := 512
		if withMembers {
			size += 80 * len(members) // {"value":"<uuid>","$ref":...} each
		}
		return rendered(h.appendGroup(make([]byte, 0, size), g, members, withMembers))
	}
	return h.renderGroup(*g, members, withMembers, p)
}

// setBody records d as the response body the front writes.
func (st *request) setBody(d any) {
	if r, ok := d.(rendered); ok {
		st.body = r
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		st.err = &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}
		return
	}
	st.body = b
}

// listResponse is a SCIM ListResponse; its fields marshal in the order
// elimity's map would (sorted keys).
type listResponse struct {
	Resources    []any    `json:"Resources"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Schemas      []string `json:"schemas"`
	StartIndex   int      `json:"startIndex"`
	TotalResults int      `json:"totalResults"`
}

func (st *request) setList(resources []any, startIndex, total int) {
	if resources == nil {
		resources = []any{}
	}
	st.isList, st.listed = true, len(resources)
	st.setBody(listResponse{Resources: resources, ItemsPerPage: len(resources), Schemas: []string{listResponseURN}, StartIndex: startIndex, TotalResults: total})
}

// A projection is a request's attributes and excludedAttributes (RFC 7644
// section 3.9): nil returns every attribute. id and schemas are always
// returned.
type projection struct {
	include []attrRef // attributes=: only these (when non-empty)
	exclude []attrRef // excludedAttributes=: all but these
}

// attrRef is one attribute path of a projection: block is "" for the
// core schema, else an extension URN; attr and sub are as written
// (compared case-insensitively); attr "" selects the whole block.
type attrRef struct {
	block, attr, sub string
}

// parseProjection reads attribute lists (comma-separated, possibly
// several values) into a projection; nil when both are empty.
func parseProjection(attributes, excluded []string) *projection {
	p := &projection{}
	for _, l := range attributes {
		for a := range strings.SplitSeq(l, ",") {
			if r, ok := parseAttrRef(a); ok {
				p.include = append(p.include, r)
			}
		}
	}
	for _, l := range excluded {
		for a := range strings.SplitSeq(l, ",") {
			if r, ok := parseAttrRef(a); ok {
				p.exclude = append(p.exclude, r)
			}
		}
	}
	if len(p.include) == 0 && len(p.exclude) == 0 {
		return nil
	}
	return p
}

func parseAttrRef(s string) (attrRef, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return attrRef{}, false
	}
	var r attrRef
	if isURN(s) {
		i := strings.LastIndexByte(s, ':')
		switch {
		case strings.EqualFold(s, userURN), strings.EqualFold(s, groupURN):
			return attrRef{block: "", attr: ""}, false // the whole core schema: no selection
		case isCustomBlockKey(s):
			return attrRef{block: s}, true
		}
		r.block, s = s[:i], s[i+1:]
		if strings.EqualFold(r.block, userURN) || strings.EqualFold(r.block, groupURN) {
			r.block = ""
		}
	}
	r.attr, r.sub, _ = strings.Cut(s, ".")
	return r, true
}

// wants reports whether the projection returns the attribute (block,
// attr) at all.
func (p *projection) wants(block, attr string) bool {
	if p == nil {
		return true
	}
	if len(p.include) > 0 {
		found := false
		for _, r := range p.include {
			if strings.EqualFold(r.block, block) && (r.attr == "" || strings.EqualFold(r.attr, attr)) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, r := range p.exclude {
		if strings.EqualFold(r.block, block) && r.sub == "" && (r.attr == "" || strings.EqualFold(r.attr, attr)) {
			return false
		}
	}
	return true
}

// wantsMembers reports whether a group's members are to be listed.
func (p *projection) wantsMembers() bool { return p.wants("", "members") }

// apply projects a rendered resource in place and returns it.
func (p *projection) apply(d map[string]any, k kind) map[string]any {
	if p == nil {
		return d
	}
	if len(p.include) > 0 {
		out := make(map[string]any, len(p.include)+2)
		out["id"], out["schemas"] = d["id"], d["schemas"]
		for _, r := range p.include {
			if r.block == "" {
				key := findKey(d, r.attr)
				v, ok := d[key]
				if !ok {
					continue
				}
				if r.sub == "" {
					out[key] = v
					continue
				}
				out[key] = mergeSub(out[key], pickSub(v, r.sub))
				continue
			}
			bkey := findKey(d, r.block)
			b, ok := d[bkey].(map[string]any)
			if !ok {
				continue
			}
			if r.attr == "" {
				out[bkey] = b
				continue
			}
			ob, _ := out[bkey].(map[string]any)
			if ob == nil {
				ob = map[string]any{}
				out[bkey] = ob
			}
			akey := findKey(b, r.attr)
			if v, ok := b[akey]; ok {
				if r.sub == "" {
					ob[akey] = v
				} else {
					ob[akey] = mergeSub(ob[akey], pickSub(v, r.sub))
				}
			}
		}
		d = out
	}
	for _, r := range p.exclude {
		c := d
		if r.block != "" {
			bkey := findKey(d, r.block)
			if r.attr == "" {
				delete(d, bkey)
				continue
			}
			b, ok := d[bkey].(map[string]any)
			if !ok {
				continue
			}
			c = b
		}
		if r.attr == "" {
			continue
		}
		key := findKey(c, r.attr)
		if strings.EqualFold(key, "id") || strings.EqualFold(key, "schemas") {
			continue // returned always
		}
		if r.sub == "" {
			delete(c, key)
			continue
		}
		switch v := c[key].(type) {
		case map[string]any:
			delete(v, findKey(v, r.sub))
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					delete(em, findKey(em, r.sub))
				}
			}
		}
	}
	return d
}

// pickSub selects the sub-attribute sub of a complex or multi-valued
// value.
func pickSub(v any, sub string) any {
	switch v := v.(type) {
	case map[string]any:
		k := findKey(v, sub)
		if sv, ok := v[k]; ok {
			return map[string]any{k: sv}
		}
		return map[string]any{}
	case []any:
		out := make([]any, 0, len(v))
		for _, e := range v {
			if em, ok := e.(map[string]any); ok {
				out = append(out, pickSub(em, sub))
			}
		}
		return out
	}
	return nil
}

// mergeSub merges two selections of one attribute (attributes=name.givenName,name.familyName).
func mergeSub(prev, next any) any {
	switch p := prev.(type) {
	case map[string]any:
		if n, ok := next.(map[string]any); ok {
			for k, v := range n {
				p[k] = v
			}
			return p
		}
	case []any:
		if n, ok := next.([]any); ok && len(n) == len(p) {
			for i := range p {
				pm, _ := p[i].(map[string]any)
				nm, _ := n[i].(map[string]any)
				for k, v := range nm {
					if pm != nil {
						pm[k] = v
					}
				}
			}
			return p
		}
	}
	return next
}
