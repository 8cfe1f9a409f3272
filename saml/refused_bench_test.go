package saml_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idprov/idprov/saml/samltest"
)

// unsigned2MB is an ACS body of about 2 MB: an unsigned response whose
// attribute statement is padded with group names, as an attacker posts it.
func unsigned2MB(b *testing.B) string {
	u := okta("00u1", "jane@acme.example")
	var groups []string
	for i := 0; len(groups) < 9000; i++ {
		groups = append(groups, "APP-Finance-EMEA-Regional-Controllers-ReadWrite-"+strings.Repeat("x", i%8))
	}
	u.Attributes = append(u.Attributes, samltest.Attribute{Name: "memberOf", Values: groups})
	body := samltest.Form(respond(b, idpA, samltest.Response{User: u, Sign: samltest.Unsigned}), "").Encode()
	if len(body) < 2_000_000 || len(body) > 2_200_000 {
		b.Fatalf("the body is %d bytes, want about 2 MB", len(body))
	}
	return body
}

func postRefused(b *testing.B, h http.Handler, body string) {
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, acmeACS, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			b.Fatal("an unsigned response logged in")
		}
	}
}

// BenchmarkACSRefusedUnsigned2MB is the cost of refusing a 2 MB unsigned
// post at the ACS with the default configuration:
//
//	go test -run '^$' -bench ACSRefused -benchtime 5x ./saml/
func BenchmarkACSRefusedUnsigned2MB(b *testing.B) {
	f := newFixture(b, options{idpInitiated: true})
	postRefused(b, f.h, unsigned2MB(b))
}
