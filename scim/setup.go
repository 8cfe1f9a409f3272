package scim

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/idprov/idprov/internal/setupui"
	"github.com/idprov/idprov/provision"
)

// SetupConfig configures the guided SCIM setup a customer's IT admin
// follows through a setup link (provision.Engine.CreateSetupLink).
type SetupConfig struct {
	// Handler is the SCIM handler the directory will call (its request
	// log is shown live). Required; it must resolve tokens through the
	// engine's connections (Config.Authenticator nil).
	Handler *Handler
	// BaseURL is the SCIM base URL to give the IdP (where Handler is
	// mounted, such as https://app.example/scim/v2). Required.
	BaseURL string
	// ConnectionID is the ID of the SCIM connection the setup creates in
	// the link's tenant; default "scim".
	ConnectionID string
}

// Setup is the guided SCIM setup, an http.Handler the host mounts under a
// setup link's URL (with http.StripPrefix), behind a middleware that puts
// the resolved link in the request context (provision.WithSetupLink). The
// tenant is always the link's. Its pages:
//
//	GET  ./           the directory's state and the IdP list
//	GET  ./idp?name=  the steps for one IdP, the base URL, the attribute
//	                  mapping, and the token actions
//	POST ./token      action=create or rotate: a new token, shown once
//	                  (a rotation keeps the previous token valid until the
//	                  next one); action=revoke: every token stops working
//	GET  ./requests   the requests received so far, refreshed every 5 s
type Setup struct {
	h      *Handler
	base   string
	connID string
	serve  http.Handler
}

// NewSetup returns the guided SCIM setup.
func NewSetup(cfg SetupConfig) (*Setup, error) {
	switch {
	case cfg.Handler == nil:
		return nil, errors.New("scim: SetupConfig.Handler is required")
	case cfg.BaseURL == "":
		return nil, errors.New("scim: SetupConfig.BaseURL is required")
	}
	s := &Setup{h: cfg.Handler, base: cfg.BaseURL, connID: cfg.ConnectionID}
	if s.connID == "" {
		s.connID = "scim"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveHome)
	mux.HandleFunc("GET /idp", s.serveIdP)
	mux.HandleFunc("POST /token", s.serveToken)
	mux.HandleFunc("GET /requests", s.serveRequests)
	s.serve = setupui.Guard(provision.KindSCIM, "setting up SCIM provisioning", mux)
	return s, nil
}

// ServeHTTP serves the setup pages of the request's setup link; without
// one (or one that does not allow the kind) it answers 403.
func (s *Setup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve.ServeHTTP(w, r)
}

type scimGuide struct {
	Key, Name string
	Steps     []string
	// Mapping is the attribute mapping: SCIM attribute, IdP attribute.
	Mapping [][2]string
}

var scimGuides = []scimGuide{
	{Key: "okta", Name: "Okta", Steps: []string{
		"In your app integration in Okta open the General tab → App Settings → Edit, tick “Enable SCIM provisioning” and save.",
		"Provisioning tab → Integration → Edit: SCIM connector base URL: the base URL below; Unique identifier field for users: userName; Supported provisioning actions: Push New Users, Push Profile Updates, Push Groups.",
		"Authentication Mode: HTTP Header; Authorization: Bearer, then paste the token below. Choose Test Connector Configuration: the request appears below.",
		"Save, then Provisioning → To App → Edit: enable Create Users, Update User Attributes and Deactivate Users.",
		"Assignments: assign people; Push Groups: push the groups this app should know.",
	}, Mapping: [][2]string{{"userName", "user.login"}, {"name.givenName", "user.firstName"}, {"name.familyName", "user.lastName"}, {"emails[primary].value", "user.email"}, {"externalId", "user.id (Okta sends it)"}}},
	{Key: "entra", Name: "Microsoft Entra ID", Steps: []string{
		"In your enterprise application open Provisioning → Get started (or New configuration); Provisioning Mode: Automatic.",
		"Admin Credentials: Tenant URL: the base URL below; Secret Token: the token below. Choose Test Connection: the request appears below.",
		"Mappings: keep the defaults for users and groups (userPrincipalName → userName, objectId → externalId).",
		"Settings → Scope: Sync only assigned users and groups; Provisioning Status: On. Save.",
	}, Mapping: [][2]string{{"userName", "userPrincipalName"}, {"externalId", "objectId"}, {"active", "Not([IsSoftDeleted])"}, {"name.givenName", "givenName"}, {"name.familyName", "surname"}, {"emails[type eq \"work\"].value", "mail"}}},
	{Key: "onelogin", Name: "OneLogin", Steps: []string{
		"Use the “SCIM Provisioner with SAML (SCIM v2 Enterprise)” connector. Configuration: SCIM Base URL: the base URL below; SCIM Bearer Token: the token below. Enable the API connection.",
		"Provisioning: enable provisioning; choose what happens when a user is deleted (Suspend).",
		"Parameters: map the attributes below; Rules: map roles to groups if you send groups.",
	}, Mapping: [][2]string{{"userName", "Email (or Username)"}, {"name.givenName", "First Name"}, {"name.familyName", "Last Name"}, {"emails[primary].value", "Email"}, {"externalId", "OneLogin ID"}}},
	{Key: "jumpcloud", Name: "JumpCloud", Steps: []string{
		"In your SSO application open Identity Management → Configuration: SCIM API v2.0.",
		"Base URL: the base URL below; Token Key: the token below; Test User Email: an address of your domain. Choose Test Connection: the requests appear below. Activate.",
		"Bind the user groups whose members should be provisioned; enable Group Management to send groups.",
	}, Mapping: [][2]string{{"userName", "email"}, {"name.givenName", "firstname"}, {"name.familyName", "lastname"}, {"emails[primary].value", "email"}, {"externalId", "JumpCloud user id"}}},
	{Key: "generic", Name: "Another SCIM 2.0 client", Steps: []string{
		"Point your SCIM 2.0 client at the base URL below, with HTTP header Authorization: Bearer and the token below.",
		"Send users (POST /Users, PATCH /Users/{id}) and groups (POST /Groups, PATCH members); deactivate with active=false.",
	}, Mapping: [][2]string{{"userName", "a unique, stable login"}, {"externalId", "your immutable user id"}, {"name.givenName", "given name"}, {"name.familyName", "family name"}, {"emails[primary].value", "work e-mail"}}},
}

type scimSetupData struct {
	Guides   []scimGuide
	Guide    *scimGuide
	BaseURL  string
	Set      bool
	Tokens   int
	Token    string
	Rotated  bool
	Revoked  bool
	Health   Health
	Requests []LogEntry
	Error    string
	Tenant   string
}

func (s *Setup) data(r *http.Request, l provision.SetupLink) scimSetupData {
	d := scimSetupData{Guides: scimGuides, BaseURL: s.base, Tenant: l.TenantID}
	if c, err := s.h.engine.Connection(r.Context(), l.TenantID, s.connID); err == nil && c.SCIM != nil {
		d.Set, d.Tokens = true, len(c.SCIM.TokenHashes)
	}
	d.Health = s.h.Health(l.TenantID, s.connID)
	return d
}

func (s *Setup) serveHome(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	d := s.data(r, l)
	d.Revoked = r.URL.Query().Get("revoked") == "1"
	setupui.Render(w, http.StatusOK, scimSetupPage, "Set up SCIM provisioning", d)
}

func (s *Setup) serveIdP(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	s.renderIdP(w, r, l, r.URL.Query().Get("name"), http.StatusOK, "")
}

func (s *Setup) renderIdP(w http.ResponseWriter, r *http.Request, l provision.SetupLink, key string, status int, token string) {
	d := s.data(r, l)
	i := slices.IndexFunc(scimGuides, func(g scimGuide) bool { return g.Key == key })
	if i < 0 {
		d.Error = fmt.Sprintf("There is no guide for %q: pick your identity provider from the list.", key)
		setupui.Render(w, http.StatusNotFound, scimSetupPage, "Unknown IdP", d)
		return
	}
	d.Guide, d.Token = &scimGuides[i], token
	setupui.Render(w, status, scimIdPPage, "Set up SCIM with "+d.Guide.Name, d)
}

func (s *Setup) serveToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _ := provision.SetupLinkFrom(ctx)
	key, action := r.PostFormValue("idp"), r.PostFormValue("action")
	cur, err := s.h.engine.Connection(ctx, l.TenantID, s.connID)
	exists := err == nil
	if err != nil && !errors.Is(err, provision.ErrNotFound) {
		s.fail(w, r, l, http.StatusServiceUnavailable, "The directory could not be read; try again in a moment.")
		return
	}
	if exists && (cur.Kind != provision.KindSCIM || cur.SCIM == nil) {
		s.fail(w, r, l, http.StatusConflict, fmt.Sprintf("This account already has a %s connection named %q: ask the app's support to remove it first.", cur.Kind, s.connID))
		return
	}
	c := provision.Connection{ID: s.connID, Kind: provision.KindSCIM, Name: "SCIM directory", SCIM: &provision.SCIMSettings{}}
	if exists {
		c = cur
		sc := *cur.SCIM
		sc.TokenHashes = slices.Clone(sc.TokenHashes)
		c.SCIM = &sc
	}
	token := ""
	switch action {
	case "create", "rotate":
		if token, err = GenerateToken(); err != nil {
			s.fail(w, r, l, http.StatusServiceUnavailable, "No token could be made; try again.")
			return
		}
		// The new token first; the newest previous one stays valid until
		// the next rotation, so the IdP can be switched without a gap.
		c.SCIM.TokenHashes = append([]provision.TokenHash{HashToken(token)}, c.SCIM.TokenHashes...)
		c.SCIM.TokenHashes = c.SCIM.TokenHashes[:min(len(c.SCIM.TokenHashes), 2)]
	case "revoke":
		if !exists {
			s.fail(w, r, l, http.StatusBadRequest, "There is no token to revoke yet.")
			return
		}
		c.SCIM.TokenHashes = []provision.TokenHash{}
	default:
		s.fail(w, r, l, http.StatusBadRequest, "Unknown action: choose Create token, Rotate token or Revoke tokens.")
		return
	}
	if _, err := s.h.engine.PutConnection(ctx, l.TenantID, c, l.Actor()); err != nil {
		s.h.log.ErrorContext(ctx, "scim: setup: saving the directory", "tenant", l.TenantID, "error", err)
		s.fail(w, r, l, http.StatusServiceUnavailable, "The directory could not be saved; try again in a moment. Nothing was changed.")
		return
	}
	s.h.log.InfoContext(ctx, "scim: setup: token "+action, "tenant", l.TenantID, "connection", s.connID, "actor", l.Actor())
	if action == "revoke" {
		setupui.SeeOther(w, "./?revoked=1")
		return
	}
	if !slices.ContainsFunc(scimGuides, func(g scimGuide) bool { return g.Key == key }) {
		key = "generic"
	}
	s.renderIdP(w, r, l, key, http.StatusOK, token)
}

func (s *Setup) fail(w http.ResponseWriter, r *http.Request, l provision.SetupLink, status int, msg string) {
	d := s.data(r, l)
	d.Error = msg
	setupui.Render(w, status, scimSetupPage, "Set up SCIM provisioning", d)
}

func (s *Setup) serveRequests(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	d := s.data(r, l)
	d.Requests = s.h.RequestLog(l.TenantID, s.connID)
	slices.Reverse(d.Requests) // newest first
	d.Requests = d.Requests[:min(len(d.Requests), 50)]
	setupui.Render(w, http.StatusOK, scimRequestsPage, "SCIM requests received", setupui.Refresh(d, 5))
}

var scimFuncs = template.FuncMap{
	"time": func(t time.Time) string { return t.UTC().Format("15:04:05 MST") },
	"date": func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 MST") },
}

var scimSetupPage = setupui.Parse("scim-home", `{{with .D}}
<h1>Set up SCIM provisioning</h1>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
{{if .Tenant}}
{{if .Revoked}}<p class="ok" role="status">Every token is revoked: the directory's requests are refused until you create a new token.</p>{{end}}
{{if .Set}}<h2>Your directory</h2><ul>
<li>{{.Tokens}} valid token(s).</li>
{{if .Health.LastRequest.IsZero}}<li>No request received yet: finish the steps at your IdP, then run its test.</li>{{else}}<li>Last request {{date .Health.LastRequest}}; {{.Health.Requests}} in the last hour, {{.Health.Failures}} failed.</li>{{end}}
{{with .Health.Warning}}<li class="error">{{.}}</li>{{end}}
</ul>
<p><a class="button" href="requests">Requests received</a></p>
<form method="post" action="token"><input type="hidden" name="action" value="revoke"><button type="submit" id="revoke">Revoke every token</button></form>
<h2>Steps for your IdP</h2>
{{else}}<p>Step 1 of 3: pick your identity provider; then make a token and paste it with the base URL into your IdP; then watch its first request arrive.</p>{{end}}
<ul>{{range .Guides}}<li><a id="scim-idp-{{.Key}}" href="idp?name={{.Key}}">{{.Name}}</a></li>{{end}}</ul>
{{end}}
{{end}}`, scimFuncs)

var scimIdPPage = setupui.Parse("scim-idp", `{{with .D}}
<nav><a href="./">← SCIM setup</a> <a href="requests">Requests received</a></nav>
<h1>Set up SCIM with {{.Guide.Name}}</h1>
<ol>{{range .Guide.Steps}}<li>{{.}}</li>{{end}}</ol>
<h2>Values to paste</h2>
<p class="note">Select a field and copy it (Ctrl+C / ⌘C).</p>
<label for="base-url">SCIM base URL (tenant URL)</label>
<input type="text" id="base-url" readonly value="{{.BaseURL}}">
{{if .Token}}<label for="token">Bearer token: shown this once, copy it now</label>
<input type="text" id="token" readonly value="{{.Token}}">
<p class="ok" role="status">Paste the token into your IdP now: it cannot be shown again.{{if gt .Tokens 1}} The previous token keeps working until the next rotation, so switch your IdP to this one.{{end}}</p>
<p>Next: run your IdP's connection test, then <a href="requests" id="see-requests">see the requests received</a>.</p>
{{else if .Set}}<p>The directory has {{.Tokens}} valid token(s). Lost it? Make a new one (the previous one keeps working until the next rotation).</p>
<form method="post" action="token"><input type="hidden" name="idp" value="{{.Guide.Key}}"><input type="hidden" name="action" value="rotate"><button type="submit" id="rotate-token">Rotate token</button></form>
{{else}}<form method="post" action="token"><input type="hidden" name="idp" value="{{.Guide.Key}}"><input type="hidden" name="action" value="create"><button type="submit" id="create-token">Create token</button></form>{{end}}
<h2>Attribute mapping</h2>
<table><thead><tr><th scope="col">SCIM attribute</th><th scope="col">{{.Guide.Name}} attribute</th></tr></thead><tbody>
{{range .Guide.Mapping}}<tr><td><code>{{index . 0}}</code></td><td>{{index . 1}}</td></tr>{{end}}
</tbody></table>
{{end}}`, scimFuncs)

var scimRequestsPage = setupui.Parse("scim-requests", `{{with .D}}
<nav><a href="./">← SCIM setup</a></nav>
<h1>Requests received</h1>
<p class="note">This page refreshes every 5 seconds.</p>
{{if .Requests}}<table id="requests"><thead><tr><th scope="col">Time</th><th scope="col">Request</th><th scope="col">Status</th><th scope="col">What went wrong</th></tr></thead><tbody>
{{range .Requests}}<tr><td>{{time .Time}}</td><td><code>{{.Method}} {{.Path}}{{if .Query}}?{{.Query}}{{end}}</code>{{with .Dialect}} ({{.}}){{end}}</td><td>{{.Status}}</td><td>{{.Detail}}{{with .Dropped}} Attributes dropped (not in the schema: check the mapping): {{range $i, $a := .}}{{if $i}}, {{end}}{{$a}}{{end}}{{end}}</td></tr>{{end}}
</tbody></table>
{{else}}<p id="no-requests">No request has arrived yet. Check that the base URL and the token are pasted in your IdP, then run its connection test; requests with a wrong token are refused and do not show here.</p>{{end}}
{{end}}`, scimFuncs)
