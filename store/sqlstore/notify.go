package sqlstore

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/idprov/idprov/provision"
)

// Notifications between replicas.
//
// A Store can tell every replica sharing its PostgreSQL database that
// something committed: Notify sends a payload on a topic inside a
// transaction (PostgreSQL's pg_notify, delivered when, and only if, the
// transaction commits, to every session listening on the channel), and
// Subscribe receives the payloads of a topic. The channel of a topic is
// the table prefix followed by the topic ("idprov_events"), so stores of
// different prefixes on one database do not hear each other.
//
// Sending needs nothing but database/sql. Receiving needs a session that
// runs LISTEN and waits for notifications, which database/sql cannot
// express: the host supplies it as Config.Listen, written with its driver
// (for pgx, through (*sql.Conn).Raw and (*stdlib.Conn).Conn().
// WaitForNotification: examples/saas-app/pgnotify.go is a complete one). Without it, or on
// SQLite, Subscribe reports live false and the host polls instead.
//
// Notifications are a wake-up, not a log: one may be lost when the
// listening session breaks. Each time the session (re)starts listening,
// every subscriber gets a Notification with Missed set, and must then
// re-read the state it follows. PostgreSQL folds identical payloads sent
// on a channel in one transaction into one.
//
// The Store uses the topic EventsTopic itself (see WatchCommits); a host
// or another part of idprov picks its own topics.

// EventsTopic is the topic on which every transaction that appends events
// notifies its tenant id (PostgreSQL only).
const EventsTopic = "events"

// maxPayload bounds a notification payload: PostgreSQL refuses 8000 bytes
// and more.
const maxPayload = 7999

var topicRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,22}$`)

// ListenFunc runs one listening session for a Store: it must LISTEN on
// every channel of channels (the names are lower-case identifiers: quote
// them with the driver's identifier quoting), call ready once they all
// took effect, then call deliver with each notification received, in the
// order received, until ctx ends or the session fails, and return then
// (any error; it is logged unless ctx ended). The Store calls it again
// after a failure, with a backoff growing from 100ms to 5s, and when the
// set of channels changes. deliver returns quickly.
//
// It should not hand a session left listening back to a pool: with
// (*sql.Conn).Raw, return an error wrapping driver.ErrBadConn so that
// database/sql closes the connection. The session it holds counts against
// the pool's SetMaxOpenConns if it comes from the Store's *sql.DB.
type ListenFunc func(ctx context.Context, channels []string, ready func(), deliver func(channel, payload string)) error

// Notification is what a Subscribe handler receives.
type Notification struct {
	// Topic is the topic subscribed to.
	Topic string
	// Payload is the text given to Notify (empty when Missed).
	Payload string
	// Missed is set each time the listening session starts or restarts,
	// once it listens: notifications sent while it did not listen are
	// lost, so the handler re-reads what it follows.
	Missed bool
}

// Channel returns the PostgreSQL channel of a topic: the table prefix
// followed by the topic.
func (s *Store) Channel(topic string) string { return s.r.prefix + topic }

func checkTopic(topic string) error {
	if !topicRE.MatchString(topic) {
		return fmt.Errorf("sqlstore: notification topic %q must match %s", topic, topicRE)
	}
	return nil
}

// Notify sends payload on topic to every replica subscribed to it. In
// the Store of an Atomically function it is part of the transaction:
// delivered when it commits, never after a rollback; otherwise it is sent
// at once. The payload is text of at most 7999 bytes, valid UTF-8 without
// NUL (a *provision.ValidationError otherwise). On SQLite it does nothing (there is no
// channel between processes; subscribers there poll).
func (s *Store) Notify(ctx context.Context, topic, payload string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	if len(payload) > maxPayload || !utf8.ValidString(payload) || strings.IndexByte(payload, 0) >= 0 {
		return &provision.ValidationError{Field: "notification payload", Reason: fmt.Sprintf("must be valid UTF-8 without NUL, at most %d bytes", maxPayload)}
	}
	if s.r.d != Postgres {
		return nil
	}
	return pgNotify(ctx, s.q, s.Channel(topic), payload)
}

func pgNotify(ctx context.Context, q Querier, channel, payload string) error {
	_, err := q.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	return mapErr("notify "+channel, err)
}

// Subscribe calls fn with every notification of topic received by this
// Store's listening session (see ListenFunc), from this replica and from
// the others, and with a Missed notification each time the session
// (re)starts listening. fn must return quickly; it runs on the session's
// goroutine. cancel ends the subscription; the session stops when no
// subscription is left.
//
// live is false, and fn never called, on SQLite and when Config.Listen
// is nil: the caller must poll. It also is false for a topic that does
// not match ^[a-z][a-z0-9_]{0,22}$.
func (s *Store) Subscribe(topic string, fn func(Notification)) (cancel func(), live bool) {
	if s.r.d != Postgres || s.r.listen == nil || fn == nil || checkTopic(topic) != nil {
		return func() {}, false
	}
	return s.r.nt.subscribe(s.r, s.Channel(topic), topic, fn), true
}

// notifier multiplexes a root's subscriptions over one listening session.
type notifier struct {
	mu   sync.Mutex
	subs map[string]map[*subscription]struct{} // by channel
	// stop ends the running session loop; nil when none runs.
	stop func()
	// channels the running loop listens on.
	channels []string
}

type subscription struct {
	topic string
	fn    func(Notification)
}

func (n *notifier) subscribe(r *root, channel, topic string, fn func(Notification)) (cancel func()) {
	sub := &subscription{topic: topic, fn: fn}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[string]map[*subscription]struct{}{}
	}
	if n.subs[channel] == nil {
		n.subs[channel] = map[*subscription]struct{}{}
	}
	n.subs[channel][sub] = struct{}{}
	if n.stop == nil || !slices.Contains(n.channels, channel) {
		n.restartLocked(r)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			delete(n.subs[channel], sub)
			if len(n.subs[channel]) == 0 {
				delete(n.subs, channel)
			}
			if len(n.subs) == 0 && n.stop != nil {
				n.stop()
				n.stop, n.channels = nil, nil
			}
		})
	}
}

// restartLocked (re)starts the session loop on every subscribed channel.
func (n *notifier) restartLocked(r *root) {
	if n.stop != nil {
		n.stop()
	}
	channels := make([]string, 0, len(n.subs))
	for ch := range n.subs {
		channels = append(channels, ch)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.channels = cancel, channels
	go n.loop(ctx, r, channels)
}

// loop runs the host's ListenFunc until ctx ends, again after each
// failure.
func (n *notifier) loop(ctx context.Context, r *root, channels []string) {
	const minWait, maxWait = 100 * time.Millisecond, 5 * time.Second
	wait := minWait
	ready := func() { n.deliverMissed(ctx, channels) }
	deliver := func(channel, payload string) { n.deliver(ctx, channel, payload) }
	for ctx.Err() == nil {
		started := time.Now()
		err := r.listen(ctx, channels, ready, deliver)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			wait = minWait
		}
		r.log.WarnContext(ctx, "sqlstore: the listening session ended; listening again", "channels", channels, "retryIn", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// handlers returns the subscriptions of channel, when ctx (the loop's) is
// still the running one.
func (n *notifier) handlers(ctx context.Context, channel string) []*subscription {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	out := make([]*subscription, 0, len(n.subs[channel]))
	for s := range n.subs[channel] {
		out = append(out, s)
	}
	return out
}

func (n *notifier) deliver(ctx context.Context, channel, payload string) {
	for _, s := range n.handlers(ctx, channel) {
		s.fn(Notification{Topic: s.topic, Payload: payload})
	}
}

func (n *notifier) deliverMissed(ctx context.Context, channels []string) {
	for _, ch := range channels {
		for _, s := range n.handlers(ctx, ch) {
			s.fn(Notification{Topic: s.topic, Missed: true})
		}
	}
}
