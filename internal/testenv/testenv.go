// Package testenv tells idprov's tests where the servers they need are,
// and makes a missing server fail the test in CI (CI=true) instead of
// skipping it. It is imported by tests only.
package testenv

import (
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
