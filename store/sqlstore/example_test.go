package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/sqlstore"
)

// Example opens a SQLite store, migrates it, and creates a user through
// the engine: the user and its user.created event commit together.
func Example() {
	dir, err := os.MkdirTemp("", "idprov-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dsn := "file:" + filepath.Join(dir, "idprov.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	st, err := sqlstore.New(db, sqlstore.Config{Dialect: sqlstore.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	eng, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{{ID: "acme"}}})
	if err != nil {
		log.Fatal(err)
	}
	u, err := eng.CreateUser(ctx, provision.Origin{TenantID: "acme"}, provision.User{UserName: "ada@acme.example", Active: true})
	if err != nil {
		log.Fatal(err)
	}
	same, err := st.UserByUserName(ctx, "acme", "ADA@acme.example")
	if err != nil {
		log.Fatal(err)
	}
	evs, err := st.ListEvents(ctx, "acme", 0, 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(same.ID == u.ID, same.Version)
	for _, ev := range evs {
		fmt.Println(ev.Seq, ev.Kind, ev.User.UserName)
	}
	// Output:
	// true 1
	// 1 user.created ada@acme.example
}
