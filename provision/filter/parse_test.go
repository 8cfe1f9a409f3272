package filter_test

import (
	"errors"
	"testing"

	"github.com/idprov/idprov/provision/filter"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`userName eq "bjensen"`, `userName eq "bjensen"`},
		{`USERNAME EQ "BJensen"`, `userName eq "BJensen"`},
		{`userName Eq "a" And id eq "b"`, `userName eq "a" and id eq "b"`},
		{`emails[type eq "work"].value eq "x@example.com"`, `emails[type eq "work" and value eq "x@example.com"]`},
		{`emails[type eq "work" and primary eq true]`, `emails[type eq "work" and primary eq true]`},
		{`emails[value eq "x"]`, `emails.value eq "x"`},
		{`emails eq "x"`, `emails.value eq "x"`},
		{`emails pr`, `emails.value pr`}, {`addresses pr`, `addresses pr`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "x"`, `employeeNumber eq "x"`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "m1"`, `manager.value eq "m1"`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1"`, `manager.value eq "m1"`},
		{`id eq "u1" and manager eq "m1"`, `id eq "u1" and manager.value eq "m1"`},
		{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "Ba"`, `name.givenName sw "Ba"`},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, `meta.lastModified gt "2011-05-13T04:42:34Z"`},
		{`active eq "True"`, `active eq true`},
		{`title eq null`, `not (title pr)`},
		{`not (userName eq "x") or (a eq 1 and b eq 2)`, `not (userName eq "x") or (a eq 1 and b eq 2)`},
		{`(a eq 1 or b eq 2) and c eq 3`, `(a eq 1 or b eq 2) and c eq 3`},
		{`members[value eq "u1"]`, `members.value eq "u1"`},
		{`members eq "u1"`, `members.value eq "u1"`},
		{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag co "x\"y"`, `urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag co "x\"y"`},
		{`x509Certificates[value pr]`, `x509Certificates.value pr`},
		{`employeeNumber eq 42`, `employeeNumber eq "42"`},
		{`level gt 4.5e1`, `level gt 4.5e1`},
	}
	for _, tt := range tests {
		e, err := filter.Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
		e2, err := filter.Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Errorf("reparse of %s: %v, %v", e, e2, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []string{
		``, `userName`, `userName eq`, `userName eq "x`, `userName xx "a"`, `userName eq "a" and`,
		`(userName eq "a"`, `name.nickname eq "x"`, `emails[kind eq "x"]`, `emails[type eq "a"`,
		`userName[value eq "a"]`, `active gt true`, `active eq "yes"`, `meta.created gt "yesterday"`,
		`meta.created co "2020"`, `name eq "x"`, `emails[type eq "a"].nope eq "x"`, `userName eq "a" x`,
		`emails[addresses[type eq "a"]]`, `userName eq 01`, `a eq tru`, `userNameeq "a"`,
		"userName eq \"a\xff\"",
	}
	for _, in := range tests {
		_, err := filter.Parse(in)
		var se *filter.SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a *SyntaxError", in, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	deep := ""
	for range filter.MaxDepth + 1 {
		deep += "("
	}
	deep += `a eq 1`
	for range filter.MaxDepth + 1 {
		deep += ")"
	}
	long := `a eq "` + string(make([]byte, filter.MaxLength)) + `"`
	for _, in := range []string{deep, long} {
		_, err := filter.Parse(in)
		var se *filter.SyntaxError
		if !errors.Is(err, filter.ErrTooComplex) || !errors.As(err, &se) {
			t.Errorf("Parse(%.20q...) = %v, want ErrTooComplex", in, err)
		}
	}
}
