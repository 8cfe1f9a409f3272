package provision_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

func TestMatchUser(t *testing.T) {
	u := provision.User{
		ID:          "u1",
		UserName:    "BJensen@Example.com",
		Name:        provision.Name{GivenName: "Barbara", FamilyName: "Jensen"},
		DisplayName: "Babs",
		Active:      true,
		Emails: []provision.Email{
			{Value: "home@example.org", Type: "home"},
			{Value: "bjensen@example.com", Type: "work", Primary: true},
		},
		Addresses:      []provision.Address{{Locality: "Paris", Country: "FR"}},
		EmployeeNumber: "701984",
		Manager:        "M1",
		Attributes: map[string]json.RawMessage{
			"urn:ietf:params:scim:schemas:extension:acme:2.0:User:level": json.RawMessage(`7`),
			"Tags":  json.RawMessage(`["blue","Green"]`),
			"badge": json.RawMessage(`{"color":"red","valid":true}`),
		},
		Version:  3,
		Created:  time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		Modified: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
	}
	tests := []struct {
		filter string
		want   bool
	}{
		{`userName eq "bjensen@example.com"`, true},
		{`userName sw "BJ" and userName ew ".COM"`, true},
		{`userName gt "a" and userName lt "c"`, true},
		{`id eq "U1"`, false}, // caseExact
		{`id eq "u1"`, true},
		{`externalId eq "ext-1"`, true},
		{`externalId eq "EXT-1"`, false},
		{`title ne "x"`, false}, // absent satisfies no comparison
		{`not (title eq "x")`, true},
		{`title eq null`, true},
		{`emails[type eq "work"].value eq "BJENSEN@example.com"`, true},
		{`emails[type eq "home"].value eq "bjensen@example.com"`, false},
		{`emails[type eq "work" and primary eq true]`, true},
		{`emails[type eq "home" and primary eq true]`, false},
		{`emails.type eq "home" and emails.primary eq true`, true}, // not one element
		{`emails co "example.org"`, true},
		{`addresses[locality eq "paris" and country eq "FR"]`, true},
		{`addresses pr and name pr and phoneNumbers pr`, false},
		{`active eq true and active ne false`, true},
		{`active eq "False"`, false},
		{`meta.created gt "2024-01-02T04:00:00+02:00"`, true}, // 02:00Z
		{`meta.created eq "2024-01-02T03:04:05.000Z"`, true},
		{`meta.lastModified lt "2025-01-01T00:00:00Z"`, false},
		{`meta.version eq "W/\"3\""`, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`, true},
		{`manager eq "m1"`, false}, // an id: caseExact
		{`manager.value eq "M1"`, true},
		{`urn:ietf:params:scim:schemas:extension:acme:2.0:User:level ge 7`, true},
		{`urn:ietf:params:scim:schemas:extension:acme:2.0:User:level gt 7`, false},
		{`urn:ietf:params:scim:schemas:extension:acme:2.0:User:level eq "7"`, false}, // number vs string
		{`tags eq "green"`, true},
		{`tags[value sw "bl"]`, true},
		{`badge.color eq "RED" and badge.valid eq true`, true},
		{`badge pr and nosuch pr`, false},
	}
	for _, tt := range tests {
		got, err := provision.MatchUser(mustParse(t, tt.filter), u, "ext-1")
		if err != nil || got != tt.want {
			t.Errorf("MatchUser(%s) = %v, %v; want %v", tt.filter, got, err, tt.want)
		}
	}
}

func TestMatchGroup(t *testing.T) {
	g := provision.Group{ID: "g1", DisplayName: "Engineering"}
	isMember := func(id string) (bool, error) { return id == "u1" || id == "u2", nil }
	for _, tt := range []struct {
		filter string
		want   bool
	}{
		{`members eq "u1"`, true},
		{`members eq "U1"`, false},
		{`members[value eq "u3" or value eq "u2"]`, true},
		{`not (members eq "u3") and displayName eq "engineering"`, true},
		{`members eq "u3"`, false},
	} {
		got, err := provision.MatchGroup(mustParse(t, tt.filter), g, "", isMember)
		if err != nil || got != tt.want {
			t.Errorf("MatchGroup(%s) = %v, %v; want %v", tt.filter, got, err, tt.want)
		}
	}
	for _, f := range []string{`members pr`, `members co "u"`, `members[display eq "x"]`} {
		if _, err := provision.MatchGroup(mustParse(t, f), g, "", isMember); !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("MatchGroup(%s) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestSortUsers(t *testing.T) {
	us := []provision.User{{ID: "1", Title: "b"}, {ID: "2"}, {ID: "3", Title: "A"}, {ID: "4", Title: "b"}}
	for _, c := range []struct {
		desc bool
		want string
	}{{false, "3142"}, {true, "1432"}} {
		x := append([]provision.User(nil), us...)
		if err := provision.SortUsers(x, "TITLE", c.desc); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, u := range x {
			got += u.ID
		}
		if got != c.want {
			t.Errorf("SortUsers(title, descending %v) = %s, want %s", c.desc, got, c.want)
		}
	}
}
