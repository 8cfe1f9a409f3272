// Package filter is idprov's query language: one AST for SCIM filters
// (RFC 7644 section 3.4.2.2 plus the forms Microsoft Entra ID sends), its
// parser, the comparison rules every store applies, and a generic
// evaluator.
//
// Parse (or ParseFor, to resolve names against one resource type) turns a
// SCIM filter string into an Expr: a tree of *Logical, *Not, *Compare and
// *ValuePath nodes whose attribute names are already resolved, case
// insensitively, to the model's canonical names and types:
//
//	e, err := filter.Parse(`USERNAME eq "bjensen@example.com" and emails[type eq "work"].value co "@example"`)
//	// e.String() == `userName eq "bjensen@example.com" and emails[type eq "work" and value co "@example"]`
//
// Name resolution. Core and enterprise attributes resolve with or without
// their schema URN ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
// and "employeeNumber" are the same Attr). A complex multi-valued
// attribute named without a sub-attribute means its value
// ("emails eq x" is "emails.value eq x", "manager eq x" is "manager.value
// eq x"). A name the model does not know is not an error: it resolves to a
// free-form attribute (Attr.Custom), looked up in User.Attributes or
// Group.Attributes by its name as written (URN included), compared by the
// JSON type of the stored value. A known attribute with an unknown
// sub-attribute ("name.nickname", "emails[kind eq x]") is a *SyntaxError.
//
// Comparison rules (Compare.Test). A comparison holds when some value of
// the attribute satisfies it (SCIM's rule for multi-valued attributes); an
// absent or empty attribute satisfies no comparison, ne included: use
// "not (a eq b)" to include resources lacking a. Strings compare case
// insensitively (folded by Fold) except caseExact attributes (id,
// externalId, members.value, manager.value, meta.version); dateTime
// attributes compare as instants (the filter value must be an RFC 3339
// time); booleans allow eq and ne only (Entra's "True" and "False" strings
// are accepted); numbers compare numerically. Ordering a boolean, or
// co/sw/ew on a non-string, is a *SyntaxError at parse time for typed
// attributes and false at run time for free-form ones.
//
// Entra's `emails[type eq "work"].value eq "x"` is rewritten into the
// value path `emails[type eq "work" and value eq "x"]`, and a value path
// holding a single comparison into that comparison
// (`emails[value eq "x"]` is `emails.value eq "x"`), so stores see one
// shape for one meaning.
//
// Parsing is bounded: a filter longer than MaxLength bytes or nested
// deeper than MaxDepth is rejected with a *SyntaxError matching
// ErrTooComplex.
//
// Eval evaluates an Expr over any resource described by the Object
// interface; package provision implements it for User and Group
// (provision.MatchUser, provision.MatchGroup), and the stores' searchers
// use those, so every store answers a filter the same way.
package filter

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Expr is a parsed filter expression. It is one of *Logical, *Not,
// *Compare and *ValuePath.
type Expr interface {
	// String renders the expression in SCIM filter syntax, with canonical
	// attribute names; Parse of the result gives the same expression.
	String() string
	expr()
}

// LogicalOp is "and" or "or".
type LogicalOp string

// The logical operators.
const (
	And LogicalOp = "and"
	Or  LogicalOp = "or"
)

// Logical is "Left and Right" or "Left or Right".
type Logical struct {
	Op          LogicalOp
	Left, Right Expr
}

// Not is "not (X)".
type Not struct {
	X Expr
}

// Op is a comparison operator.
type Op string

// The comparison operators of RFC 7644.
const (
	Eq Op = "eq" // equal
	Ne Op = "ne" // not equal
	Co Op = "co" // contains
	Sw Op = "sw" // starts with
	Ew Op = "ew" // ends with
	Pr Op = "pr" // present (has a value)
	Gt Op = "gt" // greater than
	Ge Op = "ge" // greater than or equal
	Lt Op = "lt" // less than
	Le Op = "le" // less than or equal
)

// Compare is "Attr Op Value", or "Attr pr" (Value is then the zero Value).
type Compare struct {
	Attr  Attr
	Op    Op
	Value Value
}

// ValuePath is "Attr[Filter]": some element of the multi-valued attribute
// Attr satisfies Filter. The comparisons inside Filter name the elements'
// sub-attributes with full paths ("emails.type"); String renders them
// relative ("emails[type eq \"work\"]").
type ValuePath struct {
	// Attr is the multi-valued attribute: its Path is "emails",
	// "phoneNumbers", "addresses", "roles" or "members", or it is Custom
	// with an empty Sub.
	Attr   Attr
	Filter Expr
}

func (*Logical) expr()   {}
func (*Not) expr()       {}
func (*Compare) expr()   {}
func (*ValuePath) expr() {}

// String implements Expr. Operands of a different logical operator are
// parenthesized; "and" binds tighter than "or".
func (e *Logical) String() string {
	var b strings.Builder
	writeExpr(&b, e, "")
	return b.String()
}

// String implements Expr.
func (e *Not) String() string {
	var b strings.Builder
	writeExpr(&b, e, "")
	return b.String()
}

// String implements Expr.
func (e *Compare) String() string {
	var b strings.Builder
	writeExpr(&b, e, "")
	return b.String()
}

// String implements Expr.
func (e *ValuePath) String() string {
	var b strings.Builder
	writeExpr(&b, e, "")
	return b.String()
}

// writeExpr renders e; inside a value path, parent is the attribute whose
// sub-attributes are named relative to it.
func writeExpr(b *strings.Builder, e Expr, parent string) {
	switch e := e.(type) {
	case *Logical:
		writeOperand(b, e.Op, e.Left, parent)
		b.WriteByte(' ')
		b.WriteString(string(e.Op))
		b.WriteByte(' ')
		writeOperand(b, e.Op, e.Right, parent)
	case *Not:
		b.WriteString("not (")
		writeExpr(b, e.X, parent)
		b.WriteByte(')')
	case *Compare:
		b.WriteString(e.Attr.relative(parent))
		b.WriteByte(' ')
		b.WriteString(string(e.Op))
		if e.Op != Pr {
			b.WriteByte(' ')
			b.WriteString(e.Value.String())
		}
	case *ValuePath:
		b.WriteString(e.Attr.String())
		b.WriteByte('[')
		writeExpr(b, e.Filter, e.Attr.String())
		b.WriteByte(']')
	}
}

func writeOperand(b *strings.Builder, op LogicalOp, e Expr, parent string) {
	if l, ok := e.(*Logical); ok && l.Op != op {
		b.WriteByte('(')
		writeExpr(b, e, parent)
		b.WriteByte(')')
		return
	}
	writeExpr(b, e, parent)
}

// Type is the type of an attribute's values.
type Type uint8

// The attribute types.
const (
	// Dynamic is the type of free-form attributes: each stored value is
	// compared by its own JSON type.
	Dynamic Type = iota
	String
	Boolean
	DateTime
	Number
	// Complex is a complex attribute named without a sub-attribute
	// ("name", "addresses"): it only supports pr and value paths.
	Complex
)

// Attr is an attribute path resolved against the model.
type Attr struct {
	// Path is the canonical name: "userName", "name.givenName",
	// "emails.value", "meta.lastModified", "employeeNumber",
	// "manager.value", "members.value". For a Custom attribute it is Key,
	// or Key + "." + Sub.
	Path string
	// Type is the type of the values.
	Type Type
	// CaseExact is set for strings compared exactly (id, externalId,
	// members.value, manager.value, meta.version).
	CaseExact bool
	// Multi is set when the attribute, or the one it is a sub-attribute
	// of, is multi-valued (emails.value, members.value).
	Multi bool
	// Custom is set for an attribute the model does not know: it lives in
	// the resource's free-form Attributes map under Key (compared case
	// insensitively), and Sub names a member of the stored JSON object.
	Custom bool
	Key    string
	Sub    string
}

// String returns a.Path.
func (a Attr) String() string { return a.Path }

func (a Attr) relative(parent string) string {
	if parent != "" && len(a.Path) > len(parent) && a.Path[:len(parent)] == parent && a.Path[len(parent)] == '.' {
		return a.Path[len(parent)+1:]
	}
	return a.Path
}

// Kind is the kind of a Value.
type Kind uint8

// The kinds of Value. The zero Value is Null.
const (
	Null Kind = iota
	Str
	Num
	Bool
	Time
)

// Value is a literal of a filter, or a value of an attribute handed to
// Compare.Test.
type Value struct {
	Kind Kind
	// S is the string (Str), or the literal as written (Num, Time) for
	// rendering.
	S string
	// N is the number (Num).
	N float64
	// B is the boolean (Bool).
	B bool
	// T is the instant (Time).
	T time.Time
}

// StringValue returns a Str Value.
func StringValue(s string) Value { return Value{Kind: Str, S: s} }

// BoolValue returns a Bool Value.
func BoolValue(b bool) Value { return Value{Kind: Bool, B: b} }

// NumberValue returns a Num Value.
func NumberValue(n float64) Value {
	return Value{Kind: Num, N: n, S: strconv.FormatFloat(n, 'g', -1, 64)}
}

// TimeValue returns a Time Value; the zero time is Null (absent).
func TimeValue(t time.Time) Value {
	if t.IsZero() {
		return Value{}
	}
	return Value{Kind: Time, T: t}
}

// String renders v as a filter literal.
func (v Value) String() string {
	switch v.Kind {
	case Str:
		return quote(v.S)
	case Num:
		return v.S
	case Bool:
		return strconv.FormatBool(v.B)
	case Time:
		if v.S != "" {
			return quote(v.S)
		}
		return quote(v.T.Format(time.RFC3339Nano))
	}
	return "null"
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil { // unreachable for a string
		return strconv.Quote(s)
	}
	return string(b)
}
