package filter_test

import (
	"errors"
	"fmt"

	"github.com/idprov/idprov/provision/filter"
)

func ExampleParse() {
	// Entra ID's lookup by work e-mail, with an upper-case operator and a
	// URN-qualified enterprise attribute.
	e, err := filter.Parse(`emails[type eq "work"].value EQ "bjensen@example.com" and ` +
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`)
	if err != nil {
		panic(err)
	}
	fmt.Println(e)

	_, err = filter.Parse(`userName eq "bjensen`)
	var se *filter.SyntaxError
	fmt.Println(errors.As(err, &se), se.Pos, err)
	// Output:
	// emails[type eq "work" and value eq "bjensen@example.com"] and employeeNumber eq "701984"
	// true 12 filter: unterminated string (at byte 12)
}
