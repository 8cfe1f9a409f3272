package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/scim"
)

// titleRE is the title of a user document the floor's update replaces.
var titleRE = regexp.MustCompile(`,"title":"[^"]*"`)

// latencies collects per-operation durations for a p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(float64(len(l.d))/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(l.d[min(len(l.d)-1, len(l.d)*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// parallel32 runs fn on 32 goroutines (whatever GOMAXPROCS), each with
// its own client number, for b.N operations in all.
func parallel32(b *testing.B, fn func(client int, pb *testing.PB)) {
	var next atomic.Int32
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) { fn(int(next.Add(1)-1), pb) })
}

// BenchmarkThroughput measures SCIM POST /Users and PATCH /Users
// (replacing the title, as Okta sends an attribute change) at 32 concurrent clients over HTTP on PostgreSQL (one pool of
// 8 connections, synchronous_commit off), each client on its own tenant,
// next to the floor: a bare database/sql transaction on the same pool
// writing the same rows (POST: the user with its e-mail and link, the seq
// counter, the event; PATCH: the user read FOR UPDATE and rewritten, the
// seq counter, the event). ops/s, p50-ms, p99-ms, and the CPU per
// operation (go-us/op in this process, clients included; pg-us/op in the
// PostgreSQL backends; cpu-us/op both), which moves less than ops/s when
// something else loads the machine. Each SCIM case runs right after its
// floor; every case starts on fresh tables with the same 32 tenants and
// users (a case run on the rows an earlier one updated thousands of times
// measured their bloat, not its path); the engine-* cases are the same
// writes without HTTP and SCIM.
//
//	go test ./store/sqlstore -run '^$' -bench Throughput -benchtime 3000x -count 3
func BenchmarkThroughput(b *testing.B) {
	postgresDSN(b)
	for _, name := range []string{"bare-insert", "scim-post", "engine-create", "bare-update", "scim-patch", "engine-update"} {
		b.Run(name, func(b *testing.B) { throughputCase(b, name) })
	}
}

// throughputCase runs one case of BenchmarkThroughput on fresh tables.
func throughputCase(b *testing.B, name string) {
	st := newPostgres(b, Config{})
	db := st.DB()
	const clients = 32
	decl := make([]provision.Tenant, clients)
	dirs := make([]scim.Directory, clients)
	for i := range decl {
		id := fmt.Sprintf("tp%02d", i)
		decl[i] = provision.Tenant{ID: id, Connections: []provision.Connection{{ID: "okta", Kind: provision.KindSCIM}}}
		dirs[i] = scim.Directory{TenantID: id, ConnectionID: "okta", TokenHashes: []scim.TokenHash{scim.HashToken("tok-" + id)}}
	}
	e, err := provision.NewEngine(provision.Config{Store: st, Tenants: decl})
	if err != nil {
		b.Fatal(err)
	}
	tokens, err := scim.NewTokenSet(dirs...)
	if err != nil {
		b.Fatal(err)
	}
	h, err := scim.New(scim.Config{Engine: e, Authenticator: tokens})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	send := func(tenant, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-"+tenant)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	var seq atomic.Int64
	ctx := context.Background()
	now := time.Now().UTC()

	bareInsert := func(tenant, id, userName string) error {
		doc := fmt.Sprintf(`{"id":%q,"tenantId":%q,"userName":%q,"active":true,"emails":[{"value":%q}],"version":1}`, id, tenant, userName, userName)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		q := func(query string, args ...any) error {
			_, err := tx.ExecContext(ctx, strings.ReplaceAll(query, "{p}", st.TablePrefix()), args...)
			return err
		}
		var last int64
		if err := tx.QueryRowContext(ctx, strings.ReplaceAll(`INSERT INTO {p}event_seq (tenant_id, seq) VALUES ($1, 1)
			ON CONFLICT (tenant_id) DO UPDATE SET seq = {p}event_seq.seq + 1 RETURNING seq`, "{p}", st.TablePrefix()), tenant).Scan(&last); err != nil {
			return err
		}
		for _, step := range []func() error{
			func() error {
				return q(`INSERT INTO {p}users (tenant_id, id, user_name, user_name_lower, display_name_lower, owner, active, version, created, modified, doc)
					VALUES ($1, $2, $3, $3, '', 'okta', true, 1, $4, $4, $5)`, tenant, id, userName, now, doc)
			},
			func() error {
				return q(`INSERT INTO {p}user_emails (tenant_id, user_id, email_lower) VALUES ($1, $2, $3)`, tenant, id, userName)
			},
			func() error {
				return q(`INSERT INTO {p}links (tenant_id, kind, connection_id, external_id, resource_id, created) VALUES ($1, 'user', 'okta', $2, $2, $3)`, tenant, id, now)
			},
			func() error {
				return q(`INSERT INTO {p}events (tenant_id, seq, time, kind, user_id, doc) VALUES ($1, $2, $3, 'user.created', $4, $5)`, tenant, last, now, id, `{"user":`+doc+`}`)
			},
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return tx.Commit()
	}
	bareUpdate := func(tenant, id, title string) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		p := st.TablePrefix()
		var doc string
		var version int64
		if err := tx.QueryRowContext(ctx, "SELECT doc, version FROM "+p+"users WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant, id).Scan(&doc, &version); err != nil {
			return err
		}
		var last int64
		if err := tx.QueryRowContext(ctx, "INSERT INTO "+p+"event_seq (tenant_id, seq) VALUES ($1, 1) ON CONFLICT (tenant_id) DO UPDATE SET seq = "+p+"event_seq.seq + 1 RETURNING seq", tenant).Scan(&last); err != nil {
			return err
		}
		// The title replaced (not added again: the row keeps its size),
		// and the event with the user before and after, as the engine
		// writes them.
		prev := doc
		doc = strings.Replace(titleRE.ReplaceAllString(doc, ""), `"active":true`, `"active":true,"title":"`+title+`"`, 1)
		if _, err := tx.ExecContext(ctx, "UPDATE "+p+"users SET version = $3, modified = $4, doc = $5 WHERE tenant_id = $1 AND id = $2", tenant, id, version+1, now, doc); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+p+"events (tenant_id, seq, time, kind, user_id, doc) VALUES ($1, $2, $3, 'user.updated', $4, $5)", tenant, last, now, id, `{"kind":"user.updated","fields":["title"],"user":`+doc+`,"previousUser":`+prev+`}`); err != nil {
			return err
		}
		return tx.Commit()
	}
	// One user per client for the PATCHes.
	patchUser := make([]string, clients)
	bareUser := make([]string, clients)
	for i, tn := range decl {
		code, raw := send(tn.ID, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"patched@example.com","active":true}`)
		if code != 201 {
			b.Fatalf("create: %d %s", code, raw)
		}
		var out struct{ ID string }
		_ = json.Unmarshal([]byte(raw), &out)
		patchUser[i] = out.ID
		bareUser[i] = fmt.Sprintf("bare-%d", i)
		if err := bareInsert(tn.ID, bareUser[i], fmt.Sprintf("bare%d@example.com", i)); err != nil {
			b.Fatal(err)
		}
	}

	// timed runs op on 32 clients for b.N operations in all, each given
	// its client number and a fresh sequence number, and reports ops/s and
	// the latencies; an error stops its client.
	timed := func(b *testing.B, op func(c int, n int64) error) {
		b.ResetTimer()
		var l latencies
		cpu := startCPU(db)
		defer func() { cpu.report(b, len(l.d)) }()
		parallel32(b, func(c int, pb *testing.PB) {
			for pb.Next() {
				n := seq.Add(1)
				start := time.Now()
				if err := op(c, n); err != nil {
					b.Error(err)
					return
				}
				l.add(time.Since(start))
			}
		})
		l.report(b)
	}
	status := func(want int, what string, code int, raw string) error {
		if code != want {
			return fmt.Errorf("%s: %d %s", what, code, raw)
		}
		return nil
	}

	switch name {
	case "bare-insert":
		timed(b, func(c int, n int64) error {
			return bareInsert(decl[c%clients].ID, fmt.Sprintf("u-%d", n), fmt.Sprintf("u%d@example.com", n))
		})
	case "scim-post":
		timed(b, func(c int, n int64) error {
			code, raw := send(decl[c%clients].ID, "POST", "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"s%d@example.com","externalId":"x%d","emails":[{"value":"s%d@example.com","type":"work"}],"active":true}`, n, n, n))
			return status(201, "POST", code, raw)
		})
	case "engine-create":
		// The same create through the engine, without HTTP and SCIM.
		timed(b, func(c int, n int64) error {
			o := provision.Origin{TenantID: decl[c%clients].ID, ConnectionID: "okta"}
			u := provision.User{UserName: fmt.Sprintf("e%d@example.com", n), ExternalID: fmt.Sprintf("ex%d", n), Active: true, Emails: []provision.Email{{Value: fmt.Sprintf("e%d@example.com", n), Type: "work"}}}
			_, err := e.CreateUser(ctx, o, u)
			return err
		})
	case "bare-update":
		timed(b, func(c int, n int64) error {
			return bareUpdate(decl[c%clients].ID, bareUser[c%clients], fmt.Sprintf("title %d", n))
		})
	case "scim-patch":
		timed(b, func(c int, n int64) error {
			code, raw := send(decl[c%clients].ID, "PATCH", "/Users/"+patchUser[c%clients], fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"title":"title %d"}}]}`, n))
			return status(200, "PATCH", code, raw)
		})
	case "engine-update":
		// The same change through the engine, without HTTP and SCIM.
		timed(b, func(c int, n int64) error {
			o := provision.Origin{TenantID: decl[c%clients].ID, ConnectionID: "okta"}
			title := fmt.Sprintf("title %d", n)
			_, err := e.UpdateUser(ctx, o, patchUser[c%clients], provision.Precondition{}, func(u *provision.User) error { u.Title = title; return nil })
			return err
		})
	default:
		b.Fatalf("no case %q", name)
	}
}
