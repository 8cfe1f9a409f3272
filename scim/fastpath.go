package scim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	ef "github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/schema"
	fp "github.com/scim2/filter-parser/v2"
)

// The fast paths of PATCH and POST. elimity's handlers re-read the body
// the front prepared (the front marshals it for them), and build their
// schema for every request (compiling a regular expression per
// attribute it adds); PATCH also re-parses every path and value key of
// every operation: together about a sixth of a PATCH's CPU. The front
// validates the body it already decoded with the same rules, against
// schemas built once: for PATCH validatePatchOps, a port of elimity's
// internal/patch validator (MIT licensed, Copyright (c) 2019 Elimity
// NV); for POST elimity's own schema.Schema.Validate. It then calls the
// resource handler itself and answers as elimity's resourcePatchHandler
// and resourcePostHandler do. Whatever elimity would refuse, and any
// body elimity could read otherwise than the front (keys differing only
// in case, operations that are not objects, an op or path that is not a
// string), is left to elimity: its answer stays the answer, byte for
// byte. fastpath_test.go compares the two, body by body.

// patchSchemas are the schemas elimity validates a PATCH against: the
// core schema with externalId (elimity's schemaWithCommon) and the
// extensions.
type patchSchemas struct {
	core schema.Schema
	exts []schema.Schema
	// byID is core and exts keyed by schema id.
	byID map[string]schema.Schema
}

// newPatchSchemas builds what elimity's ResourceType.schemaWithCommon and
// getSchemaExtensions build per request.
func newPatchSchemas(core schema.Schema, exts ...schema.Schema) *patchSchemas {
	externalID := schema.SimpleCoreAttribute(
		schema.SimpleStringParams(schema.StringParams{
			CaseExact:  true,
			Mutability: schema.AttributeMutabilityReadWrite(),
			Name:       schema.CommonAttributeExternalID,
			Uniqueness: schema.AttributeUniquenessNone(),
		}),
	)
	attrs := make([]schema.CoreAttribute, len(core.Attributes), len(core.Attributes)+1)
	copy(attrs, core.Attributes)
	core.Attributes = append(attrs, externalID)
	ps := &patchSchemas{core: core, exts: exts, byID: map[string]schema.Schema{core.ID: core}}
	for _, e := range exts {
		ps.byID[e.ID] = e
	}
	return ps
}

// servePatch answers a PATCH of /Users/{id} or /Groups/{id} whose body
// preparePatch decoded (st.patchDoc), without elimity, when the fast path
// applies; it reports whether it answered.
func (h *Handler) servePatch(w http.ResponseWriter, r *http.Request, st *request) bool {
	k := kindOf(st.route)
	endpoint, ps := "/Users", h.userPatch
	if k == groupKind {
		endpoint, ps = "/Groups", h.groupPatch
	}
	// The id as elimity's parseIdentifier reads it.
	id, err := url.PathUnescape(strings.TrimPrefix(st.route.path, endpoint+"/"))
	if err != nil {
		return false
	}
	ops, ok := validatePatchOps(ps, st.patchDoc)
	if !ok {
		return false
	}
	r2 := r.WithContext(context.WithValue(r.Context(), requestKey{}, st))
	rec := &recorder{header: w.Header(), status: http.StatusOK}
	rec.Header().Set("Content-Type", "application/scim+json")
	var res elimity.Resource
	if k == groupKind {
		res, err = groupHandler{h}.Patch(r2, id, ops)
	} else {
		res, err = userHandler{h}.Patch(r2, id, ops)
	}
	// As elimity's resourcePatchHandler.
	switch {
	case err != nil:
		se := scimerrors.CheckScimError(err, http.MethodPatch)
		writeElimityError(rec, &se)
	case len(res.Attributes) == 0:
		rec.WriteHeader(http.StatusNoContent)
	default:
		if res.Meta.Version != "" {
			rec.Header().Set("Etag", res.Meta.Version)
		}
		rec.WriteHeader(http.StatusOK)
		if st.body == nil {
			// The handlers always render the body (st.body); without
			// it elimity's rendering would be needed.
			st.err = &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}
		}
	}
	h.finish(w, rec, st)
	return true
}

// writeElimityError writes e as elimity's errorHandler does.
func writeElimityError(w http.ResponseWriter, e *scimerrors.ScimError) {
	raw, err := json.Marshal(e)
	if err != nil {
		return
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(raw)
}

// foldKey returns the value of the one key of m equal to name
// case-insensitively (as encoding/json matches a struct field), whether
// there is one, and false in unique when several keys match (elimity's
// decoder would then take the last in the marshaled order).
func foldKey(m map[string]any, name string) (v any, has, unique bool) {
	unique = true
	for k, e := range m {
		if strings.EqualFold(k, name) {
			if has {
				return nil, true, false
			}
			v, has = e, true
		}
	}
	return v, has, unique
}

// jsonString is a value decoded into a Go string field: a string, or
// null (and absent) for "". ok is false where the decoder would fail.
func jsonString(v any, has bool) (string, bool) {
	if !has || v == nil {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// validatePatchOps validates the prepared PATCH body m as elimity's
// ResourceType.validatePatch does and returns the same operations; ok is
// false when elimity would refuse it, or might read it otherwise.
func validatePatchOps(ps *patchSchemas, m map[string]any) ([]elimity.PatchOperation, bool) {
	schemasV, _, unique := foldKey(m, "schemas")
	if !unique {
		return nil, false
	}
	sl, _ := schemasV.([]any)
	if len(sl) != 1 || sl[0] != patchOpURN {
		return nil, false
	}
	opsV, _, unique := foldKey(m, "operations")
	list, isList := opsV.([]any)
	if !unique || !isList || len(list) < 1 {
		return nil, false
	}
	ops := make([]elimity.PatchOperation, 0, len(list))
	for _, o := range list {
		om, ok := o.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok := newPatchValidator(ps, om)
		if !ok {
			return nil, false
		}
		value, err := v.validate()
		if err != nil {
			return nil, false
		}
		ops = append(ops, elimity.PatchOperation{Op: v.op, Path: v.path, Value: value})
	}
	return ops, true
}

// patchValidator is elimity's patch.OperationValidator.
type patchValidator struct {
	op    string
	path  *fp.Path
	value any

	schema  schema.Schema
	schemas map[string]schema.Schema
}

// newPatchValidator is elimity's patch.NewValidator on an operation the
// front decoded.
func newPatchValidator(ps *patchSchemas, om map[string]any) (patchValidator, bool) {
	opV, opHas, u1 := foldKey(om, "op")
	pathV, pathHas, u2 := foldKey(om, "path")
	value, _, u3 := foldKey(om, "value")
	if !u1 || !u2 || !u3 {
		return patchValidator{}, false
	}
	op, ok1 := jsonString(opV, opHas)
	path, ok2 := jsonString(pathV, pathHas)
	if !ok1 || !ok2 {
		return patchValidator{}, false
	}
	op = strings.ToLower(op)
	// Okta also sends the id on PATCH requests: elimity drops it.
	if vm, ok := value.(map[string]any); ok {
		var key string
		var found bool
		for k := range vm {
			if strings.ToLower(k) == "id" {
				if found {
					return patchValidator{}, false
				}
				found, key = true, k
			}
		}
		delete(vm, key)
	}
	var p *fp.Path
	if path != "" {
		pv, err := ef.NewPathValidator(path, ps.core, ps.exts...)
		if err != nil {
			return patchValidator{}, false
		}
		if err := pv.Validate(); err != nil {
			return patchValidator{}, false
		}
		pp := pv.Path()
		p = &pp
	}
	return patchValidator{op: op, path: p, value: value, schema: ps.core, schemas: ps.byID}, true
}

func (v patchValidator) validate() (any, error) {
	switch v.op {
	case elimity.PatchOperationAdd, elimity.PatchOperationReplace:
		return v.validateUpdate()
	case elimity.PatchOperationRemove:
		return v.validateRemove()
	}
	return nil, fmt.Errorf("invalid operation Op: %s", v.op)
}

func (v patchValidator) refAttribute(attrPath fp.AttributePath) (*schema.CoreAttribute, error) {
	refSchema := v.schema
	if uri := attrPath.URI(); uri != "" {
		var ok bool
		if refSchema, ok = v.schemas[uri]; !ok {
			return nil, fmt.Errorf("invalid uri prefix: %s", uri)
		}
	}
	// Index, not range: &attr of a range variable moves every attribute
	// looked at to the heap (a CoreAttribute is large). The pointer is
	// only read.
	var refAttr *schema.CoreAttribute
	for i := range refSchema.Attributes {
		if strings.EqualFold(refSchema.Attributes[i].Name(), attrPath.AttributeName) {
			refAttr = &refSchema.Attributes[i]
			break
		}
	}
	if refAttr == nil {
		return nil, fmt.Errorf("could not find attribute %s", attrPath.AttributeName)
	}
	if sub := attrPath.SubAttributeName(); sub != "" {
		return refSubAttribute(refAttr, sub)
	}
	return refAttr, nil
}

func refSubAttribute(refAttr *schema.CoreAttribute, name string) (*schema.CoreAttribute, error) {
	if !refAttr.HasSubAttributes() {
		return nil, fmt.Errorf("the referred attribute has no sub-attributes")
	}
	subs := refAttr.SubAttributes()
	for i := range subs {
		if strings.EqualFold(subs[i].Name(), name) {
			return &subs[i], nil
		}
	}
	return nil, fmt.Errorf("could not find attribute %s", name)
}

// validateValues is the tail of elimity's validateUpdate and
// validateRemove: the value checked against refAttr; wrap makes a single
// value of a multi-valued attribute a one-element list.
func validateValues(refAttr *schema.CoreAttribute, value any, wrap bool) (any, error) {
	if !refAttr.MultiValued() {
		attr, se := refAttr.ValidateSingular(value)
		if se != nil {
			return nil, se
		}
		return attr, nil
	}
	if list, ok := value.([]any); ok {
		var attrs []any
		for _, e := range list {
			attr, se := refAttr.ValidateSingular(e)
			if se != nil {
				return nil, se
			}
			attrs = append(attrs, attr)
		}
		return attrs, nil
	}
	attr, se := refAttr.ValidateSingular(value)
	if se != nil {
		return nil, se
	}
	if !wrap {
		return attr, nil
	}
	return []any{attr}, nil
}

func (v patchValidator) validateUpdate() (any, error) {
	if v.value == nil {
		return nil, fmt.Errorf("an add operation must contain a value member")
	}
	if v.path == nil {
		return v.validateEmptyPath()
	}
	refAttr, err := v.refAttribute(v.path.AttributePath)
	if err != nil {
		return nil, err
	}
	if v.path.ValueExpression != nil {
		if err := ef.NewFilterValidator(v.path.ValueExpression, schema.Schema{Attributes: refAttr.SubAttributes()}).Validate(); err != nil {
			return nil, err
		}
	}
	if sub := v.path.SubAttributeName(); sub != "" {
		if refAttr, err = refSubAttribute(refAttr, sub); err != nil {
			return nil, err
		}
	}
	// With a value expression the value is the matched element's: not
	// wrapped in a list.
	return validateValues(refAttr, v.value, v.path.ValueExpression == nil)
}

func (v patchValidator) validateRemove() (any, error) {
	if v.path == nil {
		return nil, &scimerrors.ScimErrorNoTarget
	}
	refAttr, err := v.refAttribute(v.path.AttributePath)
	if err != nil {
		return nil, err
	}
	if v.path.ValueExpression != nil {
		if err := ef.NewFilterValidator(v.path.ValueExpression, schema.Schema{Attributes: ef.MultiValuedFilterAttributes(*refAttr)}).Validate(); err != nil {
			return nil, err
		}
	}
	if sub := v.path.SubAttributeName(); sub != "" {
		if refAttr, err = refSubAttribute(refAttr, sub); err != nil {
			return nil, err
		}
	}
	if v.value == nil {
		return nil, nil
	}
	return validateValues(refAttr, v.value, true)
}

func (v patchValidator) validateEmptyPath() (any, error) {
	attributes, ok := v.value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the given value should be a complex attribute if path is empty")
	}
	root := make(map[string]any, len(attributes))
	for p, value := range attributes {
		// A key that is a schema URI holds that extension's attributes.
		if ext, ok := v.schemas[p]; ok {
			extAttrs, ok := value.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("the value of %s should be a complex attribute", p)
			}
			ev := patchValidator{op: v.op, value: extAttrs, schema: ext, schemas: v.schemas}
			extValue, err := ev.validateEmptyPath()
			if err != nil {
				return nil, err
			}
			root[p] = extValue
			continue
		}
		path, err := valuePath(p)
		if err != nil {
			return nil, fmt.Errorf("invalid attribute path: %s", p)
		}
		sv := patchValidator{op: v.op, path: &path, value: value, schema: v.schema, schemas: v.schemas}
		out, err := sv.validate()
		if err != nil {
			return nil, err
		}
		root[p] = out
	}
	return root, nil
}

// serveCreate answers a POST of /Users or /Groups whose body
// prepareResource decoded (st.resDoc), without elimity, as elimity's
// resourcePostHandler does: the body validated by the same schemas
// (built once), the resource handler's Create called, 201 with Location
// and ETag. A body elimity's validation refuses is left to elimity; it
// reports whether it answered.
func (h *Handler) serveCreate(w http.ResponseWriter, r *http.Request, st *request) bool {
	k := kindOf(st.route)
	endpoint, ps := "/Users", h.userPatch
	if k == groupKind {
		endpoint, ps = "/Groups", h.groupPatch
	}
	// As elimity's ResourceType.validate (no extension is required).
	attrs, se := ps.core.Validate(st.resDoc)
	if se != nil {
		return false
	}
	for _, ext := range ps.exts {
		field := st.resDoc[ext.ID]
		if field == nil {
			continue
		}
		ea, se := ext.ValidateExtension(field)
		if se != nil {
			return false
		}
		attrs[ext.ID] = ea
	}
	r2 := r.WithContext(context.WithValue(r.Context(), requestKey{}, st))
	rec := &recorder{header: w.Header(), status: http.StatusOK}
	rec.Header().Set("Content-Type", "application/scim+json")
	var res elimity.Resource
	var err error
	if k == groupKind {
		res, err = groupHandler{h}.Create(r2, attrs)
	} else {
		res, err = userHandler{h}.Create(r2, attrs)
	}
	if err != nil {
		se := scimerrors.CheckScimError(err, http.MethodPost)
		writeElimityError(rec, &se)
	} else {
		rec.Header().Set("Location", h.elimityLocation(endpoint, res.ID))
		if res.Meta.Version != "" {
			rec.Header().Set("Etag", res.Meta.Version)
		}
		rec.WriteHeader(http.StatusCreated)
		if st.body == nil {
			st.err = &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}
		}
	}
	h.finish(w, rec, st)
	return true
}

// elimityLocation is elimity's resourceLocation: the Location of a
// created resource (elimity is given BaseURL without trailing slashes,
// as h.baseURL).
func (h *Handler) elimityLocation(endpoint, id string) string {
	rel := endpoint[1:] + "/" + url.PathEscape(id)
	if h.baseURL == "" {
		return rel
	}
	u, err := url.Parse(h.baseURL)
	if err != nil {
		return rel
	}
	u.Path = u.Path + "/" + rel
	return u.String()
}
