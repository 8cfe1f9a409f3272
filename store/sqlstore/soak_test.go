package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// soakReplica is one engine of the soak: its own pool, store, engine,
// SCIM server and consumers. kill stops it as a crash would: it does
// nothing more (its handlers refuse to record), its sessions end (the
// pool closes: PostgreSQL frees its advisory locks), its server is gone.
type soakReplica struct {
	name   string // its sessions' application_name
	db     *sql.DB
	srv    *httptest.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dead   atomic.Bool
	active atomic.Int32 // handlers running
}

// soakLog is what the consumers saw, per consumer and tenant.
type soakLog struct {
	mu       sync.Mutex
	seen     map[string][]int64 // consumer/tenant -> delivered seqs, in delivery order
	inflight map[string]*atomic.Int32
	errs     []string
	// redelivered counts the events delivered again (at least once).
	redelivered int
}

func (l *soakLog) fail(format string, args ...any) {
	l.mu.Lock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

func (l *soakLog) handler(r *soakReplica, consumer string) provision.ConsumeFunc {
	return func(ctx context.Context, ev provision.Event) error {
		if r.dead.Load() {
			return fmt.Errorf("replica is dead")
		}
		r.active.Add(1)
		defer r.active.Add(-1)
		key := consumer + "/" + ev.TenantID
		l.mu.Lock()
		in := l.inflight[key]
		if in == nil {
			in = new(atomic.Int32)
			l.inflight[key] = in
		}
		l.mu.Unlock()
		if n := in.Add(1); n != 1 {
			l.fail("%s: %d deliveries at once (seq %d)", key, n, ev.Seq)
		}
		defer in.Add(-1)
		if rand.N(50) == 0 {
			return fmt.Errorf("a transient failure") // retried: at least once
		}
		l.mu.Lock()
		s := l.seen[key]
		if len(s) > 0 {
			last := s[len(s)-1]
			// In order, no gap; a redelivery repeats only the event
			// in flight when a replica died or a handler failed.
			if ev.Seq != last+1 && ev.Seq != last {
				l.mu.Unlock()
				l.fail("%s: seq %d delivered after %d", key, ev.Seq, last)
				return nil
			}
		} else if ev.Seq != 1 {
			l.mu.Unlock()
			l.fail("%s: first delivery is seq %d", key, ev.Seq)
			return nil
		}
		if len(s) > 0 && s[len(s)-1] == ev.Seq {
			l.redelivered++
		}
		l.seen[key] = append(s, ev.Seq)
		l.mu.Unlock()
		return nil
	}
}

// TestSoak runs three engines (three pools) on PostgreSQL with 1,000
// tenants under a mixed SCIM load (creates, PATCHes of users, groups and
// memberships, reads), killing one engine and restarting it on a
// schedule, with two durable consumers on every engine. Then: every
// acknowledged write has its event, each consumer saw every tenant's
// events in order with no gap, never two at once for a tenant. It runs
// 20s; IDPROV_SOAK_DURATION (a Go duration, "5m") makes it longer.
func TestSoak(t *testing.T) {
	postgresDSN(t)
	duration := 20 * time.Second
	if v := os.Getenv("IDPROV_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("IDPROV_SOAK_DURATION: %v", err)
		}
		duration = d
	}
	const tenants, workers = 1000, 6
	consumers := []string{"soak-a", "soak-b"}
	prefix := randomPrefix()
	setup := newPostgres(t, Config{TablePrefix: prefix})
	decl := make([]provision.Tenant, tenants)
	dirs := make([]scim.Directory, tenants)
	for i := range decl {
		id := fmt.Sprintf("t%04d", i)
		decl[i] = provision.Tenant{ID: id, Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}
		dirs[i] = scim.Directory{TenantID: id, ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("tok-" + id)}}
	}
	tokens, err := scim.NewTokenSet(dirs...)
	must(t, err)
	log := &soakLog{seen: map[string][]int64{}, inflight: map[string]*atomic.Int32{}}

	var started int
	start := func() *soakReplica {
		started++
		r := &soakReplica{name: fmt.Sprintf("%ssoak%d", prefix, started)}
		db, err := sql.Open("pgx", withParam(withParam(postgresDSN(t), "synchronous_commit", "off"), "application_name", r.name))
		must(t, err)
		t.Cleanup(func() { db.Close() })
		r.db = db
		r.db.SetMaxOpenConns(8) // 2 consumers x Parallelism 2 locks, the listener, the writes
		st, err := New(r.db, Config{Dialect: Postgres, TablePrefix: prefix, Listen: pgxListen(r.db, nil), LockTTL: 3 * time.Second})
		must(t, err)
		must(t, st.Migrate(context.Background()))
		e, err := provision.NewEngine(provision.Config{Store: st, Tenants: decl, PollInterval: 500 * time.Millisecond})
		must(t, err)
		h, err := scim.New(scim.Config{Engine: e, Authenticator: tokens})
		must(t, err)
		r.srv = httptest.NewServer(h)
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		for _, name := range consumers {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				_ = e.Consume(ctx, name, log.handler(r, name), provision.ConsumeOptions{Parallelism: 2, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			}()
		}
		return r
	}
	kill := func(r *soakReplica) {
		r.dead.Store(true)
		for r.active.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		// Its sessions end at once, as at a crash: PostgreSQL frees its
		// advisory locks and rolls back its open transactions.
		if _, err := setup.DB().Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", r.name); err != nil {
			t.Errorf("terminate the sessions of %s: %v", r.name, err)
		}
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.cancel()
		r.wg.Wait()
		r.db.Close()
	}

	var mu sync.Mutex
	replicas := []*soakReplica{start(), start(), start()}
	pick := func() *soakReplica {
		mu.Lock()
		defer mu.Unlock()
		for {
			if r := replicas[rand.N(len(replicas))]; !r.dead.Load() {
				return r
			}
		}
	}
	type ack struct {
		tenant, id string
		version    int64
		kind       string
	}
	var acksMu sync.Mutex
	var acks []ack
	users := make([][]string, tenants) // per tenant, created user ids
	var usersMu sync.Mutex
	var sent, failed atomic.Int64

	client := &http.Client{Timeout: 10 * time.Second}
	do := func(r *soakReplica, tenant, method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-"+tenant)
		req.Header.Set("Content-Type", "application/scim+json")
		sent.Add(1)
		resp, err := client.Do(req)
		if err != nil {
			failed.Add(1)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		if resp.StatusCode >= 500 && !r.dead.Load() {
			log.fail("%s %s on a live replica: %d %s", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, out
	}
	version := func(out map[string]any) int64 {
		meta, _ := out["meta"].(map[string]any)
		v, _ := meta["version"].(string)
		var n int64
		fmt.Sscanf(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), "%d", &n)
		return n
	}

	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	for w := range workers {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				ti := rand.N(tenants)
				tenant := decl[ti].ID
				r := pick()
				usersMu.Lock()
				var uid string
				if n := len(users[ti]); n > 0 {
					uid = users[ti][rand.N(n)]
				}
				usersMu.Unlock()
				switch op := rand.N(10); {
				case op < 4 || uid == "":
					st, out := do(r, tenant, "POST", "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u%d-%d@example.com","active":true}`, w, i))
					if st == 201 {
						id, _ := out["id"].(string)
						acksMu.Lock()
						acks = append(acks, ack{tenant, id, version(out), "user"})
						acksMu.Unlock()
						usersMu.Lock()
						users[ti] = append(users[ti], id)
						usersMu.Unlock()
					}
				case op < 8:
					st, out := do(r, tenant, "PATCH", "/Users/"+uid, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"e%d-%d@example.com","type":"other"}]}]}`, w, i))
					if st == 200 {
						acksMu.Lock()
						acks = append(acks, ack{tenant, uid, version(out), "user"})
						acksMu.Unlock()
					}
				case op < 9:
					st, out := do(r, tenant, "POST", "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g%d-%d","members":[{"value":"%s"}]}`, w, i, uid))
					if st == 201 {
						id, _ := out["id"].(string)
						acksMu.Lock()
						acks = append(acks, ack{tenant, id, 0, "group"})
						acksMu.Unlock()
					}
				default:
					do(r, tenant, "GET", "/Users/"+uid, "")
				}
			}
		}()
	}

	// The schedule: every duration/5 (at most 15s), kill one engine,
	// restart it 1s later.
	deadline := time.Now().Add(duration)
	every := min(duration/5, 15*time.Second)
	kills := 0
	for time.Now().Add(every).Before(deadline) || kills == 0 {
		time.Sleep(every)
		mu.Lock()
		i := rand.N(len(replicas))
		victim := replicas[i]
		mu.Unlock()
		kill(victim)
		kills++
		time.Sleep(time.Second)
		mu.Lock()
		replicas[i] = start()
		mu.Unlock()
	}
	time.Sleep(time.Until(deadline))
	close(stopLoad)
	load.Wait()
	t.Logf("%s: %d requests, %d acknowledged writes, %d failed to connect (killed replicas), %d kills", duration, sent.Load(), len(acks), failed.Load(), kills)

	// Drain: every consumer catches up on every tenant.
	ctx := context.Background()
	catchUp := time.Now().Add(60 * time.Second)
	for _, name := range consumers {
		for {
			bl, err := setup.Backlogs(ctx, name, nil, "", 10)
			must(t, err)
			if len(bl) == 0 {
				break
			}
			if time.Now().After(catchUp) {
				t.Fatalf("consumer %s still behind after 60s: %v", name, bl)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, r := range replicas {
		kill(r)
	}

	// Every acknowledged write has its event.
	type key struct {
		tenant, id string
		version    int64
	}
	have := map[key]bool{}
	var events int
	for _, tn := range decl {
		evs := checkEventLog(t, setup, tn.ID)
		events += len(evs)
		for _, ev := range evs {
			if ev.User != nil {
				have[key{tn.ID, ev.User.ID, ev.User.Version}] = true
			}
			if ev.Kind == provision.GroupCreated && ev.Group != nil {
				have[key{tn.ID, ev.Group.ID, 0}] = true
			}
		}
		// Each consumer saw 1..LastSeq.
		last, err := setup.LastSeq(ctx, tn.ID)
		must(t, err)
		for _, name := range consumers {
			s := log.seen[name+"/"+tn.ID]
			if last > 0 && (len(s) == 0 || s[len(s)-1] != last) {
				t.Errorf("%s/%s: saw up to %v, last seq is %d", name, tn.ID, s[max(0, len(s)-3):], last)
			}
		}
	}
	missing := 0
	for _, a := range acks {
		if !have[key{a.tenant, a.id, a.version}] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged %s %s v%d of %s has no event", a.kind, a.id, a.version, a.tenant)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes have no event", missing, len(acks))
	}
	for _, e := range log.errs {
		t.Error(e)
	}
	t.Logf("%d events in the log; both consumers saw all, in order (%d redeliveries)", events, log.redelivered)
	if len(acks) == 0 {
		t.Fatal("no write was acknowledged")
	}
}
