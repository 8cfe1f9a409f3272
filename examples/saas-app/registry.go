package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/scim"
)

// registryFeature keeps tenants and connections as data in the store
// (provision.Registry), changed at run time through the admin API and the
// admin page, and followed by every replica of the app sharing the
// database:
//
//	PUT    /admin/api/tenants/{tenant}                   {"name": "...", "verifiedDomains": ["globex.example"]}
//	GET    /admin/api/tenants/{tenant}                   the tenant, its connections and their status
//	PUT    /admin/api/tenants/{tenant}/connections/{id}  {"kind": "scim"} | {"kind": "saml", ...} | {"kind": "ldap", ...}
//	DELETE /admin/api/tenants/{tenant}/connections/{id}
//
// with "Authorization: Bearer <admin-token>". A new SCIM connection
// answers its bearer token once; a SAML connection its metadata, ACS and
// login URLs ("idpMetadataURL": "demo" is the built-in demo IdP). Deleting
// a connection refuses its tokens and logins on every replica within a
// second; the users it owned stay as they are.
//
// Secrets (LDAP bind passwords, webhook secrets) are sealed with
// -secret-key before they reach the store: base64 of 32 bytes, or several
// separated by commas, newest first (a rotation). Without it, the app
// makes a key on first start and keeps it in the file saas-app.key beside
// the working directory (-db memory: a key for the run only).
type registryFeature struct {
	keys    string
	keyFile string
}

func (f *registryFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.keys, "secret-key", "", "key(s) sealing registered secrets: base64 of 32 bytes, comma-separated, newest first (default: made once and kept in -secret-key-file)")
	fs.StringVar(&f.keyFile, "secret-key-file", "saas-app.key", "file that keeps the secret key when -secret-key is not given")
}

func (f *registryFeature) setup(a *app) error {
	src := f.keys
	if src == "" {
		var err error
		if src, err = f.loadKeyFile(a.StoreName == "memory"); err != nil {
			return err
		}
	}
	for i, s := range strings.Split(src, ",") {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) != 32 {
			return fmt.Errorf("-secret-key: key %d is not base64 of 32 bytes", i+1)
		}
		a.EngineConfig.SecretKeys = append(a.EngineConfig.SecretKeys, provision.SecretKey{ID: fmt.Sprintf("k%d", keyID(b)), Key: b})
	}
	return nil
}

// keyID names a key by a short digest of it, so that the same key has
// the same id on every replica and after a restart.
func keyID(b []byte) uint32 {
	h := provision.HashToken(string(b))
	return uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])
}

func (f *registryFeature) loadKeyFile(ephemeral bool) (string, error) {
	newKey := func() (string, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	if ephemeral {
		return newKey()
	}
	b, err := os.ReadFile(f.keyFile)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("-secret-key-file: %w", err)
	}
	k, err := newKey()
	if err != nil {
		return "", err
	}
	fh, err := os.OpenFile(f.keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another replica made it meanwhile
		return f.loadKeyFile(false)
	}
	if err != nil {
		return "", fmt.Errorf("-secret-key-file: %w", err)
	}
	defer fh.Close()
	if _, err := io.WriteString(fh, k+"\n"); err != nil {
		return "", fmt.Errorf("-secret-key-file: %w", err)
	}
	return k, nil
}

func (f *registryFeature) start(ctx context.Context, a *app) error {
	if _, ok := a.Store.(provision.Registry); !ok {
		return nil
	}
	go func() {
		err := a.Engine.FollowRegistry(ctx, func(ctx context.Context, t provision.Tenant, removed bool) error {
			a.followTenant(ctx, t, removed)
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			a.Log.Error("saas-app: following the registry stopped", "err", err)
		}
	}()
	return nil
}

// followTenant brings the per-connection work of a registered tenant in
// step with it: LDAP syncers and the webhook endpoint.
func (a *app) followTenant(ctx context.Context, t provision.Tenant, removed bool) {
	if l := a.admin.ldap; l != nil {
		l.follow(ctx, a, t, removed)
	}
	if ev := a.admin.events; ev != nil {
		ev.follow(a, t, removed)
	}
}

// follow sets or removes the tenant's registered webhook.
func (f *eventsFeature) follow(a *app, t provision.Tenant, removed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if removed || t.Webhook == nil {
		if _, declared := f.declared[t.ID]; !declared {
			delete(f.hooks, t.ID)
			if f.wh != nil {
				f.wh.RemoveEndpoint(t.ID)
			}
		}
		return
	}
	ep := webhook.Endpoint{URL: t.Webhook.URL, Secret: t.Webhook.Secret.Reveal()}
	f.hooks[t.ID] = ep
	if f.wh != nil {
		if err := f.wh.SetEndpoint(t.ID, ep); err != nil {
			a.Log.Error("saas-app: registered webhook", "tenant", t.ID, "err", err)
		}
	}
}

// registryAuth authenticates SCIM tokens against the app's declared
// directories (a TokenSet) and then the engine's connections (registered
// ones included).
type registryAuth struct {
	declared *scim.TokenSet
	engine   *provision.Engine
}

func (r registryAuth) Authenticate(ctx context.Context, token string) (scim.Directory, error) {
	d, err := r.declared.Authenticate(ctx, token)
	if !errors.Is(err, scim.ErrBadToken) || token == "" {
		return d, err
	}
	tenant, conn, err := r.engine.ConnectionByToken(ctx, scim.HashToken(token))
	if errors.Is(err, provision.ErrNotFound) {
		return scim.Directory{}, scim.ErrBadToken
	}
	if err != nil {
		return scim.Directory{}, err
	}
	return scim.Directory{TenantID: tenant, ConnectionID: conn}, nil
}

// The admin API.

// apiError is the JSON of a refused admin API call.
type apiError struct {
	Error string `json:"error"`
	// Field names the input that is wrong, when one is.
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiFail answers err with its status: 400 for bad input (naming the
// field), 404 for an unknown tenant or connection, 409 for a conflict.
func apiFail(w http.ResponseWriter, err error) {
	var ve *provision.ValidationError
	var de *provision.DomainError
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusBadRequest, apiError{Error: ve.Error(), Field: ve.Field})
	case errors.As(err, &de):
		writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("domain %q is verified by another tenant", de.Domain), Field: "verifiedDomains"})
	case errors.Is(err, errBadInput):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Field: fieldOf(err)})
	case errors.Is(err, provision.ErrUnknownTenant), errors.Is(err, provision.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
	case errors.Is(err, provision.ErrDeclared):
		writeJSON(w, http.StatusConflict, apiError{Error: "the tenant is declared by the app's flags or -config file: change it there"})
	case errors.Is(err, provision.ErrAlreadyExists), errors.Is(err, provision.ErrVersionConflict):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	case errors.Is(err, provision.ErrNoRegistry):
		writeJSON(w, http.StatusNotImplemented, apiError{Error: "this store keeps no registry"})
	default:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
	}
}

var errBadInput = errors.New("bad input")

// inputError is a request body that is not what the API takes.
type inputError struct {
	field, msg string
}

func (e *inputError) Error() string { return e.msg }
func (e *inputError) Is(t error) bool {
	return t == errBadInput
}

func fieldOf(err error) string {
	var ie *inputError
	if errors.As(err, &ie) {
		return ie.field
	}
	return ""
}

// decodeBody reads a JSON object into v, refusing unknown fields (named
// in the error) and trailing data.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return &inputError{field: ute.Field, msg: fmt.Sprintf("%s: want a JSON %s", ute.Field, ute.Type)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &inputError{field: f, msg: fmt.Sprintf("unknown field %q", f)}
		case errors.Is(err, io.EOF):
			return &inputError{msg: "the body must be a JSON object"}
		}
		return &inputError{msg: "the body is not valid JSON: " + err.Error()}
	}
	if dec.More() {
		return &inputError{msg: "the body holds data after the JSON object"}
	}
	return nil
}

// tenantJSON is a tenant as the admin API shows it.
type tenantJSON struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	VerifiedDomains []string         `json:"verifiedDomains"`
	Version         int64            `json:"version,omitempty"`
	Declared        bool             `json:"declared,omitempty"`
	Connections     []connectionJSON `json:"connections"`
}

// connectionJSON is a connection as the admin API shows it: its settings
// (secrets redacted), its URLs and its status.
type connectionJSON struct {
	ID      string                   `json:"id"`
	Kind    provision.ConnectionKind `json:"kind"`
	Name    string                   `json:"name,omitempty"`
	Domains []string                 `json:"domains,omitempty"`
	// SCIM
	SCIMURL string `json:"scimURL,omitempty"`
	// Token is a new SCIM connection's bearer token, shown this once.
	Token  string `json:"token,omitempty"`
	Tokens int    `json:"tokens,omitempty"`
	// SAML
	MetadataURL string                  `json:"metadataURL,omitempty"`
	ACSURL      string                  `json:"acsURL,omitempty"`
	LoginURL    string                  `json:"loginURL,omitempty"`
	SAML        *provision.SAMLSettings `json:"saml,omitempty"`
	PairedWith  string                  `json:"pairedWith,omitempty"`
	// LDAP
	LDAP *provision.LDAPSettings `json:"ldap,omitempty"`
	// Status says how the connection is doing, in words.
	Status string `json:"status,omitempty"`
}

// connectionInput is the body of PUT .../connections/{id}.
type connectionInput struct {
	Kind    provision.ConnectionKind `json:"kind"`
	Name    string                   `json:"name"`
	Domains []string                 `json:"domains"`
	// SCIM: RotateToken makes a new token for an existing directory (the
	// old one stays valid until the next rotation).
	RotateToken bool `json:"rotateToken"`
	// SAML
	IDPMetadataURL string `json:"idpMetadataURL"`
	IDPMetadataXML string `json:"idpMetadataXML"`
	Mapping        string `json:"mapping"`
	IDPInitiated   bool   `json:"idpInitiated"`
	PairedWith     string `json:"pairedWith"`
	// JIT switches; nil: create and update users, only from the
	// connection's domains.
	JIT *provision.JITSettings `json:"jit"`
	// LDAP (the fields of a -config "ldap" entry)
	URL          string   `json:"url"`
	BindDN       string   `json:"bindDN"`
	BindPassword string   `json:"bindPassword"`
	BaseDN       string   `json:"baseDN"`
	Preset       string   `json:"preset"`
	UserFilter   string   `json:"userFilter"`
	GroupFilter  string   `json:"groupFilter"`
	Interval     duration `json:"interval"`
	// TLS: a pinned CA and a client certificate (PEM).
	TLSCA         string `json:"tlsCA"`
	TLSClientCert string `json:"tlsClientCert"`
	TLSClientKey  string `json:"tlsClientKey"`
}

func (s *adminServer) apiGetTenant(w http.ResponseWriter, r *http.Request) {
	t, err := s.a.Engine.Tenant(r.Context(), r.PathValue("tenant"))
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.tenantJSON(r.Context(), t))
}

func (s *adminServer) apiPutTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name            string   `json:"name"`
		VerifiedDomains []string `json:"verifiedDomains"`
	}
	if err := decodeBody(r, &in); err != nil {
		apiFail(w, err)
		return
	}
	t, err := s.a.Engine.PutTenant(r.Context(), provision.Tenant{ID: r.PathValue("tenant"), Name: in.Name, VerifiedDomains: in.VerifiedDomains}, "admin api")
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.tenantJSON(r.Context(), t))
}

func (s *adminServer) apiDeleteConnection(w http.ResponseWriter, r *http.Request) {
	if err := s.a.Engine.DeleteConnection(r.Context(), r.PathValue("tenant"), r.PathValue("id"), "admin api"); err != nil {
		apiFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *adminServer) apiPutConnection(w http.ResponseWriter, r *http.Request) {
	var in connectionInput
	if err := decodeBody(r, &in); err != nil {
		apiFail(w, err)
		return
	}
	out, err := s.putConnection(r.Context(), r.PathValue("tenant"), r.PathValue("id"), in, "admin api")
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// putConnection registers a connection from the API's (or the admin
// page's) input, and answers it as the API shows it.
func (s *adminServer) putConnection(ctx context.Context, tenantID, id string, in connectionInput, actor string) (connectionJSON, error) {
	t, err := s.a.Engine.Tenant(ctx, tenantID)
	if err != nil {
		return connectionJSON{}, err
	}
	if !t.Registered {
		return connectionJSON{}, provision.ErrDeclared
	}
	var cur *provision.Connection
	for i := range t.Connections {
		if t.Connections[i].ID == id {
			cur = &t.Connections[i]
		}
	}
	if cur != nil && in.Kind != cur.Kind {
		return connectionJSON{}, &inputError{field: "kind", msg: fmt.Sprintf("connection %q is of kind %q: delete it to make a %s connection", id, cur.Kind, in.Kind)}
	}
	c := provision.Connection{ID: id, Kind: in.Kind, Name: in.Name, Domains: in.Domains}
	token := ""
	switch in.Kind {
	case provision.KindSCIM:
		if c.Name == "" {
			c.Name = "SCIM directory " + id
		}
		c.SCIM = &provision.SCIMSettings{}
		if cur != nil && cur.SCIM != nil {
			c.SCIM.TokenHashes = slices.Clone(cur.SCIM.TokenHashes)
		}
		if cur == nil || in.RotateToken {
			if token, err = scim.GenerateToken(); err != nil {
				return connectionJSON{}, err
			}
			// The new token first; the newest old one stays valid
			// until the next rotation.
			c.SCIM.TokenHashes = append([]provision.TokenHash{scim.HashToken(token)}, c.SCIM.TokenHashes...)
			c.SCIM.TokenHashes = c.SCIM.TokenHashes[:min(len(c.SCIM.TokenHashes), 2)]
		}
	case provision.KindSAML:
		if c.Name == "" {
			c.Name = "SAML single sign-on " + id
		}
		md := in.IDPMetadataURL
		if md == "demo" {
			if s.a.admin.saml == nil || s.a.admin.saml.demoIdP == nil {
				return connectionJSON{}, &inputError{field: "idpMetadataURL", msg: `"demo" needs the built-in demo IdP (-demo-idp)`}
			}
			md = s.a.BaseURL + "/demo-idp/metadata"
		}
		if md == "" && in.IDPMetadataXML == "" {
			return connectionJSON{}, &inputError{field: "idpMetadataURL", msg: "a SAML connection needs idpMetadataURL (or idpMetadataXML)"}
		}
		if _, ok := saml.Mappings()[in.Mapping]; in.Mapping != "" && !ok {
			return connectionJSON{}, &inputError{field: "mapping", msg: fmt.Sprintf("unknown mapping %q: want one of %s", in.Mapping, strings.Join(mappingNames(), ", "))}
		}
		c.SAML = &provision.SAMLSettings{IDPMetadataURL: md, IDPMetadataXML: in.IDPMetadataXML, Mapping: in.Mapping, AllowIDPInitiated: in.IDPInitiated}
		if err := saml.ValidateSettings(*c.SAML); err != nil {
			return connectionJSON{}, err
		}
		c.JIT = in.JIT
		if c.JIT == nil {
			c.JIT = &provision.JITSettings{Create: true, Update: true, AllowedEmailDomains: in.Domains}
		}
		// SCIM and SSO from the same IdP: the login's subject is the
		// directory's externalId, so the connection links to the
		// directory's users on first sign-in.
		paired := in.PairedWith
		if paired == "" {
			for _, o := range t.Connections {
				if o.Kind == provision.KindSCIM {
					paired = o.ID
					break
				}
			}
		}
		if paired != "" {
			c.PairedWith = paired
			c.Match = []provision.MatchRule{provision.MatchPairedExternalID}
		}
		if len(in.Domains) > 0 {
			c.Match = append(c.Match, provision.MatchEmail)
		}
	case provision.KindLDAP:
		if c.Name == "" {
			c.Name = "LDAP directory " + id
		}
		if _, err := ldapMapping(in.Preset); err != nil {
			return connectionJSON{}, &inputError{field: "preset", msg: err.Error()}
		}
		c.LDAP = &provision.LDAPSettings{URL: in.URL, BindDN: in.BindDN, BindPassword: provision.NewSecret(in.BindPassword), BaseDN: in.BaseDN,
			Preset: in.Preset, UserFilter: in.UserFilter, GroupFilter: in.GroupFilter, Interval: time.Duration(in.Interval),
			TLSCAPEM: in.TLSCA, TLSClientCertPEM: in.TLSClientCert, TLSClientKey: provision.NewSecret(in.TLSClientKey)}
		if in.BindPassword == "" && cur != nil && cur.LDAP != nil {
			c.LDAP.BindPassword = cur.LDAP.BindPassword // keep the stored one
		}
		if in.TLSClientKey == "" && cur != nil && cur.LDAP != nil {
			c.LDAP.TLSClientKey = cur.LDAP.TLSClientKey
		}
	case "":
		return connectionJSON{}, &inputError{field: "kind", msg: `"kind" is required: scim, saml or ldap`}
	default:
		return connectionJSON{}, &inputError{field: "kind", msg: fmt.Sprintf("unknown kind %q: want scim, saml or ldap", in.Kind)}
	}
	if _, err := s.a.Engine.PutConnection(ctx, tenantID, c, actor); err != nil {
		return connectionJSON{}, err
	}
	out := s.connectionJSON(ctx, tenantID, c)
	out.Token = token
	return out, nil
}

func mappingNames() []string {
	var out []string
	for k := range saml.Mappings() {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (s *adminServer) tenantJSON(ctx context.Context, t provision.Tenant) tenantJSON {
	out := tenantJSON{ID: t.ID, Name: t.Name, VerifiedDomains: t.VerifiedDomains, Version: t.Version, Declared: !t.Registered, Connections: []connectionJSON{}}
	if out.VerifiedDomains == nil {
		out.VerifiedDomains = []string{}
	}
	for _, c := range t.Connections {
		out.Connections = append(out.Connections, s.connectionJSON(ctx, t.ID, c))
	}
	return out
}

func (s *adminServer) connectionJSON(ctx context.Context, tenantID string, c provision.Connection) connectionJSON {
	out := connectionJSON{ID: c.ID, Kind: c.Kind, Name: c.Name, Domains: c.Domains, PairedWith: c.PairedWith, SAML: c.SAML, LDAP: c.LDAP}
	cv := connView{Connection: c, Status: "idle"}
	switch c.Kind {
	case provision.KindSCIM:
		out.SCIMURL = s.a.BaseURL + "/scim/v2"
		if c.SCIM != nil {
			out.Tokens = len(c.SCIM.TokenHashes)
		}
		s.scimConn(&cv, tenantID)
	case provision.KindSAML:
		u := samlURLs(s.a, tenantID, c.ID)
		out.MetadataURL, out.ACSURL, out.LoginURL = u.MetadataURL, u.ACSURL, u.LoginURL
		cv.Health = "no sign-in yet"
	case provision.KindLDAP:
		s.ldapConn(ctx, &cv, tenantID)
	}
	out.Status = cv.Status
	if cv.Health != "" {
		out.Status += ": " + cv.Health
	}
	return out
}

// samlURLs returns the URLs of connection connID of the tenant (under
// /saml/{tenant}/{connection}/ for a registered connection).
func samlURLs(a *app, tenantID, connID string) saml.URLs {
	if f := a.admin.saml; f != nil && f.handler != nil {
		return f.handler.ConnectionURLs(tenantID, connID)
	}
	base := a.BaseURL + "/saml/" + tenantID + "/" + connID + "/"
	return saml.URLs{MetadataURL: base + "metadata", ACSURL: base + "acs", LoginURL: base + "login"}
}

// registered is the registered tenants the admin page lists (a page of
// them: the app may have many).
func (s *adminServer) registered(ctx context.Context, limit int) ([]provision.Tenant, int) {
	ts, total, err := s.a.Engine.ListTenants(ctx, provision.Page{Limit: limit})
	if err != nil {
		return nil, 0
	}
	return ts, total
}

// registeredShown bounds the registered tenants the admin page lists.
const registeredShown = 100

// overviewData is the admin overview.
type overviewData struct {
	Tenants []tenantView
	// Registered is the number of registered tenants, of which Shown are
	// listed.
	Registered, Shown int
	// CanRegister is set when the store keeps a registry.
	CanRegister bool
}

func (s *adminServer) canRegister() bool {
	_, ok := s.a.Store.(provision.Registry)
	return ok
}

// splitList reads a form's comma- or space-separated list.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// formPutTenant registers a tenant from the admin page.
func (s *adminServer) formPutTenant(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.PostFormValue("id"))
	t, err := s.a.Engine.PutTenant(r.Context(), provision.Tenant{ID: id, Name: strings.TrimSpace(r.PostFormValue("name")), VerifiedDomains: splitList(r.PostFormValue("domains"))}, "admin page")
	if err != nil {
		http.Redirect(w, r, "/admin?msg="+url.QueryEscape("Not registered: "+formError(err)), http.StatusSeeOther)
		return
	}
	s.back(w, r, t.ID, "Tenant "+t.ID+" registered: add its connections below.", nil)
}

// formError says what is wrong with a form, in words.
func formError(err error) string {
	var de *provision.DomainError
	switch {
	case errors.As(err, &de):
		return fmt.Sprintf("the domain %s is verified by another tenant.", de.Domain)
	case errors.Is(err, provision.ErrDeclared):
		return "this tenant comes from the app's flags or -config file: change it there."
	}
	return err.Error()
}

// formPutConnection adds (or replaces) a connection of a registered
// tenant from the admin page.
func (s *adminServer) formPutConnection(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	f := r.PostFormValue
	in := connectionInput{
		Kind: provision.ConnectionKind(f("kind")), Name: strings.TrimSpace(f("name")), Domains: splitList(f("domains")),
		IDPMetadataURL: strings.TrimSpace(f("idpMetadataURL")), Mapping: f("mapping"),
		URL: strings.TrimSpace(f("url")), BindDN: f("bindDN"), BindPassword: f("bindPassword"), BaseDN: f("baseDN"), Preset: f("preset"),
	}
	id := strings.TrimSpace(f("id"))
	out, err := s.putConnection(r.Context(), t.ID, id, in, "admin page")
	if err != nil {
		s.back(w, r, t.ID, "", fmt.Errorf("connection %q not saved: %s", id, formError(err)))
		return
	}
	if out.Token != "" {
		tv := tenantView{ID: t.ID, Name: t.Name}
		s.render(w, http.StatusOK, page{View: "rotated", Title: "New SCIM token", T: &tv,
			Data: map[string]string{"Conn": id, "Token": out.Token, "Base": out.SCIMURL}})
		return
	}
	s.back(w, r, t.ID, "Connection "+id+" saved.", nil)
}

func (s *adminServer) formDeleteConnection(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	conn := r.PathValue("conn")
	err := s.a.Engine.DeleteConnection(r.Context(), t.ID, conn, "admin page")
	s.back(w, r, t.ID, "Connection "+conn+" deleted: its tokens and sign-ins are refused; its users stay.", err)
}

// inputOf is the API input that re-registers a connection as it is
// (with a token rotation for a SCIM one, when rotate).
func (s *adminServer) inputOf(t provision.Tenant, connID string, rotate bool) connectionInput {
	for _, c := range t.Connections {
		if c.ID == connID {
			return connectionInput{Kind: c.Kind, Name: c.Name, Domains: c.Domains, RotateToken: rotate}
		}
	}
	return connectionInput{Kind: provision.KindSCIM, RotateToken: rotate}
}

// revokeOldRegistered keeps only the newest token of a registered
// directory.
func (s *adminServer) revokeOldRegistered(ctx context.Context, t provision.Tenant, connID string) error {
	for _, c := range t.Connections {
		if c.ID == connID && c.SCIM != nil && len(c.SCIM.TokenHashes) > 1 {
			c.SCIM.TokenHashes = c.SCIM.TokenHashes[:1]
			_, err := s.a.Engine.PutConnection(ctx, t.ID, c, "admin page")
			return err
		}
	}
	return nil
}
