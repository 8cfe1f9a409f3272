package saml

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	crewsaml "github.com/crewjam/saml"

	"github.com/idprov/idprov/internal/setupui"
	"github.com/idprov/idprov/provision"
)

// SetupConfig configures the guided SAML setup a customer's IT admin
// follows through a setup link (provision.Engine.CreateSetupLink).
type SetupConfig struct {
	// Handler serves the connection the setup makes (its entity ID, ACS
	// and the test sign-in). Required.
	Handler *Handler
	// ConnectionID is the ID of the SAML connection the setup creates or
	// changes in the link's tenant; default "sso".
	ConnectionID string
	// DemoMetadataURL, when set, offers the host's demo IdP in the IdP
	// list with its metadata URL filled in.
	DemoMetadataURL string
	// Prepare, when set, completes the connection before it is stored
	// (the host's JIT switches, match rules, pairing); the default creates
	// users at first sign-in only from the tenant's verified domains, and
	// pairs with the tenant's SCIM directory when there is one.
	Prepare func(t provision.Tenant, c *provision.Connection)
}

// Setup is the guided SAML setup, an http.Handler the host mounts under
// a setup link's URL (with http.StripPrefix), behind a middleware that
// resolves the link and puts it in the request context
// (provision.WithSetupLink). The tenant is always the link's: nothing in
// the URL or the form names one. Its pages:
//
//	GET  ./          the connection's state and the IdP list
//	GET  ./idp?name= the steps for one IdP with the values to paste, and
//	                 the IdP metadata form
//	POST ./metadata  metadata by URL or file, validated on the spot
//	GET  ./test      starts a test sign-in through the IdP
//	GET  ./result    what the last test sign-in mapped, or why it failed
//
// A test sign-in is a real login through the connection's ACS that
// creates no user, changes none and starts no session: the ACS shows the
// identity it mapped and how it would be linked instead.
type Setup struct {
	h       *Handler
	connID  string
	demo    string
	prepare func(provision.Tenant, *provision.Connection)
	serve   http.Handler
}

// NewSetup returns the guided SAML setup.
func NewSetup(cfg SetupConfig) (*Setup, error) {
	if cfg.Handler == nil {
		return nil, errors.New("saml: SetupConfig.Handler is required")
	}
	s := &Setup{h: cfg.Handler, connID: cfg.ConnectionID, demo: cfg.DemoMetadataURL, prepare: cfg.Prepare}
	if s.connID == "" {
		s.connID = "sso"
	}
	if !pathSegment(s.connID) {
		return nil, fmt.Errorf("saml: SetupConfig.ConnectionID %q is not a URL path segment", s.connID)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveHome)
	mux.HandleFunc("GET /idp", s.serveIdP)
	mux.HandleFunc("POST /metadata", s.serveMetadata)
	mux.HandleFunc("GET /test", s.serveTest)
	mux.HandleFunc("GET /result", s.serveResult)
	s.serve = setupui.Guard(provision.KindSAML, "setting up SAML single sign-on", mux)
	return s, nil
}

// ServeHTTP serves the setup pages of the request's setup link; without
// one (or one that does not allow the kind) it answers 403.
func (s *Setup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve.ServeHTTP(w, r)
}

// idpGuide is how to set up one IdP: its steps, the mapping preset, and
// the attributes to send.
type idpGuide struct {
	Key, Name, Mapping string
	// Steps are HTML with {{.EntityID}} and {{.ACSURL}} filled in as
	// readonly fields by the page.
	Steps      []string
	Attributes [][2]string // name to send, value at the IdP
	MetadataAt string      // where the IdP shows its metadata URL or file
}

var idpGuides = []idpGuide{
	{Key: "okta", Name: "Okta", Mapping: "okta", Steps: []string{
		"In the Okta Admin Console open Applications → Applications → Create App Integration, choose SAML 2.0, and name the app.",
		"Single sign-on URL: paste the ACS URL below (keep “Use this for Recipient URL and Destination URL” ticked).",
		"Audience URI (SP Entity ID): paste the entity ID below.",
		"Name ID format: Persistent. Application username: Okta username.",
		"Attribute Statements: add the attributes below; Group Attribute Statements: name groups, filter Matches regex .*",
		"Finish, then assign the people or groups who should sign in (Assignments tab).",
	}, Attributes: [][2]string{{"email", "user.email"}, {"firstName", "user.firstName"}, {"lastName", "user.lastName"}, {"groups", "(group attribute statement)"}},
		MetadataAt: "Sign On tab → SAML 2.0 → Metadata URL (copy it)"},
	{Key: "entra", Name: "Microsoft Entra ID", Mapping: "entra", Steps: []string{
		"In the Microsoft Entra admin center open Enterprise applications → New application → Create your own application (Integrate any other application you don't find in the gallery).",
		"Single sign-on → SAML → Basic SAML Configuration → Edit.",
		"Identifier (Entity ID): paste the entity ID below. Reply URL (Assertion Consumer Service URL): paste the ACS URL below. Save.",
		"Attributes & Claims: keep the defaults (they include the object ID this app keys on); Add a group claim → Security groups → Group ID.",
		"Users and groups: assign who may sign in.",
	}, Attributes: [][2]string{{AttrEntraObjectID, "user.objectid (default)"}, {AttrClaimsEmail, "user.mail (default)"}, {AttrClaimsGivenName, "user.givenname (default)"}, {AttrClaimsSurname, "user.surname (default)"}, {AttrEntraGroups, "group claim: Group ID"}},
		MetadataAt: "SAML Certificates → App Federation Metadata Url (copy it)"},
	{Key: "google", Name: "Google Workspace", Mapping: "google", Steps: []string{
		"In the Google Admin console open Apps → Web and mobile apps → Add app → Add custom SAML app, and name it.",
		"On Google Identity Provider details, choose Download Metadata (you will upload the file below), then Continue.",
		"ACS URL: paste the ACS URL below. Entity ID: paste the entity ID below. Name ID format: PERSISTENT, Name ID: Basic Information → Primary email.",
		"Attribute mapping: add the attributes below; Group membership: choose the groups and App attribute groups.",
		"Finish, then turn the app ON for the organizational units who should sign in.",
	}, Attributes: [][2]string{{"email", "Primary email"}, {"firstName", "First name"}, {"lastName", "Last name"}, {"groups", "Group membership"}},
		MetadataAt: "the metadata file you downloaded (GoogleIDPMetadata.xml)"},
	{Key: "onelogin", Name: "OneLogin", Mapping: "onelogin", Steps: []string{
		"In OneLogin Administration open Applications → Add App, search for “SAML Custom Connector (Advanced)” and save it.",
		"Configuration: Audience (EntityID): the entity ID below; Recipient and ACS (Consumer) URL: the ACS URL below; ACS URL Validator: the ACS URL below with dots escaped (or .*).",
		"SAML signature element: Assertion (or Both). Save.",
		"Parameters: add the attributes below, ticking “Include in SAML assertion”.",
		"Users / Access: grant the roles or users who may sign in.",
	}, Attributes: [][2]string{{"User.email", "Email"}, {"User.FirstName", "First Name"}, {"User.LastName", "Last Name"}, {"memberOf", "MemberOf (or Roles)"}},
		MetadataAt: "More Actions → SAML Metadata (copy the link, or upload the file)"},
	{Key: "jumpcloud", Name: "JumpCloud", Mapping: "", Steps: []string{
		"In the JumpCloud Admin Portal open SSO Applications → Add New Application → Custom Application → Manage Single Sign-On (SSO) → Configure SSO with SAML.",
		"SP Entity ID: the entity ID below. ACS URLs: the ACS URL below. IdP Entity ID: any unique name, for example your company domain.",
		"SAMLSubject NameID: email; NameID format: urn:oasis:names:tc:SAML:2.0:nameid-format:persistent; Signature algorithm: RSA-SHA256; Sign: Assertion.",
		"Attributes: add the attributes below; tick Include group attribute and name it groups.",
		"User Groups: bind the groups who may sign in. Activate.",
	}, Attributes: [][2]string{{"email", "email"}, {"firstName", "firstname"}, {"lastName", "lastname"}, {"groups", "(group attribute)"}},
		MetadataAt: "SSO tab → Export Metadata (upload the file)"},
	{Key: "adfs", Name: "ADFS", Mapping: "adfs", Steps: []string{
		"In AD FS Management open Relying Party Trusts → Add Relying Party Trust → Claims aware → Enter data about the relying party manually.",
		"Configure URL: Enable support for the SAML 2.0 WebSSO protocol, with the ACS URL below. Relying party trust identifier: the entity ID below.",
		"Edit Claim Issuance Policy → Send LDAP Attributes as Claims: E-Mail-Addresses → E-Mail Address, Given-Name → Given Name, Surname → Surname, Token-Groups - Unqualified Names → Group.",
		"Add a Transform an Incoming Claim rule: E-Mail Address → Name ID, format Persistent Identifier.",
		"The signature must be RSA-SHA256 (Advanced tab of the trust).",
	}, Attributes: [][2]string{{AttrClaimsEmail, "E-Mail-Addresses"}, {AttrClaimsGivenName, "Given-Name"}, {AttrClaimsSurname, "Surname"}, {AttrADFSGroup, "Token-Groups - Unqualified Names"}},
		MetadataAt: "https://<your ADFS host>/FederationMetadata/2007-06/FederationMetadata.xml"},
	{Key: "pingone", Name: "PingOne", Mapping: "", Steps: []string{
		"In the PingOne admin console open Applications → Applications → + (Add Application) → SAML Application, and name it.",
		"SAML Configuration: Manually Enter: ACS URLs: the ACS URL below; Entity ID: the entity ID below. Save.",
		"Attribute Mappings: saml_subject → User ID (or Email Address); add the attributes below.",
		"Access: add the groups who may sign in. Turn the application on.",
	}, Attributes: [][2]string{{"email", "Email Address"}, {"firstName", "Given Name"}, {"lastName", "Family Name"}, {"groups", "Group Names"}},
		MetadataAt: "Configuration tab → IdP Metadata URL (copy it)"},
	{Key: "generic", Name: "Another SAML 2.0 IdP", Mapping: "", Steps: []string{
		"Create a SAML 2.0 service provider (relying party) application in your IdP.",
		"Entity ID / audience: the entity ID below. ACS URL (HTTP-POST binding): the ACS URL below.",
		"NameID: a persistent, immutable id of the person (not a transient one). Sign the response or the assertion with RSA-SHA256.",
		"Send the attributes below.",
	}, Attributes: [][2]string{{"email", "the e-mail address"}, {"firstName", "given name"}, {"lastName", "family name"}, {"groups", "group names"}},
		MetadataAt: "your IdP's metadata URL or XML file"},
}

func guideNamed(key string) (idpGuide, bool) {
	for _, g := range idpGuides {
		if g.Key == key {
			return g, true
		}
	}
	return idpGuide{}, false
}

// setupData is what the setup pages show.
type setupData struct {
	Tenant, Connection string
	Guides             []idpGuide
	Guide              *idpGuide
	URLs               URLs
	Demo               string
	Conn               *provision.Connection
	Metadata           *metadataSummary
	Saved              bool
	Error              string
	Field              string
	MetadataURL        string
	Result             *TestResult
}

type metadataSummary struct {
	EntityID, SSOURL string
	CertExpires      time.Time
	Source           string
}

func (s *Setup) data(r *http.Request, l provision.SetupLink) setupData {
	d := setupData{Tenant: l.TenantID, Connection: s.connID, Guides: idpGuides, URLs: s.h.ConnectionURLs(l.TenantID, s.connID), Demo: s.demo}
	if c, err := s.h.engine.Connection(r.Context(), l.TenantID, s.connID); err == nil && c.SAML != nil {
		d.Conn = &c
		if st, err := s.h.MetadataStatus(r.Context(), l.TenantID, s.connID); err == nil && st.EntityID != "" {
			d.Metadata = &metadataSummary{EntityID: st.EntityID, CertExpires: st.CertificateExpiry, Source: st.URL}
		}
	}
	if res, err := LastTestResult(r.Context(), s.h.engine, l.TenantID, s.connID); err == nil {
		d.Result = &res
	}
	return d
}

func (s *Setup) serveHome(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	d := s.data(r, l)
	d.Saved = r.URL.Query().Get("saved") == "1"
	setupui.Render(w, http.StatusOK, setupPages, "Set up single sign-on", d)
}

func (s *Setup) serveIdP(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	s.renderIdP(w, r, l, r.URL.Query().Get("name"), http.StatusOK, "", "", "")
}

func (s *Setup) renderIdP(w http.ResponseWriter, r *http.Request, l provision.SetupLink, key string, status int, field, msg, mdURL string) {
	d := s.data(r, l)
	var g idpGuide
	switch {
	case key == "demo" && s.demo != "":
		g = idpGuide{Key: "demo", Name: "Demo IdP (built in)", Steps: []string{"Nothing to set up: the demo IdP signs in its demo people to this app. Its metadata URL is filled in below."},
			Attributes: [][2]string{{"email", "e-mail"}, {"firstName", "given name"}, {"lastName", "family name"}, {"groups", "groups"}}, MetadataAt: "filled in"}
		if mdURL == "" {
			mdURL = s.demo
		}
	default:
		var ok bool
		if g, ok = guideNamed(key); !ok {
			setupui.Render(w, http.StatusNotFound, setupPages, "Unknown IdP", setupData{Error: fmt.Sprintf("There is no guide for %q: go back and pick your identity provider from the list.", key)})
			return
		}
	}
	d.Guide, d.Field, d.Error, d.MetadataURL = &g, field, msg, mdURL
	setupui.Render(w, status, setupIdPPage, "Set up "+g.Name, d)
}

// maxSetupUpload bounds the metadata form.
const maxSetupUpload = 2 << 20

func (s *Setup) serveMetadata(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _ := provision.SetupLinkFrom(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, maxSetupUpload)
	if err := r.ParseMultipartForm(maxSetupUpload); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		s.renderIdP(w, r, l, r.FormValue("idp"), http.StatusBadRequest, "file", "The form could not be read (a metadata file is at most 2 MB): "+err.Error(), "")
		return
	}
	key := r.FormValue("idp")
	typed := strings.TrimSpace(r.FormValue("metadataURL"))
	mdURL := typed
	var xml []byte
	if f, _, err := r.FormFile("metadataFile"); err == nil {
		xml, err = io.ReadAll(f)
		f.Close()
		if err != nil {
			s.renderIdP(w, r, l, key, http.StatusBadRequest, "file", "The metadata file could not be read: "+err.Error(), mdURL)
			return
		}
	}
	if len(strings.TrimSpace(string(xml))) > 0 {
		mdURL = "" // a file wins over a URL left in the form
	} else {
		xml = nil
	}
	g, _ := guideNamed(key)
	settings := provision.SAMLSettings{IDPMetadataURL: mdURL, IDPMetadataXML: string(xml), Mapping: g.Mapping}
	md, field, err := s.checkMetadata(ctx, settings)
	if err != nil {
		s.renderIdP(w, r, l, key, http.StatusBadRequest, field, err.Error(), typed)
		return
	}
	t, err := s.h.engine.Tenant(ctx, l.TenantID)
	if err != nil {
		s.renderIdP(w, r, l, key, http.StatusServiceUnavailable, "", "The settings could not be saved; try again in a moment.", mdURL)
		return
	}
	c := provision.Connection{ID: s.connID, Kind: provision.KindSAML, Name: "SAML single sign-on", SAML: &settings}
	if cur, err := s.h.engine.Connection(ctx, l.TenantID, s.connID); err == nil {
		if cur.Kind != provision.KindSAML {
			s.renderIdP(w, r, l, key, http.StatusConflict, "", fmt.Sprintf("This account already has a %s connection named %q: ask the app's support to remove it first.", cur.Kind, s.connID), mdURL)
			return
		}
		c.Name, c.Domains, c.Match, c.PairedWith, c.JIT, c.Disabled = cur.Name, cur.Domains, cur.Match, cur.PairedWith, cur.JIT, cur.Disabled
		settings.AllowIDPInitiated, settings.InsecureAllowSHA1 = cur.SAML.AllowIDPInitiated, cur.SAML.InsecureAllowSHA1
	} else {
		defaultConnection(t, &c)
		if s.prepare != nil {
			s.prepare(t, &c)
		}
	}
	if _, err := s.h.engine.PutConnection(ctx, l.TenantID, c, l.Actor()); err != nil {
		var ve *provision.ValidationError
		if errors.As(err, &ve) {
			s.renderIdP(w, r, l, key, http.StatusBadRequest, ve.Field, "The settings were refused: "+ve.Reason, mdURL)
			return
		}
		s.h.log.ErrorContext(ctx, "saml: setup: saving the connection", "tenant", l.TenantID, "error", err)
		s.renderIdP(w, r, l, key, http.StatusServiceUnavailable, "", "The settings could not be saved; try again in a moment.", mdURL)
		return
	}
	s.h.log.InfoContext(ctx, "saml: setup: connection saved", "tenant", l.TenantID, "connection", s.connID, "entityID", md.EntityID, "actor", l.Actor())
	setupui.SeeOther(w, "./?saved=1")
}

// defaultConnection fills the JIT switches and match rules of a new
// connection made through a setup link.
func defaultConnection(t provision.Tenant, c *provision.Connection) {
	c.Domains = slices.Clone(t.VerifiedDomains) // sign-in by e-mail finds it
	c.JIT = &provision.JITSettings{Create: len(t.VerifiedDomains) > 0, Update: true, AllowedEmailDomains: slices.Clone(t.VerifiedDomains)}
	for _, o := range t.Connections {
		if o.Kind == provision.KindSCIM {
			c.PairedWith = o.ID
			c.Match = append(c.Match, provision.MatchPairedExternalID)
			break
		}
	}
	if len(t.VerifiedDomains) > 0 {
		c.Match = append(c.Match, provision.MatchEmail)
	}
}

// checkMetadata validates IdP metadata as the setup page does: the
// settings (ValidateSettings), then the document itself, fetched now when
// given by URL: an entity ID, an HTTP-Redirect SSO URL, and a signing
// certificate that is valid now. It returns the form field at fault and a
// message that says what to fix.
func (s *Setup) checkMetadata(ctx context.Context, settings provision.SAMLSettings) (metadataSummary, string, error) {
	if settings.IDPMetadataURL == "" && settings.IDPMetadataXML == "" {
		return metadataSummary{}, "metadataURL", errors.New("Give the IdP metadata: paste its metadata URL, or choose the metadata file your IdP gave you.")
	}
	if err := ValidateSettings(settings); err != nil {
		var ve *provision.ValidationError
		field := "metadataURL"
		if errors.As(err, &ve) && strings.HasSuffix(ve.Field, "XML") {
			field = "metadataFile"
		}
		if errors.As(err, &ve) {
			return metadataSummary{}, field, fmt.Errorf("The metadata was refused: %s.", ve.Reason)
		}
		return metadataSummary{}, field, err
	}
	var ed *crewsaml.EntityDescriptor
	field := "metadataFile"
	if settings.IDPMetadataURL != "" {
		field = "metadataURL"
		_, desc, err := s.h.fetchMetadata(ctx, settings.IDPMetadataURL)
		if err != nil {
			return metadataSummary{}, field, fmt.Errorf("The metadata URL could not be used: %s. Check that the URL is the IdP's metadata URL and that this service can reach it.", strings.TrimPrefix(err.Error(), "saml: "))
		}
		ed = desc
	} else {
		desc, err := parseIDPMetadata([]byte(settings.IDPMetadataXML))
		if err != nil {
			return metadataSummary{}, field, fmt.Errorf("The metadata file was refused: %s.", err)
		}
		ed = desc
	}
	return summarize(ed, s.h.now(), field)
}

// summarize checks the parts of IdP metadata a login needs.
func summarize(ed *crewsaml.EntityDescriptor, now time.Time, field string) (metadataSummary, string, error) {
	sum := metadataSummary{EntityID: ed.EntityID}
	for _, d := range ed.IDPSSODescriptors {
		for _, sso := range d.SingleSignOnServices {
			if sso.Binding == crewsaml.HTTPRedirectBinding && sum.SSOURL == "" {
				sum.SSOURL = sso.Location
			}
		}
	}
	if sum.SSOURL == "" {
		return sum, field, errors.New("The metadata has no single sign-on URL for the HTTP-Redirect binding: in your IdP, enable SP-initiated sign-in (HTTP-Redirect), then give the metadata again.")
	}
	certs := signingCertificates(ed)
	if len(certs) == 0 {
		return sum, field, errors.New("The metadata has no signing certificate, so no sign-in could be verified: download the metadata again from your IdP (it must hold a KeyDescriptor with an X.509 certificate).")
	}
	valid := false
	for _, c := range certs {
		if !now.Before(c.NotBefore) && now.Before(c.NotAfter) {
			valid = true
			if sum.CertExpires.IsZero() || c.NotAfter.Before(sum.CertExpires) {
				sum.CertExpires = c.NotAfter
			}
		}
	}
	if !valid {
		return sum, field, fmt.Errorf("The IdP's signing certificate is not valid now (it expired on %s): create a new signing certificate in your IdP, then give the new metadata.", certs[0].NotAfter.UTC().Format("2 Jan 2006"))
	}
	return sum, "", nil
}

// testMarker prefixes the tracked request of a test sign-in in the KV
// (where a login keeps its local return path, which starts with "/").
const testMarker = "test:"

// setupReturnCookie names the cookie that tells the ACS where the setup
// page of a test sign-in is (the host's path of the setup link).
const setupReturnCookie = "idprov_saml_setup"

func (s *Setup) serveTest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _ := provision.SetupLinkFrom(ctx)
	c, err := s.h.resolve(ctx, l.TenantID, s.connID)
	if err != nil {
		d := s.data(r, l)
		d.Error = "The test sign-in cannot start: give the IdP metadata first (pick your IdP below), or, if you did, the metadata could not be loaded: " + err.Error()
		setupui.Render(w, http.StatusConflict, setupPages, "Set up single sign-on", d)
		return
	}
	// The page that shows the result: this one's sibling, at the host's
	// path (the request may have been stripped of the link's prefix).
	orig := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		orig = u.Path
	}
	back := strings.TrimSuffix(orig, "test") + "result"
	if localPath(back) == "" {
		back = ""
	}
	redirect, err := s.h.startLogin(ctx, w, c, testMarker)
	if err != nil {
		d := s.data(r, l)
		d.Error = "The test sign-in cannot start: " + err.Error()
		setupui.Render(w, http.StatusServiceUnavailable, setupPages, "Set up single sign-on", d)
		return
	}
	if back != "" {
		ck := s.h.trackingCookie(c, "", back, int(s.h.maxAge/time.Second))
		ck.Name = setupReturnCookie
		http.SetCookie(w, ck)
	}
	w.Header().Set("Location", redirect)
	w.WriteHeader(http.StatusFound)
}

func (s *Setup) serveResult(w http.ResponseWriter, r *http.Request) {
	l, _ := provision.SetupLinkFrom(r.Context())
	d := s.data(r, l)
	if d.Result == nil {
		d.Error = "No test sign-in has finished yet: choose Test sign-in and sign in at your IdP."
	}
	setupui.Render(w, http.StatusOK, setupResultPage, "Test sign-in", d)
}

// TestResult is what a test sign-in through a connection's ACS showed:
// the identity mapped from the IdP's assertion and how it would be
// linked, or why the sign-in was refused. A test sign-in creates and
// changes nothing.
type TestResult struct {
	Time time.Time `json:"time"`
	// OK reports that a real sign-in would succeed.
	OK bool `json:"ok"`
	// Refusal says in words why the sign-in was (or would be) refused.
	Refusal     string   `json:"refusal,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	Email       string   `json:"email,omitempty"`
	Name        string   `json:"name,omitempty"`
	UserName    string   `json:"userName,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	Issuer      string   `json:"issuer,omitempty"`
	NameIDFmt   string   `json:"nameIdFormat,omitempty"`
	Match       string   `json:"match,omitempty"`
	Attributes  []string `json:"attributes,omitempty"`
	MappingName string   `json:"mapping,omitempty"`
}

func testResultKey(connID string) string { return "saml/test-result/" + connID }

// testResultTTL is how long the last test result is kept.
const testResultTTL = 90 * 24 * time.Hour

// LastTestResult returns the last test sign-in through the connection,
// provision.ErrNotFound when none.
func LastTestResult(ctx context.Context, e *provision.Engine, tenantID, connectionID string) (TestResult, error) {
	b, err := provision.AdapterOf(e).KVGet(ctx, tenantID, testResultKey(connectionID))
	if err != nil {
		return TestResult{}, err
	}
	var res TestResult
	if err := json.Unmarshal(b, &res); err != nil {
		return TestResult{}, fmt.Errorf("saml: decode test result: %w", err)
	}
	return res, nil
}

// finishTest ends a test sign-in at the ACS: it keeps the result
// (identity or refusal) and sends the browser back to the setup page. No
// user is created or changed and OnLogin is not called.
func (h *Handler) finishTest(w http.ResponseWriter, r *http.Request, c *conn, id *provision.Identity, refusal string) {
	ctx := r.Context()
	res := TestResult{Time: h.now().UTC(), MappingName: c.Mapping.Name}
	if id != nil {
		res.Subject, res.Email, res.Name, res.UserName, res.Groups = id.ExternalID, id.User.PrimaryEmail(), id.User.DisplayName, id.User.UserName, id.Groups
		if res.Name == "" {
			res.Name = strings.TrimSpace(id.User.Name.GivenName + " " + id.User.Name.FamilyName)
		}
		if v := id.Raw[RawIssuer]; len(v) > 0 {
			res.Issuer = v[0]
		}
		if v := id.Raw[RawNameIDFormat]; len(v) > 0 {
			res.NameIDFmt = v[0]
		}
		for k := range id.Raw {
			if !strings.HasPrefix(k, "saml:") {
				res.Attributes = append(res.Attributes, k)
			}
		}
		slices.Sort(res.Attributes)
		res.Match, refusal = h.wouldLink(ctx, c, *id)
	}
	res.Refusal = refusal
	res.OK = refusal == ""
	b, _ := json.Marshal(res)
	if err := provision.AdapterOf(h.engine).KVSet(ctx, c.TenantID, testResultKey(c.ConnectionID), b, testResultTTL); err != nil {
		h.log.ErrorContext(ctx, "saml: keeping a test result", "tenant", c.TenantID, "error", err)
		h.errorPage(w, r, http.StatusServiceUnavailable)
		return
	}
	h.log.InfoContext(ctx, "saml: test sign-in", "tenant", c.TenantID, "connection", c.ConnectionID, "ok", res.OK, "refusal", refusal)
	back := ""
	if ck, err := r.Cookie(setupReturnCookie); err == nil {
		back = localPath(ck.Value)
		gone := h.trackingCookie(c, "", "", -1)
		gone.Name = setupReturnCookie
		http.SetCookie(w, gone)
	}
	if back == "" {
		setupui.Render(w, http.StatusOK, setupResultPage, "Test sign-in", setupData{Tenant: c.TenantID, Connection: c.ConnectionID, Result: &res})
		return
	}
	w.Header().Set("Location", back)
	w.WriteHeader(http.StatusSeeOther)
}

// wouldLink says, without writing, how a sign-in of id would be resolved:
// the match that would link it, or the refusal.
func (h *Handler) wouldLink(ctx context.Context, c *conn, id provision.Identity) (match, refusal string) {
	if strings.TrimSpace(id.ExternalID) == "" {
		return "", "The sign-in has no stable subject: set the NameID format to Persistent (or send the immutable user id attribute) in your IdP."
	}
	pc, err := h.engine.Connection(ctx, c.TenantID, c.ConnectionID)
	if err != nil {
		return "", "The connection is no longer set up: " + err.Error()
	}
	var jitSet provision.JITSettings
	if pc.JIT != nil {
		jitSet = *pc.JIT
	}
	email := id.User.PrimaryEmail()
	if len(jitSet.AllowedEmailDomains) > 0 && !emailIn(email, jitSet.AllowedEmailDomains) {
		if email == "" {
			return "", fmt.Sprintf("The sign-in sent no e-mail address, and this account accepts only addresses in %s: send the email attribute (see the attributes to send).", strings.Join(jitSet.AllowedEmailDomains, ", "))
		}
		return "", fmt.Sprintf("The e-mail address %s is not in this account's domains (%s): sign in as a person of your organization, or ask the app's support to add the domain.", email, strings.Join(jitSet.AllowedEmailDomains, ", "))
	}
	o := provision.Origin{TenantID: c.TenantID, ConnectionID: c.ConnectionID, Actor: "saml-test"}
	if u, err := h.engine.UserByExternalID(ctx, o, id.ExternalID); err == nil {
		return fmt.Sprintf("Already linked: this IdP subject signs in as the existing user %s.", u.UserName), ""
	}
	var rules []string
	for _, m := range pc.Match {
		switch m {
		case provision.MatchPairedExternalID:
			if pc.PairedWith == "" {
				continue
			}
			po := provision.Origin{TenantID: c.TenantID, ConnectionID: pc.PairedWith, Actor: "saml-test"}
			if u, err := h.engine.UserByExternalID(ctx, po, id.ExternalID); err == nil {
				return fmt.Sprintf("Rule pairedExternalId: links to %s, whom the directory %q provisioned with the same id.", u.UserName, pc.PairedWith), ""
			}
			rules = append(rules, fmt.Sprintf("pairedExternalId (the directory %q has no user with id %s yet)", pc.PairedWith, id.ExternalID))
		case provision.MatchEmail:
			rules = append(rules, fmt.Sprintf("email (links to the one user with the address %s, if there is one)", email))
		case provision.MatchUserName:
			rules = append(rules, fmt.Sprintf("userName (links to the user named %s, if there is one)", id.User.UserName))
		}
	}
	first := "No user is linked to this IdP subject yet."
	if len(rules) > 0 {
		first += " At the first sign-in idprov tries, in order: " + strings.Join(rules, "; ") + "."
	}
	if jitSet.Create {
		return first + " If none matches, a new user is created (just-in-time).", ""
	}
	return first + " If none matches, the sign-in is refused: this account does not create users at sign-in (they come from its directory).", ""
}

func emailIn(email string, domains []string) bool {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	d := strings.ToLower(email[at+1:])
	for _, x := range domains {
		if strings.EqualFold(d, x) {
			return true
		}
	}
	return false
}

var setupFuncs = template.FuncMap{
	"date": func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 MST") },
}

const setupValues = `{{define "values"}}<h2>Values to paste in your IdP</h2>
<p class="note">Select a field and copy it (Ctrl+C / ⌘C).</p>
<label for="entity-id">Entity ID (audience, identifier)</label>
<input type="text" id="entity-id" readonly value="{{.URLs.MetadataURL}}">
<label for="acs-url">ACS URL (single sign-on URL, reply URL)</label>
<input type="text" id="acs-url" readonly value="{{.URLs.ACSURL}}">
<label for="sp-metadata">Or, where your IdP takes it, the service provider metadata URL</label>
<input type="text" id="sp-metadata" readonly value="{{.URLs.MetadataURL}}">
{{end}}`

var setupPages = setupui.Parse("home", `{{with .D}}
<h1>Set up single sign-on (SAML)</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Tenant}}
{{if .Saved}}<p class="ok" role="status">The IdP metadata is saved. Next: test a sign-in.</p>{{end}}
{{if .Conn}}
<h2>Your connection</h2>
<ul>
{{with .Metadata}}<li>IdP entity ID: <code>{{.EntityID}}</code></li><li>Signing certificate valid until {{date .CertExpires}}</li>{{end}}
{{if .Result}}{{if .Result.OK}}<li>Last test sign-in on {{date .Result.Time}} succeeded.</li>{{else}}<li>Last test sign-in on {{date .Result.Time}} failed: {{.Result.Refusal}}</li>{{end}}{{else}}<li>Not tested yet.</li>{{end}}
</ul>
<p><a class="button" id="test-signin" href="test">Test sign-in</a> {{if .Result}}<a class="button" href="result">See the last test</a>{{end}}</p>
<p class="note">A test sign-in goes through your IdP and shows what it sent; it creates no user and does not sign you in to the app.</p>
<h2>Change the IdP</h2>
{{else}}
<p>Step 1 of 3: pick your identity provider. You will get the exact steps and the values to paste there, then give its metadata, then test a sign-in.</p>
{{end}}
<ul>
{{if .Demo}}<li><a id="idp-demo" href="idp?name=demo">Demo IdP (built in, for a trial)</a></li>{{end}}
{{range .Guides}}<li><a id="idp-{{.Key}}" href="idp?name={{.Key}}">{{.Name}}</a></li>{{end}}
</ul>
{{end}}
{{end}}`, setupFuncs)

var setupIdPPage = template.Must(setupui.Parse("idp", `{{with .D}}
<nav><a href="./">← All IdPs</a></nav>
<h1>Set up {{.Guide.Name}}</h1>
<p>Step 2 of 3: follow these steps in {{.Guide.Name}}, then give its metadata below.</p>
<ol>{{range .Guide.Steps}}<li>{{.}}</li>{{end}}</ol>
{{template "values" .}}
<h2>Attributes to send</h2>
<table><thead><tr><th scope="col">Name</th><th scope="col">Value in {{.Guide.Name}}</th></tr></thead><tbody>
{{range .Guide.Attributes}}<tr><td><code>{{index . 0}}</code></td><td>{{index . 1}}</td></tr>{{end}}
</tbody></table>
<h2>Give the IdP metadata</h2>
<p>Where to find it: {{.Guide.MetadataAt}}.</p>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}} Nothing was changed.</p>{{end}}
<form method="post" action="metadata" enctype="multipart/form-data">
<input type="hidden" name="idp" value="{{.Guide.Key}}">
<label for="metadataURL">Metadata URL</label>
<input type="url" id="metadataURL" name="metadataURL" value="{{.MetadataURL}}" placeholder="https://…"{{if eq .Field "metadataURL"}} aria-invalid="true" aria-describedby="error"{{end}}>
<label for="metadataFile">Or a metadata file (XML)</label>
<input type="file" id="metadataFile" name="metadataFile" accept=".xml,application/xml,text/xml"{{if eq .Field "metadataFile"}} aria-invalid="true" aria-describedby="error"{{end}}>
<p><button type="submit" id="save-metadata">Check and save</button></p>
</form>
{{end}}`, setupFuncs).New("values").Parse(setupValues)).Lookup("idp")

var setupResultPage = setupui.Parse("result", `{{with .D}}
<nav><a href="./">← Single sign-on setup</a></nav>
<h1>Test sign-in</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{with .Result}}
{{if .OK}}<p class="ok" role="status" id="test-ok">The test sign-in worked: a real sign-in would succeed. Step 3 of 3 is done.</p>
{{else}}<p class="error" role="alert" id="test-refused">The sign-in would be refused: {{.Refusal}}</p>{{end}}
<h2>What your IdP sent, as this app maps it</h2>
<table><tbody>
<tr><th scope="row">Subject (external id)</th><td id="r-subject">{{.Subject}}</td></tr>
<tr><th scope="row">E-mail</th><td id="r-email">{{.Email}}</td></tr>
<tr><th scope="row">Name</th><td id="r-name">{{.Name}}</td></tr>
<tr><th scope="row">User name</th><td>{{.UserName}}</td></tr>
<tr><th scope="row">Groups</th><td id="r-groups">{{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{end}}</td></tr>
<tr><th scope="row">Issuer</th><td>{{.Issuer}}</td></tr>
<tr><th scope="row">NameID format</th><td>{{.NameIDFmt}}</td></tr>
<tr><th scope="row">Attributes received</th><td>{{range $i, $a := .Attributes}}{{if $i}}, {{end}}<code>{{$a}}</code>{{end}}</td></tr>
<tr><th scope="row">How it links</th><td id="r-match">{{.Match}}</td></tr>
</tbody></table>
<p class="note">Tested on {{date .Time}}. Nothing was created or changed, and you are not signed in to the app.</p>
{{end}}
<p><a class="button" href="test">Test sign-in again</a></p>
{{end}}`, setupFuncs)

// signingCertificates returns the IdP's signing certificates in ed that
// parse.
func signingCertificates(ed *crewsaml.EntityDescriptor) []*x509.Certificate {
	var certs []*x509.Certificate
	for _, d := range ed.IDPSSODescriptors {
		for _, kd := range d.KeyDescriptors {
			if kd.Use != "" && kd.Use != "signing" {
				continue
			}
			for _, xc := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(xc.Data), ""))
				if err != nil {
					continue
				}
				if cert, err := x509.ParseCertificate(der); err == nil {
					certs = append(certs, cert)
				}
			}
		}
	}
	return certs
}
