package provision

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

func cloneUser(u User) User {
	u.Emails = slices.Clone(u.Emails)
	u.PhoneNumbers = slices.Clone(u.PhoneNumbers)
	u.Addresses = slices.Clone(u.Addresses)
	u.Roles = slices.Clone(u.Roles)
	u.Attributes = cloneAttrs(u.Attributes)
	return u
}

func cloneGroup(g Group) Group {
	g.Attributes = cloneAttrs(g.Attributes)
	return g
}

func cloneAttrs(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// CloneUser returns a deep copy of u: its slices and Attributes are not
// shared with u. Stores use it to hand out values callers may modify.
func CloneUser(u User) User { return cloneUser(u) }

// CloneGroup returns a deep copy of g.
func CloneGroup(g Group) Group { return cloneGroup(g) }

// userChanges returns the SCIM names of the attributes that differ between
// a and b, sorted. Identity and bookkeeping fields (ID, TenantID,
// ExternalID, Owner, Version, timestamps) are not compared. Multi-valued
// attributes compare as a whole ("emails"); Attributes per key.
func userChanges(a, b User) []string {
	var f []string
	add := func(name string, changed bool) {
		if changed {
			f = append(f, name)
		}
	}
	add("userName", a.UserName != b.UserName)
	add("name.formatted", a.Name.Formatted != b.Name.Formatted)
	add("name.familyName", a.Name.FamilyName != b.Name.FamilyName)
	add("name.givenName", a.Name.GivenName != b.Name.GivenName)
	add("name.middleName", a.Name.MiddleName != b.Name.MiddleName)
	add("name.honorificPrefix", a.Name.HonorificPrefix != b.Name.HonorificPrefix)
	add("name.honorificSuffix", a.Name.HonorificSuffix != b.Name.HonorificSuffix)
	add("displayName", a.DisplayName != b.DisplayName)
	add("nickName", a.NickName != b.NickName)
	add("profileUrl", a.ProfileURL != b.ProfileURL)
	add("title", a.Title != b.Title)
	add("userType", a.UserType != b.UserType)
	add("preferredLanguage", a.PreferredLanguage != b.PreferredLanguage)
	add("locale", a.Locale != b.Locale)
	add("timezone", a.Timezone != b.Timezone)
	add("active", a.Active != b.Active)
	add("emails", !slices.Equal(a.Emails, b.Emails))
	add("phoneNumbers", !slices.Equal(a.PhoneNumbers, b.PhoneNumbers))
	add("addresses", !slices.Equal(a.Addresses, b.Addresses))
	add("roles", !slices.Equal(a.Roles, b.Roles))
	add("employeeNumber", a.EmployeeNumber != b.EmployeeNumber)
	add("costCenter", a.CostCenter != b.CostCenter)
	add("organization", a.Organization != b.Organization)
	add("division", a.Division != b.Division)
	add("department", a.Department != b.Department)
	add("manager", a.Manager != b.Manager)
	f = append(f, attrChanges(a.Attributes, b.Attributes)...)
	sort.Strings(f)
	return f
}

// groupChanges is userChanges for groups: "displayName" and Attributes
// keys.
func groupChanges(a, b Group) []string {
	var f []string
	if a.DisplayName != b.DisplayName {
		f = append(f, "displayName")
	}
	f = append(f, attrChanges(a.Attributes, b.Attributes)...)
	sort.Strings(f)
	return f
}

func attrChanges(a, b map[string]json.RawMessage) []string {
	var f []string
	keys := map[string]struct{}{}
	for k := range maps.Keys(a) {
		keys[k] = struct{}{}
	}
	for k := range maps.Keys(b) {
		keys[k] = struct{}{}
	}
	for k := range keys {
		va, oka := a[k]
		vb, okb := b[k]
		if oka != okb || !bytes.Equal(va, vb) {
			f = append(f, k)
		}
	}
	return f
}

const (
	maxNameLen  = 512
	maxValueLen = 4096
	maxMulti    = 100
	maxAttrSize = 64 << 10
)

func validText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return &ValidationError{Field: field, Reason: "required"}
	}
	if len(v) > max {
		return &ValidationError{Field: field, Reason: "too long"}
	}
	if !utf8.ValidString(v) {
		return &ValidationError{Field: field, Reason: "not valid UTF-8"}
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return &ValidationError{Field: field, Reason: "contains a control character"}
		}
	}
	return nil
}

func validateUser(u User) error {
	if err := validText("userName", u.UserName, maxNameLen, true); err != nil {
		return err
	}
	if u.UserName != strings.TrimSpace(u.UserName) {
		return &ValidationError{Field: "userName", Reason: "has leading or trailing white space"}
	}
	if err := validText("externalId", u.ExternalID, maxNameLen, false); err != nil {
		return err
	}
	texts := []struct{ f, v string }{
		{"name.formatted", u.Name.Formatted}, {"name.familyName", u.Name.FamilyName},
		{"name.givenName", u.Name.GivenName}, {"name.middleName", u.Name.MiddleName},
		{"name.honorificPrefix", u.Name.HonorificPrefix}, {"name.honorificSuffix", u.Name.HonorificSuffix},
		{"displayName", u.DisplayName}, {"nickName", u.NickName}, {"profileUrl", u.ProfileURL},
		{"title", u.Title}, {"userType", u.UserType}, {"preferredLanguage", u.PreferredLanguage},
		{"locale", u.Locale}, {"timezone", u.Timezone}, {"employeeNumber", u.EmployeeNumber},
		{"costCenter", u.CostCenter}, {"organization", u.Organization}, {"division", u.Division},
		{"department", u.Department}, {"manager", u.Manager},
	}
	for _, t := range texts {
		if err := validText(t.f, t.v, maxValueLen, false); err != nil {
			return err
		}
	}
	if len(u.Emails) > maxMulti || len(u.PhoneNumbers) > maxMulti || len(u.Addresses) > maxMulti || len(u.Roles) > maxMulti {
		return &ValidationError{Field: "multi-valued attribute", Reason: "too many values"}
	}
	primaries := 0
	for _, m := range u.Emails {
		if err := validText("emails.value", m.Value, maxValueLen, true); err != nil {
			return err
		}
		if m.Primary {
			primaries++
		}
	}
	if primaries > 1 {
		return &ValidationError{Field: "emails", Reason: "more than one primary value"}
	}
	primaries = 0
	for _, p := range u.PhoneNumbers {
		if err := validText("phoneNumbers.value", p.Value, maxValueLen, true); err != nil {
			return err
		}
		if p.Primary {
			primaries++
		}
	}
	if primaries > 1 {
		return &ValidationError{Field: "phoneNumbers", Reason: "more than one primary value"}
	}
	for _, r := range u.Roles {
		if err := validText("roles.value", r.Value, maxValueLen, true); err != nil {
			return err
		}
	}
	return validateAttrs(u.Attributes)
}

func validateAttrs(m map[string]json.RawMessage) error {
	size := 0
	for k, v := range m {
		if err := validText("attributes", k, maxNameLen, true); err != nil {
			return err
		}
		if !json.Valid(v) {
			return &ValidationError{Field: k, Reason: "not valid JSON"}
		}
		size += len(k) + len(v)
	}
	if size > maxAttrSize {
		return &ValidationError{Field: "attributes", Reason: "too large"}
	}
	return nil
}

func validateGroup(g Group) error {
	if err := validText("displayName", g.DisplayName, maxNameLen, true); err != nil {
		return err
	}
	if err := validText("externalId", g.ExternalID, maxNameLen, false); err != nil {
		return err
	}
	return validateAttrs(g.Attributes)
}
