package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/idprov/idprov/provision"
)

// sqlStater is implemented by PostgreSQL driver errors (pgx's
// *pgconn.PgError, lib/pq's *pq.Error).
type sqlStater interface{ SQLState() string }

// sqliteCoder is implemented by SQLite driver errors (modernc.org/sqlite's
// *sqlite.Error).
type sqliteCoder interface{ Code() int }

// SQLite result codes used below.
const (
	sqliteBusy              = 5
	sqliteLocked            = 6
	sqliteIOErr             = 10
	sqliteFull              = 13
	sqliteCantOpen          = 14
	sqliteConstraint        = 19
	sqliteConstraintFK      = 787
	sqliteConstraintPK      = 1555
	sqliteConstraintUnique  = 2067
	sqliteConstraintNotNull = 1299
)

func sqlState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// isRetryable reports a PostgreSQL serialization failure or deadlock: the
// transaction was aborted and may succeed when run again.
func isRetryable(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	return false
}

// mapErr wraps a database error with the provision sentinel it means,
// keeping the cause: "sqlstore: op: sentinel: cause".
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if s := sentinelOf(err); s != nil && !errors.Is(err, s) {
		return fmt.Errorf("sqlstore: %s: %w: %w", op, s, err)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}

// sentinelOf returns the provision sentinel a database error means, or nil.
func sentinelOf(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return provision.ErrNotFound
	}
	if st := sqlState(err); st != "" {
		switch {
		case st == "23505":
			return uniqueConflict(err)
		case st == "23503":
			return provision.ErrNotFound
		case st == "40001", st == "40P01":
			return provision.ErrUnavailable
		case strings.HasPrefix(st, "08"), // connection exception
			strings.HasPrefix(st, "53"),  // insufficient resources
			strings.HasPrefix(st, "57P"), // operator intervention: shutdown
			st == "25006":                // read-only transaction (a standby)
			return provision.ErrUnavailable
		}
		return nil
	}
	var sc sqliteCoder
	if errors.As(err, &sc) {
		code := sc.Code()
		switch code {
		case sqliteConstraintUnique, sqliteConstraintPK:
			return uniqueConflict(err)
		case sqliteConstraintFK:
			return provision.ErrNotFound
		}
		switch code & 0xff {
		case sqliteBusy, sqliteLocked, sqliteIOErr, sqliteFull, sqliteCantOpen:
			return provision.ErrUnavailable
		}
		return nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		return provision.ErrUnavailable
	}
	// pgx reports a failed connect as *pgconn.ConnectError, whose message
	// says so even when the cause is not a net.Error.
	if strings.Contains(err.Error(), "failed to connect") {
		return provision.ErrUnavailable
	}
	return nil
}

// uniqueConflict names the field of a unique violation from the index in
// the message, when it can.
func uniqueConflict(err error) error {
	msg := err.Error()
	if f := registryConflictField(msg); f != "" {
		return &provision.ConflictError{Field: f}
	}
	switch {
	case strings.Contains(msg, "users_user_name") || strings.Contains(msg, "users.user_name_lower"):
		return &provision.ConflictError{Field: "userName"}
	case strings.Contains(msg, "groups_display_name") || strings.Contains(msg, "groups.display_name_lower"):
		return &provision.ConflictError{Field: "displayName"}
	case strings.Contains(msg, "links"):
		return &provision.ConflictError{Field: "externalId"}
	}
	return provision.ErrAlreadyExists
}

func notFound(what, id string) error {
	return fmt.Errorf("sqlstore: %s %q: %w", what, id, provision.ErrNotFound)
}
