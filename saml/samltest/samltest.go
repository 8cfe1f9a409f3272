// Package samltest is a SAML identity provider for tests: it generates a
// key and a self-signed certificate, serves its metadata and a single
// sign-on endpoint, and signs responses for a service provider, including
// every broken variant a service provider must refuse (unsigned, signed by
// another key, wrong audience or recipient, expired, signature wrapping).
//
// A host tests its SAML login with it end to end:
//
//	idp, err := samltest.New("https://idp.test/metadata")
//	srv := httptest.NewServer(idp.Handler()) // serves /metadata and /sso
//	idp.SSOURL = srv.URL + "/sso"
//	idp.SetUser(samltest.User{NameID: "00u1", Attributes: []samltest.Attribute{{Name: "email", Values: []string{"jane@acme.example"}}}})
//	// configure the service provider with idp.Metadata(), then:
//	resp, err := idp.Login(client, "https://app.test/saml/acme/login")
//
// or builds one response and posts it itself:
//
//	xml, err := idp.Response(samltest.Response{User: u, ACSURL: acs, Audience: entityID})
//	resp, err := client.PostForm(acs, samltest.Form(xml, ""))
package samltest

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"
	crewsaml "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// KeyPair is a signing key and its certificate.
type KeyPair struct {
	Key         *rsa.PrivateKey
	Certificate *x509.Certificate
}

// NewKeyPair generates a 2048-bit RSA key and a self-signed certificate
// for commonName, valid from an hour ago for ten years.
func NewKeyPair(commonName string) (KeyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return KeyPair{}, fmt.Errorf("samltest: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return KeyPair{}, fmt.Errorf("samltest: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("samltest: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("samltest: %w", err)
	}
	return KeyPair{Key: key, Certificate: cert}, nil
}

// Attribute is one SAML attribute the IdP asserts. An attribute with no
// Values is sent with none (as Google and simpleSAMLphp do).
type Attribute struct {
	Name         string
	FriendlyName string
	Values       []string
}

// User is what the IdP asserts about the person who logs in.
type User struct {
	// NameID is the subject's NameID value.
	NameID string
	// NameIDFormat defaults to persistent.
	NameIDFormat string
	// Attributes are sent in order.
	Attributes []Attribute
}

// Signing says what the IdP signs.
type Signing int

// The signing modes.
const (
	// SignAssertion signs the assertion only (the default, as most IdPs).
	SignAssertion Signing = iota
	// SignResponse signs the response only.
	SignResponse
	// SignBoth signs the assertion, then the response.
	SignBoth
	// Unsigned signs nothing.
	Unsigned
)

// Wrap is an XML signature wrapping (XSW) attack on a validly signed
// response: the attacker's assertion (Response.Evil) is made to look
// covered by the IdP's signature.
type Wrap int

// The signature wrapping shapes.
const (
	// NoWrap sends the response as signed.
	NoWrap Wrap = iota
	// WrapPrependAssertion puts an unsigned evil assertion before the
	// signed one, in an unsigned response (XSW3).
	WrapPrependAssertion
	// WrapNestSigned replaces the signed assertion with an evil one that
	// has the same ID and a copy of the original's signature, and nests
	// the signed original inside it (XSW4/XSW8).
	WrapNestSigned
	// WrapTamper edits the NameID of the signed assertion after signing
	// (keeps the signature).
	WrapTamper
	// WrapResponse signs the response (SignResponse), then makes an evil
	// response with a new ID and the evil assertion, whose Signature is the
	// original's with the original response moved into it (XSW1).
	WrapResponse
	// WrapAppendAssertion appends an unsigned evil assertion after the
	// signed one, in an unsigned response (XSW3, other order).
	WrapAppendAssertion
)

// Response says what to put in one SAML response, and how to break it.
// The zero values give a valid response for ACSURL and Audience.
type Response struct {
	// User is the subject. Required.
	User User
	// ACSURL is the service provider's assertion consumer service URL: the
	// Destination and the Recipient. Required.
	ACSURL string
	// Audience is the service provider's entity ID. Required.
	Audience string
	// InResponseTo is the AuthnRequest ID; empty for an IdP-initiated
	// response.
	InResponseTo string

	// Recipient, Destination override ACSURL in the
	// SubjectConfirmationData and the Response.
	Recipient   string
	Destination string
	// Issuer overrides the IdP's entity ID.
	Issuer string
	// AssertionID and ResponseID override the random ids (send the same
	// AssertionID twice for a replay).
	AssertionID string
	ResponseID  string
	// IssueInstant is the time the response claims; zero is now. The
	// conditions last Lifetime (default 5 minutes) from it, so an
	// IssueInstant an hour ago gives an expired response.
	IssueInstant time.Time
	Lifetime     time.Duration
	// Sign says what is signed; SignWith signs with another key (the
	// default is the IdP's).
	Sign     Signing
	SignWith *KeyPair
	// SignatureMethod is the XML signature algorithm, a goxmldsig
	// identifier such as dsig.RSASHA1SignatureMethod (an old ADFS); its
	// hash is also the digest. Empty is RSA-SHA256.
	SignatureMethod string
	// Wrap turns the response into a signature wrapping attack carrying
	// Evil (default: NameID "attacker" with e-mail attacker@evil.example).
	Wrap Wrap
	Evil *User
}

// IdP is a test SAML identity provider. Set SSOURL (and serve Handler)
// for the browser flow; Response alone needs only the key.
type IdP struct {
	// EntityID is the IdP's entity ID (the Issuer).
	EntityID string
	// SSOURL is where Handler's /sso is served, as published in the
	// metadata.
	SSOURL string
	KeyPair
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	mu   sync.Mutex
	user *User
}

// New returns an IdP with entityID and a fresh key pair.
func New(entityID string) (*IdP, error) {
	kp, err := NewKeyPair("samltest IdP")
	if err != nil {
		return nil, err
	}
	return &IdP{EntityID: entityID, KeyPair: kp}, nil
}

// SetUser sets the person the SSO endpoint logs in (nil: none, the
// endpoint answers 403).
func (idp *IdP) SetUser(u *User) {
	idp.mu.Lock()
	idp.user = u
	idp.mu.Unlock()
}

func (idp *IdP) now() time.Time {
	if idp.Now != nil {
		return idp.Now()
	}
	return time.Now()
}

// Metadata returns the IdP's metadata: its entity ID, signing
// certificate and SSO endpoint (HTTP-Redirect binding).
func (idp *IdP) Metadata() *crewsaml.EntityDescriptor {
	cert := base64.StdEncoding.EncodeToString(idp.Certificate.Raw)
	return &crewsaml.EntityDescriptor{
		EntityID:   idp.EntityID,
		ValidUntil: idp.now().Add(48 * time.Hour),
		IDPSSODescriptors: []crewsaml.IDPSSODescriptor{{
			SSODescriptor: crewsaml.SSODescriptor{
				RoleDescriptor: crewsaml.RoleDescriptor{
					ProtocolSupportEnumeration: "urn:oasis:names:tc:SAML:2.0:protocol",
					KeyDescriptors: []crewsaml.KeyDescriptor{{
						Use:     "signing",
						KeyInfo: crewsaml.KeyInfo{X509Data: crewsaml.X509Data{X509Certificates: []crewsaml.X509Certificate{{Data: cert}}}},
					}},
				},
				NameIDFormats: []crewsaml.NameIDFormat{crewsaml.PersistentNameIDFormat},
			},
			SingleSignOnServices: []crewsaml.Endpoint{{Binding: crewsaml.HTTPRedirectBinding, Location: idp.SSOURL}},
		}},
	}
}

// MetadataXML returns Metadata as XML.
func (idp *IdP) MetadataXML() ([]byte, error) {
	return xml.MarshalIndent(idp.Metadata(), "", "  ")
}

// Handler serves GET /metadata and GET /sso (the HTTP-Redirect binding:
// it decodes the AuthnRequest and answers an HTML form that posts the
// response for the current user to the request's ACS URL).
func (idp *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata", func(w http.ResponseWriter, r *http.Request) {
		b, err := idp.MetadataXML()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/samlmetadata+xml")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /sso", func(w http.ResponseWriter, r *http.Request) {
		req, err := DecodeRedirectRequest(r.URL.Query().Get("SAMLRequest"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		idp.mu.Lock()
		u := idp.user
		idp.mu.Unlock()
		if u == nil {
			http.Error(w, "samltest: no user is logged in at the IdP", http.StatusForbidden)
			return
		}
		audience := ""
		if req.Issuer != nil {
			audience = req.Issuer.Value
		}
		b, err := idp.Response(Response{User: *u, ACSURL: req.AssertionConsumerServiceURL, Audience: audience, InResponseTo: req.ID})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, FormHTML(req.AssertionConsumerServiceURL, b, r.URL.Query().Get("RelayState")))
	})
	return mux
}

// DecodeRedirectRequest decodes an HTTP-Redirect binding SAMLRequest
// (base64 of raw DEFLATE) into an AuthnRequest.
func DecodeRedirectRequest(s string) (*crewsaml.AuthnRequest, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("samltest: SAMLRequest: %w", err)
	}
	inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(raw)), 1<<20))
	if err != nil {
		return nil, fmt.Errorf("samltest: SAMLRequest: %w", err)
	}
	var req crewsaml.AuthnRequest
	if err := xml.Unmarshal(inflated, &req); err != nil {
		return nil, fmt.Errorf("samltest: SAMLRequest: %w", err)
	}
	return &req, nil
}

// Form returns the HTTP-POST binding form values for a response.
func Form(responseXML []byte, relayState string) url.Values {
	v := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(responseXML)}}
	if relayState != "" {
		v.Set("RelayState", relayState)
	}
	return v
}

// FormHTML returns an HTML page whose form posts the response to action
// (a browser submits it with script; SubmitForm does it in tests).
func FormHTML(action string, responseXML []byte, relayState string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<!DOCTYPE html><html><body onload="document.forms[0].submit()"><form method="post" action="%s">`, html.EscapeString(action))
	for k, vs := range Form(responseXML, relayState) {
		fmt.Fprintf(&b, `<input type="hidden" name="%s" value="%s">`, html.EscapeString(k), html.EscapeString(vs[0]))
	}
	b.WriteString(`<noscript><input type="submit" value="Continue"></noscript></form></body></html>`)
	return b.String()
}

var (
	formRe  = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	inputRe = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// SubmitForm reads a FormHTML page from resp (and closes its body), and
// posts the form with c, as a browser would.
func SubmitForm(c *http.Client, resp *http.Response) (*http.Response, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	m := formRe.FindSubmatch(body)
	if m == nil {
		return nil, fmt.Errorf("samltest: no form in the %d answer of %s: %.300s", resp.StatusCode, resp.Request.URL, body)
	}
	v := url.Values{}
	for _, in := range inputRe.FindAllSubmatch(body, -1) {
		v.Set(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	return c.PostForm(html.UnescapeString(string(m[1])), v)
}

// Login runs the browser's part of an SP-initiated login with c (which
// needs a cookie jar and follows redirects): GET loginURL, which redirects
// to the IdP's /sso, then post the IdP's form to the ACS, following the
// redirects that follow. It returns the last response.
func (idp *IdP) Login(c *http.Client, loginURL string) (*http.Response, error) {
	resp, err := c.Get(loginURL)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("samltest: GET %s ended with %s at %s", loginURL, resp.Status, resp.Request.URL)
	}
	return SubmitForm(c, resp)
}

// InitiatedForm returns the form values of an IdP-initiated login for an
// SP (no InResponseTo).
func (idp *IdP) InitiatedForm(u User, acsURL, audience, relayState string) (url.Values, error) {
	b, err := idp.Response(Response{User: u, ACSURL: acsURL, Audience: audience})
	if err != nil {
		return nil, err
	}
	return Form(b, relayState), nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "id-" + hex.EncodeToString(b)
}

// Response builds and signs one SAML response as r says.
func (idp *IdP) Response(r Response) ([]byte, error) {
	if r.ACSURL == "" || r.Audience == "" {
		return nil, errors.New("samltest: Response needs ACSURL and Audience")
	}
	now := r.IssueInstant
	if now.IsZero() {
		now = idp.now()
	}
	now = now.UTC().Truncate(time.Millisecond)
	if r.Lifetime <= 0 {
		r.Lifetime = 5 * time.Minute
	}
	issuer := r.Issuer
	if issuer == "" {
		issuer = idp.EntityID
	}
	if r.AssertionID == "" {
		r.AssertionID = randomID()
	}
	if r.ResponseID == "" {
		r.ResponseID = randomID()
	}
	kp := idp.KeyPair
	if r.SignWith != nil {
		kp = *r.SignWith
	}
	if r.Wrap == WrapResponse {
		r.Sign = SignResponse
	}
	evil := User{NameID: "attacker", Attributes: []Attribute{{Name: "email", Values: []string{"attacker@evil.example"}}}}
	if r.Evil != nil {
		evil = *r.Evil
	}

	a := idp.assertion(r, r.User, issuer, now)
	var aEl *etree.Element
	if r.Sign == SignAssertion || r.Sign == SignBoth {
		sig, err := signature(kp, r.SignatureMethod, a.Element())
		if err != nil {
			return nil, err
		}
		a.Signature = sig
	}
	aEl = a.Element()

	resp := &crewsaml.Response{
		ID:           r.ResponseID,
		InResponseTo: r.InResponseTo,
		Version:      "2.0",
		IssueInstant: now,
		Destination:  firstOf(r.Destination, r.ACSURL),
		Issuer:       &crewsaml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: issuer},
		Status:       crewsaml.Status{StatusCode: crewsaml.StatusCode{Value: crewsaml.StatusSuccess}},
	}
	respEl := resp.Element()
	respEl.AddChild(aEl)
	if r.Sign == SignResponse || r.Sign == SignBoth {
		sig, err := signature(kp, r.SignatureMethod, respEl)
		if err != nil {
			return nil, err
		}
		resp.Signature = sig
		respEl = resp.Element()
		respEl.AddChild(aEl)
	}

	evilA := func(id string) *etree.Element {
		e := idp.assertion(r, evil, issuer, now)
		e.ID = id
		return e.Element()
	}
	switch r.Wrap {
	case NoWrap:
	case WrapPrependAssertion:
		respEl.InsertChildAt(aEl.Index(), evilA(randomID()))
	case WrapAppendAssertion:
		respEl.AddChild(evilA(randomID()))
	case WrapNestSigned:
		e := evilA(r.AssertionID)
		if a.Signature != nil {
			e.InsertChildAt(1, a.Signature.Copy())
		}
		respEl.RemoveChild(aEl)
		if subj := e.SelectElement("saml:Subject"); subj != nil {
			subj.AddChild(aEl)
		} else {
			e.AddChild(aEl)
		}
		respEl.AddChild(e)
	case WrapTamper:
		nameID := aEl.FindElement("./saml:Subject/saml:NameID")
		if nameID == nil {
			return nil, errors.New("samltest: no NameID to tamper with")
		}
		nameID.SetText(evil.NameID)
	case WrapResponse:
		evilResp := *resp
		evilResp.ID = randomID()
		evilResp.Signature = nil
		evilEl := evilResp.Element()
		sig := resp.Signature.Copy()
		obj := sig.CreateElement("ds:Object")
		obj.AddChild(respEl)
		evilEl.InsertChildAt(1, sig)
		evilEl.AddChild(evilA(randomID()))
		respEl = evilEl
	default:
		return nil, fmt.Errorf("samltest: unknown Wrap %d", r.Wrap)
	}

	doc := etree.NewDocument()
	doc.SetRoot(respEl)
	return doc.WriteToBytes()
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (idp *IdP) assertion(r Response, u User, issuer string, now time.Time) *crewsaml.Assertion {
	format := u.NameIDFormat
	if format == "" {
		format = string(crewsaml.PersistentNameIDFormat)
	}
	until := now.Add(r.Lifetime)
	a := &crewsaml.Assertion{
		ID:           r.AssertionID,
		IssueInstant: now,
		Version:      "2.0",
		Issuer:       crewsaml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: issuer},
		Subject: &crewsaml.Subject{
			NameID: &crewsaml.NameID{Format: format, Value: u.NameID},
			SubjectConfirmations: []crewsaml.SubjectConfirmation{{
				Method: "urn:oasis:names:tc:SAML:2.0:cm:bearer",
				SubjectConfirmationData: &crewsaml.SubjectConfirmationData{
					InResponseTo: r.InResponseTo,
					NotOnOrAfter: until,
					Recipient:    firstOf(r.Recipient, r.ACSURL),
				},
			}},
		},
		Conditions: &crewsaml.Conditions{
			NotBefore:            now.Add(-30 * time.Second),
			NotOnOrAfter:         until,
			AudienceRestrictions: []crewsaml.AudienceRestriction{{Audience: crewsaml.Audience{Value: r.Audience}}},
		},
		AuthnStatements: []crewsaml.AuthnStatement{{
			AuthnInstant: now,
			SessionIndex: randomID(),
			AuthnContext: crewsaml.AuthnContext{AuthnContextClassRef: &crewsaml.AuthnContextClassRef{Value: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}},
		}},
	}
	if len(u.Attributes) > 0 {
		var st crewsaml.AttributeStatement
		for _, at := range u.Attributes {
			x := crewsaml.Attribute{Name: at.Name, FriendlyName: at.FriendlyName, NameFormat: "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"}
			if !strings.ContainsAny(at.Name, ":/") {
				x.NameFormat = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
			}
			for _, v := range at.Values {
				x.Values = append(x.Values, crewsaml.AttributeValue{Type: "xs:string", Value: v})
			}
			st.Attributes = append(st.Attributes, x)
		}
		a.AttributeStatements = []crewsaml.AttributeStatement{st}
	}
	return a
}

// signature signs el (enveloped, exclusive c14n, with method, RSA-SHA256
// when empty) and returns the Signature element, for the caller to place
// after the Issuer.
func signature(kp KeyPair, method string, el *etree.Element) (*etree.Element, error) {
	ks := dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{kp.Certificate.Raw}, PrivateKey: kp.Key, Leaf: kp.Certificate})
	ctx := dsig.NewDefaultSigningContext(ks)
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if method == "" {
		method = dsig.RSASHA256SignatureMethod
	}
	if err := ctx.SetSignatureMethod(method); err != nil {
		return nil, fmt.Errorf("samltest: %w", err)
	}
	signed, err := ctx.SignEnveloped(el)
	if err != nil {
		return nil, fmt.Errorf("samltest: sign: %w", err)
	}
	children := signed.ChildElements()
	return children[len(children)-1], nil
}
