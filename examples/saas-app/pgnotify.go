package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/idprov/idprov/store/sqlstore"
)

// pgxListen is the app's sqlstore.ListenFunc: the library imports no
// driver, so the host wires PostgreSQL's LISTEN with its own (pgx here).
// It takes one connection of the pool for as long as it listens, runs
// LISTEN on every channel, and hands each notification to the store;
// when ctx ends or the session fails it returns an error wrapping
// driver.ErrBadConn, so database/sql closes the connection instead of
// returning a listening session to the pool. The store calls it again
// after a failure and tells its subscribers they may have missed
// notifications.
func pgxListen(db *sql.DB) sqlstore.ListenFunc {
	return func(ctx context.Context, channels []string, ready func(), deliver func(channel, payload string)) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			sc, ok := dc.(*stdlib.Conn)
			if !ok {
				return errors.New("pgxListen: the pool's driver is not pgx")
			}
			pc := sc.Conn()
			for _, ch := range channels {
				if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
					return errors.Join(err, driver.ErrBadConn)
				}
			}
			ready()
			for {
				n, err := pc.WaitForNotification(ctx)
				if err != nil {
					return errors.Join(err, driver.ErrBadConn)
				}
				deliver(n.Channel, n.Payload)
			}
		})
	}
}
