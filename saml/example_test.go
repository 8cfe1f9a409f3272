package saml_test

import (
	"fmt"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/saml"
)

func ExampleMapAssertion() {
	// An assertion as Microsoft Entra ID sends it (after ParseResponse).
	a := &crewsaml.Assertion{
		Subject: &crewsaml.Subject{NameID: &crewsaml.NameID{
			Format: string(crewsaml.EmailAddressNameIDFormat), Value: "ada@acme.example",
		}},
		AttributeStatements: []crewsaml.AttributeStatement{{Attributes: []crewsaml.Attribute{
			{Name: saml.AttrEntraTenantID, Values: []crewsaml.AttributeValue{{Value: "7c1f-tenant"}}},
			{Name: saml.AttrEntraObjectID, Values: []crewsaml.AttributeValue{{Value: "5f8e-object"}}},
			{Name: saml.AttrClaimsName, Values: []crewsaml.AttributeValue{{Value: "ada@acme.example"}}},
			{Name: saml.AttrClaimsGivenName, Values: []crewsaml.AttributeValue{{Value: "Ada"}}},
			{Name: saml.AttrClaimsSurname, Values: []crewsaml.AttributeValue{{Value: "Lovelace"}}},
			{Name: saml.AttrEntraGroupsOverage, Values: []crewsaml.AttributeValue{{Value: "https://graph.microsoft.com/..."}}},
		}}},
	}
	m := saml.EntraIDMapping()
	m.EntraTenantID = "7c1f-tenant"
	id, err := saml.MapAssertion(a, m)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("key:", id.ExternalID)
	fmt.Println("user:", id.User.UserName, id.User.DisplayName)
	fmt.Println("groups unknown:", id.GroupsUnknown)
	// Output:
	// key: 5f8e-object
	// user: ada@acme.example Ada Lovelace
	// groups unknown: true
}
