package scim_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/internal/testenv"
	"github.com/idprov/idprov/store/sqlstore"
)

// postgresStore returns a migrated sqlstore on IDPROV_TEST_POSTGRES_DSN
// with tables of a random prefix, dropped at the end; without the DSN the
// test is skipped, or fails when CI=true.
func postgresStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	var b [5]byte
	_, _ = rand.Read(b[:])
	prefix := "t" + hex.EncodeToString(b[:]) + "_"
	st := migratedStore(t, db, sqlstore.Config{Dialect: sqlstore.Postgres, TablePrefix: prefix})
	t.Cleanup(func() {
		testenv.DropTables(t, db, prefix)
	})
	return st
}

// sqliteStore returns a migrated sqlstore on a new SQLite file.
func sqliteStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "idprov.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return migratedStore(t, db, sqlstore.Config{Dialect: sqlstore.SQLite})
}

func migratedStore(t *testing.T, db *sql.DB, cfg sqlstore.Config) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// parallel runs fn(i) for i in 0..n-1 at the same time.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

const patchOp = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`

// TestConcurrentPatchesPostgres: 32 PATCHes of one user at once, each
// adding an e-mail, none with If-Match: all succeed, all e-mails are
// there; the same for member adds and attribute changes of one group.
// With If-Match and a stale version, 412.
func TestConcurrentPatchesPostgres(t *testing.T) {
	e := newEnvStore(t, postgresStore(t))
	const n = 32
	r := e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@example.com","active":true,"emails":[{"value":"ada@example.com","type":"work","primary":true}]}`), 201, "create user")
	uid := r.str("id")
	statuses := make([]string, n)
	parallel(n, func(i int) {
		r := doReq(t, e.base, acmeOkta, "PATCH", "/Users/"+uid, patchOp+`{"op":"add","path":"emails","value":[{"value":"ada+`+itoa(i)+`@example.com","type":"other"}]}]}`)
		statuses[i] = fmt.Sprint(r.status)
		if r.status != 200 {
			statuses[i] += " " + r.raw
		}
	})
	for i, s := range statuses {
		if s != "200" {
			t.Errorf("PATCH %d of the user: %s", i, s)
		}
	}
	got := e.must(e.do(acmeOkta, "GET", "/Users/"+uid, ""), 200, "get user")
	emails := map[string]bool{}
	for _, em := range got.get("emails").([]any) {
		emails[em.(map[string]any)["value"].(string)] = true
	}
	for i := range n {
		if !emails["ada+"+itoa(i)+"@example.com"] {
			t.Errorf("e-mail %d is missing: %v", i, emails)
		}
	}

	// A group: 32 member adds and 8 attribute changes at once.
	users := make([]string, n)
	for i := range users {
		users[i] = e.must(e.do(acmeOkta, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"m`+itoa(i)+`@example.com","active":true}`), 201, "create member").str("id")
	}
	gid := e.must(e.do(acmeOkta, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering","members":[]}`), 201, "create group").str("id")
	const attrs = 8
	gstatuses := make([]string, n+attrs)
	parallel(n+attrs, func(i int) {
		body := patchOp + `{"op":"add","path":"members","value":[{"value":"` + users[i%n] + `"}]}]}`
		if i >= n {
			body = patchOp + `{"op":"replace","path":"externalId","value":"ext-` + itoa(i) + `"}]}`
		}
		r := doReq(t, e.base, acmeOkta, "PATCH", "/Groups/"+gid, body)
		gstatuses[i] = fmt.Sprint(r.status)
		if r.status != 200 && r.status != 204 {
			gstatuses[i] += " " + r.raw
		}
	})
	for i, s := range gstatuses {
		if s != "200" && s != "204" {
			t.Errorf("PATCH %d of the group: %s", i, s)
		}
	}
	g := e.must(e.do(acmeOkta, "GET", "/Groups/"+gid, ""), 200, "get group")
	members := map[string]bool{}
	for _, m := range g.get("members").([]any) {
		members[m.(map[string]any)["value"].(string)] = true
	}
	for i, id := range users {
		if !members[id] {
			t.Errorf("member %d (%s) is missing", i, id)
		}
	}

	// If-Match with a stale version is the only way to a 412.
	e.mustError(e.do(acmeOkta, "PATCH", "/Users/"+uid, patchOp+`{"op":"replace","path":"title","value":"x"}]}`, "If-Match", r.header.Get("ETag")), 412, "", "stale If-Match")
}
