package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/idprov/idprov/provision/filter"
)

// AccessRule maps the members of a group, or the users an attribute
// predicate selects, to host-defined roles. A tenant's rules are ordered;
// a user gets the roles of every rule it satisfies, each with the
// provenance "rule:<ID>" of the first rule granting it. A user no rule
// selects gets no mapped role (least privilege).
type AccessRule struct {
	// ID names the rule in provenance and plans. Required, unique in the
	// tenant.
	ID string `json:"id"`
	// GroupID selects the members of that group. It is an ID, never a
	// displayName, so renaming a group changes nobody's roles.
	GroupID string `json:"groupId,omitempty"`
	// Filter selects users by their attributes, in SCIM filter syntax:
	// `department eq "Finance" and title sw "Head"`. With GroupID too, a
	// user must satisfy both.
	Filter string `json:"filter,omitempty"`
	// Roles are granted to the selected users. Required.
	Roles []string `json:"roles"`
}

// accessSet is a tenant's compiled rules.
type accessSet struct {
	rules []compiledRule
	// groups holds the group IDs some rule names: a membership change of
	// any other group costs nothing here.
	groups map[string]bool
	// byAttribute is true when some rule has a Filter: every attribute
	// change then re-evaluates the user.
	byAttribute bool
}

type compiledRule struct {
	AccessRule
	expr filter.Expr
}

func compileRules(rules []AccessRule) (*accessSet, error) {
	set := &accessSet{groups: map[string]bool{}}
	seen := map[string]bool{}
	for i, r := range rules {
		field := fmt.Sprintf("accessRules[%d]", i)
		switch {
		case r.ID == "":
			return nil, &ValidationError{Field: field + ".id", Reason: "required"}
		case seen[r.ID]:
			return nil, &ValidationError{Field: field + ".id", Reason: fmt.Sprintf("%q is used twice", r.ID)}
		case r.GroupID == "" && r.Filter == "":
			return nil, &ValidationError{Field: field, Reason: "needs a groupId or a filter"}
		case len(r.Roles) == 0:
			return nil, &ValidationError{Field: field + ".roles", Reason: "required"}
		}
		seen[r.ID] = true
		for _, role := range r.Roles {
			if err := validText(field+".roles", role, maxValueLen, true); err != nil {
				return nil, err
			}
		}
		c := compiledRule{AccessRule: r}
		c.Roles = slices.Clone(r.Roles)
		if r.Filter != "" {
			expr, err := filter.ParseFor(filter.Users, r.Filter)
			if err != nil {
				return nil, &ValidationError{Field: field + ".filter", Reason: err.Error()}
			}
			c.expr = expr
			set.byAttribute = true
		}
		if r.GroupID != "" {
			set.groups[r.GroupID] = true
		}
		set.rules = append(set.rules, c)
	}
	return set, nil
}

func (a *accessSet) empty() bool { return a == nil || len(a.rules) == 0 }

// mapped returns the roles a's rules grant u, a member of groups.
func (a *accessSet) mapped(u *User, groups map[string]bool) ([]Role, error) {
	if a.empty() {
		return nil, nil
	}
	var out []Role
	have := map[string]bool{}
	var m UserMatcher // one evaluator's scratch space for every rule
	for _, r := range a.rules {
		if r.GroupID != "" && !groups[r.GroupID] {
			continue
		}
		if r.expr != nil {
			m.expr = r.expr
			ok, err := m.Match(u, "")
			if err != nil {
				return nil, fmt.Errorf("provision: access rule %q: %w", r.ID, err)
			}
			if !ok {
				continue
			}
		}
		for _, role := range r.Roles {
			if !have[role] {
				have[role] = true
				out = append(out, Role{Value: role, Source: "rule:" + r.ID})
			}
		}
	}
	return out, nil
}

// directRoles returns the roles of next that an identity provider gave
// directly. A role without a Source that cur holds only as a mapped role
// is an echo of what a read returned (an Okta GET then PUT), not a new
// direct grant, and is dropped, so that revoking the rule revokes it.
func directRoles(cur, next []Role) []Role {
	mappedOnly := map[string]bool{}
	for _, r := range cur {
		if isMapped(r) {
			mappedOnly[r.Value] = true
		}
	}
	for _, r := range cur {
		if !isMapped(r) {
			delete(mappedOnly, r.Value)
		}
	}
	var out []Role
	for _, r := range next {
		if isMapped(r) {
			continue
		}
		if r.Source == "" {
			if mappedOnly[r.Value] {
				continue
			}
			r.Source = "direct"
		}
		out = append(out, r)
	}
	return out
}

func isMapped(r Role) bool { return len(r.Source) > 5 && r.Source[:5] == "rule:" }

// effectiveRoles is direct + mapped, in a canonical order.
func effectiveRoles(direct, mapped []Role) []Role {
	out := make([]Role, 0, len(direct)+len(mapped))
	out = append(out, direct...)
	out = append(out, mapped...)
	slices.SortStableFunc(out, func(a, b Role) int {
		if c := compareStrings(a.Value, b.Value); c != 0 {
			return c
		}
		return compareStrings(a.Source, b.Source)
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// HasRole reports whether u holds role, directly or through a rule.
func (u User) HasRole(role string) bool {
	for _, r := range u.Roles {
		if r.Value == role {
			return true
		}
	}
	return false
}

// groupSet returns the IDs of the groups user id is a member of, among
// those a's rules name.
func (a *accessSet) groupSet(ctx context.Context, st Store, tenantID, id string) (map[string]bool, error) {
	if a.empty() || len(a.groups) == 0 || id == "" {
		return nil, nil
	}
	gs, err := st.GroupsOfUser(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(gs))
	for _, g := range gs {
		if a.groups[g] {
			out[g] = true
		}
	}
	return out, nil
}

// withRoles sets next.Roles to its direct roles (as the change left them)
// plus the roles the tenant's rules map to next. groups are next's
// memberships of the groups the rules name; nil reads them from st.
func (e *Engine) withRoles(ctx context.Context, s scope, st Store, cur, next *User, groups map[string]bool) error {
	direct := directRoles(cur.Roles, next.Roles)
	a := s.tenant.access
	if groups == nil {
		var err error
		if groups, err = a.groupSet(ctx, st, s.tenant.ID, next.ID); err != nil {
			return err
		}
	}
	mapped, err := a.mapped(next, groups)
	if err != nil {
		return err
	}
	next.Roles = effectiveRoles(direct, mapped)
	return nil
}

// refreshRoles recomputes the roles of the users whose membership of group
// changed, when some rule names that group, and stores what changed
// (user.updated with field "roles").
func (e *Engine) refreshRoles(ctx context.Context, s scope, tx Store, rec *recorder, groupID string, userIDs []string) error {
	a := s.tenant.access
	if a.empty() || !a.groups[groupID] {
		return nil
	}
	for _, id := range userIDs {
		cur, err := tx.GetUser(ctx, s.tenant.ID, id)
		if err != nil {
			return err
		}
		if cur.IsDeleted() {
			continue
		}
		if err := e.storeRoles(ctx, s, tx, rec, cur, nil); err != nil {
			return err
		}
	}
	return nil
}

// storeRoles recomputes cur's roles and stores them if they changed.
func (e *Engine) storeRoles(ctx context.Context, s scope, tx Store, rec *recorder, cur User, groups map[string]bool) error {
	next := cloneUser(cur)
	if err := e.withRoles(ctx, s, tx, &cur, &next, groups); err != nil {
		return err
	}
	if slices.Equal(cur.Roles, next.Roles) {
		return nil
	}
	next.Modified = e.now().UTC()
	stored, err := tx.UpdateUser(ctx, next, cur.Version)
	if err != nil {
		return err
	}
	before, after := cloneUser(cur), cloneUser(stored)
	rec.add(Change{Kind: UserUpdated, Origin: s.origin, Fields: []string{"roles"}, UserBefore: &before, UserAfter: &after})
	return nil
}

// accessPlan is the preview of a change of a tenant's access rules, as
// stored: per role, who would gain it and who would lose it. Nothing
// changes until ConfirmPlan applies it.
type accessPlan struct {
	ID       string       `json:"id"`
	TenantID string       `json:"tenantId"`
	Rules    []AccessRule `json:"rules"`
	Created  time.Time    `json:"created"`
	// Roles lists, per role, the user IDs that gain and lose it, sorted
	// by role.
	Roles []roleChange `json:"roles"`
	// Users is how many users were evaluated.
	Users int `json:"users"`
}

// roleChange is one role's part of an accessPlan.
type roleChange struct {
	Role string   `json:"role"`
	Gain []string `json:"gain,omitempty"`
	Lose []string `json:"lose,omitempty"`
}

const planKeyPrefix = "access-plan/"

// planTTL is how long a plan waits for its confirmation.
const planTTL = 7 * 24 * time.Hour

// PlanAccessRules previews replacing the tenant's access rules with rules:
// it evaluates every live user under the current and the proposed rules
// and holds the difference as a plan of kind PlanAccess (Changes: a
// "grant-role" or "revoke-role" per user and role), which ConfirmPlan
// applies. Nothing else changes. Its cost is one pass over the tenant's
// users and one over the members of the groups the rules name. The plan
// returned carries its first 100 changes (Plan pages through the rest).
func (e *Engine) PlanAccessRules(ctx context.Context, tenantID string, rules []AccessRule) (Plan, error) {
	s, err := e.scope(ctx, Origin{TenantID: tenantID})
	if err != nil {
		return Plan{}, err
	}
	next, err := compileRules(rules)
	if err != nil {
		return Plan{}, err
	}
	plan := accessPlan{TenantID: tenantID, Rules: slices.Clone(rules), Created: e.now().UTC()}
	gain, lose := map[string][]string{}, map[string][]string{}
	err = e.eachUserWithGroups(ctx, e.store, s.tenant.ID, s.tenant.access, next, func(u User, groups map[string]bool) error {
		plan.Users++
		old := roleValues(u.Roles, true)
		mapped, err := next.mapped(&u, groups)
		if err != nil {
			return err
		}
		direct := roleValues(u.Roles, false)
		now := roleValues(mapped, true)
		for r := range now {
			if !old[r] && !direct[r] {
				gain[r] = append(gain[r], u.ID)
			}
		}
		for r := range old {
			if !now[r] && !direct[r] {
				lose[r] = append(lose[r], u.ID)
			}
		}
		return nil
	})
	if err != nil {
		return Plan{}, err
	}
	roles := map[string]bool{}
	for r := range gain {
		roles[r] = true
	}
	for r := range lose {
		roles[r] = true
	}
	for r := range roles {
		plan.Roles = append(plan.Roles, roleChange{Role: r, Gain: gain[r], Lose: lose[r]})
	}
	slices.SortFunc(plan.Roles, func(a, b roleChange) int { return compareStrings(a.Role, b.Role) })
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Plan{}, err
	}
	plan.ID = hex.EncodeToString(id[:])
	if err := e.putPlan(ctx, tenantID, planKeyPrefix+plan.ID, "access plan", plan); err != nil {
		return Plan{}, err
	}
	e.metrics.planHeld(ctx, "access")
	return plan.view(true).page(Page{Limit: 100}), nil
}

// view is the plan as Plans and Plan show it, with all its changes when
// changes is set (Plans lists it without them).
func (p *accessPlan) view(changes bool) Plan {
	v := Plan{Kind: PlanAccess, ID: p.ID, TenantID: p.TenantID, Created: p.Created, Of: p.Users}
	grants, revokes := 0, 0
	for _, rc := range p.Roles {
		grants, revokes = grants+len(rc.Gain), revokes+len(rc.Lose)
		if !changes {
			continue
		}
		for _, u := range rc.Gain {
			v.Changes = append(v.Changes, PlanChange{Op: "grant-role", UserID: u, Role: rc.Role})
		}
		for _, u := range rc.Lose {
			v.Changes = append(v.Changes, PlanChange{Op: "revoke-role", UserID: u, Role: rc.Role})
		}
	}
	v.Size = grants + revokes
	v.Summary = fmt.Sprintf("Replace the access rules with %d rules: grant %d roles and revoke %d, over %d users", len(p.Rules), grants, revokes, p.Users)
	return v
}

// roleValues returns the values of the mapped (or, with mapped false, the
// direct) roles.
func roleValues(rs []Role, mapped bool) map[string]bool {
	out := map[string]bool{}
	for _, r := range rs {
		if isMapped(r) == mapped {
			out[r.Value] = true
		}
	}
	return out
}

// eachUserWithGroups calls fn for every live user with its memberships of
// the groups named by either rule set, loading each named group's members
// once.
func (e *Engine) eachUserWithGroups(ctx context.Context, st Store, tenantID string, a, b *accessSet, fn func(User, map[string]bool) error) error {
	member := map[string]map[string]bool{} // user -> groups
	named := map[string]bool{}
	for _, set := range []*accessSet{a, b} {
		if set != nil {
			for g := range set.groups {
				named[g] = true
			}
		}
	}
	for g := range named {
		ids, err := allMembers(ctx, st, tenantID, g)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, id := range ids {
			if member[id] == nil {
				member[id] = map[string]bool{}
			}
			member[id][g] = true
		}
	}
	for off := 0; ; {
		users, total, err := st.ListUsers(ctx, tenantID, Page{Offset: off, Limit: 1000})
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := fn(u, member[u.ID]); err != nil {
				return err
			}
		}
		off += len(users)
		if len(users) == 0 || off >= total {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// applyAccess confirms an access plan: the tenant's rules become the
// plan's, and every user whose roles change is updated in one
// transaction, as one batch of user.updated events (field "roles"). Users
// that changed since the plan was made get the roles the new rules give
// them now.
func (e *Engine) applyAccess(ctx context.Context, o Origin, plan *accessPlan) error {
	next, err := compileRules(plan.Rules)
	if err != nil {
		return err
	}
	s, err := e.scope(ctx, o)
	if err != nil {
		return err
	}
	if !s.isAdmin() {
		return fmt.Errorf("%w: access rules change only through admin calls", ErrForbidden)
	}
	t := *s.tenant
	t.AccessRules = slices.Clone(plan.Rules)
	t.access = next
	s.tenant = &t
	var rev int64
	err = e.atomically(ctx, s, false, func(ctx context.Context, tx Store, rec *recorder) error {
		if t.Registered {
			// The rules are part of the registered tenant: they change in
			// the same transaction as the roles they give.
			var err error
			if rev, err = e.putRegisteredRules(ctx, tx, t.ID, plan.Rules); err != nil {
				return err
			}
		}
		return e.eachUserWithGroups(ctx, tx, t.ID, next, nil, func(u User, groups map[string]bool) error {
			if groups == nil {
				groups = map[string]bool{}
			}
			return e.storeRoles(ctx, s, tx, rec, u, groups)
		})
	})
	if err != nil {
		return err
	}
	if t.Registered {
		e.reg.forget(t.ID, rev)
	} else {
		e.mu.Lock()
		e.tenants[t.ID] = &t
		e.mu.Unlock()
	}
	return nil
}

// putPlan stores a held plan as JSON in the tenant's KV for planTTL; what
// names it in errors.
func (e *Engine) putPlan(ctx context.Context, tenantID, key, what string, plan any) error {
	raw, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("provision: encode %s: %w", what, err)
	}
	if err := e.kvSet(ctx, tenantID, key, raw, planTTL); err != nil {
		return fmt.Errorf("provision: store %s: %w", what, err)
	}
	return e.indexPlan(ctx, tenantID, key, e.now().UTC())
}

// getPlan reads a plan putPlan stored into plan.
func (e *Engine) getPlan(ctx context.Context, tenantID, key, what string, plan any) error {
	if err := checkKey(what, key); err != nil {
		return err
	}
	raw, err := e.kvGet(ctx, tenantID, key)
	if err != nil {
		return fmt.Errorf("provision: %s %q: %w", what, key, err)
	}
	if err := json.Unmarshal(raw, plan); err != nil {
		return fmt.Errorf("provision: %s %q: %w", what, key, err)
	}
	return nil
}

func sameRule(a, b AccessRule) bool {
	return a.ID == b.ID && a.GroupID == b.GroupID && a.Filter == b.Filter && slices.Equal(a.Roles, b.Roles)
}
