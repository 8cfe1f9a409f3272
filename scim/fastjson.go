package scim

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/idprov/idprov/provision"
)

// The common case renders without maps: a user or group with no free-form
// attributes and no projection is written straight to JSON (the same
// document renderUser and renderGroup make, in another key order), which
// is most of what identity providers read back, and most of what a
// response costs.

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// fields writes "key":value pairs, with the commas between them.
type fields struct{ b []byte }

func (f *fields) key(k string) {
	if n := len(f.b); n > 0 && f.b[n-1] != '{' && f.b[n-1] != '[' {
		f.b = append(f.b, ',')
	}
	f.b = appendString(f.b, k)
	f.b = append(f.b, ':')
}

func (f *fields) str(k, v string) {
	if v != "" {
		f.key(k)
		f.b = appendString(f.b, v)
	}
}

func (f *fields) boolean(k string, v bool) {
	f.key(k)
	f.b = strconv.AppendBool(f.b, v)
}

func (f *fields) multi(value, typ, display string, primary bool) {
	f.b = append(f.b, '{')
	f.str("value", value)
	f.str("type", typ)
	f.str("display", display)
	if primary {
		f.boolean("primary", true)
	}
	f.b = append(f.b, '}')
}

func (f *fields) meta(resourceType, location string, created, modified time.Time, version int64) {
	f.key("meta")
	f.b = append(f.b, '{')
	f.str("resourceType", resourceType)
	f.str("created", created.Format(time.RFC3339))
	f.str("lastModified", modified.Format(time.RFC3339))
	f.str("location", location)
	f.str("version", etag(version))
	f.b = append(f.b, '}')
}

// appendUser writes u as renderUser renders it without a projection; u
// has no Attributes.
func (h *Handler) appendUser(b []byte, u *provision.User) []byte {
	f := fields{b: append(b, '{')}
	f.str("id", u.ID)
	f.str("externalId", u.ExternalID)
	f.key("schemas")
	if hasEnterprise(u) {
		f.b = append(f.b, `["`+userURN+`","`+enterpriseURN+`"]`...)
	} else {
		f.b = append(f.b, `["`+userURN+`"]`...)
	}
	f.str("userName", u.UserName)
	if n := u.Name; n != (provision.Name{}) {
		f.key("name")
		f.b = append(f.b, '{')
		f.str("formatted", n.Formatted)
		f.str("familyName", n.FamilyName)
		f.str("givenName", n.GivenName)
		f.str("middleName", n.MiddleName)
		f.str("honorificPrefix", n.HonorificPrefix)
		f.str("honorificSuffix", n.HonorificSuffix)
		f.b = append(f.b, '}')
	}
	f.str("displayName", u.DisplayName)
	f.str("nickName", u.NickName)
	f.str("profileUrl", u.ProfileURL)
	f.str("title", u.Title)
	f.str("userType", u.UserType)
	f.str("preferredLanguage", u.PreferredLanguage)
	f.str("locale", u.Locale)
	f.str("timezone", u.Timezone)
	f.boolean("active", u.Active)
	if len(u.Emails) > 0 {
		f.key("emails")
		f.b = append(f.b, '[')
		for i, e := range u.Emails {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.multi(e.Value, e.Type, e.Display, e.Primary)
		}
		f.b = append(f.b, ']')
	}
	if len(u.PhoneNumbers) > 0 {
		f.key("phoneNumbers")
		f.b = append(f.b, '[')
		for i, e := range u.PhoneNumbers {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.multi(e.Value, e.Type, e.Display, e.Primary)
		}
		f.b = append(f.b, ']')
	}
	if len(u.Addresses) > 0 {
		f.key("addresses")
		f.b = append(f.b, '[')
		for i, a := range u.Addresses {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.b = append(f.b, '{')
			f.str("formatted", a.Formatted)
			f.str("streetAddress", a.StreetAddress)
			f.str("locality", a.Locality)
			f.str("region", a.Region)
			f.str("postalCode", a.PostalCode)
			f.str("country", a.Country)
			f.str("type", a.Type)
			if a.Primary {
				f.boolean("primary", true)
			}
			f.b = append(f.b, '}')
		}
		f.b = append(f.b, ']')
	}
	first := true
	for _, r := range u.Roles {
		if first {
			f.key("roles")
			f.b = append(f.b, '[')
			first = false
		} else {
			f.b = append(f.b, ',')
		}
		f.multi(r.Value, roleType(r), r.Display, r.Primary)
	}
	if !first {
		f.b = append(f.b, ']')
	}
	if hasEnterprise(u) {
		f.key(enterpriseURN)
		f.b = append(f.b, '{')
		f.str("employeeNumber", u.EmployeeNumber)
		f.str("costCenter", u.CostCenter)
		f.str("organization", u.Organization)
		f.str("division", u.Division)
		f.str("department", u.Department)
		if u.Manager != "" {
			f.key("manager")
			f.b = append(f.b, '{')
			f.str("value", u.Manager)
			f.b = append(f.b, '}')
		}
		f.b = append(f.b, '}')
	}
	f.meta("User", h.location(userKind, u.ID), u.Created, u.Modified, u.Version)
	return append(f.b, '}')
}

// appendGroup writes g as renderGroup renders it without a projection; g
// has no Attributes.
func (h *Handler) appendGroup(b []byte, g *provision.Group, members []string, withMembers bool) []byte {
	f := fields{b: append(b, '{')}
	f.str("id", g.ID)
	f.str("externalId", g.ExternalID)
	f.key("schemas")
	f.b = append(f.b, `["`+groupURN+`"]`...)
	f.key("displayName")
	f.b = appendString(f.b, g.DisplayName)
	if withMembers {
		f.key("members")
		f.b = append(f.b, '[')
		for i, m := range members {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.b = append(f.b, `{"value":`...)
			f.b = appendString(f.b, m)
			f.b = append(f.b, '}')
		}
		f.b = append(f.b, ']')
	}
	f.meta("Group", h.location(groupKind, g.ID), g.Created, g.Modified, g.Version)
	return append(f.b, '}')
}

// hasEnterprise reports whether u has an attribute of the enterprise
// extension among its typed fields (those kept in Attributes under the
// extension's URN are rendered by renderUser).
func hasEnterprise(u *provision.User) bool {
	return u.EmployeeNumber != "" || u.CostCenter != "" || u.Organization != "" || u.Division != "" || u.Department != "" || u.Manager != ""
}
