package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The bounds Parse enforces. Real identity providers send filters of a
// few dozen bytes (Entra's longest is an "and" of two comparisons).
const (
	// MaxLength is the longest filter Parse accepts, in bytes.
	MaxLength = 4096
	// MaxDepth is how deeply parentheses, "not" and value paths may nest.
	MaxDepth = 16
)

// ErrTooComplex is matched (with errors.Is) by the *SyntaxError of a
// filter longer than MaxLength or nested deeper than MaxDepth.
var ErrTooComplex = errors.New("filter: too complex")

// SyntaxError is the error of a filter that cannot be parsed. Every error
// Parse and ParseFor return is a *SyntaxError (SCIM answers 400
// invalidFilter for it).
type SyntaxError struct {
	// Filter is the filter (or attribute path) as given.
	Filter string
	// Pos is the byte offset where the problem was found.
	Pos int
	// Msg says what is wrong.
	Msg string
	// Err is ErrTooComplex for a filter past the bounds, else nil.
	Err error
}

// Error implements error. It does not repeat the filter, which may hold
// personal data.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter: %s (at byte %d)", e.Msg, e.Pos)
}

// Unwrap returns e.Err.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Parse parses a SCIM filter, resolving its attribute names against both
// users and groups. See the package documentation for the accepted forms
// and the rewrites.
func Parse(s string) (Expr, error) { return ParseFor(Any, s) }

// ParseFor parses a SCIM filter, resolving its attribute names against
// the attributes of resource r; names of the other resource type resolve
// to free-form attributes.
func ParseFor(r Resource, s string) (Expr, error) {
	if len(s) > MaxLength {
		return nil, &SyntaxError{Filter: s, Pos: MaxLength, Msg: fmt.Sprintf("filter longer than %d bytes", MaxLength), Err: ErrTooComplex}
	}
	if !utf8.ValidString(s) {
		return nil, &SyntaxError{Filter: s, Msg: "filter is not valid UTF-8"}
	}
	p := &parser{s: s, r: r}
	e := p.parseOr()
	if p.err == nil {
		p.skipSpace()
		if p.pos < len(p.s) {
			p.fail(p.pos, fmt.Sprintf("unexpected %q", p.rest(12)))
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return e, nil
}

type parser struct {
	s      string
	pos    int
	r      Resource
	depth  int
	parent *Attr // set inside a value path
	err    *SyntaxError
}

func (p *parser) fail(pos int, msg string) {
	if p.err == nil {
		p.err = &SyntaxError{Filter: p.s, Pos: pos, Msg: msg}
	}
}

func (p *parser) rest(n int) string {
	r := p.s[p.pos:]
	if len(r) > n {
		r = r[:n]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
		r += "..."
	}
	return r
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *parser) skipSpace() bool {
	start := p.pos
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
	return p.pos > start
}

func (p *parser) enter() bool {
	p.depth++
	if p.depth > MaxDepth {
		if p.err == nil {
			p.err = &SyntaxError{Filter: p.s, Pos: p.pos, Msg: fmt.Sprintf("filter nested deeper than %d", MaxDepth), Err: ErrTooComplex}
		}
		return false
	}
	return true
}

// keyword reports whether the word kw (lower case) follows at the current
// position, case-insensitively and followed by a space or '(', and
// consumes it.
func (p *parser) keyword(kw string) bool {
	end := p.pos + len(kw)
	if end >= len(p.s) || !strings.EqualFold(p.s[p.pos:end], kw) {
		return false
	}
	if c := p.s[end]; !isSpace(c) && c != '(' {
		return false
	}
	p.pos = end
	return true
}

func (p *parser) parseOr() Expr {
	left := p.parseAnd()
	for p.err == nil {
		save := p.pos
		if !p.skipSpace() || !p.keyword("or") {
			p.pos = save
			return left
		}
		right := p.parseAnd()
		left = &Logical{Op: Or, Left: left, Right: right}
	}
	return left
}

func (p *parser) parseAnd() Expr {
	left := p.parseUnary()
	for p.err == nil {
		save := p.pos
		if !p.skipSpace() || !p.keyword("and") {
			p.pos = save
			return left
		}
		right := p.parseUnary()
		left = &Logical{Op: And, Left: left, Right: right}
	}
	return left
}

func (p *parser) parseUnary() Expr {
	p.skipSpace()
	if p.pos >= len(p.s) {
		p.fail(p.pos, "unexpected end of filter")
		return nil
	}
	if p.s[p.pos] == '(' {
		return p.parseParens()
	}
	save := p.pos
	if p.keyword("not") {
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == '(' {
			x := p.parseParens()
			if p.err != nil {
				return nil
			}
			return &Not{X: x}
		}
		p.pos = save // an attribute named "not"
	}
	return p.parseAttrExpr()
}

func (p *parser) parseParens() Expr {
	if !p.enter() {
		return nil
	}
	p.pos++ // '('
	e := p.parseOr()
	if p.err != nil {
		return nil
	}
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != ')' {
		p.fail(p.pos, "expected ')'")
		return nil
	}
	p.pos++
	p.depth--
	return e
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '$' || c == ':' || c == '.'
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// readPath reads an attribute path: letters, digits and "_-$:.".
func (p *parser) readPath() string {
	start := p.pos
	if p.pos >= len(p.s) || !isAlpha(p.s[p.pos]) {
		p.fail(p.pos, "expected an attribute name")
		return ""
	}
	for p.pos < len(p.s) && isNameChar(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

func (p *parser) parseAttrExpr() Expr {
	start := p.pos
	path := p.readPath()
	if p.err != nil {
		return nil
	}
	if p.pos < len(p.s) && p.s[p.pos] == '[' {
		return p.parseValuePath(start, path)
	}
	var a Attr
	var msg string
	if p.parent != nil {
		a, msg = resolveSub(*p.parent, path)
	} else {
		a, msg = resolve(p.r, path)
	}
	if msg != "" {
		p.fail(start, msg)
		return nil
	}
	return p.parseComparison(a)
}

func (p *parser) parseValuePath(start int, path string) Expr {
	if p.parent != nil {
		p.fail(p.pos, "value paths cannot nest")
		return nil
	}
	parent, msg := parentOf(p.r, path)
	if msg != "" {
		p.fail(start, msg)
		return nil
	}
	if !p.enter() {
		return nil
	}
	p.pos++ // '['
	p.parent = &parent
	inner := p.parseOr()
	p.parent = nil
	if p.err != nil {
		return nil
	}
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != ']' {
		p.fail(p.pos, "expected ']'")
		return nil
	}
	p.pos++
	p.depth--
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		// Entra's attr[filter].sub op value: some element satisfies both.
		p.pos++
		subStart := p.pos
		sub := p.readPath()
		if p.err != nil {
			return nil
		}
		a, msg := resolveSub(parent, sub)
		if msg != "" {
			p.fail(subStart, msg)
			return nil
		}
		c := p.parseComparison(a)
		if p.err != nil {
			return nil
		}
		inner = &Logical{Op: And, Left: inner, Right: c}
	}
	if c, ok := inner.(*Compare); ok {
		return c // attr[sub op v] is attr.sub op v
	}
	return &ValuePath{Attr: parent, Filter: inner}
}

var ops = map[string]Op{
	"eq": Eq, "ne": Ne, "co": Co, "sw": Sw, "ew": Ew, "pr": Pr,
	"gt": Gt, "ge": Ge, "lt": Lt, "le": Le,
}

func (p *parser) parseComparison(a Attr) Expr {
	if !p.skipSpace() {
		p.fail(p.pos, "expected a space and an operator after the attribute")
		return nil
	}
	opPos := p.pos
	for p.pos < len(p.s) && isAlpha(p.s[p.pos]) {
		p.pos++
	}
	op, ok := ops[strings.ToLower(p.s[opPos:p.pos])]
	if !ok {
		p.pos = opPos
		p.fail(opPos, fmt.Sprintf("expected an operator, found %q", p.rest(8)))
		return nil
	}
	if op == Pr {
		return &Compare{Attr: a, Op: Pr}
	}
	if !p.skipSpace() {
		p.fail(p.pos, "expected a space and a value after the operator")
		return nil
	}
	valPos := p.pos
	v := p.parseValue()
	if p.err != nil {
		return nil
	}
	e, msg := typed(a, op, v)
	if msg != "" {
		p.fail(valPos, msg)
		return nil
	}
	return e
}

func (p *parser) parseValue() Value {
	if p.pos >= len(p.s) {
		p.fail(p.pos, "expected a value")
		return Value{}
	}
	c := p.s[p.pos]
	switch {
	case c == '"':
		return p.parseString()
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		for p.pos < len(p.s) && strings.IndexByte("+-.0123456789eE", p.s[p.pos]) >= 0 {
			p.pos++
		}
		lit := p.s[start:p.pos]
		n, err := strconv.ParseFloat(lit, 64)
		if err != nil || !json.Valid([]byte(lit)) {
			p.fail(start, fmt.Sprintf("invalid number %q", lit))
			return Value{}
		}
		return Value{Kind: Num, N: n, S: lit}
	case isAlpha(c):
		start := p.pos
		for p.pos < len(p.s) && isAlpha(p.s[p.pos]) {
			p.pos++
		}
		switch w := strings.ToLower(p.s[start:p.pos]); w {
		case "true", "false":
			return Value{Kind: Bool, B: w == "true"}
		case "null":
			return Value{}
		}
		p.fail(start, fmt.Sprintf("expected a value, found %q", p.s[start:p.pos]))
		return Value{}
	}
	p.fail(p.pos, fmt.Sprintf("expected a value, found %q", p.rest(8)))
	return Value{}
}

// parseString reads a JSON string literal.
func (p *parser) parseString() Value {
	start := p.pos
	p.pos++
	escaped := false
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case c == '\\':
			escaped = true
			p.pos += 2
			continue
		case c == '"':
			p.pos++
			lit := p.s[start:p.pos]
			if !escaped {
				if strings.IndexFunc(lit, func(r rune) bool { return r < 0x20 }) >= 0 {
					p.fail(start, "control character in a string")
					return Value{}
				}
				return Value{Kind: Str, S: lit[1 : len(lit)-1]}
			}
			var s string
			if err := json.Unmarshal([]byte(lit), &s); err != nil {
				p.fail(start, "invalid string literal")
				return Value{}
			}
			return Value{Kind: Str, S: s}
		}
		p.pos++
	}
	p.pos = len(p.s)
	p.fail(start, "unterminated string")
	return Value{}
}

// typed checks the value against the attribute's type, converts it (a
// dateTime string to Time, Entra's "True" to a boolean) and rewrites null
// comparisons ("a eq null" is "not (a pr)").
func typed(a Attr, op Op, v Value) (Expr, string) {
	if v.Kind == Null {
		switch op {
		case Eq:
			return &Not{X: &Compare{Attr: a, Op: Pr}}, ""
		case Ne:
			return &Compare{Attr: a, Op: Pr}, ""
		}
		return nil, fmt.Sprintf("operator %s cannot compare with null", op)
	}
	ordering := op == Gt || op == Ge || op == Lt || op == Le
	substring := op == Co || op == Sw || op == Ew
	switch a.Type {
	case Complex:
		return nil, fmt.Sprintf("attribute %q is complex: compare one of its sub-attributes", a.Path)
	case String:
		switch v.Kind {
		case Num:
			v = Value{Kind: Str, S: v.S}
		case Bool:
			v = Value{Kind: Str, S: strconv.FormatBool(v.B)}
		}
	case Boolean:
		if ordering || substring {
			return nil, fmt.Sprintf("operator %s does not apply to boolean attribute %q", op, a.Path)
		}
		if v.Kind == Str {
			switch strings.ToLower(v.S) {
			case "true":
				v = Value{Kind: Bool, B: true}
			case "false":
				v = Value{Kind: Bool, B: false}
			}
		}
		if v.Kind != Bool {
			return nil, fmt.Sprintf("attribute %q is boolean: compare it with true or false", a.Path)
		}
	case DateTime:
		if substring {
			return nil, fmt.Sprintf("operator %s does not apply to dateTime attribute %q", op, a.Path)
		}
		if v.Kind != Str {
			return nil, fmt.Sprintf("attribute %q is a dateTime: compare it with an RFC 3339 string", a.Path)
		}
		t, err := time.Parse(time.RFC3339Nano, v.S)
		if err != nil {
			return nil, fmt.Sprintf("attribute %q is a dateTime: %q is not an RFC 3339 time", a.Path, v.S)
		}
		v = Value{Kind: Time, T: t, S: v.S}
	}
	return &Compare{Attr: a, Op: op, Value: v}, ""
}
