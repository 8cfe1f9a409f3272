package provision

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/idprov/idprov/provision/filter"
)

// Keys (ids, externalIds, member values, filter values) reach the Store
// as they came. No stored key holds NUL or invalid UTF-8 (the engine's
// validation refuses them in what it writes, and PostgreSQL cannot even
// receive them: SQLSTATE 22021), so the engine answers such a key at its
// edge: an id or an externalId is ErrNotFound, a member value an unknown
// member, a filter value a *ValidationError.

// validKey reports whether s can be a stored key: valid UTF-8 without
// NUL.
func validKey(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// checkKey is ErrNotFound for a key no resource can have.
func checkKey(what, key string) error {
	if !validKey(key) {
		return fmt.Errorf("%w: no %s has an id or externalId holding NUL or invalid UTF-8", ErrNotFound, what)
	}
	return nil
}

// checkFilter refuses a filter comparing with a string that is not valid
// text.
func checkFilter(f filter.Expr) error {
	if f == nil {
		return nil
	}
	_, err := filter.Rewrite(f, func(c *filter.Compare) (filter.Expr, error) {
		if !validKey(c.Value.S) {
			return nil, &ValidationError{Field: "filter", Reason: "a value holds NUL or invalid UTF-8"}
		}
		return c, nil
	})
	return err
}

// checkLookupKeys refuses an identity whose externalId, userName or
// e-mails, which the engine looks users up by, are not valid text.
func checkLookupKeys(u User) error {
	if !validKey(u.ExternalID) {
		return &ValidationError{Field: "identity.externalId", Reason: "holds NUL or invalid UTF-8"}
	}
	if !validKey(u.UserName) {
		return &ValidationError{Field: "userName", Reason: "holds NUL or invalid UTF-8"}
	}
	for _, m := range u.Emails {
		if !validKey(m.Value) {
			return &ValidationError{Field: "emails", Reason: "holds NUL or invalid UTF-8"}
		}
	}
	return nil
}
