package main

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/ldap"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
	"github.com/idprov/idprov/saml"
)

// adminFeature serves the admin page at /admin: the tenants and their
// connections with health, users with search, groups with members, the
// event log, SCIM token rotation, LDAP sync status with held plans, and the
// access-rule plan preview. Server-rendered (html/template, no script).
//
// It is protected by an admin token: printed on start in the admin URL
// ("admin: http://.../admin?token=..."), which sets an HttpOnly cookie;
// API clients may send "Authorization: Bearer <token>" instead. Without
// -admin-token the app makes one on first start and keeps it in the store,
// so the printed link stays valid across restarts. Forms are POSTs,
// refused when a browser sends them from another origin
// (http.CrossOriginProtection).
type adminFeature struct {
	token string

	mu       sync.Mutex
	refusals map[string][]refusalRow // by tenant, newest last (signin.go)
}

// adminHooks are what the admin page reads from the other features; a nil
// field is a feature that is off.
type adminHooks struct {
	scim   *scimFeature
	saml   *samlFeature
	ldap   *ldapFeature
	events *eventsFeature
	// protect wraps a handler in the admin page's token check and
	// cross-origin protection (for setup.go's routes).
	protect func(http.Handler) http.Handler
	// refused names a refused sign-in's refusals (signin.go).
	refused func(saml.Refused)
}

const (
	adminCookie  = "saas_admin"
	maxRefusals  = 50
	adminPage    = 25
	eventScanMax = 5000
)

//go:embed admin.html
var adminFS embed.FS

var adminTmpl = template.Must(template.New("admin.html").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"add":  func(a, b int) int { return a + b },
	"join": strings.Join,
	"pct":  func(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" },
}).ParseFS(adminFS, "admin.html"))

func (f *adminFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "admin-token", "", "token of the admin page (default: a random one kept in the store; the printed admin URL carries it)")
}

func (f *adminFeature) setup(a *app) error {
	f.refusals = map[string][]refusalRow{}
	a.admin.refused = f.nameRefusals
	prev := a.EngineConfig.Audit
	a.EngineConfig.Audit = func(ctx context.Context, r provision.Refusal) {
		f.mu.Lock()
		l := append(f.refusals[r.Origin.TenantID], refusalRow{Refusal: r})
		if len(l) > maxRefusals {
			l = l[len(l)-maxRefusals:]
		}
		f.refusals[r.Origin.TenantID] = l
		f.mu.Unlock()
		if prev != nil {
			prev(ctx, r)
		}
	}
	return nil
}

func (f *adminFeature) start(ctx context.Context, a *app) error {
	if f.token == "" {
		tok, err := keptToken(ctx, a, "saas-app:admin-token", "admin token")
		if err != nil {
			return err
		}
		f.token = tok
	}
	s := &adminServer{f: f, a: a}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin", s.overview)
	mux.HandleFunc("GET /admin/t/{tenant}", s.dashboard)
	mux.HandleFunc("GET /admin/t/{tenant}/groups/{id}", s.group)
	mux.HandleFunc("GET /admin/t/{tenant}/scim/{conn}/log", s.scimLog)
	mux.HandleFunc("POST /admin/t/{tenant}/scim/{conn}/rotate", s.rotate)
	mux.HandleFunc("POST /admin/t/{tenant}/scim/{conn}/revoke-old", s.revokeOld)
	mux.HandleFunc("POST /admin/t/{tenant}/ldap/{conn}/{action}", s.ldapAction)
	mux.HandleFunc("POST /admin/t/{tenant}/users/{id}/{action}", s.userAction)
	mux.HandleFunc("POST /admin/t/{tenant}/access/preview", s.accessPreview)
	mux.HandleFunc("POST /admin/t/{tenant}/access/apply", s.accessApply)
	s.planRoutes(mux) // plans.go
	s.userRoutes(mux) // userpage.go
	mux.HandleFunc("POST /admin/tenants", s.formPutTenant)
	mux.HandleFunc("POST /admin/t/{tenant}/connections", s.formPutConnection)
	mux.HandleFunc("POST /admin/t/{tenant}/connections/{conn}/delete", s.formDeleteConnection)
	mux.HandleFunc("GET /admin/api/tenants/{tenant}", s.apiGetTenant)
	mux.HandleFunc("PUT /admin/api/tenants/{tenant}", s.apiPutTenant)
	mux.HandleFunc("PUT /admin/api/tenants/{tenant}/connections/{id}", s.apiPutConnection)
	mux.HandleFunc("DELETE /admin/api/tenants/{tenant}/connections/{id}", s.apiDeleteConnection)
	h := http.NewCrossOriginProtection().Handler(f.authorized(mux))
	a.admin.protect = func(h http.Handler) http.Handler { return http.NewCrossOriginProtection().Handler(f.authorized(h)) }
	a.Mux.Handle("/admin", h)
	a.Mux.Handle("/admin/", h)
	fmt.Fprintf(a.Stdout, "admin: %s/admin?token=%s\n", a.BaseURL, url.QueryEscape(f.token))
	return nil
}

// authorized lets in the requests with the admin token: in ?token= (which
// sets the cookie and redirects to the URL without it), the cookie, or an
// Authorization header.
func (f *adminFeature) authorized(next http.Handler) http.Handler {
	ok := func(s string) bool { return s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(f.token)) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Has("token") {
			if !ok(q.Get("token")) {
				http.Error(w, "wrong admin token: open the admin link the app printed on start", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: f.token, Path: "/admin", HttpOnly: true,
				Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if c, err := r.Cookie(adminCookie); err == nil && ok(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		if tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && ok(tok) {
			next.ServeHTTP(w, r)
			return
		}
		http.Error(w, "admin page: open the admin link the app printed on start (it carries the admin token)", http.StatusUnauthorized)
	})
}

type adminServer struct {
	f *adminFeature
	a *app
}

// page is what admin.html renders; View picks the section.
type page struct {
	View  string
	Title string
	// Refresh, when set, makes the page reload itself from this URL
	// every 2 seconds (while an LDAP sync runs).
	Refresh string
	Msg     string
	Err     string
	Tenants []tenantView
	T       *tenantView
	Data    any
}

type connView struct {
	provision.Connection
	// Status is ok, warn, fail or idle; Health says why, in words.
	Status string
	Health string
	// Details are the connection's facts, line by line.
	Details []string
	// Tokens is the number of valid SCIM tokens; Token the one in clear,
	// when the app knows it (the -tenant's directory).
	Tokens int
	Token  string
	// LoginURL is a SAML connection's sign-in link.
	LoginURL string
	// Held is an LDAP connection's held deactivations (with their first
	// changes).
	Held *provision.Plan
	// Report is an LDAP connection's last report; Syncing the progress
	// of its running sync.
	Report  string
	Syncing string
}

type tenantView struct {
	ID, Name    string
	Registered  bool
	Domains     []string
	Conns       []connView
	Users       int
	Active      int
	Groups      int
	LastSeq     int64
	Webhook     string
	WebhookSt   string
	SCIMBase    string
	AccessRules string
	Refusals    []refusalRow
	// Plans is how many held plans wait for an administrator (plans.go).
	Plans int
}

func (s *adminServer) render(w http.ResponseWriter, status int, p page) {
	for _, t := range s.a.Tenants {
		p.Tenants = append(p.Tenants, tenantView{ID: t.ID, Name: t.Name})
	}
	reg, _ := s.registered(context.Background(), registeredShown)
	for _, t := range reg {
		p.Tenants = append(p.Tenants, tenantView{ID: t.ID, Name: t.Name})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := adminTmpl.Execute(w, p); err != nil {
		s.a.Log.Error("saas-app: admin page", "err", err)
	}
}

func (s *adminServer) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	s.render(w, status, page{View: "error", Title: "Error", Err: err.Error()})
}

// tenantOr404 returns the path's tenant.
func (s *adminServer) tenantOr404(w http.ResponseWriter, r *http.Request) (provision.Tenant, bool) {
	t, err := s.a.Engine.Tenant(r.Context(), r.PathValue("tenant"))
	if err != nil {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no tenant %q", r.PathValue("tenant")))
		return provision.Tenant{}, false
	}
	return t, true
}

func admin(t string) provision.Origin {
	return provision.Origin{TenantID: t, ConnectionID: provision.APIConnection, Actor: "admin page"}
}

// tenantView gathers a tenant's connections with their health, and its
// counts.
func (s *adminServer) tenantView(ctx context.Context, t provision.Tenant) tenantView {
	v := tenantView{ID: t.ID, Name: t.Name, Registered: t.Registered, Domains: t.VerifiedDomains, SCIMBase: s.a.BaseURL + "/scim/v2"}
	o := admin(t.ID)
	_, v.Users, _ = s.a.Engine.ListUsers(ctx, o, provision.Query{})
	if active, err := filter.Parse(`active eq true`); err == nil {
		_, v.Active, _ = s.a.Engine.ListUsers(ctx, o, provision.Query{Filter: active})
	}
	_, v.Groups, _ = s.a.Engine.ListGroups(ctx, o, provision.Query{})
	if el, ok := provision.AdapterOf(s.a.Engine).Store().(provision.EventLog); ok {
		v.LastSeq, _ = el.LastSeq(ctx, t.ID)
	}
	if b, err := json.MarshalIndent(t.AccessRules, "", "  "); err == nil && len(t.AccessRules) > 0 {
		v.AccessRules = string(b)
	} else {
		v.AccessRules = "[]"
	}
	h := s.a.admin
	for _, c := range t.Connections {
		cv := connView{Connection: c, Status: "idle"}
		switch c.Kind {
		case provision.KindSCIM:
			s.scimConn(&cv, t.ID)
			if t.Registered && c.SCIM != nil {
				cv.Tokens = len(c.SCIM.TokenHashes)
			}
		case provision.KindSAML:
			if t.Registered {
				cv.LoginURL = samlURLs(s.a, t.ID, c.ID).LoginURL + "?return_to=/"
				cv.Details = append(cv.Details, "metadata "+samlURLs(s.a, t.ID, c.ID).MetadataURL)
				if c.SAML != nil && c.SAML.IDPMetadataURL != "" {
					cv.Details = append(cv.Details, "IdP metadata from "+c.SAML.IDPMetadataURL)
				}
				if len(c.Domains) > 0 {
					cv.Details = append(cv.Details, "signs in "+strings.Join(c.Domains, ", "))
				}
			} else if h.saml != nil && h.saml.handler != nil {
				cv.LoginURL = h.saml.handler.LoginURL(t.ID) + "?return_to=/"
				h.saml.mu.Lock()
				st := h.saml.logins[t.ID]
				h.saml.mu.Unlock()
				cv.Health = fmt.Sprintf("%d sign-ins since start, last %s", st.Logins, ago(st.Last))
				if st.Logins > 0 {
					cv.Status = "ok"
					cv.Details = append(cv.Details, "last user: "+st.LastUser)
				}
			}
		case provision.KindLDAP:
			s.ldapConn(ctx, &cv, t.ID)
		}
		v.Conns = append(v.Conns, cv)
	}
	if h.events != nil {
		if ep, ok := h.events.endpoint(t.ID); ok && h.events.wh != nil {
			v.Webhook = ep.URL
			if st, err := h.events.wh.Status(ctx, t.ID); err == nil {
				v.WebhookSt = fmt.Sprintf("delivered up to #%d of #%d", st.Cursor, st.LastSeq)
				if st.Failing {
					v.WebhookSt += fmt.Sprintf("; FAILING on #%d since %s (%d attempts): %s", st.FailingSeq, ago(st.FailingSince), st.Attempts, st.LastError)
				}
			}
		}
	}
	s.heldBySCIM(ctx, t, &v) // plans.go
	s.f.mu.Lock()
	v.Refusals = slices.Clone(s.f.refusals[t.ID])
	s.f.mu.Unlock()
	slices.Reverse(v.Refusals)
	return v
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func (s *adminServer) scimConn(cv *connView, tenantID string) {
	f := s.a.admin.scim
	if f == nil || f.handler == nil {
		return
	}
	for _, d := range f.directories() {
		if d.TenantID == tenantID && d.ConnectionID == cv.ID {
			cv.Tokens = len(d.Hashes)
			if d.TenantID == s.a.Tenants[0].ID && d.ConnectionID == f.connID {
				cv.Token = f.token
			}
		}
	}
	h := f.handler.Health(tenantID, cv.ID)
	switch {
	case h.Requests == 0:
		cv.Health = "no requests in the last hour"
	case h.ConsecutiveFailures > 0:
		cv.Status = "fail"
		cv.Health = fmt.Sprintf("%d failures in a row; last %d %s", h.ConsecutiveFailures, h.LastFailureStatus, h.LastFailureDetail)
	case h.Warning != "" || h.Failures > 0:
		cv.Status = "warn"
		cv.Health = fmt.Sprintf("%d requests, %d failed (%s) in the last hour", h.Requests, h.Failures, strconv.FormatFloat(100*h.ErrorRate, 'f', 0, 64)+"%")
	default:
		cv.Status = "ok"
		cv.Health = fmt.Sprintf("%d requests in the last hour, none failed", h.Requests)
	}
	if h.Dialect != "" {
		cv.Details = append(cv.Details, "client: "+string(h.Dialect))
	}
	if !h.LastRequest.IsZero() {
		cv.Details = append(cv.Details, "last request "+ago(h.LastRequest))
	}
	if h.Warning != "" {
		cv.Details = append(cv.Details, h.Warning)
	}
}

func (s *adminServer) ldapConn(ctx context.Context, cv *connView, tenantID string) {
	f := s.a.admin.ldap
	if f == nil {
		return
	}
	for _, src := range f.allSources() {
		if src.TenantID != tenantID || src.Conf.ID != cv.ID || src.Syncer == nil {
			continue
		}
		cv.Details = append(cv.Details, src.Conf.URL+" ("+src.Conf.BaseDN+")")
		if st := src.Syncer.Status(); st.Mode == ldap.StatusPersist {
			cv.Details = append(cv.Details, fmt.Sprintf("push (refreshAndPersist) since %s, %d changes", ago(st.Since), st.Changes))
		} else {
			iv := time.Duration(src.Conf.Interval)
			if iv == 0 {
				iv = time.Minute
			}
			cv.Details = append(cv.Details, fmt.Sprintf("poll every %s (%d reconnects of the persistent search)", iv, st.Reconnects))
		}
		r, err, at := src.status()
		switch {
		case err != nil:
			cv.Status, cv.Health = "fail", "last sync failed "+ago(at)+": "+err.Error()
		case r != nil:
			cv.Status, cv.Health = "ok", "last sync "+ago(at)
			cv.Report = r.String()
		default:
			cv.Health = "first sync pending"
		}
		cv.Syncing = src.syncing()
		if plans, _, err := s.a.Engine.Plans(ctx, tenantID, provision.Page{Limit: 100}); err == nil {
			for _, p := range plans {
				if p.Kind != provision.PlanDeactivations || p.ConnectionID != cv.ID {
					continue
				}
				if held, err := s.a.Engine.Plan(ctx, tenantID, p.ID, provision.Page{Limit: 20}); err == nil {
					cv.Held = &held
					cv.Status = "warn"
					cv.Health += fmt.Sprintf("; %d deactivations held for confirmation", held.Size)
				}
			}
		}
	}
}

func (s *adminServer) overview(w http.ResponseWriter, r *http.Request) {
	p := page{View: "overview", Title: "Tenants", Msg: r.URL.Query().Get("msg")}
	var views []tenantView
	for _, t := range s.a.Tenants {
		et, err := s.a.Engine.Tenant(r.Context(), t.ID)
		if err != nil {
			continue
		}
		views = append(views, s.tenantView(r.Context(), et))
	}
	reg, total := s.registered(r.Context(), registeredShown)
	for _, t := range reg {
		views = append(views, s.tenantView(r.Context(), t))
	}
	p.Data = overviewData{Tenants: views, Registered: total, Shown: len(reg), CanRegister: s.canRegister()}
	s.render(w, http.StatusOK, p)
}

// dashboardData is the tenant page below its connections.
type dashboardData struct {
	Q          string
	QErr       string
	Users      []userRow
	UsersTotal int
	Offset     int
	Next, Prev int
	Groups     []groupRow
	GroupsMore int
	Kinds      []string
	Kind       string
	User       string
	Before     int64
	Events     []eventRow
	Older      int64
	Scanned    int
}

type userRow struct {
	provision.User
	Email string
	Roles string
}

type groupRow struct {
	provision.Group
	Members int
}

type eventRow struct {
	provision.Event
	Subject string
	Detail  string
}

func (s *adminServer) dashboard(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	tv := s.tenantView(ctx, t)
	d := dashboardData{Q: strings.TrimSpace(q.Get("q")), Kind: q.Get("kind"), User: strings.TrimSpace(q.Get("user"))}
	d.Offset, _ = strconv.Atoi(q.Get("offset"))
	d.Offset = max(d.Offset, 0)
	o := admin(t.ID)

	// Users, with the search box: a SCIM filter, or words matched
	// against userName, displayName and e-mails.
	query := provision.Query{SortBy: "userName", Page: provision.Page{Offset: d.Offset, Limit: adminPage}}
	if d.Q != "" {
		expr, err := filter.Parse(d.Q)
		if err != nil {
			lit, _ := json.Marshal(d.Q)
			expr, err = filter.Parse(fmt.Sprintf(`userName co %s or displayName co %s or emails.value co %s`, lit, lit, lit))
		}
		if err != nil {
			d.QErr = err.Error()
		}
		query.Filter = expr
	}
	if d.QErr == "" {
		users, total, err := s.a.Engine.ListUsers(ctx, o, query)
		if err != nil {
			d.QErr = err.Error()
		}
		d.UsersTotal = total
		for _, u := range users {
			var roles []string
			for _, ro := range u.Roles {
				roles = append(roles, ro.Value)
			}
			d.Users = append(d.Users, userRow{User: u, Email: u.PrimaryEmail(), Roles: strings.Join(roles, ", ")})
		}
		if d.Offset+adminPage < total {
			d.Next = d.Offset + adminPage
		}
		d.Prev = max(d.Offset-adminPage, 0)
	}

	groups, gtotal, _ := s.a.Engine.ListGroups(ctx, o, provision.Query{SortBy: "displayName", Page: provision.Page{Limit: adminPage}})
	for _, g := range groups {
		_, n, _ := s.a.Engine.ListMembers(ctx, o, g.ID, provision.Page{})
		d.Groups = append(d.Groups, groupRow{Group: g, Members: n})
	}
	d.GroupsMore = max(gtotal-len(groups), 0)

	d.Kinds = []string{"user.created", "user.updated", "user.deactivated", "user.reactivated", "user.deleted",
		"group.created", "group.updated", "group.deleted", "group.members_added", "group.members_removed"}
	d.Before, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	who := map[string]bool{}
	if d.User != "" {
		who[d.User] = true
		lit, _ := json.Marshal(d.User)
		if expr, err := filter.Parse("userName eq " + string(lit)); err == nil {
			if us, _, err := s.a.Engine.ListUsers(ctx, o, provision.Query{Filter: expr, Page: provision.Page{Limit: 1}}); err == nil && len(us) == 1 {
				who[us[0].ID] = true
			}
		}
	}
	d.Events, d.Older, d.Scanned = s.events(ctx, t.ID, tv.LastSeq, d, who)

	p := page{View: "tenant", Title: t.Name, Msg: q.Get("msg"), Err: q.Get("err"), T: &tv, Data: d}
	for _, c := range tv.Conns {
		if c.Syncing != "" {
			p.Refresh = "/admin/t/" + url.PathEscape(t.ID)
		}
	}
	s.render(w, http.StatusOK, p)
}

// events returns the newest events (before d.Before) of the kind and user
// asked, reading the log backwards from its last Seq in windows, at most
// eventScanMax events. Older is the Seq to continue before, 0 at the start
// of the log.
//
// who holds the user filter's ids and userName; a window's events that
// name one of them by userName add their user's id, so that membership
// events (which carry ids only) of a deleted user are found too.
func (s *adminServer) events(ctx context.Context, tenantID string, last int64, d dashboardData, who map[string]bool) ([]eventRow, int64, int) {
	hi := last
	if d.Before > 0 && d.Before-1 < hi {
		hi = d.Before - 1
	}
	const window = 200
	var out []eventRow
	scanned := 0
	full := func() bool { return len(out) >= adminPage*2 }
	for hi > 0 && !full() && scanned < eventScanMax {
		lo := max(hi-window, 0)
		evs, err := s.a.Engine.Events(ctx, tenantID, lo, int(hi-lo))
		if err != nil {
			break
		}
		scanned += len(evs)
		for _, ev := range evs {
			if u := ev.User; d.User != "" && u != nil && strings.EqualFold(u.UserName, d.User) {
				who[u.ID] = true
			}
		}
		next := lo // all of (lo, hi] read, unless full first
		for i := len(evs) - 1; i >= 0; i-- {
			if full() {
				next = evs[i].Seq
				break
			}
			ev := evs[i]
			if d.Kind != "" && string(ev.Kind) != d.Kind {
				continue
			}
			if d.User != "" && !eventOfUser(ev, d.User, who) {
				continue
			}
			out = append(out, describeEvent(ev))
		}
		hi = next
	}
	older := int64(0)
	if hi > 0 {
		older = hi + 1
	}
	return out, older, scanned
}

// eventOfUser reports whether ev is about the user named (by id or
// userName), or adds or removes them; ids are the ids known for them.
func eventOfUser(ev provision.Event, name string, ids map[string]bool) bool {
	if u := ev.User; u != nil && (ids[u.ID] || strings.EqualFold(u.UserName, name)) {
		return true
	}
	return slices.ContainsFunc(ev.Members, func(id string) bool { return ids[id] })
}

func describeEvent(ev provision.Event) eventRow {
	row := eventRow{Event: ev}
	switch {
	case ev.User != nil:
		row.Subject = ev.User.UserName
		if row.Subject == "" {
			row.Subject = ev.User.ID
		}
	case ev.Group != nil:
		row.Subject = "group " + ev.Group.DisplayName
	}
	var parts []string
	if len(ev.Fields) > 0 {
		parts = append(parts, "changed: "+strings.Join(ev.Fields, ", "))
	}
	if len(ev.Members) > 0 {
		parts = append(parts, fmt.Sprintf("%d member(s)", len(ev.Members)))
	}
	if ev.PreviousUser != nil && slices.Contains(ev.Fields, "roles") {
		var before []string
		for _, ro := range ev.PreviousUser.Roles {
			before = append(before, ro.Value)
		}
		parts = append(parts, "roles were: "+strings.Join(before, ", "))
	}
	row.Detail = strings.Join(parts, "; ")
	return row
}

type groupData struct {
	Group        provision.Group
	Members      []provision.User
	Missing      []string
	Total        int
	Offset       int
	Next, Prev   int
	HasNext, Has bool
}

func (s *adminServer) group(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	ctx, o := r.Context(), admin(t.ID)
	g, err := s.a.Engine.GetGroup(ctx, o, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("group: %w", err))
		return
	}
	d := groupData{Group: g}
	d.Offset, _ = strconv.Atoi(r.URL.Query().Get("offset"))
	d.Offset = max(d.Offset, 0)
	ids, total, err := s.a.Engine.ListMembers(ctx, o, g.ID, provision.Page{Offset: d.Offset, Limit: adminPage})
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d.Total = total
	for _, id := range ids {
		u, err := s.a.Engine.GetUser(ctx, o, id)
		if err != nil {
			d.Missing = append(d.Missing, id)
			continue
		}
		d.Members = append(d.Members, u)
	}
	d.HasNext = d.Offset+adminPage < total
	d.Next, d.Prev, d.Has = d.Offset+adminPage, max(d.Offset-adminPage, 0), d.Offset > 0
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "group", Title: g.DisplayName, T: &tv, Data: d})
}

func (s *adminServer) scimLog(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	if s.a.admin.scim == nil || s.a.admin.scim.handler == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("SCIM is off"))
		return
	}
	entries := s.a.admin.scim.handler.RequestLog(t.ID, r.PathValue("conn"))
	slices.Reverse(entries)
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "scimlog", Title: "SCIM requests of " + r.PathValue("conn"), T: &tv, Data: entries})
}

func (s *adminServer) back(w http.ResponseWriter, r *http.Request, tenantID, msg string, err error) {
	redirectWith(w, r, "/admin/t/"+url.PathEscape(tenantID), msg, err) // plans.go
}

func (s *adminServer) rotate(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	if s.a.admin.scim == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("SCIM is off"))
		return
	}
	conn := r.PathValue("conn")
	var tok string
	var err error
	if t.Registered {
		var out connectionJSON
		out, err = s.putConnection(r.Context(), t.ID, conn, s.inputOf(t, conn, true), "admin page")
		tok = out.Token
	} else {
		tok, err = s.a.admin.scim.rotate(r.Context(), s.a, t.ID, conn)
	}
	if err != nil {
		s.back(w, r, t.ID, "", err)
		return
	}
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "rotated", Title: "New SCIM token", T: &tv,
		Data: map[string]string{"Conn": conn, "Token": tok, "Base": s.a.BaseURL + "/scim/v2"}})
}

func (s *adminServer) revokeOld(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	if s.a.admin.scim == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("SCIM is off"))
		return
	}
	var err error
	if t.Registered {
		err = s.revokeOldRegistered(r.Context(), t, r.PathValue("conn"))
	} else {
		err = s.a.admin.scim.revokeOld(r.Context(), s.a, t.ID, r.PathValue("conn"))
	}
	s.back(w, r, t.ID, "Old SCIM tokens of "+r.PathValue("conn")+" revoked: only the newest is valid.", err)
}

func (s *adminServer) ldapAction(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	var src *ldapSource
	if f := s.a.admin.ldap; f != nil {
		for _, x := range f.allSources() {
			if x.TenantID == t.ID && x.Conf.ID == r.PathValue("conn") && x.Syncer != nil {
				src = x
			}
		}
	}
	if src == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("no such LDAP connection"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	plan := r.FormValue("plan")
	switch r.PathValue("action") {
	case "confirm":
		p, err := s.a.Engine.ConfirmPlan(ctx, admin(t.ID), plan)
		if err == nil {
			s.back(w, r, t.ID, fmt.Sprintf("Held plan %s confirmed: %d users deactivated.", plan, p.Size), nil)
			return
		}
		s.back(w, r, t.ID, "", err)
	case "discard":
		err := s.a.Engine.DiscardPlan(ctx, admin(t.ID), plan)
		s.back(w, r, t.ID, "Held plan "+plan+" discarded (a later full sync may hold it again).", err)
	case "sync":
		// In the background: the tenant page follows it.
		if !src.requestSync() {
			s.back(w, r, t.ID, "LDAP sync of "+src.Conf.ID+" is running already: the page follows it.", nil)
			return
		}
		s.back(w, r, t.ID, "LDAP sync of "+src.Conf.ID+" started: the page follows it.", nil)
	default:
		s.fail(w, r, http.StatusNotFound, errors.New("no such action"))
	}
}

func (s *adminServer) userAction(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	o, id := admin(t.ID), r.PathValue("id")
	var u provision.User
	var err error
	switch r.PathValue("action") {
	case "deactivate":
		u, err = s.a.Engine.DeactivateUser(r.Context(), o, id)
	case "reactivate":
		u, err = s.a.Engine.ReactivateUser(r.Context(), o, id)
	default:
		s.fail(w, r, http.StatusNotFound, errors.New("no such action"))
		return
	}
	s.back(w, r, t.ID, fmt.Sprintf("%s: %sd.", u.UserName, r.PathValue("action")), err)
}

type planData struct {
	Plan  provision.Plan
	Rules string
	Roles []planRole
}

type planRole struct {
	Role       string
	Gain, Lose []string
}

func (s *adminServer) accessPreview(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	var rules []provision.AccessRule
	if err := json.Unmarshal([]byte(r.FormValue("rules")), &rules); err != nil {
		s.back(w, r, t.ID, "", fmt.Errorf("access rules: not a JSON list of rules: %w", err))
		return
	}
	plan, err := s.a.Engine.PlanAccessRules(r.Context(), t.ID, rules)
	if err != nil {
		s.back(w, r, t.ID, "", err)
		return
	}
	plan, err = s.a.Engine.Plan(r.Context(), t.ID, plan.ID, provision.Page{Limit: plan.Size})
	if err != nil {
		s.back(w, r, t.ID, "", err)
		return
	}
	d := planData{Plan: plan, Rules: r.FormValue("rules")}
	names := func(ids []string) []string {
		var out []string
		for i, id := range ids {
			if i == 20 {
				out = append(out, fmt.Sprintf("and %d more", len(ids)-20))
				break
			}
			if u, err := s.a.Engine.GetUser(r.Context(), admin(t.ID), id); err == nil {
				out = append(out, u.UserName)
			} else {
				out = append(out, id)
			}
		}
		return out
	}
	gain, lose, seen := map[string][]string{}, map[string][]string{}, map[string]bool{}
	var roles []string // in the plan's order: sorted by role
	for _, c := range plan.Changes {
		if !seen[c.Role] {
			seen[c.Role] = true
			roles = append(roles, c.Role)
		}
		switch c.Op {
		case "grant-role":
			gain[c.Role] = append(gain[c.Role], c.UserID)
		case "revoke-role":
			lose[c.Role] = append(lose[c.Role], c.UserID)
		}
	}
	for _, role := range roles {
		d.Roles = append(d.Roles, planRole{Role: role, Gain: names(gain[role]), Lose: names(lose[role])})
	}
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "plan", Title: "Access rules: preview", T: &tv, Data: d})
}

func (s *adminServer) accessApply(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	plan, err := s.a.Engine.ConfirmPlan(r.Context(), admin(t.ID), r.FormValue("plan"))
	s.back(w, r, t.ID, fmt.Sprintf("Access rules applied: %d role changes.", plan.Size), err)
}
