package sqlstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idprov/idprov/provision"
)

// seedRegistry bulk-inserts n live tenant records, tenant-<i> with the
// domain tenant-<i>.example and the token hash seedToken(i) of
// connection "scim", with multi-row INSERTs of 500 rows, and sets the
// counter to Rev n.
func seedRegistry(t testing.TB, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	now := s.r.ts(time.Now())
	const batch = 500
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		err := s.r.runTx(ctx, func(tx *Store) error {
			targs := make([]any, 0, 8*(end-start))
			dargs := make([]any, 0, 2*(end-start))
			kargs := make([]any, 0, 3*(end-start))
			for i := start; i < end; i++ {
				r := seedRecord(i)
				domains, tokens, err := encodeRegIndex(r)
				if err != nil {
					return err
				}
				targs = append(targs, r.TenantID, int64(1), int64(i+1), false, now, r.Body, domains, tokens)
				dargs = append(dargs, r.Domains[0], r.TenantID)
				kargs = append(kargs, r.Tokens[0].Hash[:], r.TenantID, r.Tokens[0].ConnectionID)
			}
			for _, ins := range []struct {
				sql   string
				width int
				args  []any
			}{
				{"INSERT INTO {p}registry_tenants (tenant_id, version, rev, deleted, modified, body, domains, tokens) VALUES ", 8, targs},
				{"INSERT INTO {p}registry_domains (domain, tenant_id) VALUES ", 2, dargs},
				{"INSERT INTO {p}registry_tokens (hash, tenant_id, connection_id) VALUES ", 3, kargs},
			} {
				if _, err := tx.q.ExecContext(ctx, s.r.sql(ins.sql+placeholders(1, end-start, ins.width)), ins.args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().ExecContext(ctx, s.r.sql("UPDATE {p}registry_rev SET rev = $1"), int64(n)); err != nil {
		t.Fatal(err)
	}
	q := "ANALYZE"
	if s.Dialect() == Postgres {
		q = s.r.sql("ANALYZE {p}registry_tenants, {p}registry_domains, {p}registry_tokens")
	}
	if _, err := s.DB().ExecContext(ctx, q); err != nil {
		t.Fatal(err)
	}
}

func seedToken(i int) provision.TokenHash { return sha256.Sum256(fmt.Appendf(nil, "seed token %d", i)) }

// seedRecord is the record seedRegistry stores for i, in its stored form.
func seedRecord(i int) provision.TenantRecord {
	id := fmt.Sprintf("tenant-%06d", i)
	return provision.TenantRecord{
		TenantID: id,
		Body:     fmt.Appendf(nil, `{"id":%q}`, id),
		Domains:  []string{id + ".example"},
		Tokens:   []provision.TokenRef{{Hash: seedToken(i), ConnectionID: "scim"}},
	}
}

// dumpTable returns every value of every row of the table, as bytes.
func dumpTable(t *testing.T, s *Store, table string) [][]byte {
	t.Helper()
	rows, err := s.DB().QueryContext(t.Context(), "SELECT * FROM "+s.r.prefix+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				out = append(out, slices.Clone(v))
			case string:
				out = append(out, []byte(v))
			default:
				out = append(out, fmt.Append(nil, v))
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var registryTables = []string{"registry_tenants", "registry_domains", "registry_tokens", "registry_rev"}

// TestRegistryTablesHoldNoToken reads the registry tables back: the body
// is stored exactly as given (the engine seals the secrets in it), the
// SCIM tokens appear only as their SHA-256 hashes, never in clear (nor
// hex or base64), and a deleted tenant leaves no body, domain or hash.
func TestRegistryTablesHoldNoToken(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		ctx := t.Context()
		var tokens []string
		rec := provision.TenantRecord{TenantID: "globex", Domains: []string{"globex.example"}}
		for _, conn := range []string{"okta", "entra"} {
			tok := "scim-" + rand.Text()
			tokens = append(tokens, tok)
			rec.Tokens = append(rec.Tokens, provision.TokenRef{Hash: sha256.Sum256([]byte(tok)), ConnectionID: conn})
		}
		// A body as the engine makes it: opaque bytes, any of them.
		rec.Body = make([]byte, 300)
		_, _ = rand.Read(rec.Body)
		put, err := s.PutTenantRecord(ctx, rec, 0)
		if err != nil {
			t.Fatal(err)
		}
		var body []byte
		if err := s.DB().QueryRowContext(ctx, s.r.sql("SELECT body FROM {p}registry_tenants WHERE tenant_id = $1"), "globex").Scan(&body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, rec.Body) {
			t.Errorf("the stored body differs from the one given:\n got %x\nwant %x", body, rec.Body)
		}
		var hashes [][]byte
		rows, err := s.DB().QueryContext(ctx, s.r.sql("SELECT hash FROM {p}registry_tokens WHERE tenant_id = $1 ORDER BY connection_id"), "globex")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var h []byte
			if err := rows.Scan(&h); err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, h)
		}
		rows.Close()
		if len(hashes) != 2 || !bytes.Equal(hashes[0], rec.Tokens[1].Hash[:]) || !bytes.Equal(hashes[1], rec.Tokens[0].Hash[:]) {
			t.Errorf("registry_tokens holds the hashes %x, want the SHA-256 of the tokens of entra and okta", hashes)
		}
		bodies := 0
		for _, table := range registryTables {
			for _, v := range dumpTable(t, s, table) {
				if bytes.Contains(v, rec.Body) {
					bodies++
				}
				for _, tok := range tokens {
					for _, form := range []string{tok, hex.EncodeToString([]byte(tok)), base64.StdEncoding.EncodeToString([]byte(tok))} {
						if bytes.Contains(v, []byte(form)) {
							t.Errorf("%s holds a SCIM token in clear: %q", table, v)
						}
					}
				}
			}
		}
		if bodies != 1 {
			t.Errorf("the body is stored %d times, want once (in registry_tenants)", bodies)
		}

		if err := s.DeleteTenantRecord(ctx, "globex", put.Version); err != nil {
			t.Fatal(err)
		}
		for _, table := range registryTables {
			for _, v := range dumpTable(t, s, table) {
				if bytes.Contains(v, rec.Body[:32]) || bytes.Contains(v, []byte("globex.example")) ||
					bytes.Contains(v, hashes[0]) || bytes.Contains(v, []byte(hex.EncodeToString(hashes[0]))) {
					t.Errorf("%s keeps data of the deleted tenant: %q", table, v)
				}
			}
		}
	})
}

// TestRegistryIndexPlans shows that the lookups requests make before they
// know the tenant (a domain, a token hash), a record read and the
// revision feed are index lookups, never scans: the plans of the store's
// own queries, at 10,000 tenants.
func TestRegistryIndexPlans(t *testing.T) {
	dialects(t, func(t *testing.T, newStore func(testing.TB) *Store) {
		s := newStore(t)
		seedRegistry(t, s, 10000)
		p := s.TablePrefix()
		h := seedToken(4242)
		for _, c := range []struct {
			name, table, index string // index "" is the primary key
			query              string
			args               []any
		}{
			{"TenantByDomain", "registry_domains", "", "SELECT tenant_id FROM {p}registry_domains WHERE domain = $1", []any{"tenant-004242.example"}},
			{"ConnectionByTokenHash", "registry_tokens", "", "SELECT tenant_id, connection_id FROM {p}registry_tokens WHERE hash = $1", []any{h[:]}},
			{"GetTenantRecord", "registry_tenants", "", "SELECT " + regCols + " FROM {p}registry_tenants WHERE tenant_id = $1 AND NOT deleted", []any{"tenant-004242"}},
			{"RegistryChanges", "registry_tenants", "registry_tenants_rev", "SELECT tenant_id, rev, deleted FROM {p}registry_tenants WHERE rev > $1 ORDER BY rev LIMIT $2", []any{int64(9990), 1000}},
			{"domain conflict check", "registry_domains", "", "SELECT domain, tenant_id FROM {p}registry_domains WHERE domain IN ($2, $3) AND tenant_id <> $1 ORDER BY domain LIMIT 1", []any{"acme", "tenant-000042.example", "tenant-000043.example"}},
			{"token conflict check", "registry_tokens", "", "SELECT hash, tenant_id FROM {p}registry_tokens WHERE hash IN ($2) AND tenant_id <> $1 ORDER BY hash LIMIT 1", []any{"acme", h[:]}},
			{"unindex domains", "registry_domains", "registry_domains_tenant", "DELETE FROM {p}registry_domains WHERE tenant_id = $1", []any{"tenant-004242"}},
			{"unindex tokens", "registry_tokens", "registry_tokens_tenant", "DELETE FROM {p}registry_tokens WHERE tenant_id = $1", []any{"tenant-004242"}},
		} {
			plan := explain(t, s, c.query, c.args...)
			t.Logf("%s (%s):\n%s", c.name, s.Dialect(), plan)
			var want []string
			switch {
			case s.Dialect() == Postgres && c.index == "":
				want = []string{"using " + p + c.table + "_pkey", "on " + p + c.table + "_pkey"}
			case s.Dialect() == Postgres:
				want = []string{"using " + p + c.index + " ", "on " + p + c.index}
			case c.index == "":
				want = []string{"SEARCH " + p + c.table + " USING PRIMARY KEY"}
			default:
				want = []string{"SEARCH " + p + c.table + " USING INDEX " + p + c.index + " ", "SEARCH " + p + c.table + " USING COVERING INDEX " + p + c.index + " "}
			}
			if !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(plan, w) }) {
				t.Errorf("%s: the plan does not use %q:\n%s", c.name, want, plan)
			}
			for _, table := range registryTables {
				if strings.Contains(plan, "Seq Scan on "+p+table) || strings.Contains(plan, "SCAN "+p+table) {
					t.Errorf("%s: the plan scans %s:\n%s", c.name, table, plan)
				}
			}
		}
	})
}

// TestRegistryNotify listens on the RegistryChannel: a put and a delete
// notify the tenant id at commit; a rolled back write and a refused one
// notify nothing.
func TestRegistryNotify(t *testing.T) {
	postgresDSN(t)
	s := newPostgres(t, Config{})
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, postgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.RegistryChannel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	next := func() (string, error) {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			return "", err
		}
		if n.Channel != s.RegistryChannel() {
			return "", fmt.Errorf("a notification on %q, want %q", n.Channel, s.RegistryChannel())
		}
		return n.Payload, nil
	}
	none := func(what string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if n, err := conn.WaitForNotification(wctx); err == nil {
			t.Errorf("%s notified %q", what, n.Payload)
		}
	}

	a, err := s.PutTenantRecord(ctx, provision.TenantRecord{TenantID: "acme", Domains: []string{"acme.example"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := next(); err != nil || got != "acme" {
		t.Fatalf("after a put: notification %q, %v; want acme", got, err)
	}
	boom := errors.New("boom")
	err = s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		if _, err := tx.(provision.Registry).PutTenantRecord(ctx, provision.TenantRecord{TenantID: "rolled-back"}, 0); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	none("a rolled back put")
	_, err = s.PutTenantRecord(ctx, provision.TenantRecord{TenantID: "other", Domains: []string{"acme.example"}}, 0)
	if !errors.Is(err, provision.ErrAlreadyExists) {
		t.Fatalf("a claimed domain: %v", err)
	}
	none("a refused put")
	// Inside a transaction, the notification waits for the commit.
	err = s.Atomically(ctx, func(ctx context.Context, tx provision.Store) error {
		if err := tx.(provision.Registry).DeleteTenantRecord(ctx, "acme", a.Version); err != nil {
			return err
		}
		none("a delete not yet committed")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := next(); err != nil || got != "acme" {
		t.Fatalf("after a delete: notification %q, %v; want acme", got, err)
	}
}
