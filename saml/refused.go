package saml

import (
	"context"
	"errors"
	"net/http"

	"github.com/idprov/idprov/jit"
)

// Refused describes a refused sign-in to Config.ErrorPage (RefusalOf), so
// that the page can tell the person what they can do without telling an
// attacker why a response was refused: Kind and UserName are set only for
// a response that passed every check (signature, audience, issuer, replay,
// time) and was refused by just-in-time provisioning, so they speak only
// to the person the identity provider signed in.
type Refused struct {
	TenantID, ConnectionID string
	// Kind is jit.ErrDeprovisioned (the account is deactivated or deleted:
	// "ask your administrator"), jit.ErrEmailDomain (the address is
	// outside the connection's domains: "use your work account"),
	// jit.ErrNoAccount (no account, and sign-in does not create one), or
	// nil for anything else (say nothing more than "failed").
	Kind error
	// UserName is the verified login's userName; "" when Kind is nil.
	UserName string
	// Reason says why, for the log and the audit trail. Never show it.
	Reason string
}

type refusedKey struct{}

// RefusalOf returns the refusal that ErrorPage is answering, when r is a
// refused ACS post (status 403).
func RefusalOf(r *http.Request) (Refused, bool) {
	rf, ok := r.Context().Value(refusedKey{}).(Refused)
	return rf, ok
}

// withRefusal returns r carrying rf for ErrorPage. Only the kinds a
// person can act on are kept.
func withRefusal(r *http.Request, c *conn, reason string, err error, userName string) *http.Request {
	rf := Refused{TenantID: c.TenantID, ConnectionID: c.ConnectionID, Reason: reason}
	var re *jit.RefusedError
	if errors.As(err, &re) {
		for _, k := range []error{jit.ErrDeprovisioned, jit.ErrEmailDomain, jit.ErrNoAccount} {
			if errors.Is(re.Kind, k) {
				rf.Kind, rf.UserName = k, userName
			}
		}
	}
	return r.WithContext(context.WithValue(r.Context(), refusedKey{}, rf))
}
