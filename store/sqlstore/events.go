package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
)

// EventTables is the event log of a Store (the tables {prefix}events,
// {prefix}event_seq and {prefix}cursors) as a helper over any Querier,
// so that a host with its own provision.Store on the same database gets a
// correct provision.EventLog by passing its own *sql.Tx:
//
//	func (tx *myTx) AppendEvents(ctx context.Context, tenantID string, evs []provision.Event) ([]provision.Event, error) {
//		return tx.events.Append(ctx, tx.sqlTx, tenantID, evs)
//	}
//
// Create the tables once with (*Store).Migrate using the same dialect and
// prefix (the Store need not be used otherwise).
//
// Sequence numbers come from a per-tenant counter row updated in the
// caller's transaction: appends of one tenant serialize on that row until
// commit, so committed events have strictly increasing Seq with no gap,
// and a rollback gives its numbers back.
type EventTables struct {
	d      Dialect
	prefix string
	sqls   sync.Map
	// afterCommit is set for a Store's own tables: the Store notifies
	// after its transactions commit (commitWaker), so Append does not.
	afterCommit bool
}

// NewEventTables returns the helper for the event tables of dialect d
// and prefix (empty means DefaultTablePrefix).
func NewEventTables(d Dialect, prefix string) (*EventTables, error) {
	if !d.valid() {
		return nil, fmt.Errorf("sqlstore: dialect must be Postgres or SQLite, not %v", d)
	}
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("sqlstore: table prefix %q must match %s", prefix, prefixRE)
	}
	return &EventTables{d: d, prefix: prefix}, nil
}

func (t *EventTables) sql(query string) string {
	if v, ok := t.sqls.Load(query); ok {
		return v.(string)
	}
	out := strings.ReplaceAll(query, "{p}", t.prefix)
	t.sqls.Store(query, out)
	return out
}

// eventRowsPerInsert bounds one multi-row INSERT of events.
const eventRowsPerInsert = 100

// Append appends events of tenantID in q, which must be a transaction
// (*sql.Tx, or a *sql.Conn inside BEGIN): see provision.EventLog's
// AppendEvents. Events whose TenantID is empty get tenantID; another
// tenant's event is an error. Times are stored in UTC to the microsecond,
// and the returned events carry their stored form.
func (t *EventTables) Append(ctx context.Context, q Querier, tenantID string, events []provision.Event) ([]provision.Event, error) {
	if len(events) == 0 {
		return []provision.Event{}, nil
	}
	out := make([]provision.Event, len(events))
	for i, ev := range events {
		if ev.TenantID == "" {
			ev.TenantID = tenantID
		}
		if ev.TenantID != tenantID {
			return nil, &provision.ValidationError{Field: "event.tenantId", Reason: fmt.Sprintf("event of tenant %q appended to tenant %q", ev.TenantID, tenantID)}
		}
		ev.Time = normTime(ev.Time)
		for _, u := range []**provision.User{&ev.User, &ev.PreviousUser} {
			if *u != nil {
				n := normUser(**u)
				*u = &n
			}
		}
		for _, g := range []**provision.Group{&ev.Group, &ev.PreviousGroup} {
			if *g != nil {
				n := normGroup(**g)
				*g = &n
			}
		}
		out[i] = ev
	}
	if t.d == Postgres && len(out) <= eventRowsPerInsert {
		if done, err := t.appendPostgres(ctx, q, tenantID, out); done {
			if err != nil {
				return nil, err
			}
			return out, nil
		}
	}
	var last int64
	reserve := `INSERT INTO {p}event_seq (tenant_id, seq) VALUES ($1, $2)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = {p}event_seq.seq + excluded.seq RETURNING seq`
	var err error
	if t.d == Postgres && !t.afterCommit {
		// The same statement notifies every listening session, when (and
		// only if) the transaction commits; see Store.WatchCommits.
		var void bool
		err = q.QueryRowContext(ctx, t.sql(reserve+", pg_notify($3, $4)::text IS NULL"), tenantID, int64(len(out)), t.prefix+EventsTopic, eventsPayload(tenantID)).Scan(&last, &void)
	} else {
		err = q.QueryRowContext(ctx, t.sql(reserve), tenantID, int64(len(out))).Scan(&last)
	}
	if err != nil {
		return nil, mapErr("append events: reserve seq", err)
	}
	first := last - int64(len(out)) + 1
	for start := 0; start < len(out); start += eventRowsPerInsert {
		end := min(start+eventRowsPerInsert, len(out))
		args := make([]any, 0, 6*(end-start))
		for i := start; i < end; i++ {
			out[i].Seq = first + int64(i)
			doc, err := encodeEvent(out[i])
			if err != nil {
				return nil, err
			}
			var uid any
			if out[i].User != nil {
				uid = out[i].User.ID
			} else if out[i].PreviousUser != nil {
				uid = out[i].PreviousUser.ID
			}
			args = append(args, tenantID, out[i].Seq, encodeTime(t.d, out[i].Time), string(out[i].Kind), uid, doc)
		}
		_, err := q.ExecContext(ctx, t.sql("INSERT INTO {p}events (tenant_id, seq, time, kind, user_id, doc) VALUES "+placeholders(1, end-start, 6)), args...)
		if err != nil {
			return nil, mapErr("append events", err)
		}
	}
	return out, nil
}

// seqPrefix is how an encoded event with Seq 0 begins (Seq is the first
// field of provision.Event).
const seqPrefix = `{"seq":0`

// appendPostgres appends out (at most eventRowsPerInsert events of
// tenantID, normalised) on PostgreSQL in one statement, one round trip:
// it reserves their Seqs in {p}event_seq, inserts the rows with the
// documents completed with their Seq, and notifies EventsTopic at commit.
// The stored documents are byte for byte those encodeEvent makes of the
// events with their Seq. done is false (and nothing was sent) when an
// encoded event does not start with seqPrefix.
func (t *EventTables) appendPostgres(ctx context.Context, q Querier, tenantID string, out []provision.Event) (done bool, err error) {
	n := len(out)
	args := make([]any, 0, 4+5*n)
	args = append(args, tenantID, int64(n))
	notify := "true" // a Store notifies after the commit (commitWaker)
	if !t.afterCommit {
		args = append(args, t.prefix+EventsTopic, eventsPayload(tenantID))
		notify = "pg_notify($3, $4)::text IS NULL"
	}
	var rows strings.Builder
	for i, ev := range out {
		ev.Seq = 0
		doc, err := encodeEvent(ev)
		if err != nil {
			return true, err
		}
		rest, ok := strings.CutPrefix(doc, seqPrefix)
		if !ok {
			return false, nil
		}
		var uid any
		if ev.User != nil {
			uid = ev.User.ID
		} else if ev.PreviousUser != nil {
			uid = ev.PreviousUser.ID
		}
		k := len(args)
		if i > 0 {
			rows.WriteString(", ")
		}
		fmt.Fprintf(&rows, "($%d::bigint, $%d::timestamptz, $%d::text, $%d::text, $%d::text)", k+1, k+2, k+3, k+4, k+5)
		args = append(args, int64(i), encodeTime(t.d, ev.Time), string(ev.Kind), uid, rest)
	}
	var last int64
	var void bool
	var inserted int
	err = q.QueryRowContext(ctx, t.sql(`WITH s AS (INSERT INTO {p}event_seq (tenant_id, seq) VALUES ($1, $2)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = {p}event_seq.seq + excluded.seq RETURNING seq),
	e AS (INSERT INTO {p}events (tenant_id, seq, time, kind, user_id, doc)
		SELECT $1, s.seq - $2 + 1 + v.i, v.time, v.kind, v.uid, ('{"seq":' || (s.seq - $2 + 1 + v.i) || v.rest)::json
		FROM s, (VALUES `+rows.String()+`) AS v (i, time, kind, uid, rest) RETURNING 1)
	SELECT s.seq, `+notify+`, (SELECT count(*) FROM e) FROM s`), args...).Scan(&last, &void, &inserted)
	if err != nil {
		return true, mapErr("append events", err)
	}
	if inserted != n {
		return true, fmt.Errorf("sqlstore: append events: %d of %d rows inserted", inserted, n)
	}
	for i := range out {
		out[i].Seq = last - int64(n) + 1 + int64(i)
	}
	return true, nil
}

// eventsPayload is the payload of an events notification: the tenant id,
// or "" (look at every tenant) for an id too long for a payload.
func eventsPayload(tenantID string) string {
	if len(tenantID) > maxPayload {
		return ""
	}
	return tenantID
}

// Backlogs returns the tenants whose committed last Seq is above the
// consumer's cursor, with tenant id above afterTenant, in tenant id
// order, at most limit: see provision.EventBacklog. It is one query
// joining {prefix}event_seq (one row per tenant that has events) with the
// consumer's rows of {prefix}cursors on their primary keys; it reads
// committed rows only, so a transaction that commits late is seen when it
// commits.
func (t *EventTables) Backlogs(ctx context.Context, q Querier, consumer string, tenants []string, afterTenant string, limit int) ([]provision.Backlog, error) {
	out := []provision.Backlog{}
	if limit <= 0 {
		return out, nil
	}
	const query = `SELECT s.tenant_id, COALESCE(c.seq, 0), s.seq FROM {p}event_seq s
		LEFT JOIN {p}cursors c ON c.tenant_id = s.tenant_id AND c.consumer = $1
		WHERE s.tenant_id > $2 AND s.seq > COALESCE(c.seq, 0)`
	if tenants == nil {
		return t.scanBacklogs(ctx, q, out, t.sql(query+" ORDER BY s.tenant_id LIMIT $3"), consumer, afterTenant, limit)
	}
	// The named tenants, a chunk at a time on their primary keys.
	ids := slices.Clone(tenants)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, c := range chunks(ids) {
		args := []any{consumer, afterTenant}
		for _, id := range c {
			args = append(args, id)
		}
		var err error
		out, err = t.scanBacklogs(ctx, q, out, t.sql(query+" AND s.tenant_id IN ("+list(3, len(c))+") ORDER BY s.tenant_id"), args...)
		if err != nil {
			return nil, err
		}
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

func (t *EventTables) scanBacklogs(ctx context.Context, q Querier, out []provision.Backlog, query string, args ...any) ([]provision.Backlog, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr("backlogs", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b provision.Backlog
		if err := rows.Scan(&b.TenantID, &b.Cursor, &b.LastSeq); err != nil {
			return nil, mapErr("backlogs", err)
		}
		out = append(out, b)
	}
	return out, mapErr("backlogs", rows.Err())
}

// List returns at most limit events of the tenant with Seq > after, in
// Seq order.
func (t *EventTables) List(ctx context.Context, q Querier, tenantID string, after int64, limit int) ([]provision.Event, error) {
	if limit <= 0 {
		return []provision.Event{}, nil
	}
	rows, err := q.QueryContext(ctx, t.sql("SELECT seq, doc FROM {p}events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"), tenantID, after, limit)
	if err != nil {
		return nil, mapErr("list events", err)
	}
	defer rows.Close()
	out := make([]provision.Event, 0, min(limit, 256))
	for rows.Next() {
		var seq int64
		var doc []byte
		if err := rows.Scan(&seq, &doc); err != nil {
			return nil, mapErr("list events", err)
		}
		ev, err := decodeEvent(doc)
		if err != nil {
			return nil, err
		}
		ev.Seq = seq
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list events", err)
	}
	return out, nil
}

// LastSeq returns the highest Seq assigned to the tenant (committed),
// 0 when none. Purging events does not lower it.
func (t *EventTables) LastSeq(ctx context.Context, q Querier, tenantID string) (int64, error) {
	var seq int64
	err := q.QueryRowContext(ctx, t.sql("SELECT seq FROM {p}event_seq WHERE tenant_id = $1"), tenantID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, mapErr("last seq", err)
}

// Cursor returns the consumer's stored cursor for the tenant, 0 when none.
func (t *EventTables) Cursor(ctx context.Context, q Querier, tenantID, consumer string) (int64, error) {
	var seq int64
	err := q.QueryRowContext(ctx, t.sql("SELECT seq FROM {p}cursors WHERE tenant_id = $1 AND consumer = $2"), tenantID, consumer).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, mapErr("cursor", err)
}

// SetCursor stores the consumer's cursor for the tenant.
func (t *EventTables) SetCursor(ctx context.Context, q Querier, tenantID, consumer string, seq int64) error {
	_, err := q.ExecContext(ctx, t.sql(`INSERT INTO {p}cursors (tenant_id, consumer, seq) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq`), tenantID, consumer, seq)
	return mapErr("set cursor", err)
}

// Purge removes the tenant's events older than before and returns how
// many it removed.
func (t *EventTables) Purge(ctx context.Context, q Querier, tenantID string, before time.Time) (int, error) {
	res, err := q.ExecContext(ctx, t.sql("DELETE FROM {p}events WHERE tenant_id = $1 AND time < $2"), tenantID, encodeTime(t.d, before))
	if err != nil {
		return 0, mapErr("purge events", err)
	}
	n, err := res.RowsAffected()
	return int(n), mapErr("purge events", err)
}

// Redact replaces the user snapshots of userID's events with copies
// holding only ID, TenantID and Deleted, and returns how many events
// changed. Run it in a transaction.
func (t *EventTables) Redact(ctx context.Context, q Querier, tenantID, userID string) (int, error) {
	rows, err := q.QueryContext(ctx, t.sql("SELECT seq, doc FROM {p}events WHERE tenant_id = $1 AND user_id = $2 ORDER BY seq"), tenantID, userID)
	if err != nil {
		return 0, mapErr("redact events", err)
	}
	type change struct {
		seq int64
		doc string
	}
	var changes []change
	for rows.Next() {
		var seq int64
		var doc []byte
		if err := rows.Scan(&seq, &doc); err != nil {
			rows.Close()
			return 0, mapErr("redact events", err)
		}
		ev, err := decodeEvent(doc)
		if err != nil {
			rows.Close()
			return 0, err
		}
		ev.Seq = seq
		redact := func(u *provision.User) *provision.User {
			if u == nil || u.ID != userID {
				return u
			}
			return &provision.User{ID: u.ID, TenantID: u.TenantID, Deleted: u.Deleted}
		}
		ev.User, ev.PreviousUser = redact(ev.User), redact(ev.PreviousUser)
		nd, err := encodeEvent(ev)
		if err != nil {
			rows.Close()
			return 0, err
		}
		old, err := decodeEvent(doc)
		if err != nil {
			rows.Close()
			return 0, err
		}
		old.Seq = seq
		od, _ := encodeEvent(old)
		if nd != od {
			changes = append(changes, change{seq, nd})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, mapErr("redact events", err)
	}
	for _, c := range changes {
		if _, err := q.ExecContext(ctx, t.sql("UPDATE {p}events SET doc = $3 WHERE tenant_id = $1 AND seq = $2"), tenantID, c.seq, c.doc); err != nil {
			return 0, mapErr("redact events", err)
		}
	}
	return len(changes), nil
}

// AppendEvents implements provision.EventLog: in the transaction when s
// is an Atomically Store, else in a transaction of its own.
//
// On PostgreSQL the tenant is notified on EventsTopic once the transaction
// has committed (see commitWaker), not by a pg_notify inside it.
func (s *Store) AppendEvents(ctx context.Context, tenantID string, events []provision.Event) ([]provision.Event, error) {
	var out []provision.Event
	appendIn := func(tx *Store) error {
		var err error
		out, err = tx.r.ev.Append(ctx, tx.q, tenantID, events)
		if err == nil && len(out) > 0 && !slices.Contains(tx.appended, tenantID) {
			tx.appended = append(tx.appended, tenantID)
		}
		return err
	}
	if s.inTx {
		return out, appendIn(s)
	}
	err := s.r.runTx(ctx, appendIn)
	return out, err
}

// ListEvents implements provision.EventLog.
func (s *Store) ListEvents(ctx context.Context, tenantID string, after int64, limit int) ([]provision.Event, error) {
	return s.r.ev.List(ctx, s.q, tenantID, after, limit)
}

// Backlogs implements provision.EventBacklog: one query, see
// EventTables.Backlogs.
func (s *Store) Backlogs(ctx context.Context, consumer string, tenants []string, afterTenant string, limit int) ([]provision.Backlog, error) {
	return s.r.ev.Backlogs(ctx, s.q, consumer, tenants, afterTenant, limit)
}

// WatchCommits implements provision.CommitWatcher: on PostgreSQL with
// Config.Listen set, every transaction that appends events (through this
// Store or EventTables.Append, on any replica) notifies the topic
// EventsTopic with the tenant id once committed (a Store's own within 5ms
// after its commit, gathered with its other commits), and fn gets it; see
// Subscribe. Otherwise live is false.
func (s *Store) WatchCommits(fn func(tenantID string)) (stop func(), live bool) {
	return s.Subscribe(EventsTopic, func(n Notification) {
		if n.Missed {
			fn("")
			return
		}
		fn(n.Payload)
	})
}

// LastSeq implements provision.EventLog.
func (s *Store) LastSeq(ctx context.Context, tenantID string) (int64, error) {
	return s.r.ev.LastSeq(ctx, s.q, tenantID)
}

// Cursor implements provision.EventLog.
func (s *Store) Cursor(ctx context.Context, tenantID, consumer string) (int64, error) {
	return s.r.ev.Cursor(ctx, s.q, tenantID, consumer)
}

// SetCursor implements provision.EventLog.
//
// With the held context of a lock of this Store (or one derived from it)
// the write is fenced: on SQLite the lease is checked in the transaction,
// on PostgreSQL the statement runs on the lock's own session; it fails
// with provision.ErrLockLost once the lock is gone.
func (s *Store) SetCursor(ctx context.Context, tenantID, consumer string, seq int64) error {
	set := func(q Querier) error { return s.r.ev.SetCursor(ctx, q, tenantID, consumer, seq) }
	if ok, err := s.pgFenced(ctx, set); ok {
		return err
	}
	return s.writeOne(ctx, set)
}

// PurgeEvents implements provision.EventLog.
func (s *Store) PurgeEvents(ctx context.Context, tenantID string, before time.Time) (int, error) {
	var n int
	err := s.writeOne(ctx, func(q Querier) error {
		var err error
		n, err = s.r.ev.Purge(ctx, q, tenantID, before)
		return err
	})
	return n, err
}

// RedactEvents implements provision.EventLog.
func (s *Store) RedactEvents(ctx context.Context, tenantID, userID string) (int, error) {
	var n int
	err := s.write(ctx, func(q Querier) error {
		var err error
		n, err = s.r.ev.Redact(ctx, q, tenantID, userID)
		return err
	})
	return n, err
}
