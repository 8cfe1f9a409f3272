package saml_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idprov/idprov/saml/samltest"
)

// BenchmarkACS compares a whole ACS request (parse, verify, replay check,
// map, provision a returning user, OnLogin) with crewjam's ParseResponse
// alone on the same responses, in the same run. Each iteration needs a
// fresh response (the replay cache consumes it); they are signed before
// the timer starts, so run with a fixed count:
//
//	go test -run '^$' -bench ACS -benchtime 400x -count 5 ./saml/
func BenchmarkACS(b *testing.B) {
	f := newFixture(b, options{idpInitiated: true})
	jane := okta("00u1", "jane@acme.example")
	if w := f.post(b, acmeACS, respond(b, idpA, samltest.Response{User: jane}), ""); w.Code != 200 {
		b.Fatalf("first login: %d", w.Code)
	}
	var forms []string
	sign := func(b *testing.B) {
		forms = make([]string, b.N)
		for i := range forms {
			forms[i] = samltest.Form(respond(b, idpA, samltest.Response{User: jane}), "").Encode()
		}
		b.ResetTimer()
	}
	request := func(i int) *http.Request {
		r := httptest.NewRequest(http.MethodPost, acmeACS, strings.NewReader(forms[i]))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	b.Run("crewjam-ParseResponse", func(b *testing.B) {
		sp, _ := f.h.ServiceProvider("acme")
		sign(b)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := request(i)
			if err := r.ParseForm(); err != nil {
				b.Fatal(err)
			}
			if _, err := sp.ParseResponse(r, []string{""}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("idprov-ACS", func(b *testing.B) {
		sign(b)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, request(i))
			if w.Code != 200 {
				b.Fatalf("ACS: %d %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkLoginRedirect compares starting a login (AuthnRequest, tracked
// in the KV, redirect) at a connection set with SetConnection with one
// resolved from the engine on every request (a registered connection:
// engine lookup, settings comparison, cached ServiceProvider):
//
//	go test -run '^$' -bench LoginRedirect -benchtime 2000x -count 5 ./saml/
func BenchmarkLoginRedirect(b *testing.B) {
	run := func(b *testing.B, h http.Handler, u string) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, u, nil))
			if w.Code != http.StatusFound {
				b.Fatalf("login: %d %s", w.Code, w.Body)
			}
		}
	}
	b.Run("SetConnection", func(b *testing.B) {
		f := newFixture(b, options{})
		run(b, f.h, base+"/saml/acme/login")
	})
	b.Run("registered", func(b *testing.B) {
		r := newReg(b)
		run(b, r.h, r.h.ConnectionURLs("globex", "entra").LoginURL)
	})
	b.Run("registered-by-email", func(b *testing.B) {
		r := newReg(b)
		run(b, r.h, r.sp.URL+"/saml/login?email=bob@initech.example")
	})
}
