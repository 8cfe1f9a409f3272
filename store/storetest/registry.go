package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// registry returns a fresh store and its Registry.
func (s *suite) registry(t *testing.T) (provision.Store, provision.Registry) {
	t.Helper()
	st := s.store(t)
	reg, ok := st.(provision.Registry)
	if !ok {
		t.Fatalf("storetest: newStore returned a %T, which is not a provision.Registry, although the first store it returned was", st)
	}
	return st, reg
}

// txRegistry returns the Registry of the Store an Atomically function
// is given.
func txRegistry(tx provision.Store) (provision.Registry, error) {
	reg, ok := tx.(provision.Registry)
	if !ok {
		return nil, errors.New("the store is a Registry but the Store that Atomically hands to fn is not")
	}
	return reg, nil
}

// tokenHash is the hash of the bearer token named name.
func tokenHash(name string) provision.TokenHash {
	return sha256.Sum256([]byte("storetest token " + name))
}

// tenantRecord is a record of tenant with a body, the domains and one
// token per connection named in conns.
func tenantRecord(tenant string, domains []string, conns ...string) provision.TenantRecord {
	r := provision.TenantRecord{
		TenantID: tenant,
		Body:     []byte(`{"name":"` + tenant + `","sealed":"AAEC/w=="}` + "\x00\xff"),
		Domains:  domains,
	}
	for _, c := range conns {
		r.Tokens = append(r.Tokens, provision.TokenRef{Hash: tokenHash(tenant + "/" + c), ConnectionID: c})
	}
	return r
}

// regKey is what a record holds, in a form that does not depend on the
// order a store keeps Domains and Tokens in, or on the case of Domains.
type regKey struct {
	TenantID string
	Version  int64
	Body     string
	Domains  []string
	Tokens   []string
}

func keyOf(r provision.TenantRecord) regKey {
	k := regKey{TenantID: r.TenantID, Version: r.Version, Body: string(r.Body)}
	for _, d := range r.Domains {
		k.Domains = append(k.Domains, strings.ToLower(d))
	}
	slices.Sort(k.Domains)
	k.Domains = slices.Compact(k.Domains)
	for _, tr := range r.Tokens {
		k.Tokens = append(k.Tokens, fmt.Sprintf("%x=%s", tr.Hash, tr.ConnectionID))
	}
	slices.Sort(k.Tokens)
	return k
}

// sameRecord fails t unless got holds what want holds.
func sameRecord(t *testing.T, what string, want, got provision.TenantRecord) {
	t.Helper()
	if d := diff(keyOf(want), keyOf(got)); d != "" {
		t.Errorf("%s: record differs (-want +got):\n%s", what, d)
	}
}

func putRecord(t *testing.T, reg provision.Registry, r provision.TenantRecord, expected int64) provision.TenantRecord {
	t.Helper()
	got, err := reg.PutTenantRecord(t.Context(), r, expected)
	must(t, err, "PutTenantRecord(%s, version %d)", r.TenantID, expected)
	return got
}

func wantRecord(t *testing.T, reg provision.Registry, want provision.TenantRecord) {
	t.Helper()
	got, err := reg.GetTenantRecord(t.Context(), want.TenantID)
	if err != nil {
		t.Errorf("GetTenantRecord(%s): %v", want.TenantID, err)
		return
	}
	sameRecord(t, "GetTenantRecord("+want.TenantID+")", want, got)
	if got.Rev != want.Rev && want.Rev != 0 {
		t.Errorf("GetTenantRecord(%s).Rev = %d, want %d", want.TenantID, got.Rev, want.Rev)
	}
}

func wantNoRecord(t *testing.T, reg provision.Registry, tenant string) {
	t.Helper()
	got, err := reg.GetTenantRecord(t.Context(), tenant)
	if !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("GetTenantRecord(%s) = %+v, %v; want ErrNotFound", tenant, got, err)
	}
}

func wantDomain(t *testing.T, reg provision.Registry, domain, tenant string) {
	t.Helper()
	got, err := reg.TenantByDomain(t.Context(), domain)
	switch {
	case tenant == "" && !errors.Is(err, provision.ErrNotFound):
		t.Errorf("TenantByDomain(%s) = %q, %v; want ErrNotFound", domain, got, err)
	case tenant != "" && (err != nil || got != tenant):
		t.Errorf("TenantByDomain(%s) = %q, %v; want %q", domain, got, err, tenant)
	}
}

func wantToken(t *testing.T, reg provision.Registry, h provision.TokenHash, tenant, conn string) {
	t.Helper()
	gt, gc, err := reg.ConnectionByTokenHash(t.Context(), h)
	switch {
	case tenant == "" && !errors.Is(err, provision.ErrNotFound):
		t.Errorf("ConnectionByTokenHash(%x) = %q, %q, %v; want ErrNotFound", h[:4], gt, gc, err)
	case tenant != "" && (err != nil || gt != tenant || gc != conn):
		t.Errorf("ConnectionByTokenHash(%x) = %q, %q, %v; want %q, %q", h[:4], gt, gc, err, tenant, conn)
	}
}

func allChanges(t *testing.T, reg provision.Registry, after int64) []provision.RegistryChange {
	t.Helper()
	cs, err := reg.RegistryChanges(t.Context(), after, 1_000_000)
	must(t, err, "RegistryChanges(%d)", after)
	return cs
}

// checkChanges fails t unless cs are in strictly increasing Rev order,
// with one entry per tenant.
func checkChanges(t *testing.T, what string, cs []provision.RegistryChange) {
	t.Helper()
	seen := map[string]bool{}
	for i, c := range cs {
		if i > 0 && c.Rev <= cs[i-1].Rev {
			t.Errorf("%s: Rev %d after Rev %d: %+v", what, c.Rev, cs[i-1].Rev, cs)
		}
		if seen[c.TenantID] {
			t.Errorf("%s: tenant %s listed twice: %+v", what, c.TenantID, cs)
		}
		seen[c.TenantID] = true
	}
}

func testRegistry(t *testing.T, s *suite) {
	t.Run("CreateGetReplace", func(t *testing.T) {
		_, reg := s.registry(t)
		wantNoRecord(t, reg, tenantA)
		in := tenantRecord(tenantA, []string{"acme.example", "acme.test"}, "okta", "entra")
		in.Version, in.Rev = 42, 42 // ignored: the store sets them
		before := time.Now().Add(-time.Minute)
		v1 := putRecord(t, reg, in, 0)
		in.Version = 1
		sameRecord(t, "PutTenantRecord (create)", in, v1)
		if v1.Rev <= 0 || v1.Version != 1 {
			t.Errorf("created record has Version %d, Rev %d; want 1 and a positive Rev", v1.Version, v1.Rev)
		}
		if v1.Modified.Before(before) || v1.Modified.After(time.Now().Add(time.Minute)) {
			t.Errorf("created record has Modified %v, want about now", v1.Modified)
		}
		wantRecord(t, reg, v1)
		wantDomain(t, reg, "acme.example", tenantA)
		wantDomain(t, reg, "acme.test", tenantA)
		wantToken(t, reg, tokenHash(tenantA+"/okta"), tenantA, "okta")
		wantToken(t, reg, tokenHash(tenantA+"/entra"), tenantA, "entra")

		next := tenantRecord(tenantA, []string{"acme.example", "acme.org"}, "okta", "ldap")
		next.Body = []byte("version two")
		v2 := putRecord(t, reg, next, 1)
		next.Version = 2
		sameRecord(t, "PutTenantRecord (replace)", next, v2)
		if v2.Rev <= v1.Rev {
			t.Errorf("replace took Rev %d, not above the create's %d", v2.Rev, v1.Rev)
		}
		wantRecord(t, reg, v2)
		wantDomain(t, reg, "acme.org", tenantA)
		wantDomain(t, reg, "acme.test", "")
		wantToken(t, reg, tokenHash(tenantA+"/entra"), "", "")
		wantToken(t, reg, tokenHash(tenantA+"/ldap"), tenantA, "ldap")

		// What the caller keeps is not the store's.
		v2.Body[0] = 'X'
		v2.Domains[0] = "evil.example"
		wantRecord(t, reg, provision.TenantRecord{TenantID: tenantA, Version: 2, Body: []byte("version two"), Domains: next.Domains, Tokens: next.Tokens})

		empty := putRecord(t, reg, provision.TenantRecord{TenantID: tenantB}, 0)
		if empty.Version != 1 || len(empty.Body) != 0 || len(empty.Domains) != 0 || len(empty.Tokens) != 0 {
			t.Errorf("an empty record reads back as %+v", empty)
		}
		wantRecord(t, reg, empty)
	})

	t.Run("Versions", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		r := tenantRecord(tenantA, []string{"acme.example"}, "okta")
		_, err := reg.PutTenantRecord(ctx, r, 1)
		wantErr(t, err, provision.ErrNotFound, "PutTenantRecord(version 1) of no record")
		wantErr(t, reg.DeleteTenantRecord(ctx, tenantA, 1), provision.ErrNotFound, "DeleteTenantRecord of no record")
		v1 := putRecord(t, reg, r, 0)
		v2 := putRecord(t, reg, tenantRecord(tenantA, []string{"acme.example"}, "okta", "entra"), 1)
		stale := tenantRecord(tenantA, []string{"stale.example"}, "stale")
		_, err = reg.PutTenantRecord(ctx, stale, 1)
		wantErr(t, err, provision.ErrVersionConflict, "PutTenantRecord with a stale version")
		_, err = reg.PutTenantRecord(ctx, stale, 3)
		wantErr(t, err, provision.ErrVersionConflict, "PutTenantRecord with a future version")
		wantErr(t, reg.DeleteTenantRecord(ctx, tenantA, 1), provision.ErrVersionConflict, "DeleteTenantRecord with a stale version")
		wantRecord(t, reg, v2)
		wantDomain(t, reg, "stale.example", "")
		wantToken(t, reg, tokenHash(tenantA+"/stale"), "", "")
		if cs := allChanges(t, reg, v1.Rev); len(cs) != 1 || cs[0] != (provision.RegistryChange{TenantID: tenantA, Rev: v2.Rev}) {
			t.Errorf("RegistryChanges after the refused writes = %+v, want only %s at Rev %d", cs, tenantA, v2.Rev)
		}
	})

	t.Run("CreateTwice", func(t *testing.T) {
		_, reg := s.registry(t)
		v1 := putRecord(t, reg, tenantRecord(tenantA, []string{"acme.example"}, "okta"), 0)
		_, err := reg.PutTenantRecord(t.Context(), tenantRecord(tenantA, []string{"other.example"}, "entra"), 0)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord(version 0) of an existing record")
		wantRecord(t, reg, v1)
		wantDomain(t, reg, "other.example", "")
		wantToken(t, reg, tokenHash(tenantA+"/entra"), "", "")
	})

	t.Run("DomainClaimedTwice", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		a := putRecord(t, reg, tenantRecord(tenantA, []string{"globex.example"}, "okta"), 0)
		// A create that claims a's domain (in another case) stores nothing.
		_, err := reg.PutTenantRecord(ctx, tenantRecord(tenantB, []string{"b.example", "GLOBEX.example"}, "entra"), 0)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord of a second tenant claiming a domain")
		wantNoRecord(t, reg, tenantB)
		wantDomain(t, reg, "b.example", "")
		wantToken(t, reg, tokenHash(tenantB+"/entra"), "", "")
		wantDomain(t, reg, "globex.example", tenantA)
		// So does a replace: b keeps what it had.
		b := putRecord(t, reg, tenantRecord(tenantB, []string{"b.example"}, "entra"), 0)
		_, err = reg.PutTenantRecord(ctx, tenantRecord(tenantB, []string{"b.example", "b.org", "globex.example"}, "entra", "ldap"), 1)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord replacing a record to claim another's domain")
		wantRecord(t, reg, b)
		wantRecord(t, reg, a)
		wantDomain(t, reg, "globex.example", tenantA)
		wantDomain(t, reg, "b.org", "")
		wantToken(t, reg, tokenHash(tenantB+"/ldap"), "", "")
		if cs := allChanges(t, reg, 0); len(cs) != 2 || cs[1].Rev != b.Rev {
			t.Errorf("RegistryChanges = %+v, want the two creates only", cs)
		}
		// The tenant holding a domain may keep it in a replace.
		putRecord(t, reg, tenantRecord(tenantA, []string{"Globex.Example", "globex.org"}, "okta"), 1)
		wantDomain(t, reg, "globex.example", tenantA)
	})

	t.Run("TokenClaimedTwice", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		a := putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 0)
		theirs := provision.TokenRef{Hash: tokenHash(tenantA + "/okta"), ConnectionID: "mine"}
		rb := tenantRecord(tenantB, []string{"b.example"}, "entra")
		rb.Tokens = append(rb.Tokens, theirs)
		_, err := reg.PutTenantRecord(ctx, rb, 0)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord of a second tenant claiming a token hash")
		wantNoRecord(t, reg, tenantB)
		wantDomain(t, reg, "b.example", "")
		wantToken(t, reg, tokenHash(tenantB+"/entra"), "", "")
		b := putRecord(t, reg, tenantRecord(tenantB, []string{"b.example"}, "entra"), 0)
		rb.Domains = append(rb.Domains, "b.org")
		_, err = reg.PutTenantRecord(ctx, rb, 1)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord replacing a record to claim another's token hash")
		wantRecord(t, reg, b)
		wantRecord(t, reg, a)
		wantDomain(t, reg, "b.org", "")
		wantToken(t, reg, theirs.Hash, tenantA, "okta")
	})

	t.Run("ReplaceFrees", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		putRecord(t, reg, tenantRecord(tenantA, []string{"a.example", "shared.example"}, "okta", "old"), 0)
		rb := tenantRecord(tenantB, []string{"shared.example"})
		rb.Tokens = []provision.TokenRef{{Hash: tokenHash(tenantA + "/old"), ConnectionID: "reused"}}
		_, err := reg.PutTenantRecord(ctx, rb, 0)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord claiming a held domain and token")
		putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 1)
		wantDomain(t, reg, "shared.example", "")
		wantToken(t, reg, tokenHash(tenantA+"/old"), "", "")
		b := putRecord(t, reg, rb, 0)
		wantRecord(t, reg, b)
		wantDomain(t, reg, "shared.example", tenantB)
		wantToken(t, reg, tokenHash(tenantA+"/old"), tenantB, "reused")
		wantDomain(t, reg, "a.example", tenantA)
	})

	t.Run("Delete", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 0)
		v2 := putRecord(t, reg, tenantRecord(tenantA, []string{"a.example", "a.org"}, "okta", "entra"), 1)
		b := putRecord(t, reg, tenantRecord(tenantB, []string{"b.example"}, "okta"), 0)
		must(t, reg.DeleteTenantRecord(ctx, tenantA, v2.Version), "DeleteTenantRecord")
		wantNoRecord(t, reg, tenantA)
		wantDomain(t, reg, "a.example", "")
		wantDomain(t, reg, "a.org", "")
		wantToken(t, reg, tokenHash(tenantA+"/okta"), "", "")
		wantToken(t, reg, tokenHash(tenantA+"/entra"), "", "")
		wantErr(t, reg.DeleteTenantRecord(ctx, tenantA, v2.Version), provision.ErrNotFound, "DeleteTenantRecord twice")
		_, err := reg.PutTenantRecord(ctx, tenantRecord(tenantA, nil), v2.Version)
		wantErr(t, err, provision.ErrNotFound, "PutTenantRecord replacing a deleted record")
		cs := allChanges(t, reg, b.Rev)
		if len(cs) != 1 || cs[0].TenantID != tenantA || !cs[0].Deleted || cs[0].Rev <= b.Rev {
			t.Fatalf("RegistryChanges after the delete = %+v, want %s deleted after Rev %d", cs, tenantA, b.Rev)
		}
		if recs, total, err := reg.ListTenantRecords(ctx, provision.Page{Limit: 10}); err != nil || total != 1 || len(recs) != 1 || recs[0].TenantID != tenantB {
			t.Errorf("ListTenantRecords after the delete = %d records (total %d), %v; want only %s", len(recs), total, err, tenantB)
		}
		// Its domains and tokens are free for another tenant, and the
		// tenant may be registered again, from version 1.
		putRecord(t, reg, tenantRecord(tenantB, []string{"b.example", "a.org"}, "okta", "entra"), 1)
		wantDomain(t, reg, "a.org", tenantB)
		again := putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 0)
		if again.Version != 1 {
			t.Errorf("a tenant registered again has Version %d, want 1", again.Version)
		}
		wantDomain(t, reg, "a.example", tenantA)
		if cs := allChanges(t, reg, b.Rev); len(cs) != 2 || cs[1].TenantID != tenantA || cs[1].Deleted || cs[1].Rev != again.Rev {
			t.Errorf("RegistryChanges after registering again = %+v, want %s live at Rev %d last", cs, tenantA, again.Rev)
		}
	})

	t.Run("Changes", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		if cs := allChanges(t, reg, 0); len(cs) != 0 {
			t.Fatalf("RegistryChanges of an empty registry = %+v", cs)
		}
		a := putRecord(t, reg, tenantRecord("t-a", nil), 0)
		b := putRecord(t, reg, tenantRecord("t-b", nil), 0)
		c := putRecord(t, reg, tenantRecord("t-c", nil), 0)
		a2 := putRecord(t, reg, tenantRecord("t-a", []string{"a.example"}), 1)
		must(t, reg.DeleteTenantRecord(ctx, "t-b", b.Version), "DeleteTenantRecord")
		d := putRecord(t, reg, tenantRecord("t-d", nil), 0)
		if !(a.Rev < b.Rev && b.Rev < c.Rev && c.Rev < a2.Rev && a2.Rev < d.Rev) {
			t.Fatalf("Revs %d %d %d %d %d are not increasing", a.Rev, b.Rev, c.Rev, a2.Rev, d.Rev)
		}
		cs := allChanges(t, reg, 0)
		checkChanges(t, "RegistryChanges(0)", cs)
		want := []string{"t-c", "t-a", "t-b", "t-d"}
		var got []string
		for _, ch := range cs {
			got = append(got, ch.TenantID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("RegistryChanges(0) lists %v, want %v (latest write of each, in Rev order): %+v", got, want, cs)
		}
		if cs[0].Rev != c.Rev || cs[1].Rev != a2.Rev || !cs[2].Deleted || cs[2].Rev <= a2.Rev || cs[3].Rev != d.Rev || cs[0].Deleted || cs[1].Deleted || cs[3].Deleted {
			t.Errorf("RegistryChanges(0) = %+v", cs)
		}
		// Paged by Rev, two at a time: the same list.
		var paged []provision.RegistryChange
		for after := int64(0); ; {
			page, err := reg.RegistryChanges(ctx, after, 2)
			must(t, err, "RegistryChanges(%d, 2)", after)
			if len(page) > 2 {
				t.Fatalf("RegistryChanges(%d, 2) returned %d changes", after, len(page))
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].Rev
		}
		if d := diff(cs, paged); d != "" {
			t.Errorf("RegistryChanges paged by 2 differs (-all +paged):\n%s", d)
		}
		if cs := allChanges(t, reg, a2.Rev); len(cs) != 2 || cs[0].TenantID != "t-b" || cs[1].TenantID != "t-d" {
			t.Errorf("RegistryChanges(%d) = %+v, want t-b then t-d", a2.Rev, cs)
		}
		if cs := allChanges(t, reg, d.Rev); len(cs) != 0 {
			t.Errorf("RegistryChanges after the last Rev = %+v", cs)
		}
		if cs, err := reg.RegistryChanges(ctx, 0, 0); err != nil || len(cs) != 0 {
			t.Errorf("RegistryChanges(limit 0) = %+v, %v; want none", cs, err)
		}
		// RegistryRev is the last Rev assigned: the delete took one too.
		if rev, err := reg.RegistryRev(ctx); err != nil || rev != d.Rev {
			t.Errorf("RegistryRev = %d, %v; want %d (the last write's Rev)", rev, err, d.Rev)
		}
	})

	t.Run("RegistryRev", func(t *testing.T) {
		st, reg := s.registry(t)
		ctx := t.Context()
		if rev, err := reg.RegistryRev(ctx); err != nil || rev != 0 {
			t.Fatalf("RegistryRev of an empty registry = %d, %v; want 0", rev, err)
		}
		a := putRecord(t, reg, tenantRecord("t-a", nil), 0)
		if rev, err := reg.RegistryRev(ctx); err != nil || rev != a.Rev {
			t.Fatalf("RegistryRev = %d, %v; want %d", rev, err, a.Rev)
		}
		must(t, reg.DeleteTenantRecord(ctx, "t-a", a.Version), "DeleteTenantRecord")
		if cs := allChanges(t, reg, 0); len(cs) != 1 {
			t.Fatalf("changes after a delete: %+v", cs)
		} else if rev, err := reg.RegistryRev(ctx); err != nil || rev != cs[0].Rev {
			t.Fatalf("RegistryRev after a delete = %d, %v; want the delete's Rev %d", rev, err, cs[0].Rev)
		}
		// Inside a transaction it sees the transaction's own writes.
		err := st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			treg, err := txRegistry(tx)
			if err != nil {
				return err
			}
			r, err := treg.PutTenantRecord(ctx, tenantRecord("t-b", nil), 0)
			if err != nil {
				return err
			}
			if rev, err := treg.RegistryRev(ctx); err != nil || rev != r.Rev {
				return fmt.Errorf("RegistryRev in the transaction = %d, %v; want %d", rev, err, r.Rev)
			}
			return nil
		})
		must(t, err, "Atomically")
	})

	t.Run("List", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		if recs, total, err := reg.ListTenantRecords(ctx, provision.Page{Limit: 10}); err != nil || total != 0 || len(recs) != 0 {
			t.Errorf("ListTenantRecords of an empty registry = %d, %d, %v", len(recs), total, err)
		}
		var ids []string
		byID := map[string]provision.TenantRecord{}
		for i := range 23 {
			id := fmt.Sprintf("tenant-%02d", (i*7)%23) // not in id order
			r := putRecord(t, reg, tenantRecord(id, []string{id + ".example"}, "okta"), 0)
			byID[id] = r
			ids = append(ids, id)
		}
		for _, id := range []string{"tenant-03", "tenant-17"} {
			must(t, reg.DeleteTenantRecord(ctx, id, 1), "DeleteTenantRecord(%s)", id)
			ids = slices.DeleteFunc(ids, func(s string) bool { return s == id })
		}
		slices.Sort(ids)
		got := walk(t, "ListTenantRecords", 4, func(p provision.Page) ([]provision.TenantRecord, int, error) {
			return reg.ListTenantRecords(ctx, p)
		})
		var gotIDs []string
		for _, r := range got {
			gotIDs = append(gotIDs, r.TenantID)
			sameRecord(t, "ListTenantRecords", byID[r.TenantID], r)
		}
		if !slices.Equal(gotIDs, ids) {
			t.Errorf("ListTenantRecords lists %v, want %v", gotIDs, ids)
		}
		recs, total, err := reg.ListTenantRecords(ctx, provision.Page{Offset: 19, Limit: 10})
		if err != nil || total != 21 || len(recs) != 2 || recs[0].TenantID != ids[19] {
			t.Errorf("ListTenantRecords(offset 19) = %d records, total %d, %v; want 2 of 21", len(recs), total, err)
		}
		recs, total, err = reg.ListTenantRecords(ctx, provision.Page{Offset: 30, Limit: 10})
		if err != nil || total != 21 || len(recs) != 0 {
			t.Errorf("ListTenantRecords(offset 30) = %d records, total %d, %v; want 0 of 21", len(recs), total, err)
		}
		recs, total, err = reg.ListTenantRecords(ctx, provision.Page{Limit: 0})
		if err != nil || total != 21 || len(recs) != 0 {
			t.Errorf("ListTenantRecords(limit 0) = %d records, total %d, %v; want 0 of 21", len(recs), total, err)
		}
	})

	t.Run("DomainCase", func(t *testing.T) {
		_, reg := s.registry(t)
		putRecord(t, reg, tenantRecord(tenantA, []string{"Globex.Example"}), 0)
		for _, d := range []string{"globex.example", "GLOBEX.EXAMPLE", "Globex.Example"} {
			wantDomain(t, reg, d, tenantA)
		}
		wantDomain(t, reg, "globex.example.org", "")
		wantDomain(t, reg, "example", "")
		_, err := reg.PutTenantRecord(t.Context(), tenantRecord(tenantB, []string{"GLOBEX.example"}), 0)
		wantErr(t, err, provision.ErrAlreadyExists, "PutTenantRecord claiming a domain in another case")
	})

	t.Run("Invalid", func(t *testing.T) {
		_, reg := s.registry(t)
		ctx := t.Context()
		_, err := reg.PutTenantRecord(ctx, provision.TenantRecord{Body: []byte("x")}, 0)
		wantErr(t, err, provision.ErrInvalid, "PutTenantRecord without a TenantID")
		_, err = reg.PutTenantRecord(ctx, tenantRecord(tenantA, []string{""}), 0)
		wantErr(t, err, provision.ErrInvalid, "PutTenantRecord with an empty domain")
		r := tenantRecord(tenantA, nil)
		r.Tokens = []provision.TokenRef{{Hash: tokenHash("x")}}
		_, err = reg.PutTenantRecord(ctx, r, 0)
		wantErr(t, err, provision.ErrInvalid, "PutTenantRecord with a token of no connection")
		r.Tokens = []provision.TokenRef{{Hash: tokenHash("x"), ConnectionID: "one"}, {Hash: tokenHash("x"), ConnectionID: "two"}}
		_, err = reg.PutTenantRecord(ctx, r, 0)
		wantErr(t, err, provision.ErrInvalid, "PutTenantRecord with one token hash for two connections")
		wantNoRecord(t, reg, tenantA)
		wantToken(t, reg, tokenHash("x"), "", "")
		if cs := allChanges(t, reg, 0); len(cs) != 0 {
			t.Errorf("RegistryChanges after refused writes = %+v", cs)
		}
	})

	t.Run("Rollback", func(t *testing.T) {
		st, reg := s.registry(t)
		ctx := t.Context()
		a := putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 0)
		b := putRecord(t, reg, tenantRecord(tenantB, []string{"b.example"}, "okta"), 0)
		err := st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			txr, err := txRegistry(tx)
			if err != nil {
				return err
			}
			if _, err := txr.PutTenantRecord(ctx, tenantRecord("tenant-c", []string{"c.example"}, "okta"), 0); err != nil {
				return err
			}
			if _, err := txr.PutTenantRecord(ctx, tenantRecord(tenantA, []string{"a.org"}, "entra"), 1); err != nil {
				return err
			}
			if err := txr.DeleteTenantRecord(ctx, tenantB, 1); err != nil {
				return err
			}
			// Reads through tx see tx's writes.
			if id, err := txr.TenantByDomain(ctx, "c.example"); err != nil || id != "tenant-c" {
				return fmt.Errorf("TenantByDomain in the tx = %q, %v; want tenant-c", id, err)
			}
			if _, err := txr.TenantByDomain(ctx, "a.example"); !errors.Is(err, provision.ErrNotFound) {
				return fmt.Errorf("TenantByDomain of a domain the tx dropped: %v, want ErrNotFound", err)
			}
			if id, c, err := txr.ConnectionByTokenHash(ctx, tokenHash(tenantA+"/entra")); err != nil || id != tenantA || c != "entra" {
				return fmt.Errorf("ConnectionByTokenHash in the tx = %q, %q, %v", id, c, err)
			}
			if _, err := txr.GetTenantRecord(ctx, tenantB); !errors.Is(err, provision.ErrNotFound) {
				return fmt.Errorf("GetTenantRecord of a tenant the tx deleted: %v, want ErrNotFound", err)
			}
			if recs, total, err := txr.ListTenantRecords(ctx, provision.Page{Limit: 10}); err != nil || total != 2 || len(recs) != 2 {
				return fmt.Errorf("ListTenantRecords in the tx = %d, %d, %v; want 2", len(recs), total, err)
			}
			if cs, err := txr.RegistryChanges(ctx, b.Rev, 10); err != nil || len(cs) != 3 {
				return fmt.Errorf("RegistryChanges in the tx = %+v, %v; want 3", cs, err)
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Atomically = %v, want errBoom", err)
		}
		wantRecord(t, reg, a)
		wantRecord(t, reg, b)
		wantNoRecord(t, reg, "tenant-c")
		wantDomain(t, reg, "a.example", tenantA)
		wantDomain(t, reg, "b.example", tenantB)
		wantDomain(t, reg, "c.example", "")
		wantDomain(t, reg, "a.org", "")
		wantToken(t, reg, tokenHash(tenantA+"/entra"), "", "")
		wantToken(t, reg, tokenHash(tenantA+"/okta"), tenantA, "okta")
		if cs := allChanges(t, reg, b.Rev); len(cs) != 0 {
			t.Errorf("RegistryChanges after the rollback = %+v", cs)
		}
		// The next write takes a Rev above every one before the rollback.
		c := putRecord(t, reg, tenantRecord("tenant-c", nil), 0)
		if c.Rev <= b.Rev {
			t.Errorf("Rev %d after a rollback, not above %d", c.Rev, b.Rev)
		}
	})

	t.Run("ErrorInTxLeavesTxUsable", func(t *testing.T) {
		st, reg := s.registry(t)
		ctx := t.Context()
		a := putRecord(t, reg, tenantRecord(tenantA, []string{"a.example"}, "okta"), 0)
		var b provision.TenantRecord
		err := st.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
			txr, err := txRegistry(tx)
			if err != nil {
				return err
			}
			_, err = txr.PutTenantRecord(ctx, tenantRecord(tenantB, []string{"b.example", "a.example"}, "okta"), 0)
			if !errors.Is(err, provision.ErrAlreadyExists) {
				return fmt.Errorf("a domain claimed twice in the tx: %v, want ErrAlreadyExists", err)
			}
			_, err = txr.PutTenantRecord(ctx, tenantRecord(tenantA, nil), 7)
			if !errors.Is(err, provision.ErrVersionConflict) {
				return fmt.Errorf("a stale version in the tx: %v, want ErrVersionConflict", err)
			}
			if _, err := txr.GetTenantRecord(ctx, tenantB); !errors.Is(err, provision.ErrNotFound) {
				return fmt.Errorf("GetTenantRecord of the refused record in the tx: %v, want ErrNotFound", err)
			}
			b, err = txr.PutTenantRecord(ctx, tenantRecord(tenantB, []string{"b.example"}, "okta"), 0)
			return err
		})
		must(t, err, "Atomically")
		wantRecord(t, reg, a)
		wantRecord(t, reg, b)
		wantDomain(t, reg, "a.example", tenantA)
		wantDomain(t, reg, "b.example", tenantB)
		if cs := allChanges(t, reg, a.Rev); len(cs) != 1 || cs[0].TenantID != tenantB || cs[0].Rev != b.Rev {
			t.Errorf("RegistryChanges = %+v, want %s at Rev %d only", cs, tenantB, b.Rev)
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		const perWorker = 12
		_, reg := s.registry(t)
		errs := make([]error, workers)
		revs := make([][]int64, workers)
		together(workers, func(w int) {
			for i := range perWorker {
				id := fmt.Sprintf("w%d-t%02d", w, i)
				r, err := reg.PutTenantRecord(t.Context(), tenantRecord(id, []string{id + ".example"}, "okta"), 0)
				if err != nil {
					errs[w] = fmt.Errorf("PutTenantRecord(%s): %w", id, err)
					return
				}
				revs[w] = append(revs[w], r.Rev)
			}
		})
		for w, err := range errs {
			if err != nil {
				t.Fatalf("worker %d: %v", w, err)
			}
		}
		all := slices.Concat(revs...)
		slices.Sort(all)
		if len(slices.Compact(slices.Clone(all))) != len(all) {
			t.Errorf("concurrent puts took the same Rev twice: %v", all)
		}
		cs := allChanges(t, reg, 0)
		checkChanges(t, "RegistryChanges", cs)
		var feed []int64
		for _, c := range cs {
			feed = append(feed, c.Rev)
		}
		if !slices.Equal(feed, all) {
			t.Errorf("RegistryChanges has Revs %v, the puts took %v", feed, all)
		}
		for w := range workers {
			wantDomain(t, reg, fmt.Sprintf("w%d-t%02d.example", w, perWorker-1), fmt.Sprintf("w%d-t%02d", w, perWorker-1))
		}
	})

	t.Run("FollowerMissesNothing", func(t *testing.T) {
		// Writers create, replace and delete tenants while a follower
		// pages through RegistryChanges by Rev, as an engine does. A store
		// that let a write become visible after a higher Rev would make
		// the follower step over it: at the end the follower must have
		// seen every tenant's final Rev.
		const writers, perWriter, page = 4, 24, 5
		_, reg := s.registry(t)
		ctx := t.Context()
		var (
			wg   sync.WaitGroup
			errs = make([]error, writers)
			done = make(chan struct{})
		)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					id := fmt.Sprintf("w%d-t%02d", w, i/3)
					var err error
					switch i % 3 {
					case 0:
						_, err = reg.PutTenantRecord(ctx, tenantRecord(id, []string{id + ".example"}, "okta"), 0)
					case 1:
						_, err = reg.PutTenantRecord(ctx, tenantRecord(id, []string{id + ".org"}, "entra"), 1)
					case 2:
						if i%2 == 0 {
							err = reg.DeleteTenantRecord(ctx, id, 2)
						}
					}
					if err != nil {
						errs[w] = fmt.Errorf("write %d of %s: %w", i, id, err)
						return
					}
				}
			}()
		}
		go func() { wg.Wait(); close(done) }()
		seen := map[string]provision.RegistryChange{}
		var after int64
		follow := func() (int, error) {
			cs, err := reg.RegistryChanges(ctx, after, page)
			if err != nil {
				return 0, err
			}
			for i, c := range cs {
				if c.Rev <= after || (i > 0 && c.Rev <= cs[i-1].Rev) {
					return 0, fmt.Errorf("RegistryChanges(%d, %d) = %+v: not in increasing Rev order after %d", after, page, cs, after)
				}
				seen[c.TenantID] = c
			}
			if len(cs) > 0 {
				after = cs[len(cs)-1].Rev
			}
			return len(cs), nil
		}
		deadline := time.After(30 * time.Second)
	loop:
		for {
			n, err := follow()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
				break loop
			case <-deadline:
				t.Fatal("the writers did not finish within 30s")
			default:
			}
			if n == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		for {
			n, err := follow()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		for w, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", w, err)
			}
		}
		final := allChanges(t, reg, 0)
		checkChanges(t, "RegistryChanges(0)", final)
		if len(final) != writers*perWriter/3 {
			t.Errorf("RegistryChanges lists %d tenants, want %d", len(final), writers*perWriter/3)
		}
		for _, c := range final {
			if got := seen[c.TenantID]; got != c {
				t.Errorf("the follower's last change of %s is %+v, the final one %+v: it missed a write", c.TenantID, got, c)
			}
		}
	})
}
