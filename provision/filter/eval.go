package filter

import (
	"cmp"
	"strings"
	"unicode/utf8"
)

// Object is a resource seen by Eval: it hands out the values of its
// attributes. Package provision implements it for User and Group.
type Object interface {
	// AppendValues appends the values of attribute a to dst and returns
	// the extended slice: none when a is absent, one per element for a
	// sub-attribute of a multi-valued attribute (the primary element's
	// first, so that values[0] is the sort key). For a Complex attribute
	// it appends Bool true when the attribute is present. Values of a
	// DateTime attribute are Time values.
	AppendValues(dst []Value, a Attr) ([]Value, error)
	// Elements returns the elements of the multi-valued attribute a, each
	// as an Object whose AppendValues answers a's sub-attributes, for
	// ValuePath.
	Elements(a Attr) ([]Object, error)
}

// Eval reports whether o satisfies e. It returns the first error of o.
// To evaluate one expression over many objects, an Evaluator saves an
// allocation per object.
func Eval(e Expr, o Object) (bool, error) {
	var ev Evaluator
	return ev.Eval(e, o)
}

// Evaluator evaluates expressions like Eval, reusing its scratch space
// from one call to the next. The zero value is ready to use; an Evaluator
// is not safe for concurrent use.
type Evaluator struct {
	buf []Value
}

// Eval reports whether o satisfies e.
func (ev *Evaluator) Eval(e Expr, o Object) (bool, error) {
	switch e := e.(type) {
	case *Logical:
		l, err := ev.Eval(e.Left, o)
		if err != nil {
			return false, err
		}
		if (e.Op == And) != l { // false and _, true or _
			return l, nil
		}
		return ev.Eval(e.Right, o)
	case *Not:
		x, err := ev.Eval(e.X, o)
		return !x, err
	case *Compare:
		vs, err := o.AppendValues(ev.buf[:0], e.Attr)
		ev.buf = vs[:0]
		if err != nil {
			return false, err
		}
		for _, v := range vs {
			if e.Test(v) {
				return true, nil
			}
		}
		return false, nil
	case *ValuePath:
		elems, err := o.Elements(e.Attr)
		if err != nil {
			return false, err
		}
		for _, el := range elems {
			ok, err := ev.Eval(e.Filter, el)
			if ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	}
	return false, nil
}

// Present reports whether v counts as a value for pr: not Null and not
// the empty string.
func Present(v Value) bool {
	return v.Kind != Null && !(v.Kind == Str && v.S == "")
}

// Test reports whether the single attribute value v satisfies the
// comparison: the rules of the package documentation. Values of another
// kind than the filter's literal never match.
func (c *Compare) Test(v Value) bool {
	if c.Op == Pr {
		return Present(v)
	}
	if !Present(v) || v.Kind != c.Value.Kind {
		return false
	}
	var r int
	switch v.Kind {
	case Str:
		a, b := v.S, c.Value.S
		if !c.Attr.CaseExact {
			a, b = Fold(a), Fold(b)
		}
		switch c.Op {
		case Co:
			return strings.Contains(a, b)
		case Sw:
			return strings.HasPrefix(a, b)
		case Ew:
			return strings.HasSuffix(a, b)
		}
		r = strings.Compare(a, b)
	case Num:
		r = cmp.Compare(v.N, c.Value.N)
	case Bool:
		switch c.Op {
		case Eq:
			return v.B == c.Value.B
		case Ne:
			return v.B != c.Value.B
		}
		return false
	case Time:
		r = v.T.Compare(c.Value.T)
	default:
		return false
	}
	switch c.Op {
	case Eq:
		return r == 0
	case Ne:
		return r != 0
	case Gt:
		return r > 0
	case Ge:
		return r >= 0
	case Lt:
		return r < 0
	case Le:
		return r <= 0
	}
	return false // co, sw, ew on a non-string
}

// Fold is the case folding of case-insensitive comparisons:
// strings.ToLower, of strings.ToUpper for non-ASCII text (so that the
// Kelvin sign folds like "k", as strings.EqualFold has it). Stores that
// index case-insensitive attributes should key their indexes by it, so an
// index lookup and Eval agree. ASCII text already in lower case is
// returned without allocating.
func Fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.ToLower(strings.ToUpper(s))
		}
	}
	return strings.ToLower(s)
}

// CompareValues orders two attribute values for sorting: absent values
// after present ones, then by kind, then by value (strings folded unless
// caseExact).
func CompareValues(a, b Value, caseExact bool) int {
	pa, pb := Present(a), Present(b)
	switch {
	case !pa || !pb:
		return cmp.Compare(boolInt(!pa), boolInt(!pb))
	case a.Kind != b.Kind:
		return cmp.Compare(a.Kind, b.Kind)
	}
	switch a.Kind {
	case Str:
		if caseExact {
			return strings.Compare(a.S, b.S)
		}
		return strings.Compare(Fold(a.S), Fold(b.S))
	case Num:
		return cmp.Compare(a.N, b.N)
	case Bool:
		return cmp.Compare(boolInt(a.B), boolInt(b.B))
	case Time:
		return a.T.Compare(b.T)
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Walk calls fn for e and, while fn returns true, for its sub-expressions
// in depth-first order (a ValuePath's Filter included).
func Walk(e Expr, fn func(Expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch e := e.(type) {
	case *Logical:
		Walk(e.Left, fn)
		Walk(e.Right, fn)
	case *Not:
		Walk(e.X, fn)
	case *ValuePath:
		Walk(e.Filter, fn)
	}
}

// Rewrite returns e with every *Compare replaced by fn's result (fn
// returns its argument to keep it). Nodes that do not change are shared
// with e.
func Rewrite(e Expr, fn func(*Compare) (Expr, error)) (Expr, error) {
	switch x := e.(type) {
	case *Logical:
		l, err := Rewrite(x.Left, fn)
		if err != nil {
			return nil, err
		}
		r, err := Rewrite(x.Right, fn)
		if err != nil {
			return nil, err
		}
		if l == x.Left && r == x.Right {
			return e, nil
		}
		return &Logical{Op: x.Op, Left: l, Right: r}, nil
	case *Not:
		y, err := Rewrite(x.X, fn)
		if err != nil || y == x.X {
			return e, err
		}
		return &Not{X: y}, nil
	case *ValuePath:
		return e, nil // element comparisons name sub-attributes only
	case *Compare:
		return fn(x)
	}
	return e, nil
}
