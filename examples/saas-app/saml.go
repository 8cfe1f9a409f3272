package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
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

// samlFeature signs the tenants' users in with SAML and provisions them
// just in time, one SAML connection per tenant. A connection is paired
// with the tenant's SCIM directory: on a user's first login, the SCIM user
// whose externalId is the login's subject is the user (then, with an
// e-mail domain, the user with the same e-mail in that verified domain);
// otherwise a user is created. The -tenant's connection comes from flags:
//
//	-saml-idp-metadata URL_OR_FILE   the IdP's metadata
//	-demo-idp                        with no -saml-idp-metadata, use the built-in
//	                                 demo IdP (demoidp.go); on by default
//	-saml-idp-initiated              accept IdP-initiated logins (off by default)
//	-saml-email-domain DOMAIN        the tenant's verified e-mail domain; logins
//	                                 from other domains are refused
//
// and the -config file's tenants from their "saml" entry.
//
// It serves /saml/{tenant}/metadata, /saml/{tenant}/login and
// /saml/{tenant}/acs; GET /me: the signed-in user as JSON, 401 without
// a session or once the user is deactivated or deleted; GET /: a page
// saying who is signed in, with the sign-in links; POST /logout.
type samlFeature struct {
	metadata     string
	idpInitiated bool
	connID       string
	emailDomain  string
	demo         bool

	handler *saml.Handler
	demoIdP *demoIdP
	// conns are the tenants' SAML connections, in a.Tenants order.
	conns []samlConn

	mu       sync.Mutex
	sessions map[string]session // by cookie value
	logins   map[string]loginStat
}

type samlConn struct {
	TenantID string
	Conf     samlConfig
}

// loginStat is a connection's recent sign-ins, for the admin page.
type loginStat struct {
	Logins   int
	Last     time.Time
	LastUser string
}

type session struct {
	tenantID string
	userID   string
	expires  time.Time
}

const sessionCookie = "saas_session"

func (f *samlFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.metadata, "saml-idp-metadata", "", "URL or file of the SAML IdP metadata of the tenant's SAML connection (default: the demo IdP, see -demo-idp)")
	fs.BoolVar(&f.demo, "demo-idp", true, "without -saml-idp-metadata, sign the tenant's users in at the built-in demo IdP (its demo users need no account anywhere)")
	fs.BoolVar(&f.idpInitiated, "saml-idp-initiated", false, "accept IdP-initiated SAML logins")
	fs.StringVar(&f.connID, "saml-connection", "saml", "id of the SAML connection")
	fs.StringVar(&f.emailDomain, "saml-email-domain", "", "the tenant's verified e-mail domain: SAML logins from other domains are refused")
}

func (f *samlFeature) setup(a *app) error {
	ft := a.Tenants[0]
	switch {
	case f.metadata != "":
		ft.Conf.SAML = &samlConfig{ID: f.connID, Name: "SAML single sign-on", IDPMetadata: f.metadata, IDPInitiated: f.idpInitiated, EmailDomain: f.emailDomain}
	case ft.Conf.SAML == nil && f.demo:
		ft.Conf.SAML = &samlConfig{ID: f.connID, Name: "SAML single sign-on (demo IdP)", IDPMetadata: "demo", IDPInitiated: f.idpInitiated, EmailDomain: f.emailDomain}
	}
	for _, t := range a.Tenants {
		sc := t.Conf.SAML
		if sc == nil {
			continue
		}
		if sc.ID == "" || sc.IDPMetadata == "" {
			return fmt.Errorf("-config: tenant %s: a SAML connection needs an id and idpMetadata", t.ID)
		}
		if _, ok := saml.Mappings()[sc.Mapping]; sc.Mapping != "" && !ok {
			return fmt.Errorf("-config: tenant %s: unknown SAML mapping %q", t.ID, sc.Mapping)
		}
		name := sc.Name
		if name == "" {
			name = "SAML single sign-on"
		}
		c := provision.Connection{ID: sc.ID, Kind: provision.KindSAML, Name: name,
			JIT: &provision.JITSettings{Create: true, Update: true}}
		if sc.EmailDomain != "" {
			c.JIT.AllowedEmailDomains = []string{sc.EmailDomain}
		}
		paired := sc.PairedWith
		if paired == "" {
			for _, other := range t.Connections {
				if other.Kind == provision.KindSCIM {
					paired = other.ID
					break
				}
			}
		}
		if paired != "" {
			c.Match = append(c.Match, provision.MatchPairedExternalID)
			c.PairedWith = paired
		}
		if sc.EmailDomain != "" {
			t.VerifiedDomains = append(t.VerifiedDomains, sc.EmailDomain)
			c.Match = append(c.Match, provision.MatchEmail)
		}
		t.Connections = append(t.Connections, c)
		f.conns = append(f.conns, samlConn{TenantID: t.ID, Conf: *sc})
	}
	return nil
}

func (f *samlFeature) loadMetadata(ctx context.Context, a *app, src string) (*crewsaml.EntityDescriptor, error) {
	if src == "demo" {
		if f.demoIdP == nil {
			d, err := newDemoIdP(a.BaseURL)
			if err != nil {
				return nil, err
			}
			f.demoIdP = d
		}
		return f.demoIdP.idp.Metadata(), nil
	}
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		u, err := url.Parse(src)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return samlsp.FetchMetadata(ctx, &http.Client{Timeout: 30 * time.Second}, *u)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	return samlsp.ParseMetadata(b)
}

func (f *samlFeature) start(ctx context.Context, a *app) error {
	f.sessions = map[string]session{}
	f.logins = map[string]loginStat{}
	a.Mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) { f.serveMe(w, r, a) })
	a.Mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { f.serveHome(w, r, a) })
	a.Mux.HandleFunc("POST /logout", f.serveLogout)
	if f.demo && f.metadata == "" && f.demoIdP == nil {
		// Registered connections may name the demo IdP too.
		d, err := newDemoIdP(a.BaseURL)
		if err != nil {
			return err
		}
		f.demoIdP = d
	}
	var conns []saml.Connection
	for _, c := range f.conns {
		md, err := f.loadMetadata(ctx, a, c.Conf.IDPMetadata)
		if err != nil {
			if c.TenantID == a.Tenants[0].ID && f.metadata != "" {
				return fmt.Errorf("-saml-idp-metadata: %w", err)
			}
			return fmt.Errorf("tenant %s: SAML idpMetadata: %w", c.TenantID, err)
		}
		conns = append(conns, saml.Connection{
			TenantID: c.TenantID, ConnectionID: c.Conf.ID, IDPMetadata: md,
			Mapping: saml.Mappings()[c.Conf.Mapping], AllowIDPInitiated: c.Conf.IDPInitiated,
		})
	}
	p, err := jit.New(jit.Config{Engine: a.Engine, Logger: a.Log})
	if err != nil {
		return err
	}
	h, err := saml.New(saml.Config{
		Engine:      a.Engine,
		JIT:         p,
		BaseURL:     a.BaseURL,
		Connections: conns,
		OnLogin:     f.startSession,
		ErrorPage:   func(w http.ResponseWriter, r *http.Request, status int) { f.errorPage(a, w, r, status) }, // signin.go
		Logger:      a.Log,
	})
	if err != nil {
		return err
	}
	f.handler = h
	a.admin.saml = f
	a.Mux.Handle("/saml/", h)
	if f.demoIdP != nil {
		a.Mux.Handle("/demo-idp/", http.StripPrefix("/demo-idp", f.demoIdP.handler(a.BaseURL)))
	}
	for i, c := range f.conns {
		if i == 0 && c.TenantID == a.Tenants[0].ID {
			fmt.Fprintf(a.Stdout, "saml-metadata: %s\n", h.MetadataURL(c.TenantID))
			fmt.Fprintf(a.Stdout, "saml-login: %s\n", h.LoginURL(c.TenantID))
			continue
		}
		fmt.Fprintf(a.Stdout, "saml-login %s: %s\n", c.TenantID, h.LoginURL(c.TenantID))
	}
	if f.demoIdP != nil {
		fmt.Fprintf(a.Stdout, "demo-idp: %s/demo-idp/ (users: %s)\n", a.BaseURL, f.demoIdP.userNames())
	}
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
	f.sessions[tok] = session{tenantID: l.TenantID, userID: l.User.ID, expires: expires}
	st := f.logins[l.TenantID]
	st.Logins++
	st.Last, st.LastUser = time.Now(), l.User.UserName
	f.logins[l.TenantID] = st
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", Expires: expires,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, l.ReturnTo, http.StatusFound)
}

// currentUser returns the signed-in user. It reads the user on every
// request, so a user deactivated or deleted (by SCIM, LDAP, an admin) is
// signed out: the status is 401 then, 503 when the store fails.
func (f *samlFeature) currentUser(r *http.Request, a *app) (provision.User, int) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return provision.User{}, http.StatusUnauthorized
	}
	f.mu.Lock()
	s, ok := f.sessions[ck.Value]
	f.mu.Unlock()
	if !ok || time.Now().After(s.expires) {
		return provision.User{}, http.StatusUnauthorized
	}
	u, err := a.Engine.GetUser(r.Context(), provision.Origin{TenantID: s.tenantID}, s.userID)
	if err != nil || !u.Active {
		if err != nil && !errors.Is(err, provision.ErrNotFound) {
			return provision.User{}, http.StatusServiceUnavailable
		}
		f.mu.Lock()
		delete(f.sessions, ck.Value)
		f.mu.Unlock()
		return provision.User{}, http.StatusUnauthorized
	}
	return u, http.StatusOK
}

// serveMe answers the signed-in user as JSON.
func (f *samlFeature) serveMe(w http.ResponseWriter, r *http.Request, a *app) {
	u, status := f.currentUser(r, a)
	switch status {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		http.Error(w, "unavailable", status)
		return
	default:
		http.Error(w, "not signed in", status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(u)
}

// serveLogout ends the session.
func (f *samlFeature) serveLogout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		f.mu.Lock()
		delete(f.sessions, ck.Value)
		f.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveHome is the app's front page: who is signed in, and where to sign
// in (each tenant's SSO link).
func (f *samlFeature) serveHome(w http.ResponseWriter, r *http.Request, a *app) {
	u, status := f.currentUser(r, a)
	type link struct{ Tenant, URL string }
	data := struct {
		Signed bool
		User   provision.User
		Logins []link
		Demo   bool
	}{Signed: status == http.StatusOK, User: u, Demo: f.demoIdP != nil}
	if f.handler != nil {
		for _, c := range f.conns {
			data.Logins = append(data.Logins, link{c.TenantID, f.handler.LoginURL(c.TenantID) + "?return_to=/"})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := homePage.Execute(w, data); err != nil {
		a.Log.Error("saas-app: home page", "err", err)
	}
}

var homePage = template.Must(template.New("home").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>saas-app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}
a.button,button{display:inline-block;padding:.4em 1em;border:1px solid #246;border-radius:4px;background:#eef3fb;color:#124;text-decoration:none;font:inherit;cursor:pointer}</style>
</head><body>
<h1>saas-app</h1>
{{if .Signed}}
<p id="signed-in">Signed in as <b>{{.User.DisplayName}}</b> ({{.User.UserName}}) in tenant <b>{{.User.TenantID}}</b>.</p>
<p>Roles: {{range .User.Roles}}{{.Value}} {{else}}none{{end}}</p>
<form method="post" action="/logout"><button>Sign out</button></form>
{{else}}
<p>Not signed in.</p>
{{range .Logins}}<p><a class="button" href="{{.URL}}">Sign in to {{.Tenant}} with SSO</a></p>{{end}}
{{if .Demo}}<p>Tenants on the demo IdP sign in as one of its demo users: no account needed.</p>{{end}}
{{end}}
<p><small>The admin page is at <code>/admin</code>: open the <code>admin:</code> link the app printed on start.</small></p>
</body></html>`))
