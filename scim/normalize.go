package scim

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"github.com/elimity-com/scim/schema"
)

// kind is the resource type of a body.
type kind uint8

const (
	userKind kind = iota
	groupKind
)

// extras is what the front took out of a POST or PUT body because elimity
// would drop it: attributes of extensions it does not know, attributes no
// schema names, unknown keys of the enterprise extension.
type extras struct {
	// attrs are keyed as User.Attributes and Group.Attributes keep them:
	// fully qualified with the schema URN for extension attributes.
	attrs map[string]json.RawMessage
	// blocks are the extension URNs (lower case) the body carried.
	blocks map[string]bool
}

// customOp is a PATCH operation on an attribute elimity does not know,
// applied by our handlers to the resource's Attributes.
type customOp struct {
	op    string // add, replace or remove
	key   string // the attribute, as kept in Attributes
	sub   string // a sub-attribute of it, or ""
	value any    // decoded with UseNumber; nil for remove
}

// malformedEnterpriseURN is the enterprise URN without its last colon, as
// one of Entra's documented samples writes it.
const malformedEnterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	// Only white space may follow the value: More alone misses a stray
	// "}" or "]" (`{...}}`).
	if _, err := d.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return v, nil
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

const errTrailing = jsonError("trailing data after the JSON value")

// canonJSON renders v compactly with sorted keys, so an unchanged value
// stays byte-for-byte equal across requests.
func canonJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isURN(s string) bool { return hasPrefixFold(s, "urn:") }

// getFold returns m's value for key k compared case-insensitively, and the
// key as written.
func getFold(m map[string]any, k string) (any, string, bool) {
	if v, ok := m[k]; ok {
		return v, k, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, mk, true
		}
	}
	return nil, "", false
}

func (h *Handler) coreSchema(k kind) schema.Schema {
	if k == groupKind {
		return h.groupSchema
	}
	return h.userSchema
}

func (h *Handler) coreURN(k kind) string {
	if k == groupKind {
		return groupURN
	}
	return userURN
}

// isEnterpriseBlock reports whether key names the enterprise extension
// block (its URN in any case, or the malformed form Entra's sample shows).
func isEnterpriseBlock(key string) bool {
	return strings.EqualFold(key, enterpriseURN) || strings.EqualFold(key, malformedEnterpriseURN)
}

// isCustomBlockKey guesses whether a URN key with an object value is an
// extension block ("urn:...:2.0:User") rather than one complex attribute
// of it ("urn:...:2.0:User:address"): schema URNs of resource extensions
// end with the resource type.
func isCustomBlockKey(key string) bool {
	last := key[strings.LastIndexByte(key, ':')+1:]
	return strings.EqualFold(last, "User") || strings.EqualFold(last, "Group")
}

// splitCustom returns the attribute key and the sub-attribute of a path
// to an unknown attribute ("urn:x:2.0:User:tag.sub" -> "urn:x:2.0:User:tag",
// "sub"). URNs hold dots ("2.0"), so only the part after the last colon is
// split.
func splitCustom(p string) (key, sub string) {
	i := strings.LastIndexByte(p, ':') + 1
	if j := strings.IndexByte(p[i:], '.'); j >= 0 {
		return p[:i+j], p[i+j+1:]
	}
	return p, ""
}

func boolish(v any) any {
	if s, ok := v.(string); ok {
		switch {
		case strings.EqualFold(s, "true"):
			return true
		case strings.EqualFold(s, "false"):
			return false
		}
	}
	return v
}

// normPrimary turns string booleans of "primary" in a multi-valued value
// (an element, or a list of them) into booleans.
func normPrimary(v any) {
	switch v := v.(type) {
	case map[string]any:
		if p, k, ok := getFold(v, "primary"); ok {
			v[k] = boolish(p)
		}
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				if p, k, ok := getFold(m, "primary"); ok {
					m[k] = boolish(p)
				}
			}
		}
	}
}

// normManager turns the forms Entra sends for the enterprise manager (a
// bare id string, a one-element list) into the complex value the schema
// defines.
func normManager(v any) any {
	switch m := v.(type) {
	case string:
		return map[string]any{"value": m}
	case []any:
		if len(m) == 0 {
			return nil
		}
		switch e := m[0].(type) {
		case string:
			return map[string]any{"value": e}
		case map[string]any:
			return e
		}
	}
	return v
}

// normCore normalizes one attribute of a core schema, in place.
func (h *Handler) normCore(m map[string]any, key string) {
	if h.strict {
		return
	}
	v := m[key]
	if strings.EqualFold(key, "active") {
		m[key] = boolish(v)
		return
	}
	normPrimary(v)
}

// normEnterprise normalizes the enterprise block obj; unknown keys go to
// extra (keyed fully qualified).
func (h *Handler) normEnterprise(obj map[string]any, extra func(key string, v any)) {
	for _, k := range keysOf(obj) {
		if _, ok := h.enterpriseSchema.Attributes.ContainsAttribute(k); !ok {
			extra(enterpriseURN+":"+k, obj[k])
			delete(obj, k)
			continue
		}
		if strings.EqualFold(k, "manager") && !h.strict {
			if mv := normManager(obj[k]); mv == nil {
				delete(obj, k)
			} else {
				obj[k] = mv
			}
		}
	}
}

func keysOf(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// decodeObject decodes a request body that must be a JSON object.
func decodeObject(body []byte) (map[string]any, *scimError) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, badSyntax("The request body is not valid JSON.")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badSyntax("The request body must be a JSON object.")
	}
	return m, nil
}

// prepareResource normalizes a POST or PUT body for elimity and takes out
// what elimity would drop or refuse.
func (h *Handler) prepareResource(st *request, body *[]byte, k kind) *scimError {
	m, serr := decodeObject(*body)
	if serr != nil {
		return serr
	}
	ex := &extras{attrs: map[string]json.RawMessage{}, blocks: map[string]bool{}}
	put := func(key string, v any) {
		if v != nil {
			ex.attrs[key] = canonJSON(v)
		}
	}
	core := h.coreSchema(k)
	for _, key := range keysOf(m) {
		val := m[key]
		switch {
		case strings.EqualFold(key, "schemas"):
			// The endpoint says what the resource is: a body that forgot
			// its core schema is accepted.
			if list, ok := val.([]any); ok || val == nil {
				found := false
				for _, s := range list {
					if s == h.coreURN(k) {
						found = true
					}
				}
				if !found {
					m[key] = append(list, h.coreURN(k))
				}
			}
		case strings.EqualFold(key, "id"), strings.EqualFold(key, "meta"), strings.EqualFold(key, "externalId"):
		case k == userKind && strings.EqualFold(key, "password"):
			delete(m, key)
			if s, ok := val.(string); ok && s != "" {
				st.password = &s
			} else if val != nil {
				return badValue("password must be a string.")
			}
		case k == userKind && isEnterpriseBlock(key):
			delete(m, key)
			if val == nil {
				continue
			}
			obj, ok := val.(map[string]any)
			if !ok {
				return badValue("The enterprise extension must be a JSON object.")
			}
			h.normEnterprise(obj, put)
			if cur, ok := m[enterpriseURN].(map[string]any); ok {
				for ck, cv := range obj {
					cur[ck] = cv
				}
			} else {
				m[enterpriseURN] = obj
			}
			ex.blocks[strings.ToLower(enterpriseURN)] = true
		case k == userKind && hasPrefixFold(key, enterpriseURN+":"):
			delete(m, key)
			attr := key[len(enterpriseURN)+1:]
			obj, _ := m[enterpriseURN].(map[string]any)
			if obj == nil {
				obj = map[string]any{}
				m[enterpriseURN] = obj
			}
			obj[attr] = val
			h.normEnterprise(obj, put)
			ex.blocks[strings.ToLower(enterpriseURN)] = true
		case hasPrefixFold(key, h.coreURN(k)+":"):
			delete(m, key)
			name := key[len(h.coreURN(k))+1:]
			if _, ok := core.Attributes.ContainsAttribute(name); !ok && !strings.EqualFold(name, "externalId") {
				st.drop(key)
				continue
			}
			m[name] = val
			h.normCore(m, name)
		case isURN(key):
			delete(m, key)
			if obj, ok := val.(map[string]any); ok && isCustomBlockKey(key) {
				for sk, sv := range obj {
					put(key+":"+sk, sv)
				}
				ex.blocks[strings.ToLower(key)] = true
			} else {
				put(key, val)
				ex.blocks[strings.ToLower(key[:max(strings.LastIndexByte(key, ':'), 0)])] = true
			}
		default:
			if _, ok := core.Attributes.ContainsAttribute(key); ok {
				h.normCore(m, key)
				continue
			}
			// No schema the resource declares defines it (a typo such as
			// "adreses", an attribute mapped without a namespace): dropped,
			// and named in the request log.
			delete(m, key)
			st.drop(key)
		}
	}
	if _, _, ok := getFold(m, "schemas"); !ok {
		m["schemas"] = []any{h.coreURN(k)}
	}
	st.extras = ex
	// The body is marshaled again only if elimity answers (see serve).
	st.resDoc = m
	return nil
}

// pathClass is what a PATCH path targets.
type pathClass uint8

const (
	pathCore pathClass = iota
	pathCustom
	pathPassword
	// pathUnknown is a top-level attribute no schema of the resource
	// defines: the operation is dropped (named in the request log).
	pathUnknown
)

// classify says what a PATCH path targets. For pathCustom it returns the
// attribute key and sub-attribute. Paths elimity handles are also
// normalized: the caller gets the attribute name ("active", "manager",
// "emails") to normalize the value by.
func (h *Handler) classify(k kind, p string) (class pathClass, attr, key, sub string, serr *scimError) {
	head := p
	filtered := false
	if i := strings.IndexByte(p, '['); i >= 0 {
		head, filtered = p[:i], true
	}
	switch {
	case k == userKind && hasPrefixFold(head, enterpriseURN+":"):
		a := head[len(enterpriseURN)+1:]
		if i := strings.IndexByte(a, '.'); i >= 0 {
			a = a[:i]
		}
		if _, ok := h.enterpriseSchema.Attributes.ContainsAttribute(a); !ok {
			if filtered {
				return 0, "", "", "", badPath("Value filters on attributes this server does not define are not supported.")
			}
			key, sub := splitCustom(head)
			return pathCustom, "", key, sub, nil
		}
		return pathCore, "enterprise:" + strings.ToLower(a), "", "", nil
	case hasPrefixFold(head, h.coreURN(k)+":"):
		head = head[len(h.coreURN(k))+1:]
	case isURN(head):
		if filtered {
			return 0, "", "", "", badPath("Value filters on attributes this server does not define are not supported.")
		}
		key, sub := splitCustom(head)
		return pathCustom, "", key, sub, nil
	}
	a, s, _ := strings.Cut(head, ".")
	if k == userKind && strings.EqualFold(a, "password") {
		return pathPassword, "", "", "", nil
	}
	if _, ok := h.coreSchema(k).Attributes.ContainsAttribute(a); ok || strings.EqualFold(a, "externalId") {
		attr = strings.ToLower(a)
		if filtered {
			if j := strings.LastIndexByte(p, ']'); j >= 0 && j+1 < len(p) && p[j+1] == '.' {
				s = p[j+2:]
			}
		}
		if strings.EqualFold(s, "primary") {
			attr = "primary"
		}
		return pathCore, attr, "", "", nil
	}
	if filtered {
		return 0, "", "", "", badPath("Value filters on attributes this server does not define are not supported.")
	}
	return pathUnknown, "", a, s, nil
}

// preparePatch normalizes a PATCH body for elimity: string booleans, the
// bare-string manager, a missing schemas list; and takes out operations on
// attributes elimity does not know (it would refuse them with
// invalidPath), and passwords. When nothing is left for elimity, one empty
// path-less add (a no-op by RFC 7644) keeps its non-empty rule satisfied.
func (h *Handler) preparePatch(st *request, body *[]byte, k kind) *scimError {
	m, serr := decodeObject(*body)
	if serr != nil {
		return serr
	}
	if s, _, ok := getFold(m, "schemas"); !ok || s == nil {
		m["schemas"] = []any{patchOpURN}
	}
	opsV, opsKey, ok := getFold(m, "operations")
	ops, isList := opsV.([]any)
	if !ok || !isList {
		return badValue("A PATCH request needs an Operations list.")
	}
	if len(ops) == 0 {
		return badValue("A PATCH request needs at least one operation.")
	}
	if len(ops) > 1000 {
		return &scimError{status: 400, scimType: "tooMany", detail: "A PATCH request may hold at most 1000 operations."}
	}
	kept := make([]any, 0, len(ops))
	for _, o := range ops {
		om, ok := o.(map[string]any)
		if !ok {
			return badSyntax("Each PATCH operation must be a JSON object.")
		}
		opV, _, _ := getFold(om, "op")
		opName, _ := opV.(string)
		if opName != "" {
			if opName[0] >= 'A' && opName[0] <= 'Z' {
				st.sawUpperOp = true
			} else {
				st.sawLowerOp = true
			}
		}
		opName = strings.ToLower(opName)
		pathV, _, _ := getFold(om, "path")
		path, _ := pathV.(string)
		path = strings.TrimSpace(path)
		val, valKey, hasVal := getFold(om, "value")
		if path != "" {
			class, attr, key, sub, serr := h.classify(k, path)
			if serr != nil {
				return serr
			}
			switch class {
			case pathUnknown:
				st.drop(path)
				continue
			case pathCustom:
				if opName != "add" && opName != "replace" && opName != "remove" {
					return badValue("A PATCH op must be add, replace or remove.")
				}
				if opName != "remove" && !hasVal {
					return badValue("A PATCH add or replace needs a value.")
				}
				st.customOps = append(st.customOps, customOp{op: opName, key: key, sub: sub, value: val})
				continue
			case pathPassword:
				if opName != "remove" {
					s, ok := val.(string)
					if !ok || s == "" {
						return badValue("password must be a string.")
					}
					st.password = &s
				}
				continue
			}
			if hasVal && !h.strict {
				switch attr {
				case "active", "primary":
					om[valKey] = boolish(val)
				case "enterprise:manager":
					om[valKey] = normManager(val)
				default:
					normPrimary(val)
				}
			}
			kept = append(kept, om)
			continue
		}
		obj, ok := val.(map[string]any)
		if !ok {
			kept = append(kept, om) // elimity refuses it
			continue
		}
		if serr := h.preparePathless(st, k, opName, obj); serr != nil {
			return serr
		}
		kept = append(kept, om)
	}
	if len(kept) == 0 {
		kept = append(kept, map[string]any{"op": "add", "value": map[string]any{}})
	}
	m[opsKey] = kept
	// The body is marshaled again only if elimity answers (see serve).
	st.patchDoc = m
	return nil
}

// preparePathless normalizes the value of a path-less add or replace: its
// keys are attribute paths (plain, dotted or URN-qualified) or extension
// blocks.
func (h *Handler) preparePathless(st *request, k kind, op string, obj map[string]any) *scimError {
	custom := func(key string, v any) {
		key, sub := splitCustom(key)
		st.customOps = append(st.customOps, customOp{op: op, key: key, sub: sub, value: v})
	}
	for _, key := range keysOf(obj) {
		val := obj[key]
		switch {
		case strings.EqualFold(key, "id"), strings.EqualFold(key, "meta"), strings.EqualFold(key, "schemas"):
			delete(obj, key)
		case k == userKind && strings.EqualFold(key, "password"):
			delete(obj, key)
			if s, ok := val.(string); ok && s != "" {
				st.password = &s
			} else if val != nil {
				return badValue("password must be a string.")
			}
		case k == userKind && isEnterpriseBlock(key):
			ent, ok := val.(map[string]any)
			if !ok {
				return badValue("The enterprise extension must be a JSON object.")
			}
			h.normEnterprise(ent, custom)
			if key != enterpriseURN {
				delete(obj, key)
				obj[enterpriseURN] = ent
			}
		case isURN(key) && !(k == userKind && hasPrefixFold(key, enterpriseURN+":")) && !hasPrefixFold(key, h.coreURN(k)+":"):
			delete(obj, key)
			if ext, ok := val.(map[string]any); ok && isCustomBlockKey(key) {
				for sk, sv := range ext {
					custom(key+":"+sk, sv)
				}
			} else {
				custom(key, val)
			}
		default:
			class, attr, ckey, sub, serr := h.classify(k, key)
			if serr != nil {
				return serr
			}
			switch class {
			case pathUnknown:
				delete(obj, key)
				st.drop(key)
				continue
			case pathCustom:
				delete(obj, key)
				st.customOps = append(st.customOps, customOp{op: op, key: ckey, sub: sub, value: val})
				continue
			}
			if h.strict {
				continue
			}
			switch attr {
			case "active", "primary":
				obj[key] = boolish(val)
			case "enterprise:manager":
				obj[key] = normManager(val)
			default:
				normPrimary(val)
			}
		}
	}
	return nil
}

// drop records an attribute of the request that no schema of the resource
// defines and that was dropped (RequestLog shows them: LogEntry.Dropped).
func (st *request) drop(attr string) {
	if len(st.dropped) < 20 && len(attr) <= 128 {
		st.dropped = append(st.dropped, attr)
	}
}
