package ldap

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/provision"
)

// canonicalID normalizes a server id: 32 hex digits, however grouped
// (entryUUID's 8-4-4-4-12, nsUniqueId's 8-8-8-8), become the lower-case
// 8-4-4-4-12 form, which is also how syncrepl's 16-byte entryUUID prints.
// Anything else is kept as sent.
func canonicalID(raw string) string {
	var hex [32]byte
	n := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return raw
		}
		if n == 32 {
			return raw
		}
		hex[n] = c
		n++
	}
	if n != 32 {
		return raw
	}
	var b strings.Builder
	b.Grow(36)
	for i, c := range hex {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// dnKey normalizes a DN for comparison: attribute types and values
// lower-cased, escaping and spacing canonical. Member values and entry DNs
// are matched through it (servers rewrite escapes: \, becomes \2C).
func dnKey(dn string) string {
	if !strings.ContainsAny(dn, "\\\"+#;<>") {
		// The common case: no escapes. Lower-case and drop the spaces
		// around separators.
		var b strings.Builder
		b.Grow(len(dn))
		for _, part := range strings.Split(dn, ",") {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			t, v, ok := strings.Cut(part, "=")
			if !ok {
				return strings.ToLower(strings.TrimSpace(dn))
			}
			b.WriteString(strings.ToLower(strings.TrimSpace(t)))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(strings.TrimSpace(v)))
		}
		return b.String()
	}
	parsed, err := goldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	var b strings.Builder
	for i, rdn := range parsed.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type))
			b.WriteByte('=')
			b.WriteString(goldap.EscapeDN(strings.ToLower(a.Value)))
		}
	}
	return b.String()
}

// skipError is a reason to skip one entry; it never stops the sync.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// entryID returns the entry's canonical stable id.
func (m Mapping) entryID(e *goldap.Entry) string {
	if m.guidID() {
		return guidString(e.GetEqualFoldRawAttributeValue(m.ID))
	}
	v := e.GetEqualFoldAttributeValue(m.ID)
	if v == "" {
		return ""
	}
	return canonicalID(v)
}

// guidString renders 16 raw bytes in Microsoft's GUID layout the way
// Active Directory shows them (<GUID=...>): the first three fields are
// little-endian. Anything but 16 bytes is "".
func guidString(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}

// guidBytes is the inverse of guidString.
func guidBytes(s string) ([]byte, bool) {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		return nil, false
	}
	return []byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6],
		raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]}, true
}

// idFilter is a filter matching the entry whose id is id.
func (m Mapping) idFilter(id string) string {
	if m.guidID() {
		if b, ok := guidBytes(id); ok {
			var f strings.Builder
			f.WriteString("(" + m.ID + "=")
			for _, c := range b {
				fmt.Fprintf(&f, "\\%02x", c)
			}
			f.WriteString(")")
			return f.String()
		}
	}
	return "(" + m.ID + "=" + goldap.EscapeFilter(id) + ")"
}

// fileTimeNever are the accountExpires values that mean "never".
const fileTimeNever = 0x7FFFFFFFFFFFFFFF

// fileTime converts a Windows FILETIME (100 ns intervals since
// 1601-01-01 UTC) to a time.
func fileTime(v int64) time.Time {
	const epochDiff = 116444736000000000 // 1601 to 1970, in 100 ns
	return time.Unix(0, 0).UTC().Add(time.Duration(v-epochDiff) * 100)
}

// disabled reports whether a Disabled rule matches the entry at now.
func (m Mapping) disabled(e *goldap.Entry, now time.Time) bool {
	for _, r := range m.Disabled {
		vals := e.GetEqualFoldAttributeValues(r.Attribute)
		if r.Match != MatchPresentOrEqual {
			for _, v := range vals {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					continue
				}
				switch r.Match {
				case MatchAnyBit:
					mask, _ := strconv.ParseInt(r.Value, 10, 64)
					if n&mask != 0 {
						return true
					}
				case MatchNonZero:
					if n != 0 {
						return true
					}
				case MatchExpired:
					if n > 0 && n != fileTimeNever && fileTime(n).Before(now) {
						return true
					}
				}
			}
			continue
		}
		if r.Value == "" {
			if len(vals) > 0 {
				return true
			}
			continue
		}
		for _, v := range vals {
			if strings.EqualFold(strings.TrimSpace(v), r.Value) {
				return true
			}
		}
	}
	return false
}

// identity maps a user entry. The id must already have been checked.
func (m Mapping) identity(connID, id string, e *goldap.Entry, now time.Time) (provision.Identity, error) {
	first := func(attr string) string {
		if attr == "" {
			return ""
		}
		return strings.TrimSpace(e.GetEqualFoldAttributeValue(attr))
	}
	u := provision.User{
		UserName:       first(m.UserName),
		DisplayName:    first(m.DisplayName),
		Title:          first(m.Title),
		Department:     first(m.Department),
		EmployeeNumber: first(m.EmployeeNumber),
		Name: provision.Name{
			GivenName:  first(m.GivenName),
			FamilyName: first(m.FamilyName),
		},
		Active: !m.disabled(e, now),
	}
	if u.UserName == "" {
		return provision.Identity{}, &skipError{reason: "no " + m.UserName + " attribute"}
	}
	if m.Email != "" {
		for i, v := range e.GetEqualFoldAttributeValues(m.Email) {
			if v = strings.TrimSpace(v); v != "" {
				u.Emails = append(u.Emails, provision.Email{Value: v, Type: "work", Primary: i == 0})
			}
		}
		if len(u.Emails) > 0 && !u.Emails[0].Primary {
			u.Emails[0].Primary = true
		}
	}
	if p := first(m.Phone); p != "" {
		u.PhoneNumbers = []provision.PhoneNumber{{Value: p, Type: "work", Primary: true}}
	}
	for attr, key := range m.Attributes {
		vals := e.GetEqualFoldAttributeValues(attr)
		var raw []byte
		switch len(vals) {
		case 0:
			continue
		case 1:
			raw, _ = json.Marshal(vals[0])
		default:
			raw, _ = json.Marshal(vals)
		}
		if u.Attributes == nil {
			u.Attributes = map[string]json.RawMessage{}
		}
		u.Attributes[key] = raw
	}
	// Identity.Raw stays empty: nothing downstream reads it, and a map per
	// entry is a tenth of a full sync's garbage.
	return provision.Identity{ConnectionID: connID, ExternalID: id, User: u}, nil
}
