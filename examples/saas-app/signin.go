package main

import (
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
)

// A refused sign-in tells the person what they can do, and no more: the
// saml package names the kind of refusal (saml.RefusalOf) only for a
// response it verified, so a forged or replayed one gets the plain
// failure. Each refusal is one log line, and the admin page's refusals
// show whom it refused.

// refusalRow is a refusal on the admin page, with the userName of the
// sign-in it refused when the sign-in was verified.
type refusalRow struct {
	provision.Refusal
	UserName string
}

var signinTmpl = template.Must(template.New("signin").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in refused</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;color:#1d2330}h1{font-size:1.4em}</style></head>
<body><h1 id="refused">{{.Title}}</h1><p id="what-to-do">{{.Do}}</p>
<p><a href="/">Back to the start page</a></p></body></html>
`))

type signinPage struct{ Title, Do string }

// refusalMessage says what a person refused with kind can do.
func refusalMessage(kind error) signinPage {
	switch {
	case errors.Is(kind, jit.ErrDeprovisioned):
		return signinPage{"Your account is deactivated", "You cannot sign in to this app with it any more. If you think this is a mistake, ask your administrator."}
	case errors.Is(kind, jit.ErrEmailDomain):
		return signinPage{"This account cannot sign in here", "The e-mail address you signed in with is not one this organization uses. Sign out of your identity provider and sign in with your work account."}
	case errors.Is(kind, jit.ErrNoAccount):
		return signinPage{"You have no account in this app yet", "Ask your administrator to give you access."}
	}
	return signinPage{"Single sign-on failed.", "Start again from the sign-in page. If it keeps failing, tell your administrator the time it happened."}
}

// errorPage is the saml.Config.ErrorPage of the app.
func (f *samlFeature) errorPage(a *app, w http.ResponseWriter, r *http.Request, status int) {
	p := signinPage{"Single sign-on failed.", "Start again from the sign-in page."}
	switch status {
	case http.StatusForbidden:
		rf, _ := saml.RefusalOf(r)
		p = refusalMessage(rf.Kind)
		kind := "other"
		if rf.Kind != nil {
			kind = rf.Kind.Error()
		}
		a.Log.Warn("saas-app: sign-in refused", "tenant", rf.TenantID, "connection", rf.ConnectionID, "user", rf.UserName, "kind", kind, "reason", rf.Reason)
		if a.admin.refused != nil && rf.UserName != "" {
			a.admin.refused(rf)
		}
	case http.StatusServiceUnavailable:
		p.Do = "The app is busy. Try again in a minute."
	case http.StatusNotFound:
		p.Do = "This sign-in link is not one this app knows. Use the link your organization gave you."
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = signinTmpl.Execute(w, p)
}

// nameRefusals names the refusals just recorded for rf's connection (the
// engine's and jit's of the same sign-in) with rf's userName.
func (f *adminFeature) nameRefusals(rf saml.Refused) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.refusals[rf.TenantID]
	for i := len(l) - 1; i >= 0 && time.Since(l[i].Time) < 5*time.Second; i-- {
		if l[i].Origin.ConnectionID == rf.ConnectionID && l[i].UserName == "" {
			l[i].UserName = rf.UserName
		}
	}
}
