package filter_test

import (
	"errors"
	"testing"

	"github.com/idprov/idprov/provision/filter"
)

// FuzzParse checks that any string is either parsed, into an expression
// that renders and parses back to itself, or rejected with a
// *SyntaxError; never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`userName eq "bjensen"`,
		`emails[type eq "work"].value eq "x@example.com"`,
		`emails[type eq "work" and primary eq true] or not (title pr)`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "x"`,
		`meta.lastModified ge "2011-05-13T04:42:34.5+02:00" and active eq "False"`,
		`(a eq 1 or b eq -2.5e3) and c eq null and d ne "\u00e9\n"`,
		`members[value eq "u1"] and displayName sw "Eng"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := filter.Parse(s)
		if err != nil {
			var se *filter.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v is not a *SyntaxError", s, err, err)
			}
			return
		}
		out := e.String()
		e2, err := filter.Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %s, which does not parse: %v", s, out, err)
		}
		if out2 := e2.String(); out2 != out {
			t.Fatalf("Parse(%q) = %s, reparsed as %s", s, out, out2)
		}
	})
}
