package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations(d Dialect) ([]migration, error) {
	dir := path.Join("migrations", d.String())
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			continue
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: bad version: %w", name, err)
		}
		b, err := migrationFS.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", name, err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// SchemaVersion is the schema version this package's migrations reach.
func SchemaVersion(d Dialect) int {
	ms, err := migrations(d)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate brings the store's tables to the current schema version: it
// creates the table {prefix}migrations if needed and applies, in one
// transaction, every embedded migration not recorded there. Concurrent
// calls (replicas starting together) are safe: on PostgreSQL they
// serialize on an advisory lock, on SQLite on the write lock. A database
// whose schema is newer than this package is an error.
//
// On SQLite, Migrate also switches the database file to WAL mode (a
// persistent setting).
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations(s.r.d)
	if err != nil {
		return err
	}
	if s.r.d == SQLite {
		var mode string
		if err := s.r.db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
			return mapErr("migrate: journal_mode", err)
		}
		if !strings.EqualFold(mode, "wal") && !strings.EqualFold(mode, "memory") {
			s.r.log.WarnContext(ctx, "sqlstore: SQLite is not in WAL mode", "journal_mode", mode)
		}
	}
	return s.r.runTx(ctx, func(tx *Store) error {
		q := tx.q
		if s.r.d == Postgres {
			if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(s.r.prefix, "", "migrate")); err != nil {
				return mapErr("migrate: lock", err)
			}
		}
		create := "CREATE TABLE IF NOT EXISTS {p}migrations (version integer PRIMARY KEY, name text NOT NULL, applied bigint NOT NULL)"
		if _, err := q.ExecContext(ctx, s.r.sql(create)); err != nil {
			return mapErr("migrate: create table", err)
		}
		rows, err := q.QueryContext(ctx, s.r.sql("SELECT version FROM {p}migrations"))
		if err != nil {
			return mapErr("migrate: read versions", err)
		}
		applied := map[int]bool{}
		last := 0
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return mapErr("migrate: read versions", err)
			}
			applied[v] = true
			last = max(last, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return mapErr("migrate: read versions", err)
		}
		if n := ms[len(ms)-1].version; last > n {
			return fmt.Errorf("sqlstore: migrate: the database schema (%s) is at version %d, newer than this package's %d", s.r.prefix, last, n)
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if _, err := q.ExecContext(ctx, s.r.sql(m.sql)); err != nil {
				return mapErr("migrate: "+m.name, err)
			}
			ins := "INSERT INTO {p}migrations (version, name, applied) VALUES ($1, $2, $3)"
			if _, err := q.ExecContext(ctx, s.r.sql(ins), m.version, m.name, time.Now().UnixMicro()); err != nil {
				return mapErr("migrate: record "+m.name, err)
			}
			s.r.log.InfoContext(ctx, "sqlstore: applied migration", "prefix", s.r.prefix, "migration", m.name)
		}
		return nil
	})
}

// dropTables removes every table of the store: for tests.
func (s *Store) dropTables(ctx context.Context) error {
	tables := []string{"members", "user_emails", "links", "users", "groups", "events", "event_seq", "cursors", "kv", "locks",
		"registry_tenants", "registry_domains", "registry_tokens", "registry_rev", "migrations"}
	for _, t := range tables {
		if _, err := s.r.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.r.prefix+t); err != nil {
			return mapErr("drop "+t, err)
		}
	}
	return nil
}

// lockKey hashes a lock name into PostgreSQL's advisory lock key space.
func lockKey(prefix, tenantID, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("idprov\x00" + prefix + "\x00" + tenantID + "\x00" + name))
	return int64(h.Sum64())
}
