package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	crewsaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
)

// samlFeature signs the tenant's users in with SAML and provisions them
// just in time. Its connection is paired with the SCIM directory: on a
// user's first login, the SCIM user whose externalId is the login's
// subject is the user (then, with -saml-email-domain, the user with the
// same e-mail in that verified domain); otherwise a user is created.
//
//	-saml-idp-metadata URL_OR_FILE   the IdP's metadata; SAML is off without it
//	-saml-idp-initiated              accept IdP-initiated logins (off by default)
//	-saml-email-domain DOMAIN        the tenant's verified e-mail domain; logins
//	                                 from other domains are refused
//
// It serves /saml/{tenant}/metadata, /saml/{tenant}/login and
// /saml/{tenant}/acs, and GET /me: the signed-in user as JSON, 401 without
// a session or once the user is deactivated or deleted.
type samlFeature struct {
	metadata     string
	idpInitiated bool
	connID       string
	emailDomain  string

	mu       sync.Mutex
	sessions map[string]session // by cookie value
}

type session struct {
	userID  string
	expires time.Time
}

const sessionCookie = "saas_session"

func (f *samlFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.metadata, "saml-idp-metadata", "", "URL or file of the SAML IdP metadata of the tenant's SAML connection (SAML is off without it)")
	fs.BoolVar(&f.idpInitiated, "saml-idp-initiated", false, "accept IdP-initiated SAML logins")
	fs.StringVar(&f.connID, "saml-connection", "saml", "id of the SAML connection")
	fs.StringVar(&f.emailDomain, "saml-email-domain", "", "the tenant's verified e-mail domain: SAML logins from other domains are refused")
}

func (f *samlFeature) setup(a *app) error {
	if f.metadata == "" {
		return nil
	}
	c := provision.Connection{ID: f.connID, Kind: provision.KindSAML, Name: "SAML single sign-on"}
	for _, other := range a.Tenant.Connections {
		if other.Kind == provision.KindSCIM {
			c.Match = append(c.Match, provision.MatchPairedExternalID)
			c.PairedWith = other.ID
			break
		}
	}
	if f.emailDomain != "" {
		a.Tenant.VerifiedDomains = append(a.Tenant.VerifiedDomains, f.emailDomain)
		c.Match = append(c.Match, provision.MatchEmail)
	}
	a.Tenant.Connections = append(a.Tenant.Connections, c)
	return nil
}

func (f *samlFeature) loadMetadata(ctx context.Context) (*crewsaml.EntityDescriptor, error) {
	if strings.HasPrefix(f.metadata, "http://") || strings.HasPrefix(f.metadata, "https://") {
		u, err := url.Parse(f.metadata)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return samlsp.FetchMetadata(ctx, &http.Client{Timeout: 30 * time.Second}, *u)
	}
	b, err := os.ReadFile(f.metadata)
	if err != nil {
		return nil, err
	}
	return samlsp.ParseMetadata(b)
}

func (f *samlFeature) start(ctx context.Context, a *app) error {
	if f.metadata == "" {
		return nil
	}
	md, err := f.loadMetadata(ctx)
	if err != nil {
		return fmt.Errorf("-saml-idp-metadata: %w", err)
	}
	s := jit.Settings{TenantID: a.Tenant.ID, ConnectionID: f.connID, Create: true, Update: true}
	if f.emailDomain != "" {
		s.AllowedEmailDomains = []string{f.emailDomain}
	}
	p, err := jit.New(jit.Config{Engine: a.Engine, Connections: []jit.Settings{s}, Logger: a.Log})
	if err != nil {
		return err
	}
	f.sessions = map[string]session{}
	h, err := saml.New(saml.Config{
		Engine:  a.Engine,
		JIT:     p,
		BaseURL: a.BaseURL,
		Connections: []saml.Connection{{
			TenantID: a.Tenant.ID, ConnectionID: f.connID, IDPMetadata: md, AllowIDPInitiated: f.idpInitiated,
		}},
		OnLogin: f.startSession,
		Logger:  a.Log,
	})
	if err != nil {
		return err
	}
	a.Mux.Handle("/saml/", h)
	a.Mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) { f.serveMe(w, r, a) })
	fmt.Fprintf(a.Stdout, "saml-metadata: %s\n", h.MetadataURL(a.Tenant.ID))
	fmt.Fprintf(a.Stdout, "saml-login: %s\n", h.LoginURL(a.Tenant.ID))
	return nil
}

// startSession is the host's part of a login: a server-side session that
// holds only the user's ID, in an HttpOnly cookie.
func (f *samlFeature) startSession(w http.ResponseWriter, r *http.Request, l saml.Login) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		http.Error(w, "Single sign-on failed.", http.StatusInternalServerError)
		return
	}
	tok := hex.EncodeToString(b)
	expires := time.Now().Add(8 * time.Hour)
	if !l.SessionNotOnOrAfter.IsZero() && l.SessionNotOnOrAfter.Before(expires) {
		expires = l.SessionNotOnOrAfter
	}
	f.mu.Lock()
	f.sessions[tok] = session{userID: l.User.ID, expires: expires}
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", Expires: expires,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, l.ReturnTo, http.StatusFound)
}

// serveMe answers the signed-in user. It reads the user on every request,
// so a user deactivated or deleted (by SCIM, an admin) is signed out.
func (f *samlFeature) serveMe(w http.ResponseWriter, r *http.Request, a *app) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	s, ok := f.sessions[ck.Value]
	f.mu.Unlock()
	if !ok || time.Now().After(s.expires) {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	u, err := a.Engine.GetUser(r.Context(), provision.Origin{TenantID: a.Tenant.ID}, s.userID)
	if err != nil || !u.Active {
		if err != nil && !errors.Is(err, provision.ErrNotFound) {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		delete(f.sessions, ck.Value)
		f.mu.Unlock()
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(u)
}
