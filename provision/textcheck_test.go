package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
	"github.com/idprov/idprov/store/memstore"
)

// keyGuard is a Store that counts the keys reaching it that hold NUL or
// invalid UTF-8 (PostgreSQL fails on them with SQLSTATE 22021).
type keyGuard struct {
	provision.Store
	bad *atomic.Int32
}

func (g keyGuard) check(keys ...string) {
	for _, k := range keys {
		if !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0 {
			g.bad.Add(1)
		}
	}
}

func (g keyGuard) GetUser(ctx context.Context, tenantID, id string) (provision.User, error) {
	g.check(id)
	return g.Store.GetUser(ctx, tenantID, id)
}

func (g keyGuard) GetGroup(ctx context.Context, tenantID, id string) (provision.Group, error) {
	g.check(id)
	return g.Store.GetGroup(ctx, tenantID, id)
}

func (g keyGuard) GetLink(ctx context.Context, tenantID string, kind provision.ResourceKind, conn, ext string) (provision.Link, error) {
	g.check(ext)
	return g.Store.GetLink(ctx, tenantID, kind, conn, ext)
}

func (g keyGuard) UserByUserName(ctx context.Context, tenantID, name string) (provision.User, error) {
	g.check(name)
	return g.Store.UserByUserName(ctx, tenantID, name)
}

func (g keyGuard) ListMembers(ctx context.Context, tenantID, groupID string, p provision.Page) ([]string, int, error) {
	g.check(groupID)
	return g.Store.ListMembers(ctx, tenantID, groupID, p)
}

func (g keyGuard) GroupsOfUser(ctx context.Context, tenantID, userID string) ([]string, error) {
	g.check(userID)
	return g.Store.GroupsOfUser(ctx, tenantID, userID)
}

func (g keyGuard) Atomically(ctx context.Context, fn func(context.Context, provision.Store) error) error {
	return g.Store.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		return fn(ctx, keyGuard{Store: tx, bad: g.bad})
	})
}

func TestBadKeysStopAtTheEdge(t *testing.T) {
	bad := new(atomic.Int32)
	e, err := provision.NewEngine(provision.Config{Store: keyGuard{Store: memstore.New(), bad: bad}, Tenants: tenants()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := e.CreateUser(ctx, okta, ada())
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.CreateGroup(ctx, okta, provision.Group{DisplayName: "Eng"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	noop := func(*provision.User) error { return nil }
	for _, key := range []string{"\x00", "a\x00b", "\xff\xfe", "\xc3\x28"} {
		notFound := map[string]error{}
		_, notFound["GetUser"] = e.GetUser(ctx, okta, key)
		_, notFound["UpdateUser"] = e.UpdateUser(ctx, okta, key, provision.Precondition{}, noop)
		notFound["DeleteUser"] = e.DeleteUser(ctx, okta, key, provision.Precondition{})
		_, notFound["GetGroup"] = e.GetGroup(ctx, okta, key)
		_, _, notFound["UpdateGroup"] = e.UpdateGroup(ctx, okta, key, provision.Precondition{}, provision.GroupUpdate{Mutate: func(*provision.Group) error { return nil }})
		notFound["DeleteGroup"] = e.DeleteGroup(ctx, okta, key, provision.Precondition{})
		_, _, notFound["ListMembers"] = e.ListMembers(ctx, okta, key, provision.Page{Limit: 10})
		_, notFound["GroupsOfUser"] = e.GroupsOfUser(ctx, okta, key)
		_, notFound["UserByExternalID"] = e.UserByExternalID(ctx, okta, key)
		_, notFound["GroupByExternalID"] = e.GroupByExternalID(ctx, okta, key)
		_, notFound["Plan"] = e.Plan(ctx, "acme", key, provision.Page{})
		for op, err := range notFound {
			if !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("%s(%q) = %v, want ErrNotFound", op, key, err)
			}
		}
		var me *provision.MembersError
		if _, _, err := e.UpdateGroup(ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{Add: []string{u.ID, key}}); !errors.As(err, &me) || len(me.Unknown) != 1 {
			t.Errorf("AddMembers with %q = %v, want a MembersError naming it", key, err)
		}
		if _, _, err := e.UpdateGroup(ctx, okta, g.ID, provision.Precondition{}, provision.GroupUpdate{ReplaceMembers: true, Members: []string{key}}); !errors.As(err, &me) {
			t.Errorf("ReplaceMembers with %q = %v, want a MembersError", key, err)
		}
		f, err := filter.Parse(`userName eq "x" or externalId eq "y"`)
		if err != nil {
			t.Fatal(err)
		}
		f.(*filter.Logical).Right.(*filter.Compare).Value = filter.StringValue(key)
		var ve *provision.ValidationError
		if _, _, err := e.ListUsers(ctx, okta, provision.Query{Filter: f}); !errors.As(err, &ve) {
			t.Errorf("ListUsers with a filter value %q = %v, want a ValidationError", key, err)
		}
		bu := ada()
		bu.UserName, bu.ExternalID = "bob", key
		if _, err := e.CreateUser(ctx, okta, bu); !errors.As(err, &ve) {
			t.Errorf("CreateUser with externalId %q = %v, want a ValidationError", key, err)
		}
		if _, _, err := e.ProvisionIdentity(ctx, sso, provision.Identity{ConnectionID: "sso", ExternalID: key, User: bu}, provision.ProvisionOptions{}); err == nil || errors.Is(err, provision.ErrUnavailable) {
			t.Errorf("ProvisionIdentity with externalId %q = %v, want a refusal", key, err)
		}
	}
	if n := bad.Load(); n != 0 {
		t.Errorf("%d keys holding NUL or invalid UTF-8 reached the store", n)
	}
}
