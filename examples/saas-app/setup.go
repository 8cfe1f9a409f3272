package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/ldap"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/scim"
)

// setupFeature hands a customer's IT admin a setup link: the host's admin
// asks for one (POST /admin/api/tenants/{tenant}/setup-links, or the form
// on /admin/t/{tenant}/setup), sends its URL, and the IT admin sets up the
// tenant's SAML, SCIM and LDAP connections alone, without the host's
// login, through the guided pages of packages saml, scim and ldap:
//
//	/setup/{secret}/        what the link allows, the state of each
//	/setup/{secret}/saml/   saml.Setup (connection "sso")
//	/setup/{secret}/scim/   scim.Setup (connection "scim")
//	/setup/{secret}/ldap/   ldap.Setup (connection "ldap")
//
// The tenant is the link's, never the URL's. A link past its expiry or
// revoked answers 403 with a page that says so; an unknown one 404.
// Every change through a link is recorded with Actor "setup-link:<id>".
type setupFeature struct {
	saml *saml.Setup
	scim *scim.Setup
	ldap *ldap.Setup
	mu   sync.Mutex // serializes the link list writes of this process
}

func (f *setupFeature) flags(*flag.FlagSet) {}
func (f *setupFeature) setup(*app) error    { return nil }

//go:embed setup.html
var setupFS embed.FS

var setupTmpl = template.Must(template.New("setup.html").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04 MST")
	},
	"join": func(ks []provision.ConnectionKind) string {
		s := make([]string, len(ks))
		for i, k := range ks {
			s[i] = string(k)
		}
		return strings.Join(s, ", ")
	},
}).ParseFS(setupFS, "setup.html"))

func (f *setupFeature) start(ctx context.Context, a *app) error {
	if sf := a.admin.saml; sf != nil && sf.handler != nil {
		demo := ""
		if sf.demoIdP != nil {
			demo = a.BaseURL + "/demo-idp/metadata"
		}
		s, err := saml.NewSetup(saml.SetupConfig{Handler: sf.handler, DemoMetadataURL: demo})
		if err != nil {
			return err
		}
		f.saml = s
	}
	if sf := a.admin.scim; sf != nil && sf.handler != nil {
		s, err := scim.NewSetup(scim.SetupConfig{Handler: sf.handler, BaseURL: a.BaseURL + "/scim/v2"})
		if err != nil {
			return err
		}
		f.scim = s
	}
	if lf := a.admin.ldap; lf != nil {
		l, err := ldap.NewSetup(ldap.SetupConfig{
			Engine: a.Engine, Logger: a.Log,
			Config: func(tenantID, connID string, s provision.LDAPSettings) (ldap.Config, error) {
				return ldapSetupConfig(a, tenantID, connID, s)
			},
			OnApproved: func(_ context.Context, tenantID, _ string) {
				if t, err := a.Engine.Tenant(ctx, tenantID); err == nil {
					lf.follow(ctx, a, t, false) // the app's context: the syncer outlives the request
				}
			},
		})
		if err != nil {
			return err
		}
		f.ldap = l
	}
	s := &setupServer{f: f, a: a}
	protect := a.admin.protect
	if protect == nil {
		return errors.New("setup links need the admin page (its token protects the link API)")
	}
	a.Mux.Handle("POST /admin/api/tenants/{tenant}/setup-links", protect(http.HandlerFunc(s.apiCreate)))
	a.Mux.Handle("DELETE /admin/api/tenants/{tenant}/setup-links/{id}", protect(http.HandlerFunc(s.apiRevoke)))
	a.Mux.Handle("GET /admin/t/{tenant}/setup", protect(http.HandlerFunc(s.adminPage)))
	a.Mux.Handle("POST /admin/t/{tenant}/setup-links", protect(http.HandlerFunc(s.formCreate)))
	a.Mux.Handle("POST /admin/t/{tenant}/setup-links/{id}/revoke", protect(http.HandlerFunc(s.formRevoke)))
	a.Mux.HandleFunc("/setup/{secret}/{rest...}", s.serveLink)
	return nil
}

type setupServer struct {
	f *setupFeature
	a *app
}

// setupLinksKey keeps the tenant's links (never their secrets) for the
// admin page: the engine looks links up by secret only.
const setupLinksKey = "saas-app:setup-links"

func (s *setupServer) links(ctx context.Context, tenantID string) []provision.SetupLink {
	var out []provision.SetupLink
	if b, err := provision.AdapterOf(s.a.Engine).KVGet(ctx, tenantID, setupLinksKey); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

func (s *setupServer) saveLinks(ctx context.Context, tenantID string, ls []provision.SetupLink) error {
	now := time.Now()
	ls = slices.DeleteFunc(ls, func(l provision.SetupLink) bool { return now.After(l.Expires.Add(provision.SetupLinkRetention)) })
	b, _ := json.Marshal(ls)
	return provision.AdapterOf(s.a.Engine).KVSet(ctx, tenantID, setupLinksKey, b, 0)
}

type setupLinkInput struct {
	Kinds     []provision.ConnectionKind `json:"kinds"`
	ExpiresIn string                     `json:"expiresIn"`
}

type setupLinkJSON struct {
	ID      string                     `json:"id"`
	URL     string                     `json:"url"`
	Expires time.Time                  `json:"expires"`
	Kinds   []provision.ConnectionKind `json:"kinds"`
}

func (s *setupServer) create(ctx context.Context, tenantID string, in setupLinkInput, actor string) (setupLinkJSON, error) {
	ttl := 24 * time.Hour
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil {
			return setupLinkJSON{}, &inputError{field: "expiresIn", msg: fmt.Sprintf("expiresIn %q is not a duration such as \"24h\"", in.ExpiresIn)}
		}
		ttl = d
	}
	l, secret, err := s.a.Engine.CreateSetupLink(ctx, tenantID, in.Kinds, ttl, actor)
	if err != nil {
		return setupLinkJSON{}, err
	}
	s.f.mu.Lock()
	err = s.saveLinks(ctx, tenantID, append(s.links(ctx, tenantID), l))
	s.f.mu.Unlock()
	if err != nil {
		return setupLinkJSON{}, err
	}
	return setupLinkJSON{ID: l.ID, URL: s.a.BaseURL + "/setup/" + secret + "/", Expires: l.Expires, Kinds: l.Kinds}, nil
}

func (s *setupServer) revoke(ctx context.Context, tenantID, id string) error {
	if err := s.a.Engine.RevokeSetupLink(ctx, tenantID, id, "admin"); err != nil {
		return err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	ls := s.links(ctx, tenantID)
	for i := range ls {
		if ls[i].ID == id && ls[i].Revoked.IsZero() {
			ls[i].Revoked = time.Now().UTC()
		}
	}
	return s.saveLinks(ctx, tenantID, ls)
}

func (s *setupServer) apiCreate(w http.ResponseWriter, r *http.Request) {
	var in setupLinkInput
	if err := decodeBody(r, &in); err != nil {
		apiFail(w, err)
		return
	}
	out, err := s.create(r.Context(), r.PathValue("tenant"), in, "admin-api")
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *setupServer) apiRevoke(w http.ResponseWriter, r *http.Request) {
	if err := s.revoke(r.Context(), r.PathValue("tenant"), r.PathValue("id")); err != nil {
		apiFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// connState is a connection's state for the host's admin: set up,
// tested, receiving, failing since.
type connState struct {
	ID, Kind, Name string
	State          string
	Detail         string
}

func (s *setupServer) states(ctx context.Context, t provision.Tenant) []connState {
	var out []connState
	for _, c := range t.Connections {
		st := connState{ID: c.ID, Kind: string(c.Kind), Name: c.Name, State: "set up"}
		switch c.Kind {
		case provision.KindSAML:
			if sf := s.a.admin.saml; sf != nil && sf.handler != nil {
				if ms, err := sf.handler.MetadataStatus(ctx, t.ID, c.ID); err == nil && ms.LastError != "" {
					st.State, st.Detail = "failing since "+ms.Attempted.UTC().Format(time.RFC3339), ms.LastError
					break
				}
				sf.mu.Lock()
				ls := sf.logins[t.ID]
				sf.mu.Unlock()
				if res, err := saml.LastTestResult(ctx, s.a.Engine, t.ID, c.ID); err == nil {
					if res.OK {
						st.State, st.Detail = "tested", "test sign-in passed "+res.Time.UTC().Format(time.RFC3339)+" as "+res.Email
					} else {
						st.State, st.Detail = "failing since "+res.Time.UTC().Format(time.RFC3339), "test sign-in refused: "+res.Refusal
					}
				}
				if ls.Logins > 0 {
					st.State, st.Detail = "receiving", fmt.Sprintf("%d sign-ins, last %s by %s", ls.Logins, ls.Last.UTC().Format(time.RFC3339), ls.LastUser)
				}
			}
		case provision.KindSCIM:
			if sf := s.a.admin.scim; sf != nil && sf.handler != nil {
				h := sf.handler.Health(t.ID, c.ID)
				switch {
				case h.ConsecutiveFailures > 0:
					since := h.LastFailure
					for _, e := range sf.handler.RequestLog(t.ID, c.ID) {
						if e.Failed() && e.Time.After(h.LastSuccess) {
							since = e.Time
							break
						}
					}
					st.State, st.Detail = "failing since "+since.UTC().Format(time.RFC3339), fmt.Sprintf("%d failures in a row, last %d: %s", h.ConsecutiveFailures, h.LastFailureStatus, h.LastFailureDetail)
				case !h.LastRequest.IsZero():
					st.State, st.Detail = "receiving", fmt.Sprintf("%d requests in the last hour, last %s", h.Requests, h.LastRequest.UTC().Format(time.RFC3339))
				}
			}
		case provision.KindLDAP:
			if res, err := ldap.LastSetupTest(ctx, s.a.Engine, t.ID, c.ID); err == nil {
				st.State, st.Detail = "tested", res.Summary()
			}
		}
		out = append(out, st)
	}
	return out
}

type setupAdminData struct {
	Tenant  provision.Tenant
	Links   []provision.SetupLink
	States  []connState
	Created *setupLinkJSON
	Err     string
	Now     time.Time
}

func (s *setupServer) adminPage(w http.ResponseWriter, r *http.Request) {
	s.renderAdmin(w, r, http.StatusOK, nil, "")
}

func (s *setupServer) renderAdmin(w http.ResponseWriter, r *http.Request, status int, created *setupLinkJSON, msg string) {
	ctx := r.Context()
	t, err := s.a.Engine.Tenant(ctx, r.PathValue("tenant"))
	if err != nil {
		http.Error(w, "no such tenant", http.StatusNotFound)
		return
	}
	d := setupAdminData{Tenant: t, Links: s.links(ctx, t.ID), States: s.states(ctx, t), Created: created, Err: msg, Now: time.Now()}
	slices.Reverse(d.Links)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = setupTmpl.ExecuteTemplate(w, "admin", d)
}

func (s *setupServer) formCreate(w http.ResponseWriter, r *http.Request) {
	var in setupLinkInput
	_ = r.ParseForm()
	for _, k := range r.PostForm["kind"] {
		in.Kinds = append(in.Kinds, provision.ConnectionKind(k))
	}
	in.ExpiresIn = r.PostFormValue("expiresIn")
	out, err := s.create(r.Context(), r.PathValue("tenant"), in, "admin")
	if err != nil {
		s.renderAdmin(w, r, http.StatusBadRequest, nil, formError(err))
		return
	}
	s.renderAdmin(w, r, http.StatusOK, &out, "")
}

func (s *setupServer) formRevoke(w http.ResponseWriter, r *http.Request) {
	if err := s.revoke(r.Context(), r.PathValue("tenant"), r.PathValue("id")); err != nil {
		s.renderAdmin(w, r, http.StatusBadRequest, nil, formError(err))
		return
	}
	http.Redirect(w, r, "/admin/t/"+r.PathValue("tenant")+"/setup", http.StatusSeeOther)
}

// serveLink resolves the link in the URL and serves its pages; the
// adapters' handlers see the link in the context and paths below
// /setup/{secret}/{kind}.
func (s *setupServer) serveLink(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	secret := r.PathValue("secret")
	l, err := s.a.Engine.SetupLinkBySecret(ctx, secret)
	switch {
	case errors.Is(err, provision.ErrSetupLinkExpired):
		s.refused(w, http.StatusForbidden, "This setup link has expired", fmt.Sprintf("It was valid until %s. Ask the person who sent it for a new link.", l.Expires.UTC().Format("2 Jan 2006 15:04 MST")))
		return
	case errors.Is(err, provision.ErrSetupLinkRevoked):
		s.refused(w, http.StatusForbidden, "This setup link was revoked", fmt.Sprintf("It was revoked on %s. Ask the person who sent it for a new link.", l.Revoked.UTC().Format("2 Jan 2006 15:04 MST")))
		return
	case errors.Is(err, provision.ErrNotFound):
		s.refused(w, http.StatusNotFound, "This setup link is not valid", "Check that you opened the whole link from the message you received, or ask for a new one.")
		return
	case err != nil:
		s.refused(w, http.StatusServiceUnavailable, "The setup is unavailable", "Try again in a moment.")
		return
	}
	ctx = provision.WithSetupLink(ctx, l)
	rest := r.PathValue("rest")
	prefix := "/setup/" + secret
	kind, _, _ := strings.Cut(rest, "/")
	var h http.Handler
	switch {
	case kind == "":
		s.landing(w, r.WithContext(ctx), l)
		return
	case kind == "saml" && s.f.saml != nil:
		h = s.f.saml
	case kind == "scim" && s.f.scim != nil:
		h = s.f.scim
	case kind == "ldap" && s.f.ldap != nil:
		h = s.f.ldap
	}
	if h == nil {
		s.refused(w, http.StatusNotFound, "No such page", "Go back to the setup link's first page.")
		return
	}
	if rest == kind { // ".../saml" → ".../saml/", so relative links work
		w.Header().Set("Location", kind+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	http.StripPrefix(prefix+"/"+kind, h).ServeHTTP(w, r.WithContext(ctx))
}

type landingData struct {
	Link   provision.SetupLink
	Tenant provision.Tenant
	States []connState
	Kinds  []string
}

func (s *setupServer) landing(w http.ResponseWriter, r *http.Request, l provision.SetupLink) {
	t, err := s.a.Engine.Tenant(r.Context(), l.TenantID)
	if err != nil {
		s.refused(w, http.StatusServiceUnavailable, "The setup is unavailable", "Try again in a moment.")
		return
	}
	d := landingData{Link: l, Tenant: t, States: s.states(r.Context(), t)}
	for _, k := range l.Kinds {
		d.Kinds = append(d.Kinds, string(k))
	}
	s.page(w, http.StatusOK, "landing", d)
}

func (s *setupServer) refused(w http.ResponseWriter, status int, title, next string) {
	s.page(w, status, "refused", struct{ Title, Next string }{title, next})
}

// page renders a page of setup.html with the pages' strict policy: no
// script, the style element by a nonce, no referrer (the URL holds the
// link's secret).
func (s *setupServer) page(w http.ResponseWriter, status int, name string, d any) {
	nonce, _ := scim.GenerateToken()
	nonce = nonce[:22]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_ = setupTmpl.ExecuteTemplate(w, name, struct {
		Nonce string
		D     any
	}{nonce, d})
}

// ldapSetupConfig is the Syncer Config of a registered LDAP connection's
// settings, as ldapFeature.startSource builds it (for the setup's test).
func ldapSetupConfig(a *app, tenantID, connID string, s provision.LDAPSettings) (ldap.Config, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return ldap.Config{}, fmt.Errorf("the URL: %w", err)
	}
	m, err := ldapMapping(s.Preset)
	if err != nil {
		return ldap.Config{}, err
	}
	plainLoopback := false
	if u.Scheme == "ldap" {
		ip := net.ParseIP(u.Hostname())
		plainLoopback = u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return ldap.Config{
		Engine: a.Engine, TenantID: tenantID, ConnectionID: connID, URL: s.URL,
		StartTLS: u.Scheme == "ldap" && !plainLoopback, InsecurePlaintext: plainLoopback,
		BindDN: s.BindDN, BindPassword: s.BindPassword.Reveal(), UserBaseDN: s.BaseDN, UserFilter: s.UserFilter,
		GroupBaseDN: s.BaseDN, GroupFilter: s.GroupFilter, Mapping: m, Logger: a.Log,
	}, nil
}
