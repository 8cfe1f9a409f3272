// Package sqlstore is a provision.Store over database/sql for PostgreSQL
// (many app replicas on one database) and SQLite (one node). It
// implements every optional capability: provision.Searcher (filters
// compiled to SQL), provision.EventLog (a per-tenant sequence assigned in
// the transaction), provision.KV (with expiry) and provision.Locker
// (advisory locks on PostgreSQL, leases on SQLite) and provision.Registry
// (registered tenants, their domain and token hash indexes and revision
// feed, with a NOTIFY on PostgreSQL: see RegistryChannel).
//
// The package imports no driver: the host opens the *sql.DB with the
// driver it likes and says which dialect it is.
//
// # Walkthrough
//
// PostgreSQL, with github.com/jackc/pgx/v5/stdlib (driver name "pgx"):
//
//	db, err := sql.Open("pgx", "postgres://app@db.internal/app")
//	...
//	db.SetMaxOpenConns(20) // each held Locker lock keeps one connection
//	db.SetMaxIdleConns(20) // database/sql keeps 2 by default: under load the others close and reopen
//	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.Postgres, TablePrefix: "idprov_"})
//	...
//	if err := st.Migrate(ctx); err != nil { ... } // at start-up, on every replica: safe
//	eng, err := provision.NewEngine(provision.Config{Store: st, Tenants: tenants})
//
// SQLite, with modernc.org/sqlite (driver name "sqlite"). Open it with
// the WAL journal, a busy timeout and foreign keys:
//
//	db, err := sql.Open("sqlite", "file:idprov.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)")
//	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite})
//
// The store does not depend on the DSN for correctness: Migrate switches
// the file to WAL, and every write transaction sets busy_timeout
// (Config.BusyTimeout) and foreign_keys on its connection and starts with
// BEGIN IMMEDIATE, so writers queue for SQLite's single write lock
// instead of failing with SQLITE_BUSY half-way through (the host need not
// add _txlock=immediate). Writers of one Store also queue in Go, so there
// is no need for db.SetMaxOpenConns(1): readers keep running in parallel
// under WAL. synchronous(FULL) makes every acknowledged commit survive a
// power loss; NORMAL (faster, no fsync per commit in WAL mode) survives a
// process crash but may lose the last commits on power loss.
//
// # Schema and migrations
//
// Migrate applies the embedded, versioned migrations not yet recorded in
// the table {prefix}migrations, in one transaction (concurrent callers
// serialize). Every table and index name starts with Config.TablePrefix,
// so several stores, or the host's own tables, share one schema. The
// tables: users (columns for what is indexed or compared, the full
// provision.User as a JSON document), user_emails, groups, members (its
// own table, so a membership change costs the same in a 100,000-member
// group as in a 10-member one), links, events, event_seq (the per-tenant
// counter), cursors, kv, on SQLite locks, and the Registry's
// registry_tenants (one row per tenant ever registered, a deleted one as
// a tombstone), registry_domains and registry_tokens (primary keys on the
// lower-case domain and on the token hash: one live tenant each; only
// hashes of tokens are stored) and registry_rev (the revision counter, a
// row that a registry write holds locked until commit, so that revisions
// become visible in order). Times are stored in UTC to
// the microsecond (timestamptz on PostgreSQL, integer unix microseconds
// on SQLite). Every query names its tenant_id, except the Registry's,
// which are keyed by a domain, a token hash or a revision.
//
// # Transactions and errors
//
// Atomically runs its function in one transaction (READ COMMITTED on
// PostgreSQL; BEGIN IMMEDIATE on SQLite); nested calls reuse it, and the
// capabilities reached through the transaction's Store are part of it. A
// PostgreSQL serialization failure or deadlock (40001, 40P01) reruns the
// function, up to Config.MaxRetries times. Database errors are wrapped
// with the provision sentinel they mean, the cause kept: a unique
// violation is ErrAlreadyExists (a *provision.ConflictError naming the
// field when known), a failed connection, SQLITE_BUSY or a shutdown is
// ErrUnavailable. Versions are checked in the UPDATE's WHERE clause, and
// a write that matched no row tells ErrNotFound from ErrVersionConflict.
// GetUser and GetGroup inside a PostgreSQL transaction lock the row (FOR
// UPDATE), so concurrent changes of one resource queue instead of
// conflicting (SQLite runs one writer at a time anyway).
//
// # Many tenants, many replicas
//
// An idle consumer costs one query per poll whatever the number of
// tenants: Backlogs (provision.EventBacklog) joins {prefix}event_seq with
// the consumer's {prefix}cursors and returns only the tenants behind. On
// PostgreSQL the tenant id of every transaction that appends events is
// notified on the channel {prefix}events once it has committed: the Store
// gathers the tenants its commits touched and sends them in one statement
// at most every 5ms, so that committing writers do not queue on
// PostgreSQL's database-wide notification lock (EventTables.Append, in a
// host's own transaction, notifies inside it instead); with Config.Listen wired to the
// host's driver, WatchCommits (provision.CommitWatcher) wakes the
// consumers of every replica at once, and polling is only the fallback.
// Notify and Subscribe are the same mechanism for a host's own topics
// (see notify.go's ListenFunc; examples/saas-app/pgnotify.go wires pgx).
//
// # A host-owned store
//
// A host that implements provision.Store itself on the same database can
// still have a correct event log: EventTables appends, lists and stores
// cursors in the host's own *sql.Tx (see EventTables).
//
// # Searching
//
// SearchUsers and SearchGroups compile the filter to SQL. Comparisons of
// id, userName, displayName, active, meta.created, meta.lastModified,
// emails.value and members.value are exact SQL over columns and indexes
// (an eq is an index lookup, never a scan of the tenant), and then SQL
// counts, sorts and pages. Other attributes live in the JSON document:
// the SQL selects a superset and provision.MatchUser decides, so the
// answer is always exactly the reference evaluator's; such a search
// reads at most 10,000 candidate rows, else ErrTooMany.
//
// # Testing
//
// The package's tests run storetest.Run and the other tests on SQLite
// always, and on PostgreSQL when IDPROV_TEST_POSTGRES_DSN holds a DSN
// (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable);
// each test creates its tables under a random prefix and drops them.
// Without the variable the PostgreSQL tests are skipped, unless CI=true,
// where they fail.
package sqlstore
