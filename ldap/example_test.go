package ldap_test

import (
	"context"
	"fmt"
	"log"

	"github.com/idprov/idprov/ldap"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// A Syncer is configured per LDAP connection. NewSyncer checks the
// configuration without connecting: a plaintext URL needs StartTLS (or an
// explicit InsecurePlaintext), and filters must compile.
func ExampleNewSyncer() {
	eng, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{
			{ID: "corp-ldap", Kind: provision.KindLDAP},
		}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	cfg := ldap.Config{
		Engine:       eng,
		TenantID:     "acme",
		ConnectionID: "corp-ldap",
		URL:          "ldap://ldap.acme.example",
		BindDN:       "cn=idprov-sync,dc=acme,dc=example",
		BindPassword: "secret",
		UserBaseDN:   "ou=people,dc=acme,dc=example",
		GroupBaseDN:  "ou=groups,dc=acme,dc=example",
	}
	_, err = ldap.NewSyncer(cfg)
	fmt.Println(err)

	cfg.StartTLS = true
	cfg.UserFilter = "(&(objectClass=inetOrgPerson)(departmentNumber=42)"
	_, err = ldap.NewSyncer(cfg)
	fmt.Println(err != nil)

	cfg.UserFilter = "(&(objectClass=inetOrgPerson)(departmentNumber=42))"
	cfg.Mapping = ldap.DirectoryServer389()
	s, err := ldap.NewSyncer(cfg)
	fmt.Println(s != nil, err)
	// Output:
	// ldap: ldap://ldap.acme.example is plaintext: set StartTLS, use ldaps://, or set InsecurePlaintext
	// true
	// true <nil>
}

// Run syncs in the background; held deactivations wait for Confirm.
func ExampleSyncer_Run() {
	var eng *provision.Engine // the host's engine
	s, err := ldap.NewSyncer(ldap.Config{
		Engine: eng, TenantID: "acme", ConnectionID: "corp-ldap",
		URL: "ldaps://ldap.acme.example", BindDN: "cn=idprov-sync,dc=acme,dc=example", BindPassword: "secret",
		UserBaseDN: "ou=people,dc=acme,dc=example", GroupBaseDN: "ou=groups,dc=acme,dc=example",
		OnReport: func(r *ldap.Report, err error) {
			if r != nil && r.Held != nil {
				// Show the plan to an administrator (engine.Plans, Plan);
				// on approval: engine.ConfirmPlan(ctx, admin, r.Held.ID)
				log.Printf("%d deactivations held: %s", r.Held.Size, r.Held.Summary)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
}

// The Active Directory preset keys users on objectGUID (rendered the way
// AD shows it), maps userPrincipalName to userName and reads disabled
// accounts from userAccountControl. Incremental syncs use DirSync when
// the bind account holds "Replicating Directory Changes", and poll
// uSNChanged otherwise.
func ExampleActiveDirectory() {
	m := ldap.ActiveDirectory()
	fmt.Println(m.ID, m.UserName, m.Disabled[0].Attribute, m.Disabled[0].Match, m.Disabled[0].Value)
	fmt.Println(m.UserFilter, m.GroupFilter, m.DNMembers)

	// Log in with the pre-Windows 2000 name instead, and treat locked-out
	// accounts as disabled too.
	m.UserName = "sAMAccountName"
	m.Disabled = append(m.Disabled, ldap.DisabledRule{Attribute: "lockoutTime", Match: ldap.MatchNonZero})

	eng, err := provision.NewEngine(provision.Config{
		Store: memstore.New(),
		Tenants: []provision.Tenant{{ID: "acme", Connections: []provision.Connection{
			{ID: "corp-ad", Kind: provision.KindLDAP},
		}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	s, err := ldap.NewSyncer(ldap.Config{
		Engine: eng, TenantID: "acme", ConnectionID: "corp-ad",
		URL:    "ldaps://dc1.corp.acme.example",
		BindDN: "CN=idprov-sync,OU=Service Accounts,DC=corp,DC=acme,DC=example", BindPassword: "secret",
		UserBaseDN:  "OU=Staff,DC=corp,DC=acme,DC=example",
		GroupBaseDN: "OU=Groups,DC=corp,DC=acme,DC=example",
		Mapping:     m,
		Incremental: ldap.IncrementalDirSync,
	})
	fmt.Println(s != nil, err)
	// Output:
	// objectGUID userPrincipalName userAccountControl anyBit 2
	// (&(objectCategory=person)(objectClass=user)) (objectClass=group) [member]
	// true <nil>
}
