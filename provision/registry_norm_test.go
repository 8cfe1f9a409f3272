package provision_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/idprov/idprov/provision"
)

func TestNormalizeTenantRecord(t *testing.T) {
	h1, h2 := provision.TokenHash{1}, provision.TokenHash{2}
	in := provision.TenantRecord{
		TenantID: "globex",
		Body:     []byte("sealed"),
		Domains:  []string{"Globex.Example", "globex.org", "GLOBEX.EXAMPLE"},
		Tokens:   []provision.TokenRef{{Hash: h2, ConnectionID: "entra"}, {Hash: h1, ConnectionID: "okta"}, {Hash: h2, ConnectionID: "entra"}},
	}
	got, err := provision.NormalizeTenantRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"globex.example", "globex.org"}; !slices.Equal(got.Domains, want) {
		t.Errorf("Domains = %q, want %q", got.Domains, want)
	}
	if want := []provision.TokenRef{{Hash: h1, ConnectionID: "okta"}, {Hash: h2, ConnectionID: "entra"}}; !slices.Equal(got.Tokens, want) {
		t.Errorf("Tokens = %v, want %v", got.Tokens, want)
	}
	got.Body[0] = 'X'
	if string(in.Body) != "sealed" {
		t.Error("the normalized record shares its Body with the input")
	}
	if got, err := provision.NormalizeTenantRecord(provision.TenantRecord{TenantID: "t"}); err != nil || got.Body == nil || len(got.Domains) != 0 || len(got.Tokens) != 0 {
		t.Errorf("an empty record normalizes to %+v, %v; want an empty, non-nil Body", got, err)
	}

	for name, bad := range map[string]provision.TenantRecord{
		"no tenant id":      {Domains: []string{"a.example"}},
		"an empty domain":   {TenantID: "t", Domains: []string{"a.example", ""}},
		"a token, no conn":  {TenantID: "t", Tokens: []provision.TokenRef{{Hash: h1}}},
		"one hash, 2 conns": {TenantID: "t", Tokens: []provision.TokenRef{{Hash: h1, ConnectionID: "a"}, {Hash: h1, ConnectionID: "b"}}},
	} {
		var ve *provision.ValidationError
		if _, err := provision.NormalizeTenantRecord(bad); !errors.Is(err, provision.ErrInvalid) || !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a *ValidationError", name, err)
		}
	}
}
