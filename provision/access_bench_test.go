package provision_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// accessBench is a tenant of 100,000 users and 100 rules (50 naming groups,
// 50 attribute predicates), built once per process.
var accessBench struct {
	once   sync.Once
	engine *provision.Engine
	groups []string
	users  []provision.User
	err    error
}

func accessBenchSetup(b *testing.B) {
	b.Helper()
	accessBench.once.Do(func() {
		st := memstore.New()
		users := make([]provision.User, 100_000)
		for i := range users {
			users[i] = provision.User{
				UserName:   fmt.Sprintf("user%06d@acme.test", i),
				Department: fmt.Sprintf("dept-%02d", i%60),
				Title:      fmt.Sprintf("title-%d", i%7),
				Owner:      "okta",
				Active:     true,
			}
		}
		if err := st.Load("acme", users); err != nil {
			accessBench.err = err
			return
		}
		e, err := provision.NewEngine(provision.Config{Store: st, Tenants: tenants()})
		if err != nil {
			accessBench.err = err
			return
		}
		ctx := context.Background()
		var rules []provision.AccessRule
		for i := range 50 {
			g, err := e.CreateGroup(ctx, okta, provision.Group{DisplayName: fmt.Sprintf("group-%02d", i)}, nil)
			if err != nil {
				accessBench.err = err
				return
			}
			accessBench.groups = append(accessBench.groups, g.ID)
			rules = append(rules, provision.AccessRule{ID: fmt.Sprintf("g%02d", i), GroupID: g.ID, Roles: []string{fmt.Sprintf("role-g%02d", i)}})
			rules = append(rules, provision.AccessRule{ID: fmt.Sprintf("a%02d", i), Filter: fmt.Sprintf(`department eq "dept-%02d" and title sw "title-1"`, i), Roles: []string{fmt.Sprintf("role-a%02d", i)}})
		}
		// Every group gets 100 members.
		for gi, g := range accessBench.groups {
			var ids []string
			for j := range 100 {
				ids = append(ids, users[(gi*100+j)%len(users)].ID)
			}
			if _, _, err := e.UpdateGroup(ctx, okta, g, provision.Precondition{}, provision.GroupUpdate{Add: ids}); err != nil {
				accessBench.err = err
				return
			}
		}
		plan, err := e.PlanAccessRules(ctx, "acme", rules)
		if err != nil {
			accessBench.err = err
			return
		}
		if _, err := e.ConfirmPlan(ctx, admin, plan.ID); err != nil {
			accessBench.err = err
			return
		}
		accessBench.engine, accessBench.users = e, users
	})
	if accessBench.err != nil {
		b.Fatal(accessBench.err)
	}
}

// BenchmarkAccessMembershipChange is one membership change (an add, then
// the matching remove, so two per op... reported per change) in a tenant
// with 100 rules and 100,000 users, roles recomputed in the transaction.
func BenchmarkAccessMembershipChange(b *testing.B) {
	accessBenchSetup(b)
	e, ctx := accessBench.engine, context.Background()
	g := accessBench.groups[7]
	u := accessBench.users[99_999].ID
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var err error
		if i%2 == 0 {
			_, _, err = e.UpdateGroup(ctx, okta, g, provision.Precondition{}, provision.GroupUpdate{Add: []string{u}})
		} else {
			_, _, err = e.UpdateGroup(ctx, okta, g, provision.Precondition{}, provision.GroupUpdate{Remove: []string{u}})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccessPlan plans a rule change over 100,000 users.
func BenchmarkAccessPlan(b *testing.B) {
	accessBenchSetup(b)
	e, ctx := accessBench.engine, context.Background()
	rules := []provision.AccessRule{
		{ID: "g", GroupID: accessBench.groups[0], Roles: []string{"admin"}},
		{ID: "a", Filter: `department eq "dept-07"`, Roles: []string{"finance"}},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := e.PlanAccessRules(ctx, "acme", rules); err != nil {
			b.Fatal(err)
		}
	}
}
