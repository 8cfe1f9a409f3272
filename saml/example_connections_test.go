package saml_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml"
	"github.com/idprov/idprov/saml/samltest"
	"github.com/idprov/idprov/store/memstore"
)

// A customer onboarded at run time: its tenant and SAML connection are
// data in the Store's Registry, and the Handler serves the connection
// from the next request on, on every replica, without SetConnection.
func ExampleHandler_registered() {
	ctx := context.Background()
	// The customer's IdP (a test IdP here), publishing its metadata.
	idp, err := samltest.New("https://idp.globex.example/metadata")
	if err != nil {
		log.Fatal(err)
	}
	idpServer := httptest.NewUnstartedServer(idp.Handler())
	idp.SSOURL = "http://" + idpServer.Listener.Addr().String() + "/sso"
	idpServer.Start()
	defer idpServer.Close()

	engine, err := provision.NewEngine(provision.Config{Store: memstore.New()})
	if err != nil {
		log.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: engine}) // JIT settings come from each connection
	if err != nil {
		log.Fatal(err)
	}
	h, err := saml.New(saml.Config{
		Engine: engine, JIT: p, BaseURL: "https://app.example.com",
		OnLogin: func(w http.ResponseWriter, r *http.Request, l saml.Login) {
			http.Redirect(w, r, l.ReturnTo, http.StatusSeeOther) // and start the session
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The admin API: a tenant, then its SAML connection.
	if _, err := engine.PutTenant(ctx, provision.Tenant{ID: "globex", Name: "Globex", VerifiedDomains: []string{"globex.example"}}, "admin"); err != nil {
		log.Fatal(err)
	}
	settings := provision.SAMLSettings{IDPMetadataURL: idpServer.URL + "/metadata", Mapping: "okta"}
	if err := saml.ValidateSettings(settings); err != nil {
		log.Fatal(err) // answer 400
	}
	_, err = engine.PutConnection(ctx, "globex", provision.Connection{
		ID: "okta", Kind: provision.KindSAML, Name: "Globex Okta", Domains: []string{"globex.example"},
		SAML: &settings, JIT: &provision.JITSettings{Create: true, Update: true},
	}, "admin")
	if err != nil {
		log.Fatal(err)
	}
	// What to give the IdP.
	u := h.ConnectionURLs("globex", "okta")
	fmt.Println("entity ID:", u.MetadataURL)
	fmt.Println("ACS URL:  ", u.ACSURL)

	// Someone types their address: the login goes to Globex's IdP.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://app.example.com/saml/login?email=ada@globex.example", nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	fmt.Println(w.Code, "to the IdP:", loc.Host == idpServer.Listener.Addr().String())

	st, err := h.MetadataStatus(ctx, "globex", "okta")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("IdP metadata:", st.EntityID, st.LastError == "")
	// Output:
	// entity ID: https://app.example.com/saml/globex/okta/metadata
	// ACS URL:   https://app.example.com/saml/globex/okta/acs
	// 302 to the IdP: true
	// IdP metadata: https://idp.globex.example/metadata true
}
