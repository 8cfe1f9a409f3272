package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/idprov/idprov/provision"
)

// The -config file declares tenants and their connections, as a host would
// from its own configuration or database:
//
//	{"tenants": [{
//	  "id": "globex", "name": "Globex", "verifiedDomains": ["globex.test"],
//	  "scim": [{"id": "okta", "name": "Okta", "tokenHashes": ["sha256:9f86d0..."]}],
//	  "saml": {"id": "okta-sso", "idpMetadata": "https://globex.okta.com/app/.../sso/saml/metadata", "mapping": "okta"},
//	  "ldap": [{"id": "corp", "url": "ldaps://dc1.globex.test", "bindDN": "...", "bindPassword": "...",
//	            "baseDN": "dc=globex,dc=test", "preset": "ad", "interval": "1m"}],
//	  "webhook": {"url": "https://hooks.globex.test/idprov", "secret": "..."},
//	  "accessRules": [{"id": "finance", "filter": "department eq \"Finance\"", "roles": ["billing"]}]
//	}]}
//
// A SCIM directory lists the hashes of its bearer tokens ("tokenHashes",
// as scim.TokenHash.String prints them) or the tokens themselves
// ("tokens"); with neither, the app makes one, keeps it in the store and
// prints it. "idpMetadata" is a URL, a file, or "demo" for the built-in
// demo IdP. The one-tenant flags add to the tenant named by -tenant (acme
// by default), which the file may also declare.

// fileConfig is the -config file.
type fileConfig struct {
	Tenants []tenantConfig `json:"tenants"`
}

// tenantConfig is one tenant of the file: what the features read.
type tenantConfig struct {
	ID              string                 `json:"id"`
	Name            string                 `json:"name,omitempty"`
	VerifiedDomains []string               `json:"verifiedDomains,omitempty"`
	SCIM            []scimConfig           `json:"scim,omitempty"`
	SAML            *samlConfig            `json:"saml,omitempty"`
	LDAP            []ldapConfig           `json:"ldap,omitempty"`
	Webhook         *webhookConfig         `json:"webhook,omitempty"`
	AccessRules     []provision.AccessRule `json:"accessRules,omitempty"`
}

type scimConfig struct {
	ID          string   `json:"id"`
	Name        string   `json:"name,omitempty"`
	Tokens      []string `json:"tokens,omitempty"`
	TokenHashes []string `json:"tokenHashes,omitempty"`
}

type samlConfig struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// IDPMetadata is a URL, a file, or "demo".
	IDPMetadata  string `json:"idpMetadata"`
	IDPInitiated bool   `json:"idpInitiated,omitempty"`
	// EmailDomain is the verified domain logins must come from.
	EmailDomain string `json:"emailDomain,omitempty"`
	// Mapping names a saml.Mappings preset (okta, entra, adfs, google,
	// onelogin, shibboleth); empty is the default mapping.
	Mapping string `json:"mapping,omitempty"`
	// PairedWith is the SCIM directory whose externalIds the login's
	// subject matches on first contact; empty: the tenant's first one.
	PairedWith string `json:"pairedWith,omitempty"`
}

type ldapConfig struct {
	ID           string   `json:"id"`
	Name         string   `json:"name,omitempty"`
	URL          string   `json:"url"`
	BindDN       string   `json:"bindDN,omitempty"`
	BindPassword string   `json:"bindPassword,omitempty"`
	BaseDN       string   `json:"baseDN"`
	Preset       string   `json:"preset,omitempty"`
	UserFilter   string   `json:"userFilter,omitempty"`
	GroupFilter  string   `json:"groupFilter,omitempty"`
	Interval     duration `json:"interval,omitzero"`
	// TLSCA pins the server's CA; TLSClientCert and TLSClientKey are a
	// client certificate (PEM), as Google Secure LDAP demands.
	TLSCA         string `json:"tlsCA,omitempty"`
	TLSClientCert string `json:"tlsClientCert,omitempty"`
	TLSClientKey  string `json:"tlsClientKey,omitempty"`
}

type webhookConfig struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// duration is a time.Duration written as "90s" or "1m" in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &valueError{Value: string(b), Want: `a duration, a string such as "90s" or "1m"`}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &valueError{Value: string(b), Want: `a duration such as "90s" or "1m"`}
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// tenant is one tenant of the run: what is declared to the engine, and
// the configuration the features read to set up its connections.
type tenant struct {
	provision.Tenant
	Conf tenantConfig
}

// loadTenants returns the run's tenants: first flagTenant (the one the
// one-tenant flags configure, taken from the file when it declares it),
// then the file's others in order.
func loadTenants(file, flagTenant string) ([]*tenant, error) {
	var fc fileConfig
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		if fc, err = decodeConfig(file, b); err != nil { // errors.go
			return nil, err
		}
	}
	out := []*tenant{{Conf: tenantConfig{ID: flagTenant}}}
	seen := map[string]bool{}
	for _, tc := range fc.Tenants {
		if tc.ID == "" {
			return nil, fmt.Errorf("-config %s: a tenant without an id", file)
		}
		if seen[tc.ID] {
			return nil, fmt.Errorf("-config %s: tenant %q declared twice", file, tc.ID)
		}
		seen[tc.ID] = true
		if tc.ID == flagTenant {
			out[0].Conf = tc
			continue
		}
		out = append(out, &tenant{Conf: tc})
	}
	for _, t := range out {
		name := t.Conf.Name
		if name == "" {
			name = t.Conf.ID
		}
		t.Tenant = provision.Tenant{
			ID:              t.Conf.ID,
			Name:            name,
			VerifiedDomains: t.Conf.VerifiedDomains,
			AccessRules:     t.Conf.AccessRules,
		}
	}
	return out, nil
}

// tenant returns the run's tenant id, or nil.
func (a *app) tenant(id string) *tenant {
	for _, t := range a.Tenants {
		if t.ID == id {
			return t
		}
	}
	return nil
}
