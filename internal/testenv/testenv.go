// Package testenv tells idprov's tests where the servers they need are,
// and makes a missing server fail the test in CI (CI=true) instead of
// skipping it. It is imported by tests only.
package testenv

import (
	"database/sql"
	"os"
	"testing"
)

// PostgresDSN returns IDPROV_TEST_POSTGRES_DSN. Without it the test is
// skipped, or fails when CI=true: in CI the PostgreSQL tests must run.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("IDPROV_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("IDPROV_TEST_POSTGRES_DSN is not set, and CI=true: the PostgreSQL tests must run in CI")
		}
		t.Skip("IDPROV_TEST_POSTGRES_DSN is not set; skipping the PostgreSQL tests")
	}
	return dsn
}

// DropTables drops the tables of the current schema whose names start
// with prefix: what a test that migrated a store under its own table
// prefix leaves behind on a shared PostgreSQL.
func DropTables(t testing.TB, db *sql.DB, prefix string) {
	rows, err := db.Query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, $1)", prefix)
	if err != nil {
		t.Error(err)
		return
	}
	var tables []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, n := range tables {
		if _, err := db.Exec(`DROP TABLE IF EXISTS "` + n + `" CASCADE`); err != nil {
			t.Error(err)
		}
	}
}
