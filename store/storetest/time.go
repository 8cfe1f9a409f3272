package storetest

import (
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
)

// nanoTime has every digit down to the nanosecond set, as time.Now has.
var nanoTime = time.Date(2025, 7, 14, 23, 59, 58, 987654321, time.UTC)

// sameMicro reports whether a store kept t to the microsecond: within a
// microsecond of want, whether it truncated or rounded.
func sameMicro(want, got time.Time) bool {
	d := got.Sub(want)
	return d > -time.Microsecond && d < time.Microsecond
}

func checkTime(t *testing.T, what string, want, got time.Time) {
	t.Helper()
	if !sameMicro(want, got) {
		t.Errorf("%s = %s, want %s to the microsecond", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

func testTime(t *testing.T, s *suite) {
	t.Run("RoundTrip", func(t *testing.T) {
		st := s.store(t)
		in := user(tenantA, "ada")
		in.Created = nanoTime
		in.Modified = nanoTime.Add(1500 * time.Nanosecond)
		u := createUser(t, st, in)
		read, err := st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		checkTime(t, "User.Created", in.Created, read.Created)
		checkTime(t, "User.Modified", in.Modified, read.Modified)
		if !read.Deleted.IsZero() {
			t.Errorf("User.Deleted of a live user = %v, want the zero time", read.Deleted)
		}
		del := tombstone(t, st, read, nanoTime.Add(time.Hour+123*time.Nanosecond))
		read, err = st.GetUser(t.Context(), tenantA, u.ID)
		must(t, err, "GetUser")
		checkTime(t, "User.Deleted", del.Deleted, read.Deleted)
		checkTime(t, "User.Created after an update", in.Created, read.Created)

		gin := group(tenantA, "scim-okta", "Engineering")
		gin.Created, gin.Modified = nanoTime, nanoTime.Add(time.Microsecond)
		g := createGroup(t, st, gin)
		gread, err := st.GetGroup(t.Context(), tenantA, g.ID)
		must(t, err, "GetGroup")
		checkTime(t, "Group.Created", gin.Created, gread.Created)
		checkTime(t, "Group.Modified", gin.Modified, gread.Modified)

		v := createUser(t, st, user(tenantA, "vera"))
		l := link(tenantA, provision.ResourceUser, "scim-okta", "ext-vera", v.ID)
		l.Created = nanoTime
		createLink(t, st, l)
		lread, err := st.GetLink(t.Context(), tenantA, provision.ResourceUser, "scim-okta", "ext-vera")
		must(t, err, "GetLink")
		checkTime(t, "Link.Created", l.Created, lread.Created)
	})

	t.Run("OldAndFar", func(t *testing.T) {
		st := s.store(t)
		for i, at := range []time.Time{
			time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC),
			time.Date(1901, 12, 13, 20, 45, 52, 0, time.UTC),
			time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC),
			time.Date(2999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		} {
			in := user(tenantA, "when-"+string(rune('a'+i)))
			in.Created, in.Modified = at, at
			u := createUser(t, st, in)
			read, err := st.GetUser(t.Context(), tenantA, u.ID)
			must(t, err, "GetUser")
			checkTime(t, "User.Created", at, read.Created)
		}
	})

	t.Run("MicrosecondOrder", func(t *testing.T) {
		// Tombstones a microsecond apart sort and filter at that
		// precision.
		st := s.store(t)
		us := createUsers(t, st, tenantA, "micro", 3)
		var dead []provision.User
		for i, j := range []int{2, 0, 1} {
			dead = append(dead, tombstone(t, st, us[j], nanoTime.Truncate(time.Microsecond).Add(time.Duration(i+1)*time.Microsecond)))
		}
		got, err := st.DeletedUsers(t.Context(), tenantA, nanoTime.Truncate(time.Microsecond).Add(3*time.Microsecond), 10)
		must(t, err, "DeletedUsers")
		if d := diff(dead[:2], got); d != "" {
			t.Errorf("DeletedUsers before the third microsecond (-want +got):\n%s", d)
		}
	})
}
