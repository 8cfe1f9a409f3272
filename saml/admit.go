package saml

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	crewsaml "github.com/crewjam/saml"
	"github.com/idprov/idprov/provision"
)

// What an unauthenticated ACS request may cost is bounded before the
// response is parsed: its body (MaxResponseBytes, 413 past it, read only
// up to the limit), what it must hold to be worth parsing (an XML
// signature or an encrypted assertion), and how many are parsed at once
// (MaxConcurrentParses).

// parseWait is how long an ACS request waits for a parse slot before it
// is answered 503.
const parseWait = time.Second

var (
	dsigNamespace   = []byte("http://www.w3.org/2000/09/xmldsig#")
	xmlencNamespace = []byte("http://www.w3.org/2001/04/xmlenc#")
)

// admit reads the ACS form within the body limit and refuses what cannot
// be a signed response. It answers the request and returns false when the
// request goes no further.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, c *conn) bool {
	if r.ContentLength > h.maxBytes {
		h.tooLarge(w, r, c, r.ContentLength)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, r, c, -1)
			return false
		}
		h.refuse(w, r, c, "unreadable form: "+err.Error(), err)
		return false
	}
	if reason := precheck(r); reason != "" {
		h.refuse(w, r, c, reason, crewsaml.ErrMissingElement)
		return false
	}
	return true
}

// precheck refuses, without parsing it, a posted response that no
// signature can cover: an HTTP-POST SAMLResponse that is not base64 or
// names neither the XML Signature namespace nor the XML Encryption one
// (every signed response and every encrypted assertion does). A message
// of the HTTP-POST-SimpleSign binding (whose signature is a form field,
// checked before crewjam parses the XML) or an artifact goes on.
func precheck(r *http.Request) string {
	f := r.PostForm
	_, sigAlg := f["SigAlg"]
	_, sig := f["Signature"]
	resp := f.Get("SAMLResponse")
	if resp == "" || sigAlg || sig {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return "malformed message: SAMLResponse is not base64"
	}
	if !bytes.Contains(raw, dsigNamespace) && !bytes.Contains(raw, xmlencNamespace) {
		return "unsigned: the response holds no XML signature and no encrypted assertion (refused before parsing)"
	}
	return ""
}

// tooLarge answers 413 a body past MaxResponseBytes (n is its declared
// length, -1 when it was read up to the limit) and audits it.
func (h *Handler) tooLarge(w http.ResponseWriter, r *http.Request, c *conn, n int64) {
	reason := fmt.Sprintf("response too large: the ACS body is larger than %d bytes (Config.MaxResponseBytes)", h.maxBytes)
	if n > 0 {
		reason = fmt.Sprintf("response too large: the ACS body is %d bytes, more than %d (Config.MaxResponseBytes)", n, h.maxBytes)
	}
	provision.AdapterOf(h.engine).Refuse(r.Context(), originOf(c), "saml.acs", reason, errTooLarge)
	w.Header().Set("Connection", "close")
	h.errorPage(w, r, http.StatusRequestEntityTooLarge)
}

// errTooLarge is the error audited with a refused ACS body.
var errTooLarge = errors.New("saml: ACS body too large")

// errBusy is returned by parse when no parse slot freed in time.
var errBusy = errors.New("saml: too many ACS responses being parsed at once")

// parse runs sp.ParseResponse in one of the MaxConcurrentParses slots,
// waiting up to parseWait for one (errBusy).
func (h *Handler) parse(sp *crewsaml.ServiceProvider, r *http.Request, ids []string) (*crewsaml.Assertion, error) {
	select {
	case h.parses <- struct{}{}:
	default:
		t := time.NewTimer(parseWait)
		defer t.Stop()
		select {
		case h.parses <- struct{}{}:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-t.C:
			return nil, errBusy
		}
	}
	defer func() { <-h.parses }()
	return sp.ParseResponse(r, ids)
}

// busy answers a request that found no parse slot.
func (h *Handler) busy(w http.ResponseWriter, r *http.Request, c *conn) {
	h.log.WarnContext(r.Context(), "saml: too many ACS responses being parsed at once; answered 503", "tenant", c.TenantID, "connection", c.ConnectionID, "max_concurrent_parses", cap(h.parses))
	w.Header().Set("Retry-After", "1")
	h.errorPage(w, r, http.StatusServiceUnavailable)
}
