package samltest_test

import (
	"fmt"
	"net/url"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/saml/samltest"
)

func ExampleIdP_Response() {
	idp, _ := samltest.New("https://idp.test/metadata")
	acs, _ := url.Parse("https://app.test/saml/acme/acs")
	sp := crewsaml.ServiceProvider{
		EntityID: "https://app.test/saml/acme/metadata", AcsURL: *acs,
		IDPMetadata: idp.Metadata(), AllowIDPInitiated: true,
	}
	user := samltest.User{NameID: "00u1"}

	good, _ := idp.Response(samltest.Response{User: user, ACSURL: acs.String(), Audience: sp.EntityID})
	a, err := sp.ParseXMLResponse(good, []string{""}, *acs)
	fmt.Println(a.Subject.NameID.Value, err)

	wrapped, _ := idp.Response(samltest.Response{User: user, ACSURL: acs.String(), Audience: sp.EntityID, Wrap: samltest.WrapTamper})
	_, err = sp.ParseXMLResponse(wrapped, []string{""}, *acs)
	fmt.Println(err != nil)
	// Output:
	// 00u1 <nil>
	// true
}
