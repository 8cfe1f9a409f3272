package provision

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/idprov/idprov/provision/filter"
)

// NormalizeTenantRecord validates r for a Registry's PutTenantRecord and
// returns a deep copy (sharing no memory with r) in the form a store
// keeps: Domains folded to lower case (filter.Fold), sorted, without
// repeats; Tokens sorted by hash, without repeats; a nil Body made empty.
// Version, Rev and Modified are left for the store to set. A missing
// TenantID, an empty domain, a token without a ConnectionID or one hash
// for two connections is a *ValidationError (ErrInvalid).
func NormalizeTenantRecord(r TenantRecord) (TenantRecord, error) {
	if r.TenantID == "" {
		return TenantRecord{}, &ValidationError{Field: "tenantId", Reason: "required"}
	}
	out := TenantRecord{TenantID: r.TenantID, Version: r.Version, Rev: r.Rev, Modified: r.Modified, Body: bytes.Clone(r.Body)}
	if out.Body == nil {
		out.Body = []byte{}
	}
	out.Domains = make([]string, 0, len(r.Domains))
	for _, d := range r.Domains {
		if d == "" {
			return TenantRecord{}, &ValidationError{Field: "domains", Reason: "empty domain"}
		}
		out.Domains = append(out.Domains, filter.Fold(d))
	}
	slices.Sort(out.Domains)
	out.Domains = slices.Compact(out.Domains)
	out.Tokens = make([]TokenRef, 0, len(r.Tokens))
	for _, t := range r.Tokens {
		if t.ConnectionID == "" {
			return TenantRecord{}, &ValidationError{Field: "tokens.connectionId", Reason: "required"}
		}
		out.Tokens = append(out.Tokens, t)
	}
	slices.SortFunc(out.Tokens, func(a, b TokenRef) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	for i := 1; i < len(out.Tokens); i++ {
		if a, b := out.Tokens[i-1], out.Tokens[i]; a.Hash == b.Hash && a.ConnectionID != b.ConnectionID {
			return TenantRecord{}, &ValidationError{Field: "tokens", Reason: fmt.Sprintf("one token hash for connections %q and %q", a.ConnectionID, b.ConnectionID)}
		}
	}
	out.Tokens = slices.Compact(out.Tokens)
	return out, nil
}
