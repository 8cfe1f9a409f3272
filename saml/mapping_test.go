package saml_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
)

type want struct {
	ext, email, given, family, display, userName string
	groups                                       []string
	groupsUnknown                                bool
	roles                                        []string
}

func attrs(kv ...any) []samltest.Attribute {
	var out []samltest.Attribute
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			out = append(out, samltest.Attribute{Name: kv[i].(string), Values: []string{v}})
		case []string:
			out = append(out, samltest.Attribute{Name: kv[i].(string), Values: v})
		}
	}
	return out
}

// presets are logins as each IdP sends them (research notes §4.1).
var presets = []struct {
	name    string
	mapping saml.Mapping
	user    samltest.User
	want    want
	// defaultExt is the external id DefaultMapping finds, when it differs.
	defaultExt string
}{
	{"entra", saml.EntraIDMapping(), samltest.User{
		NameID: "jane@acme.example", NameIDFormat: string(crewsaml.EmailAddressNameIDFormat),
		Attributes: attrs(
			saml.AttrEntraTenantID, "tid-acme",
			saml.AttrEntraObjectID, "5f8e-oid",
			saml.AttrClaimsName, "jane@acme.example",
			saml.AttrClaimsEmail, "jane.doe@acme.example",
			saml.AttrClaimsGivenName, "Jane",
			saml.AttrClaimsSurname, "Doe",
			saml.AttrEntraDisplayName, "Jane Doe (Finance)",
			saml.AttrEntraGroups, []string{"g-1", "g-2"},
			saml.AttrMSRole, "Approver",
		)},
		want{ext: "5f8e-oid", email: "jane.doe@acme.example", given: "Jane", family: "Doe", display: "Jane Doe (Finance)", userName: "jane@acme.example", groups: []string{"g-1", "g-2"}, roles: []string{"Approver"}}, ""},
	{"entra overage", saml.EntraIDMapping(), samltest.User{
		NameID: "jane@acme.example", NameIDFormat: string(crewsaml.EmailAddressNameIDFormat),
		Attributes: attrs(
			saml.AttrEntraObjectID, "5f8e-oid",
			saml.AttrClaimsName, "jane@acme.example",
			saml.AttrEntraGroupsOverage, "https://graph.microsoft.com/v1.0/users/5f8e-oid/memberOf",
		)},
		want{ext: "5f8e-oid", email: "jane@acme.example", userName: "jane@acme.example", groupsUnknown: true}, ""},
	{"adfs", saml.ADFSMapping(), samltest.User{
		NameID: "S-1-5-21-42", Attributes: attrs(
			saml.AttrClaimsUPN, "jane@corp.acme.example",
			saml.AttrClaimsEmail, "jane@acme.example",
			saml.AttrClaimsGivenName, "Jane",
			saml.AttrClaimsSurname, "Doe",
			saml.AttrADFSCommonName, "Jane Doe",
			saml.AttrADFSGroup, []string{"Domain Users", "Finance"},
		)},
		want{ext: "S-1-5-21-42", email: "jane@acme.example", given: "Jane", family: "Doe", display: "Jane Doe", userName: "jane@corp.acme.example", groups: []string{"Domain Users", "Finance"}}, ""},
	{"okta", saml.OktaMapping(), samltest.User{
		NameID: "00u1abcd", NameIDFormat: string(crewsaml.UnspecifiedNameIDFormat), Attributes: attrs(
			"email", "jane@acme.example", "firstName", "Jane", "lastName", "Doe", "groups", []string{"Everyone", "Finance"},
		)},
		want{ext: "00u1abcd", email: "jane@acme.example", given: "Jane", family: "Doe", display: "Jane Doe", userName: "jane@acme.example", groups: []string{"Everyone", "Finance"}}, ""},
	{"google", saml.GoogleWorkspaceMapping(), samltest.User{
		NameID: "jane@acme.example", NameIDFormat: string(crewsaml.UnspecifiedNameIDFormat), Attributes: []samltest.Attribute{
			{Name: "firstName", Values: []string{"Jane"}}, {Name: "lastName", Values: []string{"Doe"}}, {Name: "phone"},
		}},
		want{ext: "jane@acme.example", email: "jane@acme.example", given: "Jane", family: "Doe", display: "Jane Doe", userName: "jane@acme.example"}, ""},
	{"onelogin", saml.OneLoginMapping(), samltest.User{
		NameID: "jane@acme.example", NameIDFormat: string(crewsaml.EmailAddressNameIDFormat), Attributes: attrs(
			"PersonImmutableID", "ol-991", "User.email", "jane@acme.example", "User.FirstName", "Jane", "User.LastName", "Doe", "memberOf", "",
		)},
		want{ext: "ol-991", email: "jane@acme.example", given: "Jane", family: "Doe", display: "Jane Doe", userName: "jane@acme.example", groups: []string{}},
		"jane@acme.example"}, // PersonImmutableID may be empty, so only the preset keys on it
	{"shibboleth", saml.ShibbolethMapping(), samltest.User{
		NameID: "_8f1e2", NameIDFormat: string(crewsaml.TransientNameIDFormat), Attributes: attrs(
			saml.AttrSubjectID, "jdoe@acme.example",
			saml.AttrEduPersonPrincipal, "jdoe@acme.example",
			saml.AttrOIDMail, "jane@acme.example",
			saml.AttrOIDGivenName, "Jane",
			saml.AttrOIDSurname, "Doe",
			saml.AttrOIDDisplayName, "Dr. Jane Doe",
			saml.AttrIsMemberOf, []string{"urn:mace:acme:finance"},
			saml.AttrEduPersonEntitle, "urn:mace:acme:approver",
		)},
		want{ext: "jdoe@acme.example", email: "jane@acme.example", given: "Jane", family: "Doe", display: "Dr. Jane Doe", userName: "jdoe@acme.example", groups: []string{"urn:mace:acme:finance"}, roles: []string{"urn:mace:acme:approver"}}, ""},
}

func check(t *testing.T, id provision.Identity, w want) {
	t.Helper()
	u := id.User
	got := want{ext: id.ExternalID, email: u.PrimaryEmail(), given: u.Name.GivenName, family: u.Name.FamilyName, display: u.DisplayName, userName: u.UserName, groups: id.Groups, groupsUnknown: id.GroupsUnknown}
	for _, r := range u.Roles {
		got.roles = append(got.roles, r.Value)
	}
	if got.ext != w.ext || got.email != w.email || got.given != w.given || got.family != w.family || got.display != w.display ||
		got.userName != w.userName || got.groupsUnknown != w.groupsUnknown || !slices.Equal(got.groups, w.groups) ||
		(got.groups == nil) != (w.groups == nil) || !slices.Equal(got.roles, w.roles) {
		t.Errorf("identity\n got %+v\nwant %+v", got, w)
	}
}

// TestPresets signs each IdP's login with samltest, posts it to the ACS,
// and checks the identity with the IdP's preset and with the default
// mapping (which must find the same identity).
func TestPresets(t *testing.T) {
	for _, p := range presets {
		for _, m := range []saml.Mapping{p.mapping, {}} {
			name := p.name + "/" + m.Name
			if m.Name == "" {
				name = p.name + "/default"
			}
			t.Run(name, func(t *testing.T) {
				want := p.want
				if m.Name == "" && p.defaultExt != "" {
					want.ext = p.defaultExt
				}
				f := newFixture(t, options{idpInitiated: true, mapping: m})
				w := f.post(t, acmeACS, respond(t, idpA, samltest.Response{User: p.user}), "")
				if w.Code != 200 {
					t.Fatalf("ACS: %d %s", w.Code, w.Body)
				}
				l := f.logins[0]
				check(t, l.Identity, want)
				link, err := provision.AdapterOf(f.engine).Store().GetLink(context.Background(), "acme", provision.ResourceUser, "okta-saml", want.ext)
				if err != nil || link.ResourceID != l.User.ID {
					t.Fatalf("the user is not linked by %q: %v", want.ext, err)
				}
				if len(p.want.roles) > 0 && (len(l.User.Roles) == 0 || l.User.Roles[0].Source != "direct") {
					t.Errorf("roles %+v, want direct roles", l.User.Roles)
				}
			})
		}
	}
}

func assertion(nameID, format string, at ...crewsaml.Attribute) *crewsaml.Assertion {
	return &crewsaml.Assertion{
		Issuer:              crewsaml.Issuer{Value: "https://idp.test"},
		Subject:             &crewsaml.Subject{NameID: &crewsaml.NameID{Value: nameID, Format: format}},
		AttributeStatements: []crewsaml.AttributeStatement{{Attributes: at}},
	}
}

func attr(name string, values ...string) crewsaml.Attribute {
	a := crewsaml.Attribute{Name: name}
	for _, v := range values {
		a.Values = append(a.Values, crewsaml.AttributeValue{Value: v})
	}
	return a
}

func TestMapAssertion(t *testing.T) {
	persistent := string(crewsaml.PersistentNameIDFormat)
	transient := string(crewsaml.TransientNameIDFormat)
	t.Run("transient only", func(t *testing.T) {
		_, err := saml.MapAssertion(assertion("_x", transient, attr("email", "a@b.example")), saml.Mapping{})
		if !errors.Is(err, saml.ErrNoSubject) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("transient with an immutable attribute", func(t *testing.T) {
		id, err := saml.MapAssertion(assertion("_x", transient, attr(saml.AttrPairwiseID, "pw-1"), attr("email", "a@b.example")), saml.Mapping{})
		if err != nil || id.ExternalID != "pw-1" || id.User.UserName != "a@b.example" {
			t.Fatalf("%+v %v", id, err)
		}
	})
	t.Run("entra NoNameID", func(t *testing.T) {
		if _, err := saml.MapAssertion(assertion("x", persistent), saml.EntraIDMapping()); !errors.Is(err, saml.ErrNoSubject) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("entra tenant guard", func(t *testing.T) {
		m := saml.EntraIDMapping()
		m.EntraTenantID = "tid-1"
		a := assertion("x", persistent, attr(saml.AttrEntraObjectID, "o"), attr(saml.AttrClaimsName, "u@x"))
		if _, err := saml.MapAssertion(a, m); !errors.Is(err, saml.ErrTenantMismatch) {
			t.Fatalf("no tenantid claim: %v", err)
		}
		a.AttributeStatements[0].Attributes = append(a.AttributeStatements[0].Attributes, attr(saml.AttrEntraTenantID, "TID-1"))
		if _, err := saml.MapAssertion(a, m); err != nil {
			t.Fatalf("matching tenantid: %v", err)
		}
	})
	t.Run("groups: absent, empty, overage, delimited, too many", func(t *testing.T) {
		id, _ := saml.MapAssertion(assertion("x", persistent), saml.Mapping{})
		if id.Groups != nil || id.GroupsUnknown {
			t.Errorf("no groups claim: %v %v", id.Groups, id.GroupsUnknown)
		}
		id, _ = saml.MapAssertion(assertion("x", persistent, attr("groups")), saml.Mapping{})
		if id.Groups == nil || len(id.Groups) != 0 || id.GroupsUnknown {
			t.Errorf("empty groups claim: %#v %v", id.Groups, id.GroupsUnknown)
		}
		id, _ = saml.MapAssertion(assertion("x", persistent, attr(saml.AttrEntraGroupsOverage, "https://graph")), saml.Mapping{})
		if id.Groups != nil || !id.GroupsUnknown {
			t.Errorf("overage: %v %v", id.Groups, id.GroupsUnknown)
		}
		a := assertion("x", persistent, attr("group", "red,green, blue"))
		if id, _ = saml.MapAssertion(a, saml.Mapping{}); !slices.Equal(id.Groups, []string{"red,green, blue"}) {
			t.Errorf("undelimited: %v", id.Groups)
		}
		m := saml.DefaultMapping()
		m.GroupDelimiter = ","
		if id, _ = saml.MapAssertion(a, m); !slices.Equal(id.Groups, []string{"red", "green", "blue"}) {
			t.Errorf("delimited: %v", id.Groups)
		}
		m.MaxGroups = 2
		if id, _ = saml.MapAssertion(a, m); id.Groups != nil || !id.GroupsUnknown {
			t.Errorf("over MaxGroups: %v %v", id.Groups, id.GroupsUnknown)
		}
	})
	t.Run("friendly names only when allowed", func(t *testing.T) {
		a := assertion("x", persistent, crewsaml.Attribute{Name: "urn:custom:1", FriendlyName: "email", Values: []crewsaml.AttributeValue{{Value: "a@b.example"}}})
		if id, _ := saml.MapAssertion(a, saml.Mapping{}); id.User.PrimaryEmail() != "" {
			t.Errorf("FriendlyName matched by default")
		}
		m := saml.DefaultMapping()
		m.AllowFriendlyName = true
		if id, _ := saml.MapAssertion(a, m); id.User.PrimaryEmail() != "a@b.example" {
			t.Errorf("FriendlyName not matched when allowed")
		}
	})
	t.Run("short names case-insensitive, URIs exact", func(t *testing.T) {
		a := assertion("x", persistent, attr("EMAIL", "a@b.example"), attr("HTTP://SCHEMAS.XMLSOAP.ORG/WS/2005/05/IDENTITY/CLAIMS/GIVENNAME", "A"))
		id, _ := saml.MapAssertion(a, saml.Mapping{})
		if id.User.PrimaryEmail() != "a@b.example" || id.User.Name.GivenName != "" {
			t.Errorf("%+v", id.User)
		}
	})
	t.Run("eduPersonTargetedID carries a NameID", func(t *testing.T) {
		a := assertion("_t", transient, crewsaml.Attribute{Name: saml.AttrEduPersonTargetID, Values: []crewsaml.AttributeValue{{NameID: &crewsaml.NameID{Value: "tid-77"}}}}, attr(saml.AttrOIDUID, "jd"))
		id, err := saml.MapAssertion(a, saml.ShibbolethMapping())
		if err != nil || id.ExternalID != "tid-77" {
			t.Fatalf("%v %v", id.ExternalID, err)
		}
	})
}
