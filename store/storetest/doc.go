// Package storetest is the conformance suite for provision.Store
// implementations: the definition of a correct Store.
//
// A host that persists identities in its own database implements
// provision.Store (and, if it can, the optional capabilities EventLog, KV,
// Locker, Searcher and Registry) and runs the suite from an ordinary test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) provision.Store {
//			db := openEmptyTestDatabase(t) // one empty database per call
//			t.Cleanup(func() { db.Close() })
//			return mystore.New(db)
//		})
//	}
//
// Run calls newStore once per subtest and expects an empty store each
// time; release what it opens with t.Cleanup. Subtest names are stable
// ("Users/CreateGet", "Isolation/Writes", "EventLog/ConcurrentAppend", ...),
// so one case can be run alone with go test -run
// 'TestConformance/Atomically/RollbackOnPanic'. The subtests of a
// capability run only when the store implements it (a type assertion on
// the value newStore returns); otherwise Run logs that they were left out.
//
// What the suite requires beyond the doc comments of package provision,
// where those leave a choice open:
//
//   - Times keep at least microsecond precision (PostgreSQL's): a time read
//     back is within a microsecond of the one written. Only the instant is
//     compared, not the Location; the engine always writes UTC.
//   - Attributes are compared as JSON values, not as bytes: a store may
//     reformat the JSON (PostgreSQL jsonb does) but not change its value.
//   - Nil and empty slices and maps are equal.
//   - Returned values share no memory with the store: changing a returned
//     User's slices, maps or attribute bytes, or the value passed in after
//     the call, changes nothing stored.
//   - Lookups that return a list (UsersByEmail, GroupsByDisplayName,
//     LinksOf, GroupsOfUser) return an empty list and no error when nothing
//     matches; lookups of one resource return ErrNotFound.
//   - Inside Atomically, a call that fails with a sentinel error
//     (ErrAlreadyExists, ErrVersionConflict, ErrNotFound) leaves the
//     transaction usable: the engine handles such errors and goes on. The
//     error that fn returns reaches the caller of Atomically so that
//     errors.Is still matches it. When fn panics, nothing is committed and
//     Atomically either panics again or returns an error; the store stays
//     usable.
//   - A Seq is never reused once committed, even after PurgeEvents removed
//     it, and at no time can a reader see a committed Seq while a smaller
//     one is still to be committed (a consumer reading after its cursor
//     never misses an event).
//   - A group's Version is a counter the engine bumps on every membership
//     change: AddMembers and RemoveMembers leave it alone, and an
//     UpdateGroup that changes only Modified, in the same transaction,
//     bumps it without touching the members (MembershipVersion). A store
//     that implements provision.GroupVersionBumper does it without an
//     expected version, and concurrent bumps in transactions queue
//     rather than fail (GroupVersionBumper/Concurrent).
//   - A store that implements provision.UserLinksGetter answers exactly
//     what GetUser and LinksOf answer, sees its transaction's writes, and
//     locks the user inside Atomically as GetUser does
//     (UserLinksGetter/LocksInTransaction).
//   - Case-insensitive comparisons are tested with ASCII letters only.
//   - A Locker's held context is live when TryLock returns, carries ctx's
//     values, ends with ctx (the lock staying held until release), and
//     has ended when release returns, with a cause that is not
//     ErrLockLost. How a lock is lost (a lease lapsing, a session
//     dying) is the store's own: test it next to the store (sqlstore
//     does).
//   - A Registry's Domains and Tokens are compared as sets, Domains
//     case-insensitively: a store may keep them in any order, and lower
//     the case of Domains. A refused PutTenantRecord (a domain or token
//     hash another tenant holds) leaves every record, index entry and
//     Rev as it was; Revs may have gaps (a rolled back write may use one
//     up), but a reader of RegistryChanges never sees a Rev while a
//     smaller one is still to be committed.
//
// The suite uses only the standard library and go-cmp, takes a few seconds
// on an in-memory store (KV expiry waits about a second, one case builds a
// group of 10,000 members), and runs its subtests sequentially; some
// subtests start goroutines of their own.
package storetest
