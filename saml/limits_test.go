package saml_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dsig "github.com/russellhaering/goxmldsig"

	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
)

func guid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// entraUser is what Microsoft Entra ID asserts for a user in n groups:
// the claims it sends by default, and the groups claim as object ids
// (GUIDs). Entra sends at most 150 groups in a SAML token (more is the
// groups.link overage claim).
func entraUser(n int) samltest.User {
	groups := make([]string, n)
	for i := range groups {
		groups[i] = guid()
	}
	return samltest.User{NameID: "k3Vf7cT9mNqkPj2Yx8LwZr1uB4sD6eHgA0oIiJtQnRc", Attributes: []samltest.Attribute{
		{Name: saml.AttrEntraTenantID, Values: []string{guid()}},
		{Name: saml.AttrEntraObjectID, Values: []string{guid()}},
		{Name: saml.AttrEntraDisplayName, Values: []string{"Jane Doe-Montgomery"}},
		{Name: "http://schemas.microsoft.com/identity/claims/identityprovider", Values: []string{"https://sts.windows.net/" + guid() + "/"}},
		{Name: "http://schemas.microsoft.com/claims/authnmethodsreferences", Values: []string{"http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password", "http://schemas.microsoft.com/claims/multipleauthn"}},
		{Name: saml.AttrClaimsGivenName, Values: []string{"Jane"}},
		{Name: saml.AttrClaimsSurname, Values: []string{"Doe-Montgomery"}},
		{Name: saml.AttrClaimsEmail, Values: []string{"jane.doe-montgomery@acme.example"}},
		{Name: saml.AttrClaimsName, Values: []string{"jane.doe-montgomery@acme.example"}},
		{Name: saml.AttrEntraGroups, Values: groups},
	}}
}

// oktaUser is what Okta asserts for a user in n groups, with a groups
// attribute statement of group names (Okta sends names, often long ones
// synced from Active Directory).
func oktaUser(n int) samltest.User {
	groups := make([]string, n)
	for i := range groups {
		groups[i] = fmt.Sprintf("APP-Finance-EMEA-Regional-Controllers-ReadWrite-%03d", i)
	}
	return samltest.User{NameID: "00u1abcdefGHIJKLM5d7", NameIDFormat: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress", Attributes: []samltest.Attribute{
		{Name: "email", Values: []string{"jane.doe-montgomery@acme.example"}},
		{Name: "firstName", Values: []string{"Jane"}},
		{Name: "lastName", Values: []string{"Doe-Montgomery"}},
		{Name: "login", Values: []string{"jane.doe-montgomery@acme.example"}},
		{Name: "groups", Values: groups},
	}}
}

// formSize is the size of the ACS request body that posts the response.
func formSize(t testing.TB, xml []byte) int {
	return len(samltest.Form(xml, strings.Repeat("r", 32)).Encode())
}

// TestResponseSize150Groups measures the ACS body that Entra and Okta post
// for a user in 150 groups, signed as they sign (Entra the assertion, Okta
// the response and the assertion), and checks that the default body limit
// leaves a wide margin above it.
func TestResponseSize150Groups(t *testing.T) {
	keys(t)
	for _, tc := range []struct {
		name string
		user samltest.User
		sign samltest.Signing
	}{
		{"entra", entraUser(150), samltest.SignAssertion},
		{"okta", oktaUser(150), samltest.SignBoth},
	} {
		xml := respond(t, idpA, samltest.Response{User: tc.user, Sign: tc.sign})
		n := formSize(t, xml)
		t.Logf("%s, 150 groups: response %d bytes, ACS body %d bytes (default limit %d)", tc.name, len(xml), n, saml.DefaultMaxResponseBytes)
		if n*4 > saml.DefaultMaxResponseBytes {
			t.Errorf("%s: the ACS body of 150 groups (%d bytes) is more than a quarter of the default limit %d", tc.name, n, saml.DefaultMaxResponseBytes)
		}
	}
}

// lastAudit is the reason of the last refusal the audit hook received.
func (f *fixture) lastAudit(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.audits) == 0 {
		t.Fatal("no refusal reached the audit hook")
	}
	return f.audits[len(f.audits)-1].Reason
}

// TestSHA1Refused: a response signed with RSA-SHA1 (and a SHA-1 digest)
// is refused by default, with a reason that says so; a connection with
// InsecureAllowSHA1 accepts it.
func TestSHA1Refused(t *testing.T) {
	keys(t)
	for _, sign := range []samltest.Signing{samltest.SignAssertion, samltest.SignResponse, samltest.SignBoth} {
		t.Run(fmt.Sprint("signing=", sign), func(t *testing.T) {
			f := newFixture(t, options{idpInitiated: true})
			w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example"), Sign: sign, SignatureMethod: dsig.RSASHA1SignatureMethod}), "")
			if w.Code != http.StatusForbidden || w.Body.String() != generic {
				t.Fatalf("RSA-SHA1: %d %q, want 403 and the generic page", w.Code, w.Body)
			}
			if reason := f.lastAudit(t); !strings.Contains(reason, "SHA-1 signature refused") || !strings.Contains(reason, "InsecureAllowSHA1") {
				t.Fatalf("audited reason %q does not say that SHA-1 was refused", reason)
			}
			if users, _ := f.counts(t); users != 0 || len(f.logins) != 0 {
				t.Fatalf("a refused login created %d users, %d logins", users, len(f.logins))
			}
			// The same IdP signing with SHA-256 logs in.
			if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example"), Sign: sign}), ""); w.Code != http.StatusOK {
				t.Fatalf("RSA-SHA256: %d %s", w.Code, w.Body)
			}

			f = newFixture(t, options{idpInitiated: true, allowSHA1: true})
			if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example"), Sign: sign, SignatureMethod: dsig.RSASHA1SignatureMethod}), ""); w.Code != http.StatusOK {
				t.Fatalf("RSA-SHA1 with InsecureAllowSHA1: %d %s", w.Code, w.Body)
			}
		})
	}
}

// TestACSBodyLimit: a body past MaxResponseBytes is answered 413 with a
// clear message, whether its length is declared or not, and nothing
// changes; realistic responses with 150 groups pass the default limit.
func TestACSBodyLimit(t *testing.T) {
	keys(t)
	f := newFixture(t, options{idpInitiated: true})
	big := respond(t, idpA, samltest.Response{User: oktaUser(2500), Sign: samltest.SignBoth})
	if n := formSize(t, big); n <= saml.DefaultMaxResponseBytes {
		t.Fatalf("the big response is only %d bytes", n)
	}
	body := samltest.Form(big, "").Encode()
	for _, declared := range []bool{true, false} {
		var rd io.Reader = strings.NewReader(body)
		if !declared {
			rd = io.MultiReader(rd) // no Content-Length: read up to the limit
		}
		r := httptest.NewRequest(http.MethodPost, acmeACS, rd)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "larger than this service accepts") {
			t.Fatalf("declared length %v: %d %q, want 413 with a clear message", declared, w.Code, w.Body)
		}
		if reason := f.lastAudit(t); !strings.Contains(reason, "response too large") || !strings.Contains(reason, "MaxResponseBytes") {
			t.Fatalf("audited reason %q", reason)
		}
	}
	if users, events := f.counts(t); users != 0 || events != 0 {
		t.Fatalf("a refused body changed the store: %d users, %d events", users, events)
	}
	// The host may raise the limit.
	raised := newFixture(t, options{idpInitiated: true, maxBytes: 4 << 20})
	if w := raised.post(t, acmeACS, big, ""); w.Code != http.StatusOK {
		t.Fatalf("2,500 groups with MaxResponseBytes 4 MiB: %d %s", w.Code, w.Body)
	}
	// Entra's and Okta's shapes with 150 groups log in under the default.
	entra := newFixture(t, options{idpInitiated: true, mapping: saml.EntraIDMapping()})
	if w := entra.post(t, acmeACS, respond(t, idpA, samltest.Response{User: entraUser(150)}), ""); w.Code != http.StatusOK {
		t.Fatalf("Entra, 150 groups: %d %s", w.Code, w.Body)
	}
	if w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: oktaUser(150), Sign: samltest.SignBoth}), ""); w.Code != http.StatusOK {
		t.Fatalf("Okta, 150 groups: %d %s", w.Code, w.Body)
	}
}

// TestACSUnsignedRefusedBeforeParse: a response that names no XML
// signature (and holds no encrypted assertion) is refused before crewjam
// parses it, with a reason that says so.
func TestACSUnsignedRefusedBeforeParse(t *testing.T) {
	keys(t)
	f := newFixture(t, options{idpInitiated: true})
	w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: okta("00u1", "jane@acme.example"), Sign: samltest.Unsigned}), "")
	if w.Code != http.StatusForbidden || w.Body.String() != generic {
		t.Fatalf("unsigned: %d %q", w.Code, w.Body)
	}
	if reason := f.lastAudit(t); !strings.HasPrefix(reason, "unsigned: ") || !strings.Contains(reason, "before parsing") {
		t.Fatalf("audited reason %q", reason)
	}
	r := httptest.NewRequest(http.MethodPost, acmeACS, strings.NewReader("SAMLResponse=%%%"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("a malformed form: %d", w.Code)
	}
}
