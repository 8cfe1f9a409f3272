package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/idprov/idprov/provision"
)

// The admin page's user page: an account that explains itself. It shows
// where the account comes from (its link to each connection, and which
// one owns it), its groups, its roles with the rule that gave each, its
// attributes, and its events with the values before and after each
// change. Deactivate and reactivate go through a confirmation page.

type userLink struct {
	provision.Link
	Kind   provision.ConnectionKind
	Name   string
	Owner  bool
	Exists bool
}

type userRole struct {
	provision.Role
	From string // in words: "the identity provider", "access rule finance"
}

type userAttr struct{ Name, Value string }

type userChange struct{ Field, Before, After string }

type userEvent struct {
	provision.Event
	Changes []userChange
	Detail  string
}

type userPageData struct {
	User    provision.User
	Links   []userLink
	Groups  []provision.Group
	Roles   []userRole
	Attrs   []userAttr
	Events  []userEvent
	Scanned int
}

func (s *adminServer) userRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/t/{tenant}/users/{id}", s.userPage)
	mux.HandleFunc("GET /admin/t/{tenant}/users/{id}/{action}", s.userConfirm)
}

// userOr404 returns the path's tenant and user.
func (s *adminServer) userOr404(w http.ResponseWriter, r *http.Request) (provision.Tenant, provision.User, bool) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return t, provision.User{}, false
	}
	u, err := s.a.Engine.GetUser(r.Context(), admin(t.ID), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("user: %w", err))
		return t, u, false
	}
	return t, u, true
}

func (s *adminServer) userPage(w http.ResponseWriter, r *http.Request) {
	t, u, ok := s.userOr404(w, r)
	if !ok {
		return
	}
	ctx, o := r.Context(), admin(t.ID)
	d := userPageData{User: u}
	links, err := provision.AdapterOf(s.a.Engine).Store().LinksOf(ctx, t.ID, provision.ResourceUser, u.ID)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	for _, l := range links {
		ul := userLink{Link: l, Owner: l.ConnectionID == u.Owner}
		for _, c := range t.Connections {
			if c.ID == l.ConnectionID {
				ul.Kind, ul.Name, ul.Exists = c.Kind, c.Name, true
			}
		}
		d.Links = append(d.Links, ul)
	}
	gids, err := s.a.Engine.GroupsOfUser(ctx, o, u.ID)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	for _, id := range gids {
		if g, err := s.a.Engine.GetGroup(ctx, o, id); err == nil {
			d.Groups = append(d.Groups, g)
		}
	}
	for _, ro := range u.Roles {
		from := "assigned by the identity provider"
		if rule, ok := strings.CutPrefix(ro.Source, "rule:"); ok {
			from = "access rule " + rule
			for _, ar := range t.AccessRules {
				if ar.ID == rule && ar.GroupID != "" {
					from += " (members of group " + ar.GroupID + ")"
				} else if ar.ID == rule && ar.Filter != "" {
					from += " (users where " + ar.Filter + ")"
				}
			}
		} else if ro.Source != "" && ro.Source != "direct" {
			from = ro.Source
		}
		d.Roles = append(d.Roles, userRole{Role: ro, From: from})
	}
	d.Attrs = userAttrs(u)
	rows, _, scanned := s.events(ctx, t.ID, s.lastSeq(ctx, t.ID), dashboardData{User: u.ID}, map[string]bool{u.ID: true})
	d.Scanned = scanned
	for _, row := range rows {
		ev := userEvent{Event: row.Event, Detail: row.Detail}
		if row.PreviousUser != nil && row.User != nil {
			before, after := flatUser(*row.PreviousUser), flatUser(*row.User)
			for _, f := range row.Fields {
				ev.Changes = append(ev.Changes, userChange{Field: f, Before: before[f], After: after[f]})
			}
		}
		d.Events = append(d.Events, ev)
	}
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "user", Title: u.UserName, Msg: r.URL.Query().Get("msg"), T: &tv, Data: d})
}

func (s *adminServer) lastSeq(ctx context.Context, tenantID string) int64 {
	if el, ok := provision.AdapterOf(s.a.Engine).Store().(provision.EventLog); ok {
		n, _ := el.LastSeq(ctx, tenantID)
		return n
	}
	return 0
}

// flatUser returns the user's attributes by their SCIM names as the
// events' Fields spell them ("name.givenName", "emails", an Attributes
// key), each as compact JSON (strings bare).
func flatUser(u provision.User) map[string]string {
	b, _ := json.Marshal(u)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	out := map[string]string{}
	show := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	for k, v := range m {
		switch k {
		case "name", "attributes":
			var sub map[string]json.RawMessage
			_ = json.Unmarshal(v, &sub)
			for sk, sv := range sub {
				if k == "name" {
					out["name."+sk] = show(sv)
				} else {
					out[sk] = show(sv)
				}
			}
		default:
			out[k] = show(v)
		}
	}
	return out
}

// userAttrs lists the user's attributes that have a value, by name.
func userAttrs(u provision.User) []userAttr {
	var out []userAttr
	for k, v := range flatUser(u) {
		switch k {
		case "id", "tenantId", "owner", "version", "created", "modified", "roles":
			continue
		}
		if v == "" || v == "null" || v == "[]" || v == "{}" {
			continue
		}
		out = append(out, userAttr{Name: k, Value: v})
	}
	slices.SortFunc(out, func(a, b userAttr) int { return strings.Compare(a.Name, b.Name) })
	return out
}

type userConfirmData struct {
	User   provision.User
	Action string
	Owner  string
	Groups int
}

// userConfirm asks before a deactivation or reactivation, saying what it
// does; the form it shows posts to the action.
func (s *adminServer) userConfirm(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "deactivate" && action != "reactivate" {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no such action %q", action))
		return
	}
	t, u, ok := s.userOr404(w, r)
	if !ok {
		return
	}
	gids, _ := s.a.Engine.GroupsOfUser(r.Context(), admin(t.ID), u.ID)
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "userconfirm", Title: action + " " + u.UserName, T: &tv,
		Data: userConfirmData{User: u, Action: action, Owner: u.Owner, Groups: len(gids)}})
}
