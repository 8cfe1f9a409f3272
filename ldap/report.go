package ldap

import (
	"fmt"
	"github.com/idprov/idprov/provision"
	"strings"
	"time"
)

// Mode says what kind of sync produced a Report.
type Mode string

// The sync modes.
const (
	// ModeFull read every entry in scope: it sweeps (deactivates the users
	// whose entries are gone) when the search completed.
	ModeFull Mode = "full"
	// ModeSyncrepl read the changes since a stored RFC 4533 cookie.
	ModeSyncrepl Mode = "syncrepl"
	// ModeModifyTimestamp read the entries modified since the last sync.
	ModeModifyTimestamp Mode = "modifyTimestamp"
	// ModeDirSync read the changes since a stored Active Directory
	// DirSync cookie.
	ModeDirSync Mode = "dirsync"
	// ModeUSNChanged read the Active Directory entries whose uSNChanged
	// is above the stored USN.
	ModeUSNChanged Mode = "uSNChanged"
	// ModePersist applied changes the server pushed over an RFC 4533
	// refreshAndPersist search (Run with Config.Push).
	ModePersist Mode = "persist"
)

// maxSkips bounds Report.Skips; Report.Skipped counts them all.
const maxSkips = 100

// Report is the outcome of a sync (or, from Plan, what a sync would do).
type Report struct {
	// TenantID and ConnectionID name the connection synced.
	TenantID     string
	ConnectionID string
	// Mode is the kind of sync that ran.
	Mode Mode
	// DryRun is set on a Plan: nothing was applied.
	DryRun bool
	// FullReason says why a sync asked for changes ran as a full sync.
	FullReason string `json:",omitempty"`
	// Started is when the sync began, by Config.Now; Duration how long it
	// took.
	Started  time.Time
	Duration time.Duration

	// Entries is the number of user entries read (changed entries in an
	// incremental sync).
	Entries int
	// Users created, updated (attributes, rename, move), linked to an
	// existing user on first contact, unchanged, deactivated (disabled,
	// gone or deleted) and reactivated (enabled again).
	Created     int
	Updated     int
	Linked      int
	Unchanged   int
	Deactivated int
	Reactivated int
	// Skipped counts the entries and changes that were not applied, and
	// Skips says why (the first 100).
	Skipped int
	Skips   []Skip `json:",omitempty"`
	// IgnoredDeletes counts deletes of ids this connection does not know
	// or does not own (syncrepl reports entries leaving the filter too).
	IgnoredDeletes int
	// Referrals counts the continuation references the searches returned
	// and the sync did not follow (Config.ReferralsIncomplete).
	Referrals int
	// Note says how the incremental mode was chosen when it is not the
	// one asked for (DirSync refused: uSNChanged polling).
	Note string `json:",omitempty"`

	// Groups summarizes the group sync.
	Groups GroupReport

	// Swept says whether this sync looked for users whose entries are
	// gone; NotSwept says why it did not.
	Swept    bool
	NotSwept string `json:",omitempty"`
	// Held is the plan of deactivations that crossed the safety threshold
	// (without its changes: provision.Engine.Plan pages through them):
	// nothing of it was applied; provision.Engine.ConfirmPlan applies it.
	// In a dry run, the plan that a sync would hold.
	Held *provision.Plan `json:",omitempty"`
}

// Skip is one entry or change that was not applied, and why.
type Skip struct {
	// DN and ExternalID name the entry, as far as known.
	DN         string `json:",omitempty"`
	ExternalID string `json:",omitempty"`
	// Reason is for an administrator.
	Reason string
}

// GroupReport summarizes the group side of a sync.
type GroupReport struct {
	// Entries is the number of group entries read.
	Entries int
	// Groups created, updated (renamed or members changed), deleted
	// (their entries gone) and unchanged.
	Created   int
	Updated   int
	Deleted   int
	Unchanged int
	// MembersAdded and MembersRemoved count membership changes.
	MembersAdded   int
	MembersRemoved int
	// Skipped counts groups not applied (see Report.Skips).
	Skipped int
	// Cycles counts nesting cycles that were broken.
	Cycles int
}

func (r *Report) skip(dn, id, reason string) {
	r.Skipped++
	if len(r.Skips) < maxSkips {
		r.Skips = append(r.Skips, Skip{DN: dn, ExternalID: id, Reason: reason})
	}
}

// String summarizes the report on one line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ldap %s sync of %s/%s", r.Mode, r.TenantID, r.ConnectionID)
	if r.DryRun {
		b.WriteString(" (plan)")
	}
	fmt.Fprintf(&b, ": %d entries, %d created, %d updated, %d linked, %d unchanged, %d deactivated, %d reactivated, %d skipped; groups: %d created, %d updated, %d deleted, +%d/-%d members; %s",
		r.Entries, r.Created, r.Updated, r.Linked, r.Unchanged, r.Deactivated, r.Reactivated, r.Skipped,
		r.Groups.Created, r.Groups.Updated, r.Groups.Deleted, r.Groups.MembersAdded, r.Groups.MembersRemoved, r.Duration.Round(time.Millisecond))
	if r.Held != nil {
		fmt.Fprintf(&b, "; %d deactivations held as plan %s", r.Held.Size, r.Held.ID)
	}
	return b.String()
}
