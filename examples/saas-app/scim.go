package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// scimFeature serves SCIM 2.0 at /scim/v2 for every SCIM directory of
// every tenant: the bearer token decides the tenant and the directory.
// -scim-token and -scim-connection configure the -tenant's directory;
// the -config file declares the others.
//
// A directory given no token gets one made on first start and kept in
// the store (its KV), so a restart prints the same token. Rotating a
// token (on the admin page) keeps the old and the new valid together
// until the old is revoked; the valid hashes are kept in the store too,
// and win over the -config file's, and over -scim-token when the restart
// gives the same -scim-token the rotation started from.
type scimFeature struct {
	token  string
	pinned string // the -scim-token flag
	connID string
	tokens *scim.TokenSet
	// handler serves /scim/v2; its RequestLog and Health are for the
	// admin page.
	handler *scim.Handler

	mu   sync.Mutex
	dirs []*scimDir
}

// scimDir is one directory's token state.
type scimDir struct {
	TenantID, ConnectionID, Name string
	// Hashes are the valid tokens' hashes, newest first.
	Hashes []scim.TokenHash
	// Fixed is set when the -scim-token flag decides the token.
	Fixed bool
}

// scimState is what the store keeps of a directory's tokens (KV).
type scimState struct {
	Hashes []string `json:"hashes"`
	// Token is the newest token in clear, kept for the flag tenant's
	// directory only so that a restart can print it again: a demo's
	// convenience, a production host keeps the hashes alone.
	Token string `json:"token,omitempty"`
	// Pinned is the hash of the -scim-token the state was rotated from:
	// a restart with the same -scim-token keeps the rotation; another
	// -scim-token wins over it.
	Pinned string `json:"pinned,omitempty"`
}

func scimStateKey(connID string) string { return "saas-app:scim-tokens:" + connID }

func (f *scimFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "scim-token", "", "bearer token of the SCIM connection (default: a random one kept in the store, printed)")
	fs.StringVar(&f.connID, "scim-connection", "scim", "id of the SCIM connection")
}

func (f *scimFeature) setup(a *app) error {
	flagDir := scimConfig{ID: f.connID, Name: "SCIM directory"}
	f.pinned = f.token
	if f.token != "" {
		flagDir.Tokens = []string{f.token}
	}
	a.Tenants[0].Conf.SCIM = append([]scimConfig{flagDir}, a.Tenants[0].Conf.SCIM...)
	for i, t := range a.Tenants {
		for j, c := range t.Conf.SCIM {
			if c.ID == "" {
				return fmt.Errorf("-config: tenant %s: a SCIM directory without an id", t.ID)
			}
			name := c.Name
			if name == "" {
				name = "SCIM directory " + c.ID
			}
			t.Connections = append(t.Connections, provision.Connection{ID: c.ID, Kind: provision.KindSCIM, Name: name})
			d := &scimDir{TenantID: t.ID, ConnectionID: c.ID, Name: name, Fixed: i == 0 && j == 0 && f.token != ""}
			for _, tok := range c.Tokens {
				d.Hashes = append(d.Hashes, scim.HashToken(tok))
			}
			for _, s := range c.TokenHashes {
				h, err := scim.ParseTokenHash(s)
				if err != nil {
					return fmt.Errorf("-config: tenant %s, SCIM directory %s: %w", t.ID, c.ID, err)
				}
				d.Hashes = append(d.Hashes, h)
			}
			f.dirs = append(f.dirs, d)
		}
	}
	return nil
}

func (f *scimFeature) start(ctx context.Context, a *app) error {
	f.tokens = &scim.TokenSet{}
	for i, d := range f.dirs {
		printed, err := f.loadTokens(ctx, a, d, i == 0)
		if err != nil {
			return err
		}
		if i == 0 {
			f.token = printed
		}
		if err := f.tokens.Set(scim.Directory{TenantID: d.TenantID, ConnectionID: d.ConnectionID, TokenHashes: d.Hashes}); err != nil {
			return err
		}
	}
	base := a.BaseURL + "/scim/v2"
	h, err := scim.New(scim.Config{
		Engine:        a.Engine,
		Authenticator: registryAuth{declared: f.tokens, engine: a.Engine},
		BaseURL:       base,
		Logger:        a.Log,
	})
	if err != nil {
		return err
	}
	f.handler = h
	a.admin.scim = f
	a.Mux.Handle("/scim/v2/", http.StripPrefix("/scim/v2", h))
	fmt.Fprintf(a.Stdout, "scim: %s\n", base)
	fmt.Fprintf(a.Stdout, "scim-token: %s\n", f.token)
	return nil
}

// loadTokens settles d's valid hashes: an explicit -scim-token, else the
// store's (after a rotation, or the token made on an earlier start), else
// the -config file's, else a new token kept in the store. It returns the
// token to print, when it is known in clear.
func (f *scimFeature) loadTokens(ctx context.Context, a *app, d *scimDir, flagDir bool) (string, error) {
	key := scimStateKey(d.ConnectionID)
	if d.Fixed {
		// A rotation on the admin page survives a restart with the same
		// -scim-token; a new -scim-token starts over.
		st, hashes, err := f.storedTokens(ctx, a, d, key)
		if err != nil || st.Pinned != scim.HashToken(f.pinned).String() || len(hashes) == 0 {
			return f.pinned, err
		}
		d.Hashes = hashes
		if !slices.Contains(hashes, scim.HashToken(f.pinned)) {
			a.Log.Warn("saas-app: the -scim-token was rotated on the admin page and its token revoked; the new token is printed", "tenant", d.TenantID, "connection", d.ConnectionID)
		}
		return st.Token, nil
	}
	for {
		st, hashes, err := f.storedTokens(ctx, a, d, key)
		if err != nil {
			return "", err
		}
		if len(hashes) > 0 {
			d.Hashes = hashes
			return st.Token, nil
		}
		if len(d.Hashes) > 0 {
			return "", nil
		}
		// No token anywhere: make one, and keep it (another replica
		// starting at the same time may win the insert: then read its).
		tok, err := scim.GenerateToken()
		if err != nil {
			return "", err
		}
		st = scimState{Hashes: []string{scim.HashToken(tok).String()}}
		if flagDir {
			st.Token = tok
		}
		b, _ := json.Marshal(st)
		ok, err := provision.AdapterOf(a.Engine).KVInsert(ctx, d.TenantID, key, b, 0)
		if err != nil {
			return "", fmt.Errorf("scim tokens of %s/%s: %w", d.TenantID, d.ConnectionID, err)
		}
		if ok {
			d.Hashes = []scim.TokenHash{scim.HashToken(tok)}
			if !flagDir {
				fmt.Fprintf(a.Stdout, "scim-token %s/%s: %s\n", d.TenantID, d.ConnectionID, tok)
			}
			return tok, nil
		}
	}
}

// storedTokens reads d's token state from the store: none yet is no
// hashes and no error.
func (f *scimFeature) storedTokens(ctx context.Context, a *app, d *scimDir, key string) (scimState, []scim.TokenHash, error) {
	var st scimState
	b, err := provision.AdapterOf(a.Engine).KVGet(ctx, d.TenantID, key)
	if errors.Is(err, provision.ErrNotFound) {
		return st, nil, nil
	}
	if err != nil {
		return st, nil, fmt.Errorf("scim tokens of %s/%s: %w", d.TenantID, d.ConnectionID, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, nil, fmt.Errorf("scim tokens of %s/%s in the store: %w", d.TenantID, d.ConnectionID, err)
	}
	hashes := make([]scim.TokenHash, 0, len(st.Hashes))
	for _, s := range st.Hashes {
		h, err := scim.ParseTokenHash(s)
		if err != nil {
			return st, nil, fmt.Errorf("scim tokens of %s/%s in the store: %w", d.TenantID, d.ConnectionID, err)
		}
		hashes = append(hashes, h)
	}
	return st, hashes, nil
}

// directories returns a copy of the directories' token state.
func (f *scimFeature) directories() []scimDir {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]scimDir, len(f.dirs))
	for i, d := range f.dirs {
		out[i] = *d
		out[i].Hashes = slices.Clone(d.Hashes)
	}
	return out
}

func (f *scimFeature) dir(tenantID, connID string) *scimDir {
	for _, d := range f.dirs {
		if d.TenantID == tenantID && d.ConnectionID == connID {
			return d
		}
	}
	return nil
}

// rotate makes a new token for a directory: the new one and the newest
// old one are valid together until revokeOld. It returns the new token,
// shown once.
func (f *scimFeature) rotate(ctx context.Context, a *app, tenantID, connID string) (string, error) {
	tok, err := scim.GenerateToken()
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dir(tenantID, connID)
	if d == nil {
		return "", fmt.Errorf("no SCIM directory %s/%s", tenantID, connID)
	}
	hashes := []scim.TokenHash{scim.HashToken(tok)}
	if len(d.Hashes) > 0 {
		hashes = append(hashes, d.Hashes[0])
	}
	if err := f.commit(ctx, a, d, hashes, tok); err != nil {
		return "", err
	}
	return tok, nil
}

// revokeOld keeps only the newest token of a directory.
func (f *scimFeature) revokeOld(ctx context.Context, a *app, tenantID, connID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dir(tenantID, connID)
	if d == nil {
		return fmt.Errorf("no SCIM directory %s/%s", tenantID, connID)
	}
	if len(d.Hashes) < 2 {
		return nil
	}
	st, _ := provision.AdapterOf(a.Engine).KVGet(ctx, tenantID, scimStateKey(connID))
	var old scimState
	_ = json.Unmarshal(st, &old)
	return f.commit(ctx, a, d, d.Hashes[:1], old.Token)
}

// commit stores and applies a directory's new hashes. f.mu is held.
func (f *scimFeature) commit(ctx context.Context, a *app, d *scimDir, hashes []scim.TokenHash, clear string) error {
	st := scimState{}
	for _, h := range hashes {
		st.Hashes = append(st.Hashes, h.String())
	}
	if d == f.dirs[0] {
		st.Token = clear
	}
	if d.Fixed {
		st.Pinned = scim.HashToken(f.pinned).String()
	}
	b, _ := json.Marshal(st)
	if err := provision.AdapterOf(a.Engine).KVSet(ctx, d.TenantID, scimStateKey(d.ConnectionID), b, 0); err != nil {
		return err
	}
	if err := f.tokens.Set(scim.Directory{TenantID: d.TenantID, ConnectionID: d.ConnectionID, TokenHashes: hashes}); err != nil {
		return err
	}
	d.Hashes = hashes
	return nil
}
