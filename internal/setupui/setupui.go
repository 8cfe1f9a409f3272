// Package setupui is the page chrome the guided setup handlers of
// packages saml, scim and ldap share: one layout, a strict Content
// Security Policy (no script at all; the one style element is allowed by
// a per-response nonce), no external assets, no caching and no referrer
// (the setup link's secret is in the URL), and cross-origin form posts
// refused (http.CrossOriginProtection).
package setupui

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/idprov/idprov/provision"
)

// Data is what a page template is executed with: D is the page's own data.
type Data struct {
	Title string
	Nonce string
	// Refresh, when not zero, reloads the page every Refresh seconds (a
	// live view with no script).
	Refresh int
	D       any
}

type refreshed struct {
	d       any
	seconds int
}

// Refresh makes Render reload the page of d every seconds.
func Refresh(d any, seconds int) any { return refreshed{d, seconds} }

const layout = `{{define "layout"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:1.5em auto;padding:0 1em;color:#1d1d1f}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}
label{display:block;margin:.8em 0 .2em;font-weight:600}
input[type=text],input[type=url],input[type=password],select{width:100%;box-sizing:border-box;padding:.45em;font:inherit;border:1px solid #888;border-radius:4px}
input[readonly]{background:#f4f4f6;font-family:ui-monospace,monospace;font-size:.9em}
button,.button{display:inline-block;padding:.5em 1.1em;margin:.8em .4em 0 0;border:1px solid #245;border-radius:4px;background:#e8f0fa;color:#123;font:inherit;text-decoration:none;cursor:pointer}
:focus-visible{outline:3px solid #36c;outline-offset:2px}
.error{border-left:4px solid #b00;background:#fdf0f0;padding:.6em 1em}
.ok{border-left:4px solid #282;background:#eff8ef;padding:.6em 1em}
.note{color:#555;font-size:.92em}
ol li,ul li{margin:.35em 0}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}th[scope=row]{width:10em}
nav a{margin-right:1em}
</style></head><body>
<main>{{template "content" .}}</main>
</body></html>{{end}}`

// Parse returns the template of a page whose body is content (which
// defines nothing: it is the "content" template; it reads its data as
// .D), inside the shared layout.
func Parse(name, content string, funcs template.FuncMap) *template.Template {
	t := template.New(name).Funcs(funcs)
	template.Must(t.Parse(layout))
	template.Must(t.New("content").Parse(content))
	return t
}

// Render writes the page with status and the security headers.
func Render(w http.ResponseWriter, status int, t *template.Template, title string, d any) {
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	nonce := base64.StdEncoding.EncodeToString(nb[:])
	data := Data{Title: title, Nonce: nonce, D: d}
	if r, ok := d.(refreshed); ok {
		data.D, data.Refresh = r.d, r.seconds
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "the setup page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", CSP(nonce))
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// CSP is the Content-Security-Policy of a page whose style element has
// nonce: nothing may load or run but that style; forms post to this
// origin only; no framing.
func CSP(nonce string) string {
	return "default-src 'none'; style-src 'nonce-" + nonce + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

// Protect refuses cross-origin unsafe requests (a CSRF defence that
// needs no token: browsers send Sec-Fetch-Site and Origin) with 403.
func Protect(h http.Handler) http.Handler {
	return http.NewCrossOriginProtection().Handler(h)
}

// SeeOther redirects to a URL relative to the current page (so that it
// keeps the prefix a host mounted the handler under, which http.Redirect
// would resolve against the stripped path).
func SeeOther(w http.ResponseWriter, rel string) {
	if strings.HasPrefix(rel, "/") || strings.Contains(rel, "//") {
		rel = "./"
	}
	w.Header().Set("Location", rel)
	w.WriteHeader(http.StatusSeeOther)
}

var denied = Parse("denied", `<h1>Not allowed</h1><p class="error" role="alert">{{.D}}</p>`, nil)

// Guard serves h, with Protect, to the requests whose context holds a
// setup link (provision.WithSetupLink) that allows kind; it answers the
// others 403 with a page that says the link does not allow what (such
// as "setting up SAML single sign-on").
func Guard(kind provision.ConnectionKind, what string, h http.Handler) http.Handler {
	p := Protect(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l, ok := provision.SetupLinkFrom(r.Context()); !ok || !l.Allows(kind) {
			Render(w, http.StatusForbidden, denied, "Not allowed", "This setup link does not allow "+what+". Ask the person who sent it for a new link.")
			return
		}
		p.ServeHTTP(w, r)
	})
}
