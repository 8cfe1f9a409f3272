package provision

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Secret is a secret setting (an LDAP bind password, a webhook signing
// secret). It holds the clear value in memory for the adapter that needs
// it (Reveal), but never shows it: fmt, slog and JSON render it as
// "[redacted]", so a Connection in an event, a log line or an admin API
// answer carries no secret. The engine seals it with Config.SecretKeys
// before a Registry stores it. JSON decoding reads a plain string, so a
// host can load secrets from its own configuration.
type Secret struct{ v string }

// NewSecret returns a Secret holding s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the clear value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether s is empty.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

// String returns "[redacted]", or "" for an empty Secret.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return redacted
}

// LogValue keeps the value out of slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON renders "[redacted]" (or "" when empty): a Secret never
// leaves the process in clear through JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a clear string. "[redacted]" itself is refused, so
// that a value read back from an API answer is never stored as the secret.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("provision: a secret is a JSON string: %w", err)
	}
	if v == redacted {
		return errors.New(`provision: a secret cannot be "[redacted]": give the value itself`)
	}
	s.v = v
	return nil
}

// SecretKey is one AES-256 key that seals the secrets of registered
// tenants. Key is 32 random bytes; ID names the key in every value it
// sealed (so that an old row opens after a rotation) and must not contain
// ':'.
type SecretKey struct {
	ID  string
	Key []byte
}

// ErrNoSecretKey is the error of a registry write that carries a secret
// when Config.SecretKeys is empty.
var ErrNoSecretKey = errors.New("provision: no Config.SecretKeys to seal a secret with")

// sealer seals with the first key and opens with any.
type sealer struct {
	current string
	aeads   map[string]cipher.AEAD
}

func newSealer(keys []SecretKey) (*sealer, error) {
	s := &sealer{aeads: map[string]cipher.AEAD{}}
	for i, k := range keys {
		if k.ID == "" || strings.ContainsAny(k.ID, ":") {
			return nil, fmt.Errorf("provision: Config.SecretKeys[%d]: an ID without ':' is required", i)
		}
		if len(k.Key) != 32 {
			return nil, fmt.Errorf("provision: Config.SecretKeys[%d] (%s): the key must be 32 bytes (AES-256), not %d", i, k.ID, len(k.Key))
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("provision: Config.SecretKeys: key ID %q given twice", k.ID)
		}
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return nil, fmt.Errorf("provision: Config.SecretKeys[%d]: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("provision: Config.SecretKeys[%d]: %w", i, err)
		}
		s.aeads[k.ID] = aead
		if i == 0 {
			s.current = k.ID
		}
	}
	return s, nil
}

// seal returns "v1:<key id>:<base64 nonce||ciphertext>" of clear, bound to
// where it is stored (aad: tenant, connection and field), so that a sealed
// value copied to another row does not open.
func (s *sealer) seal(clear, aad string) (string, error) {
	if clear == "" {
		return "", nil
	}
	if s.current == "" {
		return "", ErrNoSecretKey
	}
	aead := s.aeads[s.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(clear)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("provision: seal: %w", err)
	}
	out := aead.Seal(nonce, nonce, []byte(clear), []byte(aad))
	return "v1:" + s.current + ":" + base64.RawStdEncoding.EncodeToString(out), nil
}

// open reverses seal.
func (s *sealer) open(sealed, aad string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	parts := strings.SplitN(sealed, ":", 3)
	if len(parts) != 3 || parts[0] != "v1" {
		return "", errors.New("provision: open secret: not a sealed value")
	}
	aead, ok := s.aeads[parts[1]]
	if !ok {
		return "", fmt.Errorf("provision: open secret: sealed with key %q, which is not in Config.SecretKeys", parts[1])
	}
	raw, err := base64.RawStdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < aead.NonceSize() {
		return "", errors.New("provision: open secret: malformed sealed value")
	}
	clear, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
	if err != nil {
		return "", fmt.Errorf("provision: open secret sealed with key %q: %w", parts[1], err)
	}
	return string(clear), nil
}

// keyOf returns the ID of the key that sealed a value ("" for none).
func keyOf(sealed string) string {
	parts := strings.SplitN(sealed, ":", 3)
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}
