package sqlstore

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

// userDoc is the JSON document of a user. Attributes are kept as strings
// so their raw bytes round-trip exactly (encoding/json would compact a
// json.RawMessage, and the engine compares them byte for byte).
type userDoc struct {
	provision.User
	Attributes map[string]string `json:"attributes,omitempty"`
}

type groupDoc struct {
	provision.Group
	Attributes map[string]string `json:"attributes,omitempty"`
}

// eventDoc is the JSON document of an event.
type eventDoc struct {
	provision.Event
	User          *userDoc  `json:"user,omitempty"`
	PreviousUser  *userDoc  `json:"previousUser,omitempty"`
	Group         *groupDoc `json:"group,omitempty"`
	PreviousGroup *groupDoc `json:"previousGroup,omitempty"`
}

func attrsOut(m map[string]json.RawMessage) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func attrsIn(m map[string]string) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = json.RawMessage(v)
	}
	return out
}

func toUserDoc(u provision.User) *userDoc {
	d := &userDoc{User: u, Attributes: attrsOut(u.Attributes)}
	d.User.Attributes = nil
	return d
}

func (d *userDoc) user() provision.User {
	u := d.User
	u.Attributes = attrsIn(d.Attributes)
	return u
}

func toGroupDoc(g provision.Group) *groupDoc {
	d := &groupDoc{Group: g, Attributes: attrsOut(g.Attributes)}
	d.Group.Attributes = nil
	return d
}

func (d *groupDoc) group() provision.Group {
	g := d.Group
	g.Attributes = attrsIn(d.Attributes)
	return g
}

func encodeUser(u provision.User) (string, error) {
	b, err := json.Marshal(toUserDoc(u))
	if err != nil {
		return "", fmt.Errorf("sqlstore: encode user: %w", err)
	}
	return string(b), nil
}

func decodeUser(doc []byte) (provision.User, error) {
	var d userDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return provision.User{}, fmt.Errorf("sqlstore: decode user: %w", err)
	}
	return d.user(), nil
}

func encodeGroup(g provision.Group) (string, error) {
	b, err := json.Marshal(toGroupDoc(g))
	if err != nil {
		return "", fmt.Errorf("sqlstore: encode group: %w", err)
	}
	return string(b), nil
}

func decodeGroup(doc []byte) (provision.Group, error) {
	var d groupDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return provision.Group{}, fmt.Errorf("sqlstore: decode group: %w", err)
	}
	return d.group(), nil
}

func encodeEvent(ev provision.Event) (string, error) {
	d := eventDoc{Event: ev}
	d.Event.User, d.Event.PreviousUser, d.Event.Group, d.Event.PreviousGroup = nil, nil, nil, nil
	if ev.User != nil {
		d.User = toUserDoc(*ev.User)
	}
	if ev.PreviousUser != nil {
		d.PreviousUser = toUserDoc(*ev.PreviousUser)
	}
	if ev.Group != nil {
		d.Group = toGroupDoc(*ev.Group)
	}
	if ev.PreviousGroup != nil {
		d.PreviousGroup = toGroupDoc(*ev.PreviousGroup)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("sqlstore: encode event: %w", err)
	}
	return string(b), nil
}

func decodeEvent(doc []byte) (provision.Event, error) {
	var d eventDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return provision.Event{}, fmt.Errorf("sqlstore: decode event: %w", err)
	}
	ev := d.Event
	if d.User != nil {
		u := d.User.user()
		ev.User = &u
	}
	if d.PreviousUser != nil {
		u := d.PreviousUser.user()
		ev.PreviousUser = &u
	}
	if d.Group != nil {
		g := d.Group.group()
		ev.Group = &g
	}
	if d.PreviousGroup != nil {
		g := d.PreviousGroup.group()
		ev.PreviousGroup = &g
	}
	return ev, nil
}

// normUser sets the stored form of u's times.
func normUser(u provision.User) provision.User {
	u = provision.CloneUser(u)
	u.Created, u.Modified, u.Deleted = normTime(u.Created), normTime(u.Modified), normTime(u.Deleted)
	return u
}

func normGroup(g provision.Group) provision.Group {
	g = provision.CloneGroup(g)
	g.Created, g.Modified = normTime(g.Created), normTime(g.Modified)
	return g
}

// fold is the case-insensitive form of userNames, e-mail addresses and
// displayNames: filter.Fold, computed in Go so that both dialects agree
// with the filter evaluator (SQLite's lower() folds ASCII only).
func fold(s string) string { return filter.Fold(s) }

// idGen makes UUIDs of version 7 (RFC 9562): a millisecond timestamp, a
// 12-bit counter that orders the IDs made within one millisecond, and 62
// random bits. IDs of one Store increase strictly, so ordering by ID is
// creation order; across replicas, to the millisecond.
type idGen struct {
	mu     sync.Mutex
	lastMs int64
	seq    uint16
}

func (g *idGen) newID() string {
	g.mu.Lock()
	ms := time.Now().UnixMilli()
	if ms <= g.lastMs {
		ms = g.lastMs
		g.seq++
		if g.seq > 0xfff {
			ms++
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.lastMs = ms
	seq := g.seq
	g.mu.Unlock()

	var b [16]byte
	_, _ = rand.Read(b[8:])
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(seq>>8)
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// placeholders returns "($n, $n+1, ...), (...)" for rows of width
// columns, numbering from first.
func placeholders(first, rows, width int) string {
	var b strings.Builder
	n := first
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range width {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", n)
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}

// list returns "$first, ..., $first+n-1".
func list(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", first+i)
	}
	return b.String()
}

// dedupe returns ids without repeats, in their first order.
func dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// chunkSize bounds the ids of one multi-row statement (SQLite allows
// 32766 parameters, PostgreSQL 65535).
const chunkSize = 500

func chunks(ids []string) [][]string {
	var out [][]string
	for len(ids) > chunkSize {
		out = append(out, ids[:chunkSize])
		ids = ids[chunkSize:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}
