package main

import (
	"html/template"
	"io"
	"net/http"
	"strings"

	"github.com/idprov/idprov/saml/samltest"
)

// demoIdP is the built-in SAML identity provider of -demo-idp: a newcomer
// signs in with SSO in a browser, as one of a few demo people, with no
// account anywhere. It is samltest.IdP (a fresh signing key each start)
// behind a page that asks who to sign in as. It signs in anyone who can
// reach it, as any of its people, and only for this app's own ACS URLs:
// a demo, never a production IdP.
//
//	GET /demo-idp/metadata   its SAML metadata
//	GET /demo-idp/sso        the HTTP-Redirect binding: ?SAMLRequest=...
//	                         shows the people; &user=ada answers the
//	                         signed response (a form posted to the ACS)
//
// A demo person's NameID is "demo-<key>": a SCIM directory that creates a
// user with that externalId is linked to it on the first sign-in.
type demoIdP struct {
	idp    *samltest.IdP
	people []demoPerson
}

type demoPerson struct {
	Key, GivenName, FamilyName, Email, Department, Title string
	Groups                                               []string
}

func (p demoPerson) NameID() string { return "demo-" + p.Key }

func (p demoPerson) samlUser() samltest.User {
	return samltest.User{NameID: p.NameID(), Attributes: []samltest.Attribute{
		{Name: "email", Values: []string{p.Email}},
		{Name: "firstName", Values: []string{p.GivenName}},
		{Name: "lastName", Values: []string{p.FamilyName}},
		{Name: "displayName", Values: []string{p.GivenName + " " + p.FamilyName}},
		{Name: "groups", Values: p.Groups},
	}}
}

// demoPeople are the demo IdP's people.
func demoPeople() []demoPerson {
	return []demoPerson{
		{Key: "ada", GivenName: "Ada", FamilyName: "Lovelace", Email: "ada@acme.example", Department: "Engineering", Title: "Engineer", Groups: []string{"engineering"}},
		{Key: "grace", GivenName: "Grace", FamilyName: "Hopper", Email: "grace@acme.example", Department: "Engineering", Title: "Rear Admiral", Groups: []string{"engineering", "admins"}},
		{Key: "katherine", GivenName: "Katherine", FamilyName: "Johnson", Email: "katherine@acme.example", Department: "Finance", Title: "Analyst", Groups: []string{"finance"}},
	}
}

func newDemoIdP(baseURL string) (*demoIdP, error) {
	idp, err := samltest.New(baseURL + "/demo-idp/metadata")
	if err != nil {
		return nil, err
	}
	idp.SSOURL = baseURL + "/demo-idp/sso"
	return &demoIdP{idp: idp, people: demoPeople()}, nil
}

func (d *demoIdP) userNames() string {
	keys := make([]string, len(d.people))
	for i, p := range d.people {
		keys[i] = p.Key
	}
	return strings.Join(keys, ", ")
}

func (d *demoIdP) handler(baseURL string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metadata", d.idp.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = demoIdPPage.Execute(w, demoIdPData{People: d.people})
	})
	mux.HandleFunc("GET /sso", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		req, err := samltest.DecodeRedirectRequest(q.Get("SAMLRequest"))
		if err != nil {
			http.Error(w, "demo IdP: no valid SAMLRequest: start at the app's sign-in link", http.StatusBadRequest)
			return
		}
		acs := req.AssertionConsumerServiceURL
		if !strings.HasPrefix(acs, baseURL+"/saml/") {
			http.Error(w, "demo IdP: it signs in to this app only", http.StatusForbidden)
			return
		}
		key := q.Get("user")
		if key == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = demoIdPPage.Execute(w, demoIdPData{People: d.people, SAMLRequest: q.Get("SAMLRequest"), RelayState: q.Get("RelayState"), ACS: acs})
			return
		}
		var person *demoPerson
		for i := range d.people {
			if d.people[i].Key == key {
				person = &d.people[i]
			}
		}
		if person == nil {
			http.Error(w, "demo IdP: no such person", http.StatusNotFound)
			return
		}
		audience := ""
		if req.Issuer != nil {
			audience = req.Issuer.Value
		}
		b, err := d.idp.Response(samltest.Response{User: person.samlUser(), ACSURL: acs, Audience: audience, InResponseTo: req.ID})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, samltest.FormHTML(acs, b, q.Get("RelayState")))
	})
	return mux
}

type demoIdPData struct {
	People                       []demoPerson
	SAMLRequest, RelayState, ACS string
}

var demoIdPPage = template.Must(template.New("idp").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Demo IdP</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}
button{padding:.4em 1em;border:1px solid #462;border-radius:4px;background:#f0f8ec;font:inherit;cursor:pointer}
li{margin:.5em 0}</style></head><body>
<h1>Demo identity provider</h1>
{{if .SAMLRequest}}<p>Sign in to <code>{{.ACS}}</code> as:</p>{{else}}<p>Start from the app's SSO sign-in link; these people can sign in:</p>{{end}}
<ul>{{range .People}}<li>
{{if $.SAMLRequest}}<form method="get" action="sso"><input type="hidden" name="SAMLRequest" value="{{$.SAMLRequest}}"><input type="hidden" name="RelayState" value="{{$.RelayState}}"><input type="hidden" name="user" value="{{.Key}}">
<button id="as-{{.Key}}">{{.GivenName}} {{.FamilyName}}</button> {{.Email}}, {{.Department}}, groups: {{range .Groups}}{{.}} {{end}}</form>
{{else}}<b>{{.GivenName}} {{.FamilyName}}</b> {{.Email}} (NameID <code>{{.NameID}}</code>), {{.Department}}{{end}}
</li>{{end}}</ul>
<p><small>A demo: it signs in anyone who can reach it, as any of these people. Never use it in production.</small></p>
</body></html>`))
