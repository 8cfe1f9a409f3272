package main

import (
	"context"
	"fmt"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// keptToken returns the token kept in the store under key (in the
// -tenant's KV), making it on first start: a restart, or another replica,
// prints the same one. what names it in errors.
func keptToken(ctx context.Context, a *app, key, what string) (string, error) {
	tok, err := scim.GenerateToken()
	if err != nil {
		return "", err
	}
	tenant := a.Tenants[0].ID
	if _, err := provision.AdapterOf(a.Engine).KVInsert(ctx, tenant, key, []byte(tok), 0); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	b, err := provision.AdapterOf(a.Engine).KVGet(ctx, tenant, key)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return string(b), nil
}
