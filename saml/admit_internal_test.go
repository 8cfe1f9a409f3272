package saml

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/jit"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/saml/samltest"
	"github.com/idprov/idprov/store/memstore"
)

// TestACSParseSlots: when every parse slot is taken, an ACS request waits
// for one briefly, then is answered 503 with Retry-After, unparsed; a
// slot that frees in time lets it through.
func TestACSParseSlots(t *testing.T) {
	idp, err := samltest.New("https://idp.test/metadata")
	if err != nil {
		t.Fatal(err)
	}
	idp.SSOURL = "https://idp.test/sso"
	e, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{
		{ID: "acme", Connections: []provision.Connection{{ID: "saml", Kind: provision.KindSAML, JIT: &provision.JITSettings{Create: true}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jit.New(jit.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Engine: e, JIT: p, BaseURL: "https://app.test", MaxConcurrentParses: 2,
		Connections: []Connection{{TenantID: "acme", ConnectionID: "saml", IDPMetadata: idp.Metadata(), AllowIDPInitiated: true}},
		OnLogin:     func(w http.ResponseWriter, _ *http.Request, l Login) { _, _ = w.Write([]byte("welcome")) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if cap(h.parses) != 2 {
		t.Fatalf("%d parse slots, want 2", cap(h.parses))
	}
	post := func(nameID string) *httptest.ResponseRecorder {
		xml, err := idp.Response(samltest.Response{User: samltest.User{NameID: nameID, Attributes: []samltest.Attribute{{Name: "email", Values: []string{nameID + "@acme.example"}}}},
			ACSURL: h.ACSURL("acme"), Audience: h.MetadataURL("acme")})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, h.ACSURL("acme"), strings.NewReader(samltest.Form(xml, "").Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// Two parses in progress (the slots held as a parse holds them).
	h.parses <- struct{}{}
	h.parses <- struct{}{}
	start := time.Now()
	w := post("u1")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("with every slot taken: %d (Retry-After %q) %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if waited := time.Since(start); waited < parseWait {
		t.Fatalf("answered 503 after %v, before waiting %v for a slot", waited, parseWait)
	}
	if _, n, _ := provision.AdapterOf(e).Store().ListUsers(t.Context(), "acme", provision.Page{}); n != 0 {
		t.Fatalf("a request answered 503 created %d users", n)
	}
	// A slot frees while the request waits: it goes through.
	go func() {
		time.Sleep(parseWait / 4)
		<-h.parses
	}()
	if w := post("u2"); w.Code != http.StatusOK {
		t.Fatalf("after a slot freed: %d %s", w.Code, w.Body)
	}
	<-h.parses
	if len(h.parses) != 0 {
		t.Fatalf("%d slots still taken after the requests ended", len(h.parses))
	}
	if w := post("u3"); w.Code != http.StatusOK {
		t.Fatalf("with free slots: %d %s", w.Code, w.Body)
	}
}
