package scim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"

	"github.com/idprov/idprov/provision"
)

// userHandler is elimity's ResourceHandler for /Users: it converts
// between elimity's attribute maps and provision.User and calls the engine.
type userHandler struct{ h *Handler }

// Create handles POST /Users.
func (uh userHandler) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	doc := map[string]any(attrs)
	if st.extras != nil {
		for k, v := range st.extras.attrs {
			doc[k] = v
		}
	}
	if _, ok := doc["active"]; !ok {
		doc["active"] = true // RFC 7643 leaves it to the server; a provisioned user is active
	}
	u, serr := h.userFromDoc(doc, provision.User{})
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	created, err := h.engine.CreateUser(r.Context(), st.origin, u)
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	if err := h.passwordHook(r.Context(), st, created.ID); err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	return h.userResource(st, created), nil
}

// Get handles GET /Users/{id}.
func (uh userHandler) Get(r *http.Request, id string) (elimity.Resource, error) {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	u, err := h.engine.GetUser(r.Context(), st.origin, id)
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	if st.notModified(u.Version) {
		return resource(u.ID, u.Version), nil
	}
	return h.userResource(st, u), nil
}

// GetAll handles GET /Users, with the filter the front parsed.
func (uh userHandler) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return elimity.Page{}, st.err.elimity()
	}
	users, total, err := h.engine.ListUsers(r.Context(), st.origin, provision.Query{
		Filter:     st.filter,
		SortBy:     st.sortBy,
		Descending: st.descending,
		Page:       provision.Page{Offset: params.StartIndex - 1, Limit: params.Count},
	})
	if err != nil {
		return elimity.Page{}, h.fail(st, err)
	}
	out := make([]any, len(users))
	for i := range users {
		out[i] = h.userJSON(&users[i], st.proj)
	}
	st.setList(out, params.StartIndex, total)
	return elimity.Page{TotalResults: total, Resources: []elimity.Resource{}}, nil
}

// Replace handles PUT /Users/{id}: a full replace of what the body's
// schemas cover. Extension blocks the body does not carry are kept, and
// so are active and externalId when absent (Okta's PUT always sends them;
// dropping them by omission would deactivate or unlink the user).
func (uh userHandler) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	pre, serr := h.precondition(r, st, userKind, id)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	ex := st.extras
	if ex == nil {
		ex = &extras{}
	}
	out, err := h.engine.UpdateUser(r.Context(), st.origin, id, pre, func(cur *provision.User) error {
		doc := deepCopy(map[string]any(attrs)).(map[string]any)
		for k, v := range ex.attrs {
			doc[k] = v
		}
		old := userDoc(*cur)
		if _, ok := doc["active"]; !ok {
			doc["active"] = cur.Active
		}
		if _, ok := doc["externalId"]; !ok && cur.ExternalID != "" {
			doc["externalId"] = cur.ExternalID
		}
		if !ex.blocks[strings.ToLower(enterpriseURN)] {
			if ent, ok := old[enterpriseURN]; ok {
				doc[enterpriseURN] = ent
			}
		}
		for k, v := range cur.Attributes {
			if !isURN(k) {
				continue
			}
			block := strings.ToLower(k[:strings.LastIndexByte(k, ':')])
			if _, sent := doc[k]; !sent && !ex.blocks[block] {
				doc[k] = v
			}
		}
		u, serr := h.userFromDoc(doc, *cur)
		if serr != nil {
			return serr
		}
		*cur = u
		return nil
	})
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	if err := h.passwordHook(r.Context(), st, out.ID); err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	return h.userResource(st, out), nil
}

// Delete handles DELETE /Users/{id}: the engine's tombstone.
func (uh userHandler) Delete(r *http.Request, id string) error {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return st.err.elimity()
	}
	pre, serr := h.precondition(r, st, userKind, id)
	if serr != nil {
		return h.fail(st, serr)
	}
	if err := h.engine.DeleteUser(r.Context(), st.origin, id, pre); err != nil {
		return h.fail(st, err)
	}
	return nil
}

// Patch handles PATCH /Users/{id}: the operations elimity validated and
// the front's custom ones are applied to the user as a document, which
// then becomes the user again; the engine stores it only if something
// changed.
func (uh userHandler) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	h, st := uh.h, stateOf(r)
	if st.err != nil {
		return elimity.Resource{}, st.err.elimity()
	}
	pre, serr := h.precondition(r, st, userKind, id)
	if serr != nil {
		return elimity.Resource{}, h.fail(st, serr)
	}
	out, err := h.engine.UpdateUser(r.Context(), st.origin, id, pre, func(cur *provision.User) error {
		doc := userDoc(*cur)
		if serr := h.applyOps(userKind, doc, ops, st.customOps, ""); serr != nil {
			return serr
		}
		u, serr := h.userFromDoc(doc, *cur)
		if serr != nil {
			return serr
		}
		*cur = u
		return nil
	})
	if err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	if err := h.passwordHook(r.Context(), st, out.ID); err != nil {
		return elimity.Resource{}, h.fail(st, err)
	}
	return h.userResource(st, out), nil
}

func (h *Handler) passwordHook(ctx context.Context, st *request, userID string) error {
	if st.password == nil {
		return nil
	}
	pw := *st.password
	st.password = nil
	if h.setPassword == nil {
		return nil
	}
	if err := h.setPassword(ctx, st.origin, userID, pw); err != nil {
		h.log.ErrorContext(ctx, "scim: SetPassword failed", "tenant", st.origin.TenantID, "connection", st.origin.ConnectionID, "user", userID, "request_id", st.origin.RequestID)
		return errPasswordHook
	}
	return nil
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

func meta(created, modified time.Time, version int64) elimity.Meta {
	return elimity.Meta{Created: &created, LastModified: &modified, Version: etag(version)}
}

// userDoc renders u as the document PATCH applies to: SCIM attribute
// names, the enterprise extension under its URN, Attributes as top-level
// keys holding their raw JSON.
func userDoc(u provision.User) map[string]any {
	d := make(map[string]any, 16+len(u.Attributes))
	str := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	str("userName", u.UserName)
	str("externalId", u.ExternalID)
	str("displayName", u.DisplayName)
	str("nickName", u.NickName)
	str("profileUrl", u.ProfileURL)
	str("title", u.Title)
	str("userType", u.UserType)
	str("preferredLanguage", u.PreferredLanguage)
	str("locale", u.Locale)
	str("timezone", u.Timezone)
	d["active"] = u.Active
	if n := nameDoc(u.Name); len(n) > 0 {
		d["name"] = n
	}
	if len(u.Emails) > 0 {
		l := make([]any, len(u.Emails))
		for i, e := range u.Emails {
			l[i] = multiDoc(e.Value, e.Type, e.Display, e.Primary)
		}
		d["emails"] = l
	}
	if len(u.PhoneNumbers) > 0 {
		l := make([]any, len(u.PhoneNumbers))
		for i, e := range u.PhoneNumbers {
			l[i] = multiDoc(e.Value, e.Type, e.Display, e.Primary)
		}
		d["phoneNumbers"] = l
	}
	if len(u.Addresses) > 0 {
		l := make([]any, len(u.Addresses))
		for i, a := range u.Addresses {
			m := map[string]any{}
			for k, v := range map[string]string{"formatted": a.Formatted, "streetAddress": a.StreetAddress, "locality": a.Locality, "region": a.Region, "postalCode": a.PostalCode, "country": a.Country, "type": a.Type} {
				if v != "" {
					m[k] = v
				}
			}
			if a.Primary {
				m["primary"] = true
			}
			l[i] = m
		}
		d["addresses"] = l
	}
	var roles []any
	for _, r := range u.Roles {
		roles = append(roles, multiDoc(r.Value, roleType(r), r.Display, r.Primary))
	}
	if len(roles) > 0 {
		d["roles"] = roles
	}
	ent := map[string]any{}
	for k, v := range map[string]string{"employeeNumber": u.EmployeeNumber, "costCenter": u.CostCenter, "organization": u.Organization, "division": u.Division, "department": u.Department} {
		if v != "" {
			ent[k] = v
		}
	}
	if u.Manager != "" {
		ent["manager"] = map[string]any{"value": u.Manager}
	}
	if len(ent) > 0 {
		d[enterpriseURN] = ent
	}
	for k, v := range u.Attributes {
		d[k] = v
	}
	return d
}

func nameDoc(n provision.Name) map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{"formatted": n.Formatted, "familyName": n.FamilyName, "givenName": n.GivenName, "middleName": n.MiddleName, "honorificPrefix": n.HonorificPrefix, "honorificSuffix": n.HonorificSuffix} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

func multiDoc(value, typ, display string, primary bool) map[string]any {
	m := map[string]any{"value": value}
	if typ != "" {
		m["type"] = typ
	}
	if display != "" {
		m["display"] = display
	}
	if primary {
		m["primary"] = true
	}
	return m
}

// docReader reads typed values out of a document, remembering the first
// type error.
type docReader struct{ err *scimError }

func (r *docReader) str(m map[string]any, key, field string) string {
	v, _, ok := getFold(m, key)
	if !ok || v == nil {
		return ""
	}
	switch v := materialize(v).(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	if r.err == nil {
		r.err = badValue(fmt.Sprintf("%s must be a string.", field))
	}
	return ""
}

func (r *docReader) boolean(m map[string]any, key, field string, def bool) bool {
	v, _, ok := getFold(m, key)
	if !ok || v == nil {
		return def
	}
	if b, ok := v.(bool); ok {
		return b
	}
	if r.err == nil {
		r.err = badValue(fmt.Sprintf("%s must be a boolean.", field))
	}
	return def
}

func (r *docReader) obj(m map[string]any, key, field string) map[string]any {
	v, _, ok := getFold(m, key)
	if !ok || v == nil {
		return nil
	}
	if o, ok := materialize(v).(map[string]any); ok {
		return o
	}
	if r.err == nil {
		r.err = badValue(fmt.Sprintf("%s must be an object.", field))
	}
	return nil
}

func (r *docReader) list(m map[string]any, key, field string) []map[string]any {
	v, _, ok := getFold(m, key)
	if !ok || v == nil {
		return nil
	}
	var out []map[string]any
	for _, e := range asList(materialize(v)) {
		o, ok := e.(map[string]any)
		if !ok {
			if r.err == nil {
				r.err = badValue(fmt.Sprintf("%s must hold objects.", field))
			}
			return nil
		}
		out = append(out, o)
	}
	return out
}

// knownUserKeys are the document keys userFromDoc maps to typed fields;
// every other key is kept in Attributes.
var knownUserKeys = map[string]bool{
	"username": true, "externalid": true, "displayname": true, "nickname": true, "profileurl": true,
	"title": true, "usertype": true, "preferredlanguage": true, "locale": true, "timezone": true,
	"active": true, "name": true, "emails": true, "phonenumbers": true, "addresses": true, "roles": true,
	strings.ToLower(enterpriseURN): true,
	// Read-only or write-only: never stored.
	"id": true, "meta": true, "schemas": true, "groups": true, "password": true,
}

// entraAppRole unwraps the app roles Microsoft Entra ID sends as JSON
// inside the value string ({"value":"{\"id\":\"…\",\"value\":\"Admin\",
// \"displayName\":\"Admin\"}"}): the role is the inner value.
func entraAppRole(r *provision.Role) {
	v := strings.TrimSpace(r.Value)
	if !strings.HasPrefix(v, "{") {
		return
	}
	var app struct {
		Value       string `json:"value"`
		DisplayName string `json:"displayName"`
	}
	if json.Unmarshal([]byte(v), &app) != nil || app.Value == "" {
		return
	}
	r.Value = app.Value
	if r.Display == "" {
		r.Display = app.DisplayName
	}
}

// roleType is the type a role is rendered with: its own, else, for a
// role an access rule mapped, its provenance ("rule:<id>"). A User
// resource shows the effective roles, direct and mapped.
func roleType(r provision.Role) string {
	if r.Type == "" && r.Source != "" && r.Source != "direct" {
		return r.Source
	}
	return r.Type
}

// userFromDoc turns a document into a User. Roles that access rules gave
// (not "direct") are kept from base; the roles the document names carry no
// provenance, so that the engine tells a new direct role from an echo of
// a mapped one (a GET then PUT) and revoking the rule still revokes it.
func (h *Handler) userFromDoc(d map[string]any, base provision.User) (provision.User, *scimError) {
	var r docReader
	u := provision.User{
		UserName:          r.str(d, "userName", "userName"),
		ExternalID:        r.str(d, "externalId", "externalId"),
		DisplayName:       r.str(d, "displayName", "displayName"),
		NickName:          r.str(d, "nickName", "nickName"),
		ProfileURL:        r.str(d, "profileUrl", "profileUrl"),
		Title:             r.str(d, "title", "title"),
		UserType:          r.str(d, "userType", "userType"),
		PreferredLanguage: r.str(d, "preferredLanguage", "preferredLanguage"),
		Locale:            r.str(d, "locale", "locale"),
		Timezone:          r.str(d, "timezone", "timezone"),
		Active:            r.boolean(d, "active", "active", base.Active),
	}
	if n := r.obj(d, "name", "name"); n != nil {
		u.Name = provision.Name{
			Formatted:       r.str(n, "formatted", "name.formatted"),
			FamilyName:      r.str(n, "familyName", "name.familyName"),
			GivenName:       r.str(n, "givenName", "name.givenName"),
			MiddleName:      r.str(n, "middleName", "name.middleName"),
			HonorificPrefix: r.str(n, "honorificPrefix", "name.honorificPrefix"),
			HonorificSuffix: r.str(n, "honorificSuffix", "name.honorificSuffix"),
		}
	}
	for _, e := range r.list(d, "emails", "emails") {
		if v := r.str(e, "value", "emails.value"); v != "" {
			u.Emails = append(u.Emails, provision.Email{Value: v, Type: r.str(e, "type", "emails.type"), Display: r.str(e, "display", "emails.display"), Primary: r.boolean(e, "primary", "emails.primary", false)})
		}
	}
	for _, e := range r.list(d, "phoneNumbers", "phoneNumbers") {
		if v := r.str(e, "value", "phoneNumbers.value"); v != "" {
			u.PhoneNumbers = append(u.PhoneNumbers, provision.PhoneNumber{Value: v, Type: r.str(e, "type", "phoneNumbers.type"), Display: r.str(e, "display", "phoneNumbers.display"), Primary: r.boolean(e, "primary", "phoneNumbers.primary", false)})
		}
	}
	for _, a := range r.list(d, "addresses", "addresses") {
		ad := provision.Address{
			Formatted: r.str(a, "formatted", "addresses.formatted"), StreetAddress: r.str(a, "streetAddress", "addresses.streetAddress"),
			Locality: r.str(a, "locality", "addresses.locality"), Region: r.str(a, "region", "addresses.region"),
			PostalCode: r.str(a, "postalCode", "addresses.postalCode"), Country: r.str(a, "country", "addresses.country"),
			Type: r.str(a, "type", "addresses.type"), Primary: r.boolean(a, "primary", "addresses.primary", false),
		}
		if ad != (provision.Address{Type: ad.Type, Primary: ad.Primary}) {
			u.Addresses = append(u.Addresses, ad)
		}
	}
	for _, role := range base.Roles {
		if role.Source != "" && role.Source != "direct" {
			u.Roles = append(u.Roles, role)
		}
	}
	for _, e := range r.list(d, "roles", "roles") {
		if v := r.str(e, "value", "roles.value"); v != "" {
			role := provision.Role{Value: v, Type: r.str(e, "type", "roles.type"), Display: r.str(e, "display", "roles.display"), Primary: r.boolean(e, "primary", "roles.primary", false)}
			entraAppRole(&role)
			u.Roles = append(u.Roles, role)
		}
	}
	if ent := r.obj(d, enterpriseURN, "enterprise extension"); ent != nil {
		u.EmployeeNumber = r.str(ent, "employeeNumber", "employeeNumber")
		u.CostCenter = r.str(ent, "costCenter", "costCenter")
		u.Organization = r.str(ent, "organization", "organization")
		u.Division = r.str(ent, "division", "division")
		u.Department = r.str(ent, "department", "department")
		if m, _, ok := getFold(ent, "manager"); ok && m != nil {
			switch mv := m.(type) {
			case string: // a strict handler's elimity refuses this; a stored form
				u.Manager = mv
			default:
				if mo := r.obj(ent, "manager", "manager"); mo != nil {
					u.Manager = r.str(mo, "value", "manager.value")
				}
			}
		}
	}
	for k, v := range d {
		if knownUserKeys[strings.ToLower(k)] || v == nil {
			continue
		}
		if u.Attributes == nil {
			u.Attributes = map[string]json.RawMessage{}
		}
		if raw, ok := v.(json.RawMessage); ok {
			u.Attributes[k] = raw
		} else {
			u.Attributes[k] = canonJSON(v)
		}
	}
	if r.err != nil {
		return provision.User{}, r.err
	}
	return u, nil
}

// userResource renders u as the response body and returns what elimity
// needs of it.
func (h *Handler) userResource(st *request, u provision.User) elimity.Resource {
	st.setBody(h.userJSON(&u, st.proj))
	st.resID = u.ID
	return resource(u.ID, u.Version)
}

// groupExtensions moves fully qualified attribute keys
// ("urn:...:2.0:User:tag") into their extension block.
func groupExtensions(d map[string]any) {
	for _, k := range keysOf(d) {
		v := d[k]
		if !isURN(k) {
			continue
		}
		i := strings.LastIndexByte(k, ':')
		block, attr := k[:i], k[i+1:]
		if strings.EqualFold(k, enterpriseURN) || !strings.Contains(block, ":") {
			continue
		}
		delete(d, k)
		if strings.EqualFold(block, enterpriseURN) {
			block = enterpriseURN
		}
		b, _ := d[block].(map[string]any)
		if b == nil {
			b = map[string]any{}
			d[block] = b
		}
		b[attr] = v
	}
}
