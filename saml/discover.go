package saml

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/idprov/idprov/provision"
)

// choice is one way to sign in, offered by the chooser page.
type choice struct {
	ID, Name string
	// legacy is the connection set with SetConnection, served at the
	// tenant's own URLs.
	legacy bool
}

// loginHint is the address a login was asked for: ?email= or
// ?login_hint=.
func loginHint(r *http.Request) string {
	q := r.URL.Query()
	if e := strings.TrimSpace(q.Get("email")); e != "" {
		return e
	}
	return strings.TrimSpace(q.Get("login_hint"))
}

// discoverIn serves /saml/{tenant}/login for a tenant without a
// connection set with SetConnection: home realm discovery among its
// connections.
func (h *Handler) discoverIn(w http.ResponseWriter, r *http.Request, t provision.Tenant) {
	h.route(w, r, t, loginHint(r))
}

// serveDiscover serves /saml/login?email=: the tenant that verified the
// address's domain (Engine.Discover), then as serveTenantLogin. Without
// an address it answers a form asking for one. It reveals nothing of the
// other tenants.
func (h *Handler) serveDiscover(w http.ResponseWriter, r *http.Request) {
	email := loginHint(r)
	if email == "" {
		h.page(w, http.StatusOK, pageData{Title: "Sign in", Form: true})
		return
	}
	t, _, err := h.engine.Discover(r.Context(), email, provision.KindSAML)
	switch {
	case errors.Is(err, provision.ErrInvalid):
		h.page(w, http.StatusBadRequest, pageData{Title: "Sign in", Form: true, Email: email, Message: "Enter your e-mail address, like ada@example.com."})
		return
	case errors.Is(err, provision.ErrNotFound):
		h.page(w, http.StatusNotFound, pageData{Title: "Sign in", Form: true, Email: email, Message: "Single sign-on is not set up for this address."})
		return
	case err != nil:
		h.log.ErrorContext(r.Context(), "saml: home realm discovery", "error", err)
		h.errorPage(w, r, http.StatusServiceUnavailable)
		return
	}
	r.SetPathValue("tenant", t.ID)
	h.route(w, r, t, email)
}

// route starts the login at the tenant's connection for email: the one
// whose Domains cover it among the tenant's verified domains; with
// several, the chooser of those; with none, the tenant's only SAML
// connection, else the chooser of all of them.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, t provision.Tenant, email string) {
	all := h.choices(t, t.Connections)
	var for_ []choice
	if email != "" {
		for_ = h.choices(t, t.ConnectionsFor(email, provision.KindSAML))
	}
	cs := for_
	if len(cs) == 0 {
		cs = all
	}
	switch len(cs) {
	case 0:
		h.errorPage(w, r, http.StatusNotFound)
	case 1:
		if cs[0].legacy {
			h.serveLogin(w, r)
			return
		}
		r.SetPathValue("connection", cs[0].ID)
		h.resolved(h.serveLogin)(w, r)
	default:
		d := pageData{Title: "Choose how to sign in"}
		if len(for_) > 1 {
			d.Email = email
		}
		returnTo := localPath(r.URL.Query().Get("return_to"))
		for _, c := range cs {
			u := h.connURL(t.ID, c.ID, "login")
			if c.legacy {
				u = h.url(t.ID, "login")
			}
			if returnTo != "" {
				u.RawQuery = url.Values{"return_to": {returnTo}}.Encode()
			}
			d.Choices = append(d.Choices, link{Name: c.Name, URL: u.String()})
		}
		h.page(w, http.StatusOK, d)
	}
}

// choices are the connections of cs the Handler can start a login at:
// enabled SAML connections with SAMLSettings, or the one set with
// SetConnection.
func (h *Handler) choices(t provision.Tenant, cs []provision.Connection) []choice {
	legacy, hasLegacy := h.conn(t.ID)
	var out []choice
	for _, c := range cs {
		if c.Kind != provision.KindSAML || c.Disabled {
			continue
		}
		name := c.Name
		if name == "" {
			name = c.ID
		}
		switch {
		case c.SAML != nil && pathSegment(c.ID):
			out = append(out, choice{ID: c.ID, Name: name})
		case hasLegacy && legacy.ConnectionID == c.ID:
			out = append(out, choice{ID: c.ID, Name: name, legacy: true})
		}
	}
	return out
}

type link struct{ Name, URL string }

type pageData struct {
	Title   string
	Email   string
	Message string
	Form    bool
	Choices []link
}

// page writes a small self-contained HTML page: no script, no external
// assets, a Content-Security-Policy that allows none.
func (h *Handler) page(w http.ResponseWriter, status int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, d)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:1rem/1.5 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}
ul{list-style:none;padding:0}
li{margin:.5rem 0}
a,button{display:block;width:100%;box-sizing:border-box;padding:.75rem 1rem;border:1px solid #444;border-radius:.375rem;color:#111;background:#f4f4f4;text-decoration:none;font:inherit;text-align:left}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
label{display:block;margin-bottom:.25rem}
input{display:block;width:100%;box-sizing:border-box;padding:.5rem;margin-bottom:.75rem;font:inherit}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{- if .Message}}
<p role="alert">{{.Message}}</p>
{{- end}}
{{- if .Choices}}
{{- if .Email}}
<p>More than one sign-in is set up for {{.Email}}. Choose yours.</p>
{{- end}}
<nav aria-label="Sign-in options">
<ul>
{{- range .Choices}}
<li><a href="{{.URL}}">Sign in with {{.Name}}</a></li>
{{- end}}
</ul>
</nav>
{{- end}}
{{- if .Form}}
<form method="get">
<label for="email">Work e-mail address</label>
<input id="email" name="email" type="email" autocomplete="email" required value="{{.Email}}">
<button type="submit">Continue</button>
</form>
{{- end}}
</main>
</body>
</html>
`))
