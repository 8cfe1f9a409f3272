package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"strings"
	"time"

	// The app picks its database drivers; the library imports none.
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/sqlstore"
)

// dbFeature chooses the store: -db memory (memstore, gone on exit), a
// SQLite file path (the default, so a restart keeps the data), or a
// postgres:// URL (many app replicas on one database).
type dbFeature struct {
	dsn string
	db  *sql.DB
}

func (f *dbFeature) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.dsn, "db", "saas-app.db", `the store: "memory", a SQLite file path, or a postgres:// URL`)
}

func (f *dbFeature) setup(a *app) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dialect sqlstore.Dialect
	switch {
	case f.dsn == "memory":
		a.Store = memstore.New()
		a.StoreName = "memory"
		return nil
	case strings.HasPrefix(f.dsn, "postgres://"), strings.HasPrefix(f.dsn, "postgresql://"):
		db, err := sql.Open("pgx", f.dsn)
		if err != nil {
			return fmt.Errorf("-db: %w", err)
		}
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20) // not the default 2: no new backend per burst
		f.db, dialect, a.StoreName = db, sqlstore.Postgres, "postgres"
	default:
		if err := checkDBDir(f.dsn); err != nil { // errors.go
			return err
		}
		dsn := "file:" + f.dsn + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return fmt.Errorf("-db: %w", err)
		}
		f.db, dialect, a.StoreName = db, sqlstore.SQLite, "sqlite:"+f.dsn
	}
	cfg := sqlstore.Config{Dialect: dialect, Logger: a.Log}
	if dialect == sqlstore.Postgres {
		// Consumers on every replica hear of a commit at once.
		cfg.Listen = pgxListen(f.db)
	}
	st, err := sqlstore.New(f.db, cfg)
	if err != nil {
		return fmt.Errorf("-db: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("-db %s: migrate: %w", f.dsn, err)
	}
	a.Store = st
	return nil
}

func (f *dbFeature) start(context.Context, *app) error { return nil }

// stop closes the database once the server has shut down.
func (f *dbFeature) stop() error {
	if f.db != nil {
		return f.db.Close()
	}
	return nil
}
