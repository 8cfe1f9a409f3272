package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/idprov/idprov/provision"
)

// The admin page's held plans: every change that crossed a safety
// threshold and waits for an administrator, of any kind (a SCIM replace of
// a group's members, an LDAP sync's deactivations, an access-rule
// change), in one list with its full size, paged, with a page per plan
// that lists everything it would do, and confirm and discard buttons.
//
// The engine lists every kind (Engine.Plans), pages through a plan's
// changes (Engine.Plan), and confirms or discards it (ConfirmPlan,
// DiscardPlan); this file only puts them in an IT admin's words.

// adminPlan is one held plan in an IT admin's words.
type adminPlan struct {
	Kind, ID     string
	TenantID     string
	ConnectionID string
	Created      time.Time
	// Title says what the plan would do; Why why it waits.
	Title, Why string
	// Size is how many changes it makes, in full.
	Size int
	// Confirm and Discard label the buttons.
	Confirm, Discard string

	plan provision.Plan
}

// planItem is one thing a plan would do, on its page.
type planItem struct {
	Who, What string
	UserID    string
}

type plansData struct {
	Plans      []adminPlan
	Total      int
	Offset     int
	Next, Prev int
}

type planPageData struct {
	Plan       adminPlan
	Items      []planItem
	Offset     int
	Next, Prev int
}

func (s *adminServer) planRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/t/{tenant}/plans", s.plansPage)
	mux.HandleFunc("GET /admin/t/{tenant}/plans/{kind}/{id}", s.planPage)
	mux.HandleFunc("POST /admin/t/{tenant}/plans/{kind}/{id}/{action}", s.planAction)
}

// count writes n with thousands separators: 1,100.
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func people(n int) string {
	if n == 1 {
		return "1 person"
	}
	return count(n) + " people"
}

// adminKind is the kind of a plan in the admin page's URLs.
func adminKind(k provision.PlanKind) string {
	if k == provision.PlanDeactivations {
		return "ldap"
	}
	return string(k)
}

// heldPlans returns every held plan of the tenant, oldest first.
func (s *adminServer) heldPlans(ctx context.Context, t provision.Tenant) ([]adminPlan, error) {
	e := s.a.Engine
	_, total, err := e.Plans(ctx, t.ID, provision.Page{})
	if err != nil {
		return nil, err
	}
	plans, _, err := e.Plans(ctx, t.ID, provision.Page{Limit: total})
	if err != nil {
		return nil, err
	}
	var out []adminPlan
	for _, p := range plans {
		ap := adminPlan{Kind: adminKind(p.Kind), ID: p.ID, TenantID: t.ID, ConnectionID: p.ConnectionID, Created: p.Created, Size: p.Size, plan: p}
		switch p.Kind {
		case provision.PlanMembers:
			// The plan's changes say which group and how many leave.
			full, err := e.Plan(ctx, t.ID, p.ID, provision.Page{Limit: p.Size})
			if err != nil {
				continue // confirmed or discarded meanwhile
			}
			removing, group := 0, ""
			for _, c := range full.Changes {
				group = c.GroupID
				if c.Op == "remove-member" {
					removing++
				}
			}
			name := group
			if g, err := e.GetGroup(ctx, admin(t.ID), group); err == nil {
				name = g.DisplayName
			}
			ap.Title = fmt.Sprintf("Remove %s of the %s in group %q", count(removing), people(p.Of), name)
			kept := "a list of " + people(p.Of-removing+p.Size-removing)
			if p.Of-removing+p.Size-removing == 0 {
				kept = "an empty list"
			}
			ap.Why = fmt.Sprintf("The identity provider of directory %s asked to replace the group's members with %s. Removing this many people at once is held until you confirm it; it was told so (HTTP 409) and its retry succeeds once you confirm. Nothing has changed yet.",
				p.ConnectionID, kept)
			ap.Confirm, ap.Discard = "Remove them from the group", "Keep the members"
		case provision.PlanAccess:
			ap.Title = fmt.Sprintf("Change the access rules: %s role changes for the %s evaluated", count(p.Size), people(p.Of))
			ap.Why = "A preview of new access rules. Nothing has changed yet: the rules and roles change when you apply it."
			ap.Confirm, ap.Discard = "Apply these rules", "Discard the preview"
		case provision.PlanDeactivations:
			ap.Title = fmt.Sprintf("Deactivate %s of the %s the LDAP directory %s manages", count(p.Size), people(p.Of), p.ConnectionID)
			ap.Why = "The directory's last sync found these people gone or disabled. Deactivating this many at once is held until you confirm it; the sync's other changes were made. Nothing has changed for these people yet."
			ap.Confirm, ap.Discard = "Deactivate them", "Keep them active"
		}
		out = append(out, ap)
	}
	slices.SortStableFunc(out, func(a, b adminPlan) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// findPlan returns the tenant's held plan of kind and id.
func (s *adminServer) findPlan(ctx context.Context, t provision.Tenant, kind, id string) (adminPlan, error) {
	plans, err := s.heldPlans(ctx, t)
	if err != nil {
		return adminPlan{}, err
	}
	for _, p := range plans {
		if p.Kind == kind && p.ID == id {
			return p, nil
		}
	}
	return adminPlan{}, fmt.Errorf("no held plan %s %s: it was confirmed, discarded or replaced", kind, id)
}

// heldBySCIM marks the SCIM directories with held plans as warnings: the
// identity provider was answered 409, which is not healthy.
func (s *adminServer) heldBySCIM(ctx context.Context, t provision.Tenant, v *tenantView) {
	plans, err := s.heldPlans(ctx, t)
	if err != nil {
		return
	}
	v.Plans = len(plans)
	for i := range v.Conns {
		cv := &v.Conns[i]
		n := 0
		for _, p := range plans {
			if p.Kind == string(provision.PlanMembers) && p.ConnectionID == cv.ID {
				n++
			}
		}
		if cv.Kind == provision.KindSCIM && n > 0 {
			cv.Status = "warn"
			cv.Health = fmt.Sprintf("%d change(s) held for your confirmation (answered 409 until then); %s", n, cv.Health)
		}
	}
}

func (s *adminServer) plansPage(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	plans, err := s.heldPlans(r.Context(), t)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d := plansData{Total: len(plans)}
	var lo, hi int
	lo, hi, d.Offset, d.Next, d.Prev = pageOf(r, len(plans))
	d.Plans = plans[lo:hi]
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "plans", Title: "Changes waiting for you", Msg: r.URL.Query().Get("msg"), Err: r.URL.Query().Get("err"), T: &tv, Data: d})
}

func (s *adminServer) planPage(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	p, err := s.findPlan(ctx, t, r.PathValue("kind"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, http.StatusNotFound, err)
		return
	}
	d := planPageData{Plan: p}
	var lo, hi int
	lo, hi, d.Offset, d.Next, d.Prev = pageOf(r, p.Size)
	full, err := s.a.Engine.Plan(ctx, t.ID, p.ID, provision.Page{Offset: lo, Limit: hi - lo})
	if err != nil {
		s.fail(w, r, http.StatusNotFound, err)
		return
	}
	why := map[string]string{"gone": "no longer in the directory", "deleted": "deleted in the directory", "disabled": "disabled in the directory"}
	o := admin(t.ID)
	for _, c := range full.Changes {
		it := planItem{UserID: c.UserID, Who: c.UserName}
		switch c.Op {
		case "remove-member":
			it.What = "removed from the group"
		case "add-member":
			it.What = "added to the group"
		case "grant-role":
			it.What = "gets role " + c.Role
		case "revoke-role":
			it.What = "loses role " + c.Role
		case "deactivate":
			w := why[c.Reason]
			if w == "" {
				w = c.Reason
			}
			it.What = "deactivated: " + w
		}
		if it.Who == "" { // names for the page shown only
			it.Who = it.UserID
			if u, err := s.a.Engine.GetUser(ctx, o, it.UserID); err == nil {
				it.Who = u.UserName
			}
		}
		d.Items = append(d.Items, it)
	}
	tv := tenantView{ID: t.ID, Name: t.Name}
	s.render(w, http.StatusOK, page{View: "heldplan", Title: p.Title, T: &tv, Data: d})
}

func (s *adminServer) planAction(w http.ResponseWriter, r *http.Request) {
	t, ok := s.tenantOr404(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	p, err := s.findPlan(ctx, t, r.PathValue("kind"), r.PathValue("id"))
	if err != nil {
		s.backToPlans(w, r, t.ID, "", err)
		return
	}
	o := admin(t.ID)
	var msg string
	switch r.PathValue("action") {
	case "confirm":
		_, err = s.a.Engine.ConfirmPlan(ctx, o, p.ID)
		switch p.plan.Kind {
		case provision.PlanMembers:
			msg = "Done: the group's members are replaced (" + count(p.Size) + " changes)."
		case provision.PlanAccess:
			msg = fmt.Sprintf("Done: the access rules are applied (%s role changes).", count(p.Size))
		case provision.PlanDeactivations:
			msg = fmt.Sprintf("Done: %s deactivated.", people(p.Size))
		}
	case "discard":
		err = s.a.Engine.DiscardPlan(ctx, o, p.ID)
		msg = "Discarded: nothing was changed."
		switch p.plan.Kind {
		case provision.PlanMembers:
			msg += " If the identity provider sends the same replace again, it is held again."
		case provision.PlanDeactivations:
			msg = "Discarded: these people stay active. A later full sync may hold them again while the directory still lacks them."
		}
	default:
		s.fail(w, r, http.StatusNotFound, errors.New("no such action"))
		return
	}
	if err != nil {
		msg = ""
	}
	s.backToPlans(w, r, t.ID, msg, err)
}

func (s *adminServer) backToPlans(w http.ResponseWriter, r *http.Request, tenantID, msg string, err error) {
	redirectWith(w, r, "/admin/t/"+url.PathEscape(tenantID)+"/plans", msg, err)
}

// redirectWith sends the browser to path, with msg and err to show.
func redirectWith(w http.ResponseWriter, r *http.Request, path, msg string, err error) {
	v := url.Values{}
	if msg != "" {
		v.Set("msg", msg)
	}
	if err != nil {
		v.Set("err", err.Error())
	}
	http.Redirect(w, r, path+"?"+v.Encode(), http.StatusSeeOther)
}

// pageOf returns the window [lo, hi) of n rows that r's ?offset= asks
// for, adminPage long, with the offsets of the next page (0: none) and
// the previous one.
func pageOf(r *http.Request, n int) (lo, hi, offset, next, prev int) {
	offset, _ = strconv.Atoi(r.URL.Query().Get("offset"))
	offset = min(max(offset, 0), n)
	if offset+adminPage < n {
		next = offset + adminPage
	}
	return offset, min(offset+adminPage, n), offset, next, max(offset-adminPage, 0)
}
