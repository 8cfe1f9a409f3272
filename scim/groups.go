package scim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	elimity "github.com/elimity-com/scim"
	fp "github.com/scim2/filter-parser/v2"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

// groupHandler is elimity's ResourceHandler for /Groups. Membership is
// its own relation in the engine: member changes cost O(change) and a
// group read with excludedAttributes=members never lists them.
type groupHandler struct{ h *Handler }

// memberIDs reads the user ids of a members value ([{"value": id}, ...]).
func memberIDs(v any) ([]string, *scimError) {
	var ids []string
	for _, e := range asList(v) {
		switch e := e.(type) {
		case map[string]any:
			id, _, _ := getFold(e, "value")
			s, ok := id.(string)
			if !ok || s == "" {
				return nil, badValue("Each member needs a string value: the user's id.")
			}
			ids = append(ids, s)
		case string:
			ids = append(ids, e)
		default:
			return nil, badValue("Each member must be an object with a value.")
		}
	}
	return ids, nil
}

// Create handles POST /Groups.
func (gh groupHandler) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	doc := map[string]any(attrs)
	members, serr := memberIDs(doc["members"])
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	delete(doc, "members")
	if st.extras != nil {
		for k, v := range st.extras.attrs {
			doc[k] = v
		}
	}
	g, serr := groupFromDoc(doc)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	created, err := h.engine.CreateGroup(r.Context(), st.origin, g, members)
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	want := st.proj.wantsMembers()
	if want && (created.Version != 1 || len(members) == 0) {
		// A retried create returns the existing group: show its members.
		if members, err = h.allMembers(r.Context(), st, created.ID); err != nil {
			return elimity.Resource{}, h.fail(st, err)
		}
	}
	return h.groupResource(st, created, members, want), nil
}

func (h *Handler) allMembers(ctx context.Context, st *request, id string) ([]string, error) {
	var out []string
	for off := 0; ; {
		page, total, err := h.engine.ListMembers(ctx, st.origin, id, provision.Page{Offset: off, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		off += len(page)
		if len(page) == 0 || off >= total {
			return out, nil
		}
	}
}

// Get handles GET /Groups/{id}, honouring excludedAttributes=members.
func (gh groupHandler) Get(r *http.Request, id string) (elimity.Resource, error) {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	g, err := h.engine.GetGroup(r.Context(), st.origin, id)
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	want := st.proj.wantsMembers()
	// The version does not cover the members: 304 only without them.
	if !want && st.notModified(g.Version) {
		return resource(g.ID, g.Version), nil
	}
	var members []string
	if want {
		if members, err = h.allMembers(r.Context(), st, id); err != nil {
			return elimity.Resource{}, h.fail(st, err)
		}
	}
	return h.groupResource(st, g, members, want), nil
}

// GetAll handles GET /Groups.
func (gh groupHandler) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return elimity.Page{}, st.err.elimity()
	}
	out, total, err := h.listGroups(r.Context(), st, st.filter, params.StartIndex-1, params.Count)
	if err != nil {
		return elimity.Page{}, h.fail(st, err)
	}
	st.setList(out, params.StartIndex, total)
	return elimity.Page{TotalResults: total, Resources: []elimity.Resource{}}, nil
}

// listGroups renders a page of groups, with their members when the
// projection wants them.
func (h *Handler) listGroups(ctx context.Context, st *request, f filter.Expr, offset, limit int) ([]any, int, error) {
	groups, total, err := h.engine.ListGroups(ctx, st.origin, provision.Query{
		Filter:     f,
		SortBy:     st.sortBy,
		Descending: st.descending,
		Page:       provision.Page{Offset: offset, Limit: limit},
	})
	if err != nil {
		return nil, 0, err
	}
	want := st.proj.wantsMembers()
	out := make([]any, len(groups))
	for i := range groups {
		var members []string
		if want {
			if members, err = h.allMembers(ctx, st, groups[i].ID); err != nil {
				return nil, 0, err
			}
		}
		out[i] = h.groupJSON(&groups[i], members, want, st.proj)
	}
	return out, total, nil
}

// Replace handles PUT /Groups/{id}. The members are replaced when the body
// has them; a body without members leaves them as they are (a PUT that
// forgot them must not empty a large group).
func (gh groupHandler) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	pre, serr := h.precondition(r, st, groupKind, id)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	doc := map[string]any(attrs)
	mv, hasMembers := doc["members"]
	members, serr := memberIDs(mv)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	delete(doc, "members")
	ex := st.extras
	if ex == nil {
		ex = &extras{}
	}
	for k, v := range ex.attrs {
		doc[k] = v
	}
	g, _, err := h.engine.UpdateGroup(r.Context(), st.origin, id, pre, provision.GroupUpdate{ReplaceMembers: hasMembers, Members: members, Mutate: func(cur *provision.Group) error {
		d := deepCopy(doc).(map[string]any)
		if _, ok := d["externalId"]; !ok && cur.ExternalID != "" {
			d["externalId"] = cur.ExternalID
		}
		for k, v := range cur.Attributes {
			if isURN(k) && !ex.blocks[strings.ToLower(k[:strings.LastIndexByte(k, ':')])] {
				if _, sent := d[k]; !sent {
					d[k] = v
				}
			}
		}
		ng, serr := groupFromDoc(d)
		if serr != nil {
			return serr
		}
		*cur = ng
		return nil
	}})
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	want := st.proj.wantsMembers()
	if !hasMembers && want {
		if members, err = h.allMembers(r.Context(), st, id); err != nil {
			return elimity.Resource{}, h.fail(st, err)
		}
	}
	return h.groupResource(st, g, dedupe(members), want), nil
}

// Delete handles DELETE /Groups/{id}.
func (gh groupHandler) Delete(r *http.Request, id string) error {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return st.err.elimity()
	}
	pre, serr := h.precondition(r, st, groupKind, id)
	if serr != nil {
		return h.fail(st, serr)
	}
	if err := h.engine.DeleteGroup(r.Context(), st.origin, id, pre); err != nil {
		return h.fail(st, err)
	}
	return nil
}

// memberPlan is the net effect of a PATCH's member operations, applied in
// order: the last operation on an id wins, a replace starts over.
type memberPlan struct {
	replaced bool
	set      []string        // after a replace: the members, in order
	inSet    map[string]bool // membership of set
	delta    map[string]bool // without a replace: true adds, false removes
	order    []string
}

func (p *memberPlan) add(ids []string, member bool) {
	for _, id := range ids {
		if p.replaced {
			if member && !p.inSet[id] {
				p.set = append(p.set, id)
			}
			p.inSet[id] = member
			continue
		}
		if _, seen := p.delta[id]; !seen {
			p.order = append(p.order, id)
		}
		p.delta[id] = member
	}
}

func (p *memberPlan) replace(ids []string) {
	p.replaced, p.set, p.inSet, p.delta, p.order = true, nil, map[string]bool{}, map[string]bool{}, nil
	p.add(ids, true)
}

func (p *memberPlan) empty() bool { return !p.replaced && len(p.order) == 0 }

// idsOfFilter reads the ids of a members filter: `value eq "id"`, joined
// by "or".
func idsOfFilter(e fp.Expression) ([]string, bool) {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		if e.Operator != fp.OR {
			return nil, false
		}
		l, ok1 := idsOfFilter(e.Left)
		r, ok2 := idsOfFilter(e.Right)
		return append(l, r...), ok1 && ok2
	case *fp.AttributeExpression:
		name := e.AttributePath.AttributeName
		if s := e.AttributePath.SubAttributeName(); s != "" {
			name = s
		}
		s, ok := e.CompareValue.(string)
		if e.Operator != fp.EQ || !strings.EqualFold(name, "value") || !ok {
			return nil, false
		}
		return []string{s}, true
	}
	return nil, false
}

func (p *memberPlan) op(op string, vf fp.Expression, value any) *scimError {
	if vf != nil {
		ids, ok := idsOfFilter(vf)
		if !ok {
			return &scimError{status: http.StatusBadRequest, scimType: "invalidFilter", detail: `Members are selected by value: members[value eq "id"].`}
		}
		if op == "remove" {
			p.add(ids, false)
		} else {
			p.add(ids, true)
		}
		return nil
	}
	var ids []string
	if value != nil {
		var serr *scimError
		if ids, serr = memberIDs(value); serr != nil {
			return serr
		}
	}
	switch op {
	case "add":
		p.add(ids, true)
	case "replace":
		p.replace(ids)
	case "remove":
		if value == nil {
			p.replace(nil) // remove all members
		} else {
			p.add(ids, false)
		}
	}
	return nil
}

// Patch handles PATCH /Groups/{id}: member operations (every dialect:
// add with $ref null, remove by value list or by members[value eq ...],
// replace) go to the engine as one membership change; the others
// (displayName, externalId, extension attributes) as one group update,
// after it. It answers 204, as Entra asks for groups.
func (gh groupHandler) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	h, st := gh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	pre, serr := h.precondition(r, st, groupKind, id)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	plan := &memberPlan{delta: map[string]bool{}, inSet: map[string]bool{}}
	other := false
	for _, op := range ops {
		if op.Path == nil {
			obj, _ := op.Value.(map[string]any)
			for k, v := range obj {
				if strings.EqualFold(k, "members") {
					if serr := plan.op(op.Op, nil, v); serr != nil {
						return elimity.Resource{}, h.fail(st, serr)
					}
				} else {
					other = true
				}
			}
			continue
		}
		if !strings.EqualFold(op.Path.AttributePath.AttributeName, "members") {
			other = true
			continue
		}
		if op.Path.SubAttributeName() != "" || op.Path.AttributePath.SubAttributeName() != "" {
			continue // a member's sub-attribute (display): nothing we keep
		}
		if serr := plan.op(op.Op, op.Path.ValueExpression, op.Value); serr != nil {
			return elimity.Resource{}, h.fail(st, serr)
		}
	}
	if len(st.customOps) > 0 {
		other = true
	}
	var p provision.GroupUpdate
	switch {
	case plan.replaced:
		p.ReplaceMembers = true
		for _, id := range plan.set {
			if plan.inSet[id] {
				p.Members = append(p.Members, id)
			}
		}
	case !plan.empty():
		for _, id := range plan.order {
			if plan.delta[id] {
				p.Add = append(p.Add, id)
			} else {
				p.Remove = append(p.Remove, id)
			}
		}
	}
	if other {
		p.Mutate = func(cur *provision.Group) error {
			doc := groupDoc(*cur)
			if serr := h.applyOps(groupKind, doc, ops, st.customOps, "members"); serr != nil {
				return serr
			}
			ng, serr := groupFromDoc(doc)
			if serr != nil {
				return serr
			}
			*cur = ng
			return nil
		}
	}
	// Attributes and members change in one transaction: a refused rename
	// leaves the members as they were.
	if _, _, err := h.engine.UpdateGroup(r.Context(), st.origin, id, pre, p); err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	return elimity.Resource{}, nil
}

func groupDoc(g provision.Group) map[string]any {
	d := make(map[string]any, 2+len(g.Attributes))
	d["displayName"] = g.DisplayName
	if g.ExternalID != "" {
		d["externalId"] = g.ExternalID
	}
	for k, v := range g.Attributes {
		d[k] = v
	}
	return d
}

var knownGroupKeys = map[string]bool{"displayname": true, "externalid": true, "members": true, "id": true, "meta": true, "schemas": true}

func groupFromDoc(d map[string]any) (provision.Group, *scimError) {
	var r docReader
	g := provision.Group{
		DisplayName: r.str(d, "displayName", "displayName"),
		ExternalID:  r.str(d, "externalId", "externalId"),
	}
	for k, v := range d {
		if knownGroupKeys[strings.ToLower(k)] || v == nil {
			continue
		}
		if g.Attributes == nil {
			g.Attributes = map[string]json.RawMessage{}
		}
		if raw, ok := v.(json.RawMessage); ok {
			g.Attributes[k] = raw
		} else {
			g.Attributes[k] = canonJSON(v)
		}
	}
	if r.err != nil {
		return provision.Group{}, r.err
	}
	return g, nil
}

// groupResource renders g as the response body and returns what elimity
// needs of it.
func (h *Handler) groupResource(st *request, g provision.Group, members []string, withMembers bool) elimity.Resource {
	if members == nil {
		members = []string{}
	}
	st.setBody(h.groupJSON(&g, members, withMembers, st.proj))
	st.resID = g.ID
	return resource(g.ID, g.Version)
}

// dedupe drops repeated ids, keeping the first.
func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
