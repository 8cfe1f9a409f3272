package ldap

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/internal/setupui"
	"github.com/idprov/idprov/provision"
)

// SetupConfig configures the guided LDAP setup a customer's IT admin
// follows through a setup link (provision.Engine.CreateSetupLink).
type SetupConfig struct {
	// Engine stores the connection. Required.
	Engine *provision.Engine
	// Config builds the Syncer Config of the connection's settings
	// exactly as the host's syncers will (TLS, mapping, intervals), for
	// the test's dry run. Required.
	Config func(tenantID, connectionID string, s provision.LDAPSettings) (Config, error)
	// ConnectionID is the ID of the LDAP connection the setup creates in
	// the link's tenant; default "ldap".
	ConnectionID string
	// OnApproved is called when the IT admin starts syncing after a test
	// that passed: the host starts the connection's syncer (a connection
	// saved through the setup is held, SetupHeld, until then).
	OnApproved func(ctx context.Context, tenantID, connectionID string)
	// Logger logs the failures the pages do not detail; default
	// slog.Default().
	Logger *slog.Logger
}

// Setup is the guided LDAP setup, an http.Handler the host mounts under a
// setup link's URL (with http.StripPrefix), behind a middleware that puts
// the resolved link in the request context (provision.WithSetupLink). The
// tenant is always the link's. Its pages:
//
//	GET  ./         the settings form (URL, bind, base, filters, preset)
//	                and the last test
//	POST ./test     saves the settings (held: no sync runs yet), binds,
//	                reads the root DSE, and shows the dry-run plan of the
//	                first sync (users and groups read, would create,
//	                link, deactivate)
//	POST ./approve  after a test that passed: the first sync may run
type Setup struct {
	e        *provision.Engine
	config   func(string, string, provision.LDAPSettings) (Config, error)
	connID   string
	approved func(context.Context, string, string)
	log      *slog.Logger
	serve    http.Handler
}

// NewSetup returns the guided LDAP setup.
func NewSetup(cfg SetupConfig) (*Setup, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("ldap: SetupConfig.Engine is required")
	case cfg.Config == nil:
		return nil, errors.New("ldap: SetupConfig.Config is required")
	}
	s := &Setup{e: cfg.Engine, config: cfg.Config, connID: cfg.ConnectionID, approved: cfg.OnApproved, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.connID == "" {
		s.connID = "ldap"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveHome)
	mux.HandleFunc("POST /test", s.serveTest)
	mux.HandleFunc("POST /approve", s.serveApprove)
	s.serve = setupui.Guard(provision.KindLDAP, "setting up an LDAP directory", mux)
	return s, nil
}

// ServeHTTP serves the setup pages of the request's setup link; without
// one (or one that does not allow the kind) it answers 403.
func (s *Setup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve.ServeHTTP(w, r)
}

// SetupTest is the result of the setup's test of an LDAP connection.
type SetupTest struct {
	Time time.Time `json:"time"`
	OK   bool      `json:"ok"`
	// Step is where a failed test stopped (connect, bind, root DSE,
	// plan); Error says what to fix.
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
	// From the root DSE.
	Vendor         string   `json:"vendor,omitempty"`
	NamingContexts []string `json:"namingContexts,omitempty"`
	// From the dry run of the first sync: entries read, and what it
	// would do.
	Users           int  `json:"users"`
	Groups          int  `json:"groups"`
	CreateUsers     int  `json:"createUsers"`
	LinkUsers       int  `json:"linkUsers"`
	DeactivateUsers int  `json:"deactivateUsers"`
	CreateGroups    int  `json:"createGroups"`
	Skipped         int  `json:"skipped"`
	Held            bool `json:"held,omitempty"`
}

// Summary says the test's outcome in one sentence.
func (t SetupTest) Summary() string {
	if !t.OK {
		return fmt.Sprintf("test failed at %s: %s", t.Step, t.Error)
	}
	return fmt.Sprintf("test passed: %d users and %d groups read; the first sync would create %d users, link %d, create %d groups, deactivate %d",
		t.Users, t.Groups, t.CreateUsers, t.LinkUsers, t.CreateGroups, t.DeactivateUsers)
}

func setupTestKey(connID string) string { return "ldap/setup/" + connID + "/test" }
func setupHeldKey(connID string) string { return "ldap/setup/" + connID + "/held" }

// LastSetupTest returns the last setup test of the connection,
// provision.ErrNotFound when none.
func LastSetupTest(ctx context.Context, e *provision.Engine, tenantID, connectionID string) (SetupTest, error) {
	b, err := provision.AdapterOf(e).KVGet(ctx, tenantID, setupTestKey(connectionID))
	if err != nil {
		return SetupTest{}, err
	}
	var t SetupTest
	if err := json.Unmarshal(b, &t); err != nil {
		return SetupTest{}, fmt.Errorf("ldap: decode setup test: %w", err)
	}
	return t, nil
}

// SetupHeld reports whether the connection was saved through the setup
// and its first sync is not approved yet: a host does not start its
// syncer until it is not (SetupConfig.OnApproved tells when).
func SetupHeld(ctx context.Context, e *provision.Engine, tenantID, connectionID string) bool {
	_, err := provision.AdapterOf(e).KVGet(ctx, tenantID, setupHeldKey(connectionID))
	return err == nil
}

type ldapSetupData struct {
	Tenant   string
	Conn     *provision.LDAPSettings
	Form     provision.LDAPSettings
	Test     *SetupTest
	Held     bool
	Approved bool
	Error    string
}

func (s *Setup) data(r *http.Request, l provision.SetupLink) ldapSetupData {
	ctx := r.Context()
	d := ldapSetupData{Tenant: l.TenantID}
	if c, err := s.e.Connection(ctx, l.TenantID, s.connID); err == nil && c.LDAP != nil {
		d.Conn, d.Form = c.LDAP, *c.LDAP
		d.Held = SetupHeld(ctx, s.e, l.TenantID, s.connID)
	}
	if t, err := LastSetupTest(ctx, s.e, l.TenantID, s.connID); err == nil {
		d.Test = &t
	}
	return d
}

func (s *Setup) serveHome(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	d := s.data(r, l)
	d.Approved = r.URL.Query().Get("approved") == "1"
	setupui.Render(w, http.StatusOK, ldapSetupPage, "Set up LDAP", d)
}

func (s *Setup) serveTest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _ := provision.SetupLinkFrom(ctx)
	d := s.data(r, l)
	in := provision.LDAPSettings{
		URL: strings.TrimSpace(r.PostFormValue("url")), BindDN: strings.TrimSpace(r.PostFormValue("bindDN")),
		BindPassword: provision.NewSecret(r.PostFormValue("bindPassword")), BaseDN: strings.TrimSpace(r.PostFormValue("baseDN")),
		Preset: r.PostFormValue("preset"), UserFilter: strings.TrimSpace(r.PostFormValue("userFilter")), GroupFilter: strings.TrimSpace(r.PostFormValue("groupFilter")),
	}
	if in.BindPassword.IsZero() && d.Conn != nil && d.Conn.BindDN == in.BindDN {
		in.BindPassword = d.Conn.BindPassword // keep the stored one
	}
	if d.Conn != nil {
		in.Interval = d.Conn.Interval
	}
	d.Form = in
	fail := func(status int, msg string) {
		d.Error = msg + " Nothing was saved."
		setupui.Render(w, status, ldapSetupPage, "Set up LDAP", d)
	}
	if u, err := url.Parse(in.URL); err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		fail(http.StatusBadRequest, "The URL must be ldaps://host[:636] or ldap://host[:389].")
		return
	}
	if in.BaseDN == "" {
		fail(http.StatusBadRequest, "The base DN is required (for example dc=corp,dc=example).")
		return
	}
	cfg, err := s.config(l.TenantID, s.connID, in)
	if err != nil {
		fail(http.StatusBadRequest, "These settings cannot be used: "+strings.TrimPrefix(err.Error(), "ldap: ")+".")
		return
	}
	c := provision.Connection{ID: s.connID, Kind: provision.KindLDAP, Name: "LDAP directory", LDAP: &in}
	if cur, err := s.e.Connection(ctx, l.TenantID, s.connID); err == nil {
		if cur.Kind != provision.KindLDAP {
			fail(http.StatusConflict, fmt.Sprintf("This account already has a %s connection named %q: ask the app's support to remove it first.", cur.Kind, s.connID))
			return
		}
		c.Name, c.Domains, c.Match, c.PairedWith = cur.Name, cur.Domains, cur.Match, cur.PairedWith
	}
	// Held before it is stored, so that no syncer starts on it.
	if d.Conn == nil || d.Held || *d.Conn != in {
		if err := provision.AdapterOf(s.e).KVSet(ctx, l.TenantID, setupHeldKey(s.connID), []byte(l.Actor()), 0); err != nil {
			fail(http.StatusServiceUnavailable, "The settings could not be saved; try again in a moment.")
			return
		}
	}
	if _, err := s.e.PutConnection(ctx, l.TenantID, c, l.Actor()); err != nil {
		var ve *provision.ValidationError
		if errors.As(err, &ve) {
			fail(http.StatusBadRequest, "The settings were refused: "+ve.Field+": "+ve.Reason+".")
			return
		}
		s.log.ErrorContext(ctx, "ldap: setup: saving the connection", "tenant", l.TenantID, "error", err)
		fail(http.StatusServiceUnavailable, "The settings could not be saved; try again in a moment.")
		return
	}
	t := s.test(ctx, cfg)
	t.Time = time.Now().UTC()
	b, _ := json.Marshal(t)
	if err := provision.AdapterOf(s.e).KVSet(ctx, l.TenantID, setupTestKey(s.connID), b, 0); err != nil {
		fail(http.StatusServiceUnavailable, "The test result could not be kept; try again in a moment.")
		return
	}
	d = s.data(r, l)
	status := http.StatusOK
	if !t.OK {
		status = http.StatusBadRequest
	}
	setupui.Render(w, status, ldapSetupPage, "Set up LDAP", d)
}

// test binds, reads the root DSE, and runs the dry run of a sync.
func (s *Setup) test(ctx context.Context, cfg Config) SetupTest {
	var t SetupTest
	failAt := func(step, msg string) SetupTest { t.Step, t.Error = step, msg; return t }
	u, _ := url.Parse(cfg.URL)
	host := u.Hostname()
	tlsCfg := cfg.TLSConfig
	if tlsCfg == nil {
		tlsCfg = &tls.Config{ServerName: host}
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	conn, err := goldap.DialURL(cfg.URL, goldap.DialWithDialer(&net.Dialer{Timeout: timeout}), goldap.DialWithTLSConfig(tlsCfg))
	if err != nil {
		return failAt("connect", fmt.Sprintf("could not connect to %s: %v. Check the host and port, and that this service may reach it (firewall).", u.Host, err))
	}
	defer conn.Close()
	conn.SetTimeout(timeout)
	if cfg.StartTLS {
		if err := conn.StartTLS(tlsCfg); err != nil {
			return failAt("connect", fmt.Sprintf("StartTLS failed: %v. Use ldaps:// or enable StartTLS on the server.", err))
		}
	}
	if cfg.BindDN != "" {
		if err := conn.Bind(cfg.BindDN, cfg.BindPassword); err != nil {
			msg := fmt.Sprintf("the bind as %s failed: %v.", cfg.BindDN, err)
			if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
				msg = fmt.Sprintf("the server refused the bind DN or password of %s: check both (an Active Directory account may also be given as user@domain).", cfg.BindDN)
			}
			return failAt("bind", msg)
		}
	}
	res, err := conn.Search(goldap.NewSearchRequest("", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, int(timeout/time.Second), false,
		"(objectClass=*)", []string{"namingContexts", "vendorName", "vendorVersion", "supportedLDAPVersion"}, nil))
	if err != nil || len(res.Entries) == 0 {
		return failAt("root DSE", fmt.Sprintf("the root DSE could not be read: %v.", err))
	}
	rd := res.Entries[0]
	t.NamingContexts = rd.GetAttributeValues("namingContexts")
	t.Vendor = strings.TrimSpace(rd.GetAttributeValue("vendorName") + " " + rd.GetAttributeValue("vendorVersion"))
	under := len(t.NamingContexts) == 0
	for _, nc := range t.NamingContexts {
		if strings.HasSuffix(strings.ToLower(cfg.UserBaseDN), strings.ToLower(nc)) {
			under = true
		}
	}
	if !under {
		return failAt("root DSE", fmt.Sprintf("the base DN %s is under none of the server's naming contexts (%s): use one of them or an entry below it.", cfg.UserBaseDN, strings.Join(t.NamingContexts, ", ")))
	}
	syncer, err := NewSyncer(cfg)
	if err != nil {
		return failAt("settings", "these settings cannot be used: "+strings.TrimPrefix(err.Error(), "ldap: ")+".")
	}
	rep, err := syncer.Plan(ctx)
	if err != nil {
		return failAt("plan", fmt.Sprintf("the dry run failed: %v. Check the base DN and the filters.", err))
	}
	t.Users, t.Groups = rep.Entries, rep.Groups.Entries
	t.CreateUsers, t.LinkUsers, t.DeactivateUsers, t.CreateGroups, t.Skipped = rep.Created, rep.Linked, rep.Deactivated, rep.Groups.Created, rep.Skipped
	t.Held = rep.Held != nil
	if t.Users == 0 {
		return failAt("plan", "no user entry matched: check the base DN and the user filter (the preset's default filter is used when it is empty).")
	}
	t.OK = true
	return t
}

func (s *Setup) serveApprove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _ := provision.SetupLinkFrom(ctx)
	d := s.data(r, l)
	if d.Conn == nil || d.Test == nil || !d.Test.OK {
		d.Error = "Test the connection first: the first sync may start after a test that passed."
		setupui.Render(w, http.StatusConflict, ldapSetupPage, "Set up LDAP", d)
		return
	}
	if err := provision.AdapterOf(s.e).KVDelete(ctx, l.TenantID, setupHeldKey(s.connID)); err != nil {
		d.Error = "The sync could not be started; try again in a moment."
		setupui.Render(w, http.StatusServiceUnavailable, ldapSetupPage, "Set up LDAP", d)
		return
	}
	if s.approved != nil {
		s.approved(ctx, l.TenantID, s.connID)
	}
	setupui.SeeOther(w, "./?approved=1")
}

var ldapSetupPage = setupui.Parse("ldap", `{{with .D}}
<h1>Set up an LDAP directory</h1>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
{{if .Tenant}}
{{if .Approved}}<p class="ok" role="status" id="approved">Syncing is on: the first sync runs now, then at every interval.</p>{{end}}
{{with .Test}}{{if .OK}}<div class="ok" role="status" id="ldap-test-ok"><p>The test passed{{with .Vendor}} ({{.}}){{end}}.</p>
<p id="ldap-plan">The first sync would read {{.Users}} users and {{.Groups}} groups: create {{.CreateUsers}} users, link {{.LinkUsers}} to existing users, create {{.CreateGroups}} groups, deactivate {{.DeactivateUsers}}{{if .Skipped}}; {{.Skipped}} entries would be skipped{{end}}{{if .Held}}; the deactivations would be held for review{{end}}.</p></div>
{{else}}<p class="error" role="alert" id="ldap-test-failed">The test failed at the {{.Step}} step: {{.Error}}</p>{{end}}{{end}}
{{if and .Held .Test}}{{if .Test.OK}}<form method="post" action="approve"><button type="submit" id="approve">Start syncing</button></form>{{end}}{{else if .Conn}}{{if not .Held}}<p>Syncing is on.</p>{{end}}{{end}}
<h2>Settings</h2>
<form method="post" action="test">
<label for="url">Server URL</label><input type="text" id="url" name="url" value="{{.Form.URL}}" placeholder="ldaps://dc1.corp.example:636" required>
<label for="bindDN">Bind DN of the read-only sync account</label><input type="text" id="bindDN" name="bindDN" value="{{.Form.BindDN}}" placeholder="cn=idprov-sync,ou=services,dc=corp,dc=example">
<label for="bindPassword">Bind password{{if .Conn}} (leave empty to keep the saved one){{end}}</label><input type="password" id="bindPassword" name="bindPassword" autocomplete="off">
<label for="baseDN">Base DN</label><input type="text" id="baseDN" name="baseDN" value="{{.Form.BaseDN}}" placeholder="dc=corp,dc=example" required>
<label for="preset">Directory</label><select id="preset" name="preset">
<option value="openldap"{{if eq .Form.Preset "openldap" ""}} selected{{end}}>OpenLDAP</option>
<option value="389"{{if eq .Form.Preset "389"}} selected{{end}}>389 Directory Server / Red Hat IdM</option>
<option value="ad"{{if eq .Form.Preset "ad"}} selected{{end}}>Active Directory</option></select>
<label for="userFilter">User filter (empty: the directory's default)</label><input type="text" id="userFilter" name="userFilter" value="{{.Form.UserFilter}}" placeholder="(objectClass=inetOrgPerson)">
<label for="groupFilter">Group filter (empty: the directory's default)</label><input type="text" id="groupFilter" name="groupFilter" value="{{.Form.GroupFilter}}">
<p><button type="submit" id="ldap-test">Save and test</button></p>
<p class="note">The test binds, reads the server's root DSE and runs a dry run of the first sync: nothing is synced until you start syncing.</p>
</form>
{{end}}
{{end}}`, template.FuncMap{})
