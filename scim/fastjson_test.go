package scim

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// TestFastPathMatchesMaps: the map-free rendering is the same document as
// the map rendering.
func TestFastPathMatchesMaps(t *testing.T) {
	h := &Handler{baseURL: "https://app.test/scim/v2"}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	users := []provision.User{
		{ID: "u1", UserName: "a@b", Active: true, Version: 1, Created: now, Modified: now},
		{ID: "u2", UserName: "quote\"back\\slash\x01<é>\xff", ExternalID: "x", DisplayName: "D", NickName: "n", ProfileURL: "p", Title: "t", UserType: "ut",
			PreferredLanguage: "en", Locale: "en-US", Timezone: "UTC", Version: 3, Created: now, Modified: now.Add(time.Hour),
			Name:           provision.Name{Formatted: "f", FamilyName: "F", GivenName: "G", MiddleName: "M", HonorificPrefix: "Dr", HonorificSuffix: "Jr"},
			Emails:         []provision.Email{{Value: "a@b", Type: "work", Primary: true}, {Value: "c@d", Display: "C"}},
			PhoneNumbers:   []provision.PhoneNumber{{Value: "+1", Type: "mobile"}},
			Addresses:      []provision.Address{{Locality: "L", Type: "work", Primary: true}, {Country: "BE"}},
			Roles:          []provision.Role{{Value: "admin", Source: "direct"}, {Value: "mapped", Source: "rule:1"}, {Value: "r2", Type: "t", Primary: true}},
			EmployeeNumber: "7", CostCenter: "cc", Organization: "o", Division: "dv", Department: "dp", Manager: "m1"},
		{ID: "u3", UserName: "m", Manager: "only"},
	}
	for _, u := range users {
		var fast, slow any
		if err := json.Unmarshal(h.appendUser(nil, &u), &fast); err != nil {
			t.Fatalf("%s: fast path is not JSON: %v: %s", u.ID, err, h.appendUser(nil, &u))
		}
		b, _ := json.Marshal(h.renderUser(u, nil))
		_ = json.Unmarshal(b, &slow)
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s:\nfast %s\nslow %s", u.ID, h.appendUser(nil, &u), b)
		}
	}
	g := provision.Group{ID: "g1", DisplayName: "G\"", ExternalID: "e", Version: 2, Created: now, Modified: now}
	for _, with := range []bool{true, false} {
		var fast, slow any
		_ = json.Unmarshal(h.appendGroup(nil, &g, []string{"u1", "u2"}, with), &fast)
		b, _ := json.Marshal(h.renderGroup(g, []string{"u1", "u2"}, with, nil))
		_ = json.Unmarshal(b, &slow)
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("group (members %v):\nfast %s\nslow %s", with, h.appendGroup(nil, &g, []string{"u1", "u2"}, with), b)
		}
	}
}
