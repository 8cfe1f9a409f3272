package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the request header that carries the signature:
//
//	Idprov-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//
// The HMAC is keyed with the endpoint's secret (its bytes as written) and
// computed over the timestamp, a full stop and the raw request body:
// "<unix seconds>.<body>". A header may carry several v1 values (one per
// secret while a secret is being rotated); one matching is enough.
const SignatureHeader = "Idprov-Signature"

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// The errors of Verify, checked with errors.Is.
var (
	// ErrMalformedHeader: the header is empty or not t=...,v1=....
	ErrMalformedHeader = errors.New("webhook: malformed signature header")
	// ErrBadSignature: no v1 value matches the body and the secret.
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrStale: the signature is valid but its timestamp is further from
	// now than the tolerance (a replayed or badly delayed request).
	ErrStale = errors.New("webhook: signature timestamp outside the tolerance")
)

// Sign returns the SignatureHeader value for body signed with secret at
// time t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook request on the receiving side: header is the
// SignatureHeader value, body the raw request body (read it whole before
// decoding it), now the receiver's clock and tolerance how old (or how
// far in the future) the timestamp may be; tolerance <= 0 means
// DefaultTolerance. The HMAC comparison is constant-time.
//
// It returns nil, or an error wrapping ErrMalformedHeader, ErrBadSignature
// or ErrStale. Delivery is at least once: a receiver should also ignore an
// event whose (tenantId, seq) it has already handled.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return errors.New("webhook: Verify needs the endpoint's secret")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %q is not key=value", ErrMalformedHeader, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: two timestamps", ErrMalformedHeader)
			}
			ts = v
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil && len(sig) == sha256.Size {
				sigs = append(sigs, sig)
			}
		}
		// Other keys are future schemes: ignored.
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no valid timestamp", ErrMalformedHeader)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrMalformedHeader)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	age := now.Sub(time.Unix(unix, 0))
	if age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %v from now (tolerance %v)", ErrStale, age.Round(time.Second), tolerance)
	}
	return nil
}

// NewSecret returns a new random endpoint secret: "whsec_" and 32 random
// bytes in hex. Give it to the receiver once, and keep it in the host's
// configuration.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhook: new secret: %w", err)
	}
	return "whsec_" + hex.EncodeToString(b[:]), nil
}
