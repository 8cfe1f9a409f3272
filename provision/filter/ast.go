// Package filter is idprov's query language: one AST for SCIM filters
// (RFC 7644 section 3.4.2.2 plus the forms Microsoft Entra ID sends), an
// in-memory evaluator, and the input to SQL compilers.
package filter

// Expr is a parsed filter expression. It is one of *Logical, *Not,
// *Compare and *ValuePath.
type Expr interface {
	// String renders the expression in SCIM filter syntax.
	String() string
	expr()
}
