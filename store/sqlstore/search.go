package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

var _ provision.Searcher = (*Store)(nil)

// searchScanLimit bounds how many candidate rows a search that SQL
// cannot answer exactly reads to evaluate the filter in Go.
const searchScanLimit = 10000

// How a search runs. The filter is compiled to a SQL condition that
// selects a superset of the matches: exact for the attributes the tables
// hold in columns (id, userName, displayName, active, meta.created,
// meta.lastModified, emails.value, members.value), under and, or and
// not; any other comparison compiles to TRUE. When the whole condition is
// exact, SQL counts, sorts (by id, userName, displayName, meta.created or
// meta.lastModified) and pages. Otherwise the rows it selects, in ID
// order and at most searchScanLimit of them (else ErrTooMany), are
// checked with provision.MatchUser (MatchGroup), the evaluator every
// store answers with, then sorted (provision.SortUsers) and paged in Go.
// Either way the answer is exactly the evaluator's.

type compiler struct {
	r     *root
	res   filter.Resource
	table string // alias of the resource table: "u" or "g"
	args  []any
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return fmt.Sprintf("$%d", len(c.args))
}

func (c *compiler) text(s string) string { return "CAST(" + c.arg(s) + " AS TEXT)" }

func (c *compiler) compile(e filter.Expr) (string, bool) {
	switch e := e.(type) {
	case *filter.Logical:
		l, le := c.compile(e.Left)
		r, re := c.compile(e.Right)
		op := " AND "
		if e.Op == filter.Or {
			op = " OR "
		}
		return "(" + l + op + r + ")", le && re
	case *filter.Not:
		n := len(c.args)
		x, exact := c.compile(e.X)
		if !exact {
			c.args = c.args[:n] // NOT of a superset is not a superset
			return "TRUE", false
		}
		return "(NOT " + x + ")", true
	case *filter.Compare:
		n := len(c.args)
		sql, exact := c.compare(e)
		if sql == "TRUE" || sql == "FALSE" {
			c.args = c.args[:n]
		}
		return sql, exact
	case *filter.ValuePath:
		// A superset: the element conditions that are exact on their own
		// hold for some element; the evaluator checks the rest.
		return "TRUE", false
	}
	return "TRUE", false
}

// strCmp compiles a string comparison on a column holding the folded (or,
// for caseExact attributes, exact) value, ” meaning absent.
func (c *compiler) strCmp(col string, op filter.Op, v string, hasEmpty bool) string {
	present := ""
	if hasEmpty {
		present = col + " <> '' AND "
	}
	switch op {
	case filter.Pr:
		if hasEmpty {
			return "(" + col + " <> '')"
		}
		return "TRUE"
	case filter.Eq, filter.Ne, filter.Gt, filter.Ge, filter.Lt, filter.Le:
		sqlOp := map[filter.Op]string{filter.Eq: "=", filter.Ne: "<>", filter.Gt: ">", filter.Ge: ">=", filter.Lt: "<", filter.Le: "<="}[op]
		return "(" + present + col + " " + sqlOp + " " + c.text(v) + ")"
	case filter.Co:
		fn := "instr("
		if c.r.d == Postgres {
			fn = "strpos("
		}
		fn += col + ", " + c.text(v) + ")"
		return "(" + present + fn + " > 0)"
	case filter.Sw:
		return "(" + present + "substr(" + col + ", 1, length(" + c.text(v) + ")) = " + c.text(v) + ")"
	case filter.Ew:
		return "(" + present + "length(" + col + ") >= length(" + c.text(v) + ") AND substr(" + col + ", length(" + col + ") - length(" + c.text(v) + ") + 1) = " + c.text(v) + ")"
	}
	return "FALSE"
}

func (c *compiler) compare(e *filter.Compare) (string, bool) {
	a := e.Attr
	if a.Custom {
		return "TRUE", false
	}
	isStr := e.Op == filter.Pr || e.Value.Kind == filter.Str
	t := c.table
	switch a.Path {
	case "id":
		if !isStr {
			return "FALSE", true // a non-string never equals an id
		}
		return c.strCmp(t+".id", e.Op, e.Value.S, true), true
	case "userName":
		if c.res != filter.Users || !isStr {
			return "TRUE", false
		}
		return c.strCmp(t+".user_name_lower", e.Op, fold(e.Value.S), true), true
	case "displayName":
		if !isStr {
			return "TRUE", false
		}
		return c.strCmp(t+".display_name_lower", e.Op, fold(e.Value.S), true), true
	case "active":
		if c.res != filter.Users {
			return "TRUE", false
		}
		switch {
		case e.Op == filter.Pr:
			return "TRUE", true
		case e.Value.Kind == filter.Bool && e.Op == filter.Eq:
			return "(" + t + ".active = " + c.arg(e.Value.B) + ")", true
		case e.Value.Kind == filter.Bool && e.Op == filter.Ne:
			return "(" + t + ".active <> " + c.arg(e.Value.B) + ")", true
		}
		return "TRUE", false
	case "meta.created", "meta.lastModified":
		col := t + ".created"
		if a.Path == "meta.lastModified" {
			col = t + ".modified"
		}
		if e.Op == filter.Pr {
			return "TRUE", false
		}
		if e.Value.Kind != filter.Time || !e.Value.T.Equal(e.Value.T.Truncate(time.Microsecond)) {
			return "TRUE", false
		}
		sqlOp, ok := map[filter.Op]string{filter.Eq: "=", filter.Ne: "<>", filter.Gt: ">", filter.Ge: ">=", filter.Lt: "<", filter.Le: "<="}[e.Op]
		if !ok {
			return "FALSE", true
		}
		return "(" + col + " " + sqlOp + " " + c.arg(c.r.ts(e.Value.T)) + ")", true
	case "emails.value":
		if c.res != filter.Users || !isStr {
			return "TRUE", false
		}
		// An uncorrelated subquery, so the planner drives it from the
		// email index rather than probing every user of the tenant.
		inner := c.strCmp("e.email_lower", e.Op, fold(e.Value.S), true)
		return "(" + t + ".id IN (SELECT e.user_id FROM " + c.r.sql("{p}user_emails") + " e WHERE e.tenant_id = $1 AND " + inner + "))", true
	case "members.value":
		if c.res != filter.Groups || e.Op != filter.Eq || e.Value.Kind != filter.Str {
			return "TRUE", false
		}
		return "(" + t + ".id IN (SELECT m.group_id FROM " + c.r.sql("{p}members") + " m WHERE m.tenant_id = $1 AND m.user_id = " + c.text(e.Value.S) + "))", true
	}
	return "TRUE", false
}

// sqlOrder returns the ORDER BY (over alias a) of a sort SQL can do
// exactly as provision.SortUsers does: stable over ID order, absent values
// last in both directions.
func sqlOrder(d Dialect, a string, res filter.Resource, sortBy string, desc bool) (string, bool) {
	dir := ""
	if desc {
		dir = " DESC"
	}
	switch sortBy {
	case "":
		return a + ".id", true
	case "id":
		return a + ".id" + dir, true
	case "userName":
		if res == filter.Users {
			return a + ".user_name_lower" + dir + ", " + a + ".id", true
		}
	case "displayName":
		return "(" + a + ".display_name_lower = '')" + ", " + a + ".display_name_lower" + dir + ", " + a + ".id", true
	case "meta.created":
		return a + ".created" + dir + ", " + a + ".id", true
	case "meta.lastModified":
		return a + ".modified" + dir + ", " + a + ".id", true
	}
	return "", false
}

// compileSearch returns the FROM ... WHERE of a search, its arguments,
// and whether it selects exactly the matches.
func (s *Store) compileSearch(res filter.Resource, tenantID string, f filter.Expr) (string, []any, bool) {
	table, alias, live := "{p}users", "u", " AND u.deleted IS NULL"
	if res == filter.Groups {
		table, alias, live = "{p}groups", "g", ""
	}
	c := &compiler{r: s.r, res: res, table: alias, args: []any{tenantID}}
	where, exact := "TRUE", true
	if f != nil {
		where, exact = c.compile(f)
	}
	return "FROM " + table + " " + alias + " WHERE " + alias + ".tenant_id = $1" + live + " AND " + where, c.args, exact
}

// SearchUsers implements provision.Searcher.
func (s *Store) SearchUsers(ctx context.Context, tenantID string, q provision.Search) ([]provision.User, int, error) {
	base, wargs, exact := s.compileSearch(filter.Users, tenantID, q.Filter)
	c := &compiler{args: wargs[:len(wargs):len(wargs)]}
	order, sqlSort := sqlOrder(s.r.d, "u", filter.Users, q.SortBy, q.Descending)
	if exact && sqlSort {
		var total int
		if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) "+base), c.args...).Scan(&total); err != nil {
			return nil, 0, mapErr("search users", err)
		}
		if q.Page.Limit <= 0 || q.Page.Offset >= total {
			return []provision.User{}, total, nil
		}
		args := append(c.args, q.Page.Limit, max(q.Page.Offset, 0))
		us, err := s.queryUsers(ctx, "search users", "SELECT u.doc "+base+" ORDER BY "+order+
			fmt.Sprintf(" LIMIT $%d OFFSET $%d", len(args)-1, len(args)), args...)
		if us == nil && err == nil {
			us = []provision.User{}
		}
		return us, total, err
	}
	args := append(c.args, searchScanLimit+1)
	cands, err := s.queryUsers(ctx, "search users", "SELECT u.doc "+base+" ORDER BY u.id"+fmt.Sprintf(" LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, 0, err
	}
	if len(cands) > searchScanLimit {
		return nil, 0, fmt.Errorf("sqlstore: search users: the filter selects more than %d candidates: %w", searchScanLimit, provision.ErrTooMany)
	}
	matches := []provision.User{}
	for _, u := range cands {
		ok, err := provision.MatchUser(q.Filter, u, "")
		if err != nil {
			return nil, 0, err
		}
		if ok {
			matches = append(matches, u)
		}
	}
	if err := provision.SortUsers(matches, q.SortBy, q.Descending); err != nil {
		return nil, 0, err
	}
	return pageOf(matches, q.Page), len(matches), nil
}

// SearchGroups implements provision.Searcher.
func (s *Store) SearchGroups(ctx context.Context, tenantID string, q provision.Search) ([]provision.Group, int, error) {
	base, wargs, exact := s.compileSearch(filter.Groups, tenantID, q.Filter)
	c := &compiler{args: wargs[:len(wargs):len(wargs)]}
	order, sqlSort := sqlOrder(s.r.d, "g", filter.Groups, q.SortBy, q.Descending)
	if exact && sqlSort {
		var total int
		if err := s.q.QueryRowContext(ctx, s.r.sql("SELECT count(*) "+base), c.args...).Scan(&total); err != nil {
			return nil, 0, mapErr("search groups", err)
		}
		if q.Page.Limit <= 0 || q.Page.Offset >= total {
			return []provision.Group{}, total, nil
		}
		args := append(c.args, q.Page.Limit, max(q.Page.Offset, 0))
		gs, err := s.queryGroups(ctx, "search groups", "SELECT g.doc "+base+" ORDER BY "+order+
			fmt.Sprintf(" LIMIT $%d OFFSET $%d", len(args)-1, len(args)), args...)
		return gs, total, err
	}
	args := append(c.args, searchScanLimit+1)
	cands, err := s.queryGroups(ctx, "search groups", "SELECT g.doc "+base+" ORDER BY g.id"+fmt.Sprintf(" LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, 0, err
	}
	if len(cands) > searchScanLimit {
		return nil, 0, fmt.Errorf("sqlstore: search groups: the filter selects more than %d candidates: %w", searchScanLimit, provision.ErrTooMany)
	}
	matches := []provision.Group{}
	for _, g := range cands {
		ok, err := provision.MatchGroup(q.Filter, g, "", func(userID string) (bool, error) {
			return s.IsMember(ctx, tenantID, g.ID, userID)
		})
		if err != nil {
			return nil, 0, err
		}
		if ok {
			matches = append(matches, g)
		}
	}
	if err := provision.SortGroups(matches, q.SortBy, q.Descending); err != nil {
		return nil, 0, err
	}
	return pageOf(matches, q.Page), len(matches), nil
}

func pageOf[T any](xs []T, p provision.Page) []T {
	if p.Limit <= 0 || p.Offset >= len(xs) {
		return []T{}
	}
	start := max(p.Offset, 0)
	end := min(start+p.Limit, len(xs))
	return xs[start:end]
}
