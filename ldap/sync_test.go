package ldap

import (
	"testing"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
)

// TestLifecycle walks the five seed scenarios through full and
// incremental (syncrepl) syncs: onboarding, an attribute change and a
// rename, a promotion (group change), offboarding (disable, delete) and a
// rehire (enabled again).
func TestLifecycle(t *testing.T) {
	for _, inc := range []Incremental{IncrementalSyncrepl, IncrementalModifyTimestamp} {
		t.Run(string(inc), func(t *testing.T) {
			e := newEnv(t, ldaptest.Options{})
			ada := e.addUser("ada", "Ada", "Lovelace", map[string][]string{"title": {"Engineer"}, "departmentNumber": {"R&D"}, "employeeNumber": {"1815"}})
			bob := e.addUser("bob", "Bob", "Babbage", nil)
			cy := e.addUser("cy", "Cy", "Clark", nil)
			eng := e.addGroup("engineering", ada, bob)
			mgr := e.addGroup("managers", cy)
			s := e.syncer(func(c *Config) { c.Incremental = inc; c.MaxDeactivationShare = 1 })

			// Onboarding.
			rep := e.sync(s)
			e.expect(rep, counts{created: 3})
			eq(t, "groups created", rep.Groups.Created, 2)
			u := e.user(ada)
			eq(t, "ada", []any{u.UserName, u.Name.GivenName, u.Name.FamilyName, u.DisplayName, u.PrimaryEmail(), u.Title, u.Department, u.EmployeeNumber, u.Owner, u.Active},
				[]any{"ada", "Ada", "Lovelace", "Ada Lovelace", "ada@acme.example", "Engineer", "R&D", "1815", ldapConn, true})
			engID, mgrID := e.srv.EntryUUID(t, eng), e.srv.EntryUUID(t, mgr)
			eq(t, "engineering", e.members(engID), []string{"ada", "bob"})
			eq(t, "user.created events", e.events(provision.UserCreated), 3)

			// A second full sync of unchanged data changes nothing.
			rep = e.sync(s)
			e.expect(rep, counts{unchanged: 3})
			eq(t, "groups unchanged", rep.Groups.Unchanged, 2)

			// Attribute change and rename (modrdn): the same user.
			e.srv.Replace(t, ada, map[string][]string{"title": {"Principal Engineer"}})
			e.srv.Rename(t, bob, "uid=robert", "")
			bob = e.userDN("robert")
			e.srv.Replace(t, bob, map[string][]string{"uid": {"robert", "bob"}})
			e.srv.DeleteValues(t, bob, "uid", "bob")
			rep = e.changes(s)
			eq(t, "mode", rep.Mode, map[Incremental]Mode{IncrementalSyncrepl: ModeSyncrepl, IncrementalModifyTimestamp: ModeModifyTimestamp}[inc])
			if rep.Updated != 2 || rep.Created != 0 || rep.Deactivated != 0 {
				t.Fatalf("rename round: %v %v", rep, rep.Skips)
			}
			eq(t, "ada's title", e.user(ada).Title, "Principal Engineer")
			eq(t, "bob renamed", e.user(bob).UserName, "robert")
			eq(t, "engineering after rename", e.members(engID), []string{"ada", "robert"})

			// Promotion: cy joins engineering, ada joins managers.
			e.srv.AddValues(t, eng, "member", cy)
			e.srv.AddValues(t, mgr, "member", ada)
			rep = e.changes(s)
			eq(t, "members added", rep.Groups.MembersAdded, 2)
			eq(t, "engineering", e.members(engID), []string{"ada", "cy", "robert"})
			eq(t, "managers", e.members(mgrID), []string{"ada", "cy"})

			// Offboarding: cy disabled (ppolicy lock), robert deleted.
			e.srv.Replace(t, cy, map[string][]string{"pwdAccountLockedTime": {"000001010000Z"}})
			cyID := e.user(cy).ID
			e.srv.Delete(t, bob)
			rep = e.changes(s)
			eq(t, "cy active after disable", e.userByID(cyID).Active, false)
			if inc == IncrementalSyncrepl {
				eq(t, "deactivated (disable + delete)", rep.Deactivated, 2)
			} else {
				eq(t, "deactivated (disable; delete waits for the full sync)", rep.Deactivated, 1)
				rep = e.sync(s)
				eq(t, "full sync sweeps the deleted entry", rep.Deactivated, 1)
			}
			eq(t, "user.deactivated events", e.events(provision.UserDeactivated), 2)
			eq(t, "engineering after delete", e.members(engID), []string{"ada", "cy"})

			// Rehire: cy enabled again.
			e.srv.Replace(t, cy, map[string][]string{"pwdAccountLockedTime": nil})
			rep = e.changes(s)
			eq(t, "reactivated", rep.Reactivated, 1)
			eq(t, "cy active", e.userByID(cyID).Active, true)
			eq(t, "user.reactivated events", e.events(provision.UserReactivated), 1)

			// Nothing was ever deleted in the application.
			eq(t, "user.deleted events", e.events(provision.UserDeleted), 0)
		})
	}
}
