package scim

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"

	elimity "github.com/elimity-com/scim"
	"github.com/elimity-com/scim/schema"
	fp "github.com/scim2/filter-parser/v2"
)

// A doc is a resource as a JSON-like tree keyed by canonical attribute
// names: what PATCH operations apply to. Custom attributes are top-level
// keys holding json.RawMessage until an operation touches them.

// target is where one PATCH operation applies.
type target struct {
	c     map[string]any // the container: the doc, or the enterprise block
	attr  string         // canonical attribute name, or as sent for custom ones
	def   *schema.CoreAttribute
	multi bool
	vf    fp.Expression
	sub   string
}

// findKey returns the key of c equal to name case-insensitively, or name.
func findKey(c map[string]any, name string) string {
	if _, ok := c[name]; ok {
		return name
	}
	for k := range c {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

// materialize decodes a json.RawMessage kept in a doc.
func materialize(v any) any {
	if raw, ok := v.(json.RawMessage); ok {
		d, err := decodeJSON(raw)
		if err != nil {
			return nil
		}
		return d
	}
	return v
}

// deepCopy copies a decoded JSON value, so a doc never shares memory with
// the operations (the engine may run a mutation more than once).
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = deepCopy(e)
		}
		return l
	case json.RawMessage:
		return append(json.RawMessage(nil), v...)
	}
	return v
}

func asList(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	return []any{v}
}

func canonSub(def *schema.CoreAttribute, name string) string {
	if def != nil {
		if s, ok := def.SubAttributes().ContainsAttribute(name); ok {
			return s.Name()
		}
	}
	return name
}

// apply applies one operation at t.
func apply(op string, t target, value any) *scimError {
	key := findKey(t.c, t.attr)
	cur, exists := t.c[key]
	cur = materialize(cur)
	value = deepCopy(value)
	if !t.multi {
		if _, isList := cur.([]any); isList {
			t.multi = true // a custom multi-valued attribute
		}
	}
	switch {
	case t.vf == nil && t.sub == "":
		switch op {
		case "remove":
			if t.multi && value != nil && exists {
				t.c[key] = removeElems(asList(cur), asList(value))
			} else {
				delete(t.c, key)
			}
		case "add":
			switch cm, ok := cur.(map[string]any); {
			case t.multi:
				t.c[key] = appendElems(asList(cur), asList(value))
			case ok && isMap(value):
				merge(cm, value.(map[string]any))
				t.c[key] = cm
			default:
				t.c[key] = value
			}
		case "replace":
			switch cm, ok := cur.(map[string]any); {
			case t.multi:
				t.c[key] = asList(value)
				keepOnePrimary(asList(value), -1)
			case ok && isMap(value):
				// RFC 7644 3.5.2.3: sub-attributes not given are left unchanged.
				merge(cm, value.(map[string]any))
				t.c[key] = cm
			default:
				t.c[key] = value
			}
		}
	case t.vf == nil:
		sub := canonSub(t.def, t.sub)
		if t.multi {
			list := asList(cur)
			if len(list) == 0 && op != "remove" {
				list = []any{map[string]any{}}
			}
			for _, e := range list {
				if em, ok := e.(map[string]any); ok {
					setSub(em, op, sub, value)
				}
			}
			t.c[key] = list
			return nil
		}
		cm, _ := cur.(map[string]any)
		if cm == nil {
			if op == "remove" {
				return nil
			}
			cm = map[string]any{}
		}
		setSub(cm, op, sub, value)
		t.c[key] = cm
	default:
		list := asList(cur)
		var matched []int
		for i, e := range list {
			if em, ok := e.(map[string]any); ok && matches(t.vf, em) {
				matched = append(matched, i)
			}
		}
		sub := ""
		if t.sub != "" {
			sub = canonSub(t.def, t.sub)
		}
		if op == "remove" {
			if sub != "" {
				for _, i := range matched {
					delete(list[i].(map[string]any), findKey(list[i].(map[string]any), sub))
				}
				t.c[key] = list
				return nil
			}
			out := list[:0:0]
			mi := 0
			for i, e := range list {
				if mi < len(matched) && matched[mi] == i {
					mi++
					continue
				}
				out = append(out, e)
			}
			t.c[key] = out
			return nil
		}
		if len(matched) == 0 {
			// Create the element the path names (Entra's create-on-absent
			// for emails[type eq "work"].value).
			el := map[string]any{}
			eqConstraints(t.vf, t.def, el)
			list = append(list, el)
			matched = []int{len(list) - 1}
		}
		for _, i := range matched {
			em := list[i].(map[string]any)
			if sub != "" {
				setSub(em, op, sub, value)
			} else if vm, ok := value.(map[string]any); ok {
				merge(em, vm)
			} else {
				return badValue(fmt.Sprintf("The value for %s must be an object.", t.attr))
			}
		}
		keepOnePrimary(list, matched[len(matched)-1])
		t.c[key] = list
	}
	return nil
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

func setSub(m map[string]any, op, sub string, value any) {
	k := findKey(m, sub)
	if op == "remove" || value == nil {
		delete(m, k)
		return
	}
	if k != sub {
		delete(m, k)
	}
	m[sub] = value
}

// merge copies src's keys into dst, replacing keys equal case-insensitively.
func merge(dst, src map[string]any) {
	for k, v := range src {
		dk := findKey(dst, k)
		if dk != k {
			delete(dst, dk)
		}
		dst[k] = v
	}
}

// elemKey is what identifies an element of a multi-valued attribute for
// add and remove: its value, else the whole element.
func sameElem(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, _, aHas := getFold(am, "value")
		bv, _, bHas := getFold(bm, "value")
		if aHas && bHas {
			as, _ := av.(string)
			bs, _ := bv.(string)
			if as != "" || bs != "" {
				at, _, _ := getFold(am, "type")
				bt, _, _ := getFold(bm, "type")
				return as == bs && fmt.Sprint(at) == fmt.Sprint(bt)
			}
		}
	}
	return reflect.DeepEqual(a, b)
}

// appendElems adds the elements not present yet (RFC 7644 3.5.2.1: adding
// an existing value changes nothing); a new primary demotes the others.
func appendElems(list, add []any) []any {
	for _, a := range add {
		found := -1
		for i, e := range list {
			if sameElem(e, a) {
				found = i
				break
			}
		}
		if found >= 0 {
			if em, ok := list[found].(map[string]any); ok {
				if am, ok := a.(map[string]any); ok {
					merge(em, am)
				}
			}
		} else {
			list = append(list, a)
			found = len(list) - 1
		}
		keepOnePrimary(list, found)
	}
	return list
}

func removeElems(list, rm []any) []any {
	out := list[:0:0]
	for _, e := range list {
		drop := false
		for _, r := range rm {
			if sameElem(e, r) || sameValue(e, r) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, e)
		}
	}
	return out
}

// sameValue matches a removal by value alone ({"value":"x"} removes the
// element whose value is x, whatever its type).
func sameValue(e, r any) bool {
	em, ok1 := e.(map[string]any)
	rm, ok2 := r.(map[string]any)
	if !ok1 || !ok2 || len(rm) == 0 {
		return false
	}
	rv, _, ok := getFold(rm, "value")
	if !ok {
		return false
	}
	ev, _, _ := getFold(em, "value")
	return fmt.Sprint(ev) == fmt.Sprint(rv)
}

// keepOnePrimary demotes every element but keep (or, for keep < 0, but the
// last) that says primary: true, so at most one is primary.
func keepOnePrimary(list []any, keep int) {
	if keep < 0 {
		for i := len(list) - 1; i >= 0; i-- {
			if isPrimary(list[i]) {
				keep = i
				break
			}
		}
	}
	if keep < 0 || keep >= len(list) || !isPrimary(list[keep]) {
		return
	}
	for i, e := range list {
		if i != keep && isPrimary(e) {
			m := e.(map[string]any)
			delete(m, findKey(m, "primary"))
		}
	}
}

func isPrimary(e any) bool {
	m, ok := e.(map[string]any)
	if !ok {
		return false
	}
	p, _, _ := getFold(m, "primary")
	return boolish(p) == true
}

// matches evaluates a value filter on one element.
func matches(e fp.Expression, el map[string]any) bool {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		if e.Operator == fp.AND {
			return matches(e.Left, el) && matches(e.Right, el)
		}
		return matches(e.Left, el) || matches(e.Right, el)
	case *fp.NotExpression:
		return !matches(e.Expression, el)
	case *fp.AttributeExpression:
		name := e.AttributePath.AttributeName
		if s := e.AttributePath.SubAttributeName(); s != "" {
			name = s // "emails.type" inside emails[...]
		}
		v, _, ok := getFold(el, name)
		v = boolish(v)
		if e.Operator == fp.PR {
			return ok && v != nil && v != ""
		}
		if !ok || v == nil {
			return false
		}
		return compare(e.Operator, v, e.CompareValue)
	}
	return false
}

func compare(op fp.CompareOperator, v, lit any) bool {
	switch lv := lit.(type) {
	case string:
		s, ok := v.(string)
		if !ok {
			return false
		}
		a, b := strings.ToLower(s), strings.ToLower(lv)
		switch op {
		case fp.EQ:
			return a == b
		case fp.NE:
			return a != b
		case fp.CO:
			return strings.Contains(a, b)
		case fp.SW:
			return strings.HasPrefix(a, b)
		case fp.EW:
			return strings.HasSuffix(a, b)
		case fp.GT:
			return a > b
		case fp.GE:
			return a >= b
		case fp.LT:
			return a < b
		case fp.LE:
			return a <= b
		}
	case bool:
		b, ok := v.(bool)
		if !ok {
			return false
		}
		switch op {
		case fp.EQ:
			return b == lv
		case fp.NE:
			return b != lv
		}
	case nil:
		return false
	default:
		x, ok1 := toFloat(v)
		y, ok2 := toFloat(lv)
		if !ok1 || !ok2 {
			return false
		}
		switch op {
		case fp.EQ:
			return x == y
		case fp.NE:
			return x != y
		case fp.GT:
			return x > y
		case fp.GE:
			return x >= y
		case fp.LT:
			return x < y
		case fp.LE:
			return x <= y
		}
	}
	return false
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil && !math.IsInf(f, 0)
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

// eqConstraints sets on el the sub-attributes an "and" of "eq"
// comparisons requires.
func eqConstraints(e fp.Expression, def *schema.CoreAttribute, el map[string]any) {
	switch e := e.(type) {
	case *fp.LogicalExpression:
		if e.Operator == fp.AND {
			eqConstraints(e.Left, def, el)
			eqConstraints(e.Right, def, el)
		}
	case *fp.AttributeExpression:
		if e.Operator != fp.EQ {
			return
		}
		name := e.AttributePath.AttributeName
		if s := e.AttributePath.SubAttributeName(); s != "" {
			name = s
		}
		el[canonSub(def, name)] = e.CompareValue
	}
}

// applyOps applies elimity's validated operations and the front's custom
// ones to doc. ent is the name of the extension block (the enterprise
// URN for users, "" for groups); skip names attributes the caller handles
// itself (a group's members).
func (h *Handler) applyOps(k kind, doc map[string]any, ops []elimity.PatchOperation, custom []customOp, skip string) *scimError {
	for _, op := range ops {
		if op.Path == nil {
			obj, ok := op.Value.(map[string]any)
			if !ok {
				return badValue("A PATCH operation without a path needs an object value.")
			}
			for key, v := range obj {
				if k == userKind && strings.EqualFold(key, enterpriseURN) {
					ent, _ := v.(map[string]any)
					for ek, ev := range ent {
						t, serr := h.resolve(k, doc, fp.Path{AttributePath: fp.AttributePath{URIPrefix: ptr(enterpriseURN), AttributeName: ek}}, op.Op)
						if serr != nil {
							return serr
						}
						if t.c != nil {
							if serr := apply(op.Op, t, ev); serr != nil {
								return serr
							}
						}
					}
					continue
				}
				p, err := valuePath(key)
				if err != nil {
					return badPath("Invalid attribute path in a PATCH value.")
				}
				if skip != "" && strings.EqualFold(p.AttributePath.AttributeName, skip) {
					continue
				}
				t, serr := h.resolve(k, doc, p, op.Op)
				if serr != nil {
					return serr
				}
				if t.c != nil {
					if serr := apply(op.Op, t, v); serr != nil {
						return serr
					}
				}
			}
			continue
		}
		if skip != "" && strings.EqualFold(op.Path.AttributePath.AttributeName, skip) {
			continue
		}
		t, serr := h.resolve(k, doc, *op.Path, op.Op)
		if serr != nil {
			return serr
		}
		if t.c != nil {
			if serr := apply(op.Op, t, op.Value); serr != nil {
				return serr
			}
		}
	}
	for _, c := range custom {
		t := target{c: doc, attr: c.key, sub: c.sub}
		if serr := apply(c.op, t, c.value); serr != nil {
			return serr
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// valuePath parses key, a key of a PATCH value without a path: a plain
// attribute name ("title") or name.sub ("name.givenName"), the keys IdPs
// send, directly (the general parser costs more than the rest of a
// one-attribute PATCH); anything else through fp.ParsePath.
func valuePath(key string) (fp.Path, error) {
	name, sub, dotted := strings.Cut(key, ".")
	if !isAttrName(name) || (dotted && !isAttrName(sub)) {
		return fp.ParsePath([]byte(key))
	}
	p := fp.Path{AttributePath: fp.AttributePath{AttributeName: name}}
	if dotted {
		p.AttributePath.SubAttribute = ptr(sub)
	}
	return p, nil
}

// isAttrName reports whether s is an ATTRNAME of RFC 7644 section 3.10:
// ALPHA *("-" / "_" / DIGIT / ALPHA).
func isAttrName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_')) {
			return false
		}
	}
	return true
}

// resolve finds where path p applies in doc. A removal under an absent
// extension block yields a target with no container (nothing to do).
func (h *Handler) resolve(k kind, doc map[string]any, p fp.Path, op string) (target, *scimError) {
	sch := h.coreSchema(k)
	c := doc
	if uri := p.AttributePath.URI(); uri != "" {
		switch {
		case k == userKind && strings.EqualFold(uri, enterpriseURN):
			sch = h.enterpriseSchema
			ent, _ := doc[enterpriseURN].(map[string]any)
			if ent == nil {
				if op == "remove" {
					return target{}, nil
				}
				ent = map[string]any{}
				doc[enterpriseURN] = ent
			}
			c = ent
		case strings.EqualFold(uri, h.coreURN(k)):
		default:
			return target{}, badPath("Unknown schema in a PATCH path.")
		}
	}
	name := p.AttributePath.AttributeName
	t := target{c: c, vf: p.ValueExpression}
	if def, ok := sch.Attributes.ContainsAttribute(name); ok {
		t.attr, t.def, t.multi = def.Name(), &def, def.MultiValued()
	} else if strings.EqualFold(name, "externalId") {
		t.attr = "externalId"
	} else {
		return target{}, badPath("Unknown attribute in a PATCH path.")
	}
	t.sub = p.AttributePath.SubAttributeName()
	if s := p.SubAttributeName(); s != "" {
		t.sub = s
	}
	return t, nil
}
