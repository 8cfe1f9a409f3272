package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idprov/idprov/provision"
)

// Dialect is the SQL flavour of the database behind the *sql.DB.
type Dialect int

// The supported dialects.
const (
	// Postgres is PostgreSQL 13 or later, through any database/sql driver
	// that reports SQLSTATE codes with a SQLState() string method (pgx's
	// stdlib does).
	Postgres Dialect = iota + 1
	// SQLite is SQLite 3.35 or later (RETURNING), tested with
	// modernc.org/sqlite.
	SQLite
)

// String returns "postgres" or "sqlite".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

func (d Dialect) valid() bool { return d == Postgres || d == SQLite }

// DefaultTablePrefix is the table prefix used when Config.TablePrefix is
// empty.
const DefaultTablePrefix = "idprov_"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// Config configures a Store. DB's driver must match Dialect.
type Config struct {
	// Dialect says which database the *sql.DB talks to. Required.
	Dialect Dialect
	// TablePrefix starts the name of every table and index the store
	// creates, so several stores (or the host's own tables) share one
	// schema. Lower-case letters, digits and '_', starting with a letter,
	// at most 40 characters. Empty means DefaultTablePrefix.
	TablePrefix string
	// Logger receives the store's diagnostics. Nil discards them.
	Logger *slog.Logger
	// Now is the clock for KV and lock expiry. Nil means time.Now.
	Now func() time.Time
	// MaxRetries bounds how many times a transaction that PostgreSQL
	// aborted with a serialization failure or a deadlock (SQLSTATE 40001,
	// 40P01) is run again before ErrUnavailable. Default 5.
	MaxRetries int
	// BusyTimeout is how long a SQLite write waits for another process
	// holding the write lock (PRAGMA busy_timeout). Default 5s.
	BusyTimeout time.Duration
	// LockTTL is the lease of a SQLite Locker lock: the holder renews it
	// every LockTTL/3, gives it up (its held context ends) when no renewal
	// got through for 3/4 of LockTTL, and a holder that died loses it
	// after LockTTL. Default 30s. (On PostgreSQL locks are session
	// advisory locks, freed by the server when the holder's connection
	// ends; the holder checks its session every min(LockTTL/3, 5s).)
	LockTTL time.Duration
	// Listen, on PostgreSQL, runs the session that receives the
	// notifications of other replicas (LISTEN), written with the host's
	// driver: see ListenFunc and Subscribe. With it, consumers on every
	// replica learn of a commit at once (WatchCommits); nil means they
	// find it at their next poll. Ignored on SQLite.
	Listen ListenFunc
}

// Store is a provision.Store over database/sql. It also implements
// provision.EventLog, provision.KV, provision.Locker, provision.Searcher
// and provision.Registry. It is safe for concurrent use; the Store handed to an
// Atomically function is bound to that transaction and must not be used
// after the function returns.
type Store struct {
	r *root
	// q runs the statements: the *sql.DB, or the transaction.
	q Querier
	// inTx is set for the Store of an Atomically function.
	inTx bool
	// locked: the users this transaction read FOR UPDATE (users.go).
	locked map[string]lockedEmails
	// appended: the tenants this transaction appended events of, to
	// notify once it commits (commitWaker).
	appended []string
}

var (
	_ provision.Store    = (*Store)(nil)
	_ provision.EventLog = (*Store)(nil)
	_ provision.KV       = (*Store)(nil)
	_ provision.Locker   = (*Store)(nil)

	_ provision.EventBacklog  = (*Store)(nil)
	_ provision.CommitWatcher = (*Store)(nil)
)

// root is what a Store and its transactions share.
type root struct {
	db          *sql.DB
	d           Dialect
	prefix      string
	log         *slog.Logger
	now         func() time.Time
	maxRetries  int
	busyTimeout time.Duration
	lockTTL     time.Duration
	ev          *EventTables
	listen      ListenFunc
	nt          notifier
	waker       commitWaker
	// writeSem serializes SQLite write transactions of this process, so
	// they queue in Go instead of polling SQLite's busy handler.
	writeSem chan struct{}
	sqls     sync.Map // query template -> query with the prefix
	ids      idGen
	kvWrites atomic.Uint64
	// renewHook, when set (by tests), runs before each renewal of a
	// SQLite lease, in the renewing goroutine.
	renewHook func(tenantID, name string)
}

// Querier is what runs statements: *sql.DB, *sql.Tx and *sql.Conn all
// implement it.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// New validates cfg and returns a Store on db. It does not touch the
// database: call Migrate before the first use (and after every upgrade of
// this package).
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: db is nil")
	}
	if !cfg.Dialect.valid() {
		return nil, fmt.Errorf("sqlstore: Config.Dialect must be Postgres or SQLite, not %v", cfg.Dialect)
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = DefaultTablePrefix
	}
	if !prefixRE.MatchString(cfg.TablePrefix) {
		return nil, fmt.Errorf("sqlstore: Config.TablePrefix %q must match %s", cfg.TablePrefix, prefixRE)
	}
	if cfg.MaxRetries < 0 || cfg.BusyTimeout < 0 || cfg.LockTTL < 0 {
		return nil, errors.New("sqlstore: Config.MaxRetries, BusyTimeout and LockTTL must not be negative")
	}
	r := &root{
		db:          db,
		d:           cfg.Dialect,
		prefix:      cfg.TablePrefix,
		log:         cfg.Logger,
		now:         cfg.Now,
		maxRetries:  cfg.MaxRetries,
		busyTimeout: cfg.BusyTimeout,
		lockTTL:     cfg.LockTTL,
		listen:      cfg.Listen,
		writeSem:    make(chan struct{}, 1),
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.maxRetries == 0 {
		r.maxRetries = 5
	}
	if r.busyTimeout == 0 {
		r.busyTimeout = 5 * time.Second
	}
	if r.lockTTL == 0 {
		r.lockTTL = 30 * time.Second
	}
	ev, err := NewEventTables(cfg.Dialect, cfg.TablePrefix)
	if err != nil {
		return nil, err
	}
	ev.afterCommit = true // the Store notifies after commit: commitWaker
	r.ev = ev
	return &Store{r: r, q: db}, nil
}

// DB returns the *sql.DB the store was built on.
func (s *Store) DB() *sql.DB { return s.r.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.r.d }

// TablePrefix returns the prefix of the store's tables.
func (s *Store) TablePrefix() string { return s.r.prefix }

// EventTables returns the helper over the store's event tables, for a
// host that appends events in its own *sql.Tx.
func (s *Store) EventTables() *EventTables { return s.r.ev }

// sql returns query with {p} replaced by the table prefix.
func (r *root) sql(query string) string {
	if v, ok := r.sqls.Load(query); ok {
		return v.(string)
	}
	out := strings.ReplaceAll(query, "{p}", r.prefix)
	r.sqls.Store(query, out)
	return out
}

// Atomically runs fn in one database transaction: see provision.Store.
// On PostgreSQL the transaction is READ COMMITTED, and one that the
// server aborts with a serialization failure or a deadlock is run again
// (fn included) up to Config.MaxRetries times. On SQLite it starts with
// BEGIN IMMEDIATE, so write transactions queue for the database's single
// write lock instead of failing with SQLITE_BUSY half-way.
func (s *Store) Atomically(ctx context.Context, fn func(ctx context.Context, tx provision.Store) error) error {
	if s.inTx {
		return fn(ctx, s)
	}
	return s.r.runTx(ctx, func(tx *Store) error { return fn(ctx, tx) })
}

// write runs fn in the current transaction, or in a new one.
func (s *Store) write(ctx context.Context, fn func(q Querier) error) error {
	if s.inTx {
		return fn(s.q)
	}
	return s.r.runTx(ctx, func(tx *Store) error { return fn(tx.q) })
}

// writeOne runs fn, a single statement, in the current transaction, or
// on PostgreSQL as is (autocommit), or on SQLite in a write transaction.
func (s *Store) writeOne(ctx context.Context, fn func(q Querier) error) error {
	if s.inTx || s.r.d == SQLite {
		return s.write(ctx, fn)
	}
	return lockLostErr(ctx, fn(s.q))
}

// lockLostErr makes err, the failure of a write made with ctx, match
// provision.ErrLockLost when ctx ended because a Locker lock was lost:
// the write failed because the lock went.
func lockLostErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, provision.ErrLockLost) || ctx.Err() == nil {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, provision.ErrLockLost) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return err
}

// runTx runs fn in a new transaction, retrying PostgreSQL serialization
// failures and deadlocks.
func (r *root) runTx(ctx context.Context, fn func(tx *Store) error) (err error) {
	defer func() { err = lockLostErr(ctx, err) }()
	for attempt := 0; ; attempt++ {
		err := r.runTxOnce(ctx, fn)
		if err == nil || !isRetryable(err) {
			return err
		}
		if attempt >= r.maxRetries {
			return fmt.Errorf("sqlstore: transaction aborted %d times: %w: %w", attempt+1, provision.ErrUnavailable, err)
		}
		r.log.DebugContext(ctx, "sqlstore: retrying an aborted transaction", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 2 * time.Millisecond):
		}
	}
}

func (r *root) runTxOnce(ctx context.Context, fn func(tx *Store) error) (err error) {
	if r.d == SQLite {
		return r.runSQLiteTx(ctx, fn)
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return mapErr("begin", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	txs := &Store{r: r, q: tx, inTx: true}
	if err := fn(txs); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return mapErr("commit", err)
	}
	r.waker.committed(r, txs.appended)
	return nil
}

// runSQLiteTx runs fn in BEGIN IMMEDIATE on a dedicated connection, after
// setting the connection's pragmas (they cannot change inside a
// transaction, and the host's DSN may not set them).
func (r *root) runSQLiteTx(ctx context.Context, fn func(tx *Store) error) (err error) {
	select {
	case r.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.writeSem }()
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return mapErr("connect", err)
	}
	defer conn.Close()
	pragmas := fmt.Sprintf("PRAGMA busy_timeout = %d; PRAGMA foreign_keys = ON", r.busyTimeout.Milliseconds())
	if _, err := conn.ExecContext(ctx, pragmas); err != nil {
		return mapErr("pragmas", err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return mapErr("begin", err)
	}
	done := false
	rollback := func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			// The connection is in an unknown state: discard it rather
			// than hand a half-open transaction to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	defer func() {
		if done {
			return
		}
		if p := recover(); p != nil {
			rollback()
			panic(p)
		}
	}()
	// A write made under a held lease lock is fenced: checked here,
	// under the write lock, so no other holder can take the lease before
	// this transaction ends.
	if err := r.checkLeases(ctx, conn); err != nil {
		done = true
		rollback()
		return err
	}
	if err := fn(&Store{r: r, q: conn, inTx: true}); err != nil {
		done = true
		rollback()
		return err
	}
	done = true
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		rollback()
		return mapErr("commit", err)
	}
	return nil
}

// normTime is how times are stored: UTC, microsecond precision.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// ts encodes a time for the dialect.
func (r *root) ts(t time.Time) any { return encodeTime(r.d, t) }

// tsNull encodes a time, the zero time as NULL.
func (r *root) tsNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return encodeTime(r.d, t)
}

func encodeTime(d Dialect, t time.Time) any {
	t = normTime(t)
	if d == SQLite {
		if t.IsZero() {
			return time.Time{}.UnixMicro()
		}
		return t.UnixMicro()
	}
	return t
}

// timeScanner scans a time column of either dialect; NULL is the zero
// time.
type timeScanner struct{ t *time.Time }

func (s timeScanner) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*s.t = time.Time{}
	case time.Time:
		*s.t = normTime(x)
	case int64:
		if x == (time.Time{}).UnixMicro() {
			*s.t = time.Time{}
		} else {
			*s.t = time.UnixMicro(x).UTC()
		}
	default:
		return fmt.Errorf("sqlstore: cannot scan %T into a time", v)
	}
	return nil
}
