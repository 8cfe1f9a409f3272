package filter_test

import (
	"testing"

	"github.com/idprov/idprov/provision/filter"
)

func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"userNameEq", `userName eq "bjensen@example.com"`},
		{"entraEmail", `emails[type eq "work"].value eq "bjensen@example.com"`},
		{"complex", `(userName sw "b" or urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D") and not (meta.lastModified lt "2024-01-01T00:00:00Z") and emails[type eq "work" and primary eq true]`},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := filter.Parse(c.s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
