package saml_test

import (
	"errors"
	"net/http"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/saml"
)

// An ErrorPage that tells a refused person what they can do, and tells a
// forged response nothing (RefusalOf names a kind only for a verified
// response).
func ExampleRefusalOf() {
	errorPage := func(w http.ResponseWriter, r *http.Request, status int) {
		msg := "Single sign-on failed."
		if rf, ok := saml.RefusalOf(r); ok {
			switch {
			case errors.Is(rf.Kind, jit.ErrDeprovisioned):
				msg = "Your account is deactivated: ask your administrator."
			case errors.Is(rf.Kind, jit.ErrEmailDomain):
				msg = "Sign in with your work account."
			}
		}
		http.Error(w, msg, status)
	}
	_ = saml.Config{ErrorPage: errorPage} // with Engine, JIT, BaseURL, OnLogin...
}
