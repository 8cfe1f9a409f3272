package scim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/idprov/idprov/provision"
)

// ErrBadToken is what an Authenticator returns for a missing, unknown or
// revoked bearer token. The handler answers it with 401 and a SCIM error
// body. Any other Authenticator error is answered with 503.
var ErrBadToken = errors.New("scim: invalid bearer token")

// TokenHash is the SHA-256 digest of a bearer token: what a host stores
// and configures instead of the token itself. It is provision.TokenHash,
// the type of provision.SCIMSettings.TokenHashes.
type TokenHash = provision.TokenHash

// HashToken returns the hash of a bearer token, to put in a Directory or
// in provision.SCIMSettings.TokenHashes.
func HashToken(token string) TokenHash { return provision.HashToken(token) }

// ParseTokenHash parses the form TokenHash.String renders ("sha256:" and
// 64 hex digits; the prefix is optional).
func ParseTokenHash(s string) (TokenHash, error) { return provision.ParseTokenHash(s) }

// GenerateToken returns a new random bearer token (256 bits, URL-safe
// base64), for a host to show once to the administrator who pastes it into
// the identity provider; store only HashToken of it.
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("scim: generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Directory is one SCIM directory: a connection of Kind provision.KindSCIM
// in a tenant, and the hashes of the bearer tokens it authenticates with.
type Directory struct {
	// TenantID and ConnectionID name the connection, as declared to the
	// provision.Engine. Required.
	TenantID     string
	ConnectionID string
	// TokenHashes are the hashes of the tokens that are valid now. During
	// a rotation list the old and the new one; drop the old one when the
	// identity provider uses the new one.
	TokenHashes []TokenHash
}

// Authenticator resolves a bearer token to the directory it belongs to.
//
// Authenticate is called once per request with the token as sent (never
// logged by the handler). It returns ErrBadToken (possibly wrapped) when
// the token is unknown; any other error means it could not decide now and
// the request is answered 503. It must be safe for concurrent use. TokenSet
// and the engine's connections (Config.Authenticator nil) are the
// implementations most hosts need; a host keeping its directories in its
// own database implements it over that.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Directory, error)
}

type dirKey struct{ tenant, conn string }

// TokenSet is an in-memory Authenticator whose directories and tokens the
// host changes at run time (Set, Remove), for token rotation. It keeps
// only token hashes. The zero value is an empty set ready to use.
type TokenSet struct {
	mu     sync.RWMutex
	byHash map[TokenHash]dirKey
	dirs   map[dirKey]Directory
}

// NewTokenSet returns a TokenSet holding dirs.
func NewTokenSet(dirs ...Directory) (*TokenSet, error) {
	s := &TokenSet{}
	for _, d := range dirs {
		if err := s.Set(d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Set adds directory d, or replaces the tokens of the directory with the
// same tenant and connection: to rotate, Set it with the old and the new
// hash, then later with the new one only. A hash already used by another
// directory is an error (a token names exactly one directory).
func (s *TokenSet) Set(d Directory) error {
	if d.TenantID == "" || d.ConnectionID == "" {
		return errors.New("scim: a Directory needs a TenantID and a ConnectionID")
	}
	k := dirKey{d.TenantID, d.ConnectionID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byHash == nil {
		s.byHash = map[TokenHash]dirKey{}
		s.dirs = map[dirKey]Directory{}
	}
	for _, h := range d.TokenHashes {
		if other, ok := s.byHash[h]; ok && other != k {
			return fmt.Errorf("scim: a token of directory %s/%s is already used by directory %s/%s", d.TenantID, d.ConnectionID, other.tenant, other.conn)
		}
	}
	if old, ok := s.dirs[k]; ok {
		for _, h := range old.TokenHashes {
			delete(s.byHash, h)
		}
	}
	d.TokenHashes = append([]TokenHash(nil), d.TokenHashes...)
	s.dirs[k] = d
	for _, h := range d.TokenHashes {
		s.byHash[h] = k
	}
	return nil
}

// Remove forgets a directory: its tokens stop working at once.
func (s *TokenSet) Remove(tenantID, connectionID string) {
	k := dirKey{tenantID, connectionID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.dirs[k]; ok {
		for _, h := range old.TokenHashes {
			delete(s.byHash, h)
		}
		delete(s.dirs, k)
	}
}

// Directories returns the directories in the set, in no particular order.
func (s *TokenSet) Directories() []Directory {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Directory, 0, len(s.dirs))
	for _, d := range s.dirs {
		d.TokenHashes = append([]TokenHash(nil), d.TokenHashes...)
		out = append(out, d)
	}
	return out
}

// Authenticate implements Authenticator. The token is hashed first and
// looked up by its hash, so the lookup's timing depends only on a digest
// the caller cannot steer towards a stored one; the final equality is
// checked with subtle.ConstantTimeCompare.
func (s *TokenSet) Authenticate(_ context.Context, token string) (Directory, error) {
	if token == "" {
		return Directory{}, ErrBadToken
	}
	h := HashToken(token)
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.byHash[h]
	if !ok {
		return Directory{}, ErrBadToken
	}
	d := s.dirs[k]
	for _, stored := range d.TokenHashes {
		if subtle.ConstantTimeCompare(stored[:], h[:]) == 1 {
			return Directory{TenantID: d.TenantID, ConnectionID: d.ConnectionID}, nil
		}
	}
	return Directory{}, ErrBadToken
}

// engineAuth authenticates against the engine's connections: the SCIM
// connections of declared and registered tenants whose
// SCIMSettings.TokenHashes hold the token's hash.
type engineAuth struct{ e *provision.Engine }

func (a engineAuth) Authenticate(ctx context.Context, token string) (Directory, error) {
	if token == "" {
		return Directory{}, ErrBadToken
	}
	tenant, conn, err := a.e.ConnectionByToken(ctx, HashToken(token))
	if errors.Is(err, provision.ErrNotFound) {
		return Directory{}, ErrBadToken
	}
	if err != nil {
		return Directory{}, err
	}
	return Directory{TenantID: tenant, ConnectionID: conn}, nil
}
