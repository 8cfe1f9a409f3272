package provision_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/idprov/idprov/provision"
)

// SortUserRefs with a top must give exactly the first entries of the full
// stable sort, for every direction and for keys with ties and absences.
func TestSortUserRefsTop(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	users := make([]provision.User, 2000)
	for i := range users {
		users[i] = provision.User{ID: fmt.Sprintf("u%04d", i), UserName: fmt.Sprintf("User%03d", rng.IntN(300))}
		if rng.IntN(5) > 0 {
			users[i].Title = fmt.Sprintf("t%02d", rng.IntN(40))
		}
	}
	for _, by := range []string{"userName", "title"} {
		for _, desc := range []bool{false, true} {
			full := append([]provision.User(nil), users...)
			if err := provision.SortUsers(full, by, desc); err != nil {
				t.Fatal(err)
			}
			for _, top := range []int{1, 7, 100, 499, 2000} {
				refs := make([]*provision.User, len(users))
				for i := range users {
					refs[i] = &users[i]
				}
				if err := provision.SortUserRefs(refs, by, desc, top); err != nil {
					t.Fatal(err)
				}
				for i := range top {
					if refs[i].ID != full[i].ID {
						t.Fatalf("sortBy %s desc %v top %d: entry %d is %s, want %s", by, desc, top, i, refs[i].ID, full[i].ID)
					}
				}
				seen := map[string]bool{}
				for _, r := range refs {
					seen[r.ID] = true
				}
				if len(seen) != len(users) {
					t.Fatalf("top %d lost entries: %d of %d", top, len(seen), len(users))
				}
			}
		}
	}
}
