package ldap

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/ldap/ldaptest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// TestMeasure is the measurement program for the figures of the LDAP
// sync: a full sync of N users in 100 groups from slapd, against a store
// that discards and against memstore, next to a bare go-ldap streaming
// read and ldapsearch, an incremental sync after 1,000 changes, the first
// sync of a restarted process (a new Syncer on the same store) after
// 1,000 more, and the offboarding latency with push: 20 locks, each from
// the modify in slapd until the user is inactive in the store. Every
// contender runs in its own process (this test binary, re-executed) so its
// peak RSS is its own. It is skipped unless IDPROV_LDAP_BENCH gives N:
//
//	IDPROV_LDAP_BENCH=100000 go test ./ldap -run 'TestMeasure$' -v -timeout 30m
//
// IDPROV_LDAP_BENCH_PROFILE=dir writes each contender's CPU and memory
// profiles there; IDPROV_LDAP_BENCH_ONLY=bare,discard runs those only
// (of bare, discard, discard-heap, memstore; discard-heap is discard with
// the cache's state on the Go heap, as before offheap.go).
// IDPROV_LDAP_BENCH_HOSTHEAP=MB gives every contender a live heap of its
// own of that size first, the way a host process has one: the collector
// paces by the whole heap, so what the state costs depends on it.
func TestMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("IDPROV_LDAP_BENCH"))
	if n <= 0 {
		t.Skip("set IDPROV_LDAP_BENCH=100000 to measure")
	}
	const groups = 100
	dir := t.TempDir()
	ldif := filepath.Join(dir, "seed.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldaptest.WriteDirectory(f, "dc=example,dc=com", n, groups); err != nil {
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	srv := ldaptest.Start(t, ldaptest.Options{LDIFFile: ldif, SessionLog: 5000})
	t.Logf("slapadd of %d users + %d groups and slapd start: %s", n, groups, time.Since(start).Round(time.Millisecond))
	env := []string{
		"IDPROV_LDAP_BENCH_URL=" + srv.URL, "IDPROV_LDAP_BENCH_DN=" + srv.SyncDN, "IDPROV_LDAP_BENCH_PW=" + srv.SyncPassword,
		"IDPROV_LDAP_BENCH_BASE=" + srv.BaseDN, "IDPROV_LDAP_BENCH_ADMIN=" + srv.AdminDN, "IDPROV_LDAP_BENCH_ADMINPW=" + srv.AdminPassword,
		"IDPROV_LDAP_BENCH_N=" + strconv.Itoa(n),
	}
	type row struct {
		name     string
		cpus     []time.Duration
		walls    []time.Duration
		rss      int64
		rsss     []int64 // each run's
		extra    string
		wallOnly bool
	}
	var rows []*row
	child := func(mode string) measurement {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureChild$", "-test.v")
		if dir := os.Getenv("IDPROV_LDAP_BENCH_PROFILE"); dir != "" {
			cmd.Args = append(cmd.Args, "-test.cpuprofile="+filepath.Join(dir, mode+".prof"), "-test.memprofile="+filepath.Join(dir, mode+".mem"))
		}
		cmd.Env = append(append(os.Environ(), env...), "IDPROV_LDAP_BENCH_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		if dir := os.Getenv("IDPROV_LDAP_BENCH_PROFILE"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, mode+".log"), out, 0o644)
		}
		var m measurement
		for _, line := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT "); ok {
				if err := json.Unmarshal([]byte(rest), &m); err != nil {
					t.Fatal(err)
				}
			}
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		m.RSS = ru.Maxrss * 1024
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if m.Entries == 0 {
			t.Fatalf("%s: no result\n%s", mode, out)
		}
		return m
	}
	ldapsearch := func() (time.Duration, time.Duration, int64) {
		cmd := exec.Command("ldapsearch", "-x", "-LLL", "-H", srv.URL, "-D", srv.SyncDN, "-w", srv.SyncPassword,
			"-b", srv.BaseDN, "-E", "pr=500/noprompt", "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))")
		cmd.Args = append(cmd.Args, OpenLDAP().userAttributes()...)
		cmd.Args = append(cmd.Args, "member")
		null, _ := os.Open(os.DevNull)
		defer null.Close()
		cmd.Stdout = null
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("ldapsearch: %v", err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		return time.Since(t0), time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024
	}
	// IDPROV_LDAP_BENCH_ONLY names the contenders to run, comma-separated
	// (bare,discard for the memory figures), e.g. to profile one alone.
	only := os.Getenv("IDPROV_LDAP_BENCH_ONLY")
	runs := func(mode string) bool { return only == "" || slices.Contains(strings.Split(only, ","), mode) }
	if _, err := exec.LookPath("ldapsearch"); err == nil && only == "" {
		r := &row{name: "ldapsearch (C, paged 500, to /dev/null): the floor"}
		for range 3 {
			w, cpu, rss := ldapsearch()
			r.walls = append(r.walls, w)
			r.cpus = append(r.cpus, cpu)
			r.rss = max(r.rss, rss)
		}
		rows = append(rows, r)
	}
	for _, mode := range []string{"bare", "discard", "discard-heap"} {
		if !runs(mode) || mode == "discard-heap" && only == "" {
			continue
		}
		r := &row{name: map[string]string{
			"bare":         "bare go-ldap SearchAsync + paging (users and groups)",
			"discard":      "Syncer.Sync, full, store that discards",
			"discard-heap": "the same, the cache's state on the Go heap",
		}[mode]}
		for range 3 {
			m := child(mode)
			r.walls = append(r.walls, m.Wall)
			r.cpus = append(r.cpus, m.CPU)
			r.rss = max(r.rss, m.RSS)
			r.rsss = append(r.rsss, m.RSS>>20)
			if m.LiveHeap > 0 {
				if r.extra == "" {
					r.extra = fmt.Sprintf("live heap after the sync %d MB; peak heap in use (phase):", m.LiveHeap>>20)
				}
				r.extra += fmt.Sprintf(" %d MB (%s)", m.PeakHeap>>20, m.PeakPhase)
			}
		}
		rows = append(rows, r)
	}
	if runs("memstore") {
		m := child("memstore")
		rows = append(rows,
			&row{name: "Syncer.Sync, full, memstore (first sync: creates)", walls: []time.Duration{m.Wall}, rss: m.RSS, extra: fmt.Sprintf("memstore: %d bytes/user (heap after GC, syncer dropped)", m.BytesPerUser)},
			&row{name: "Syncer.Sync, full, memstore (second sync: unchanged)", walls: []time.Duration{m.Wall2}, wallOnly: true},
			&row{name: fmt.Sprintf("Syncer.SyncChanges (syncrepl) after %d changes, memstore", m.Changes), walls: []time.Duration{m.Incremental}, wallOnly: true, extra: m.IncrementalReport},
			&row{name: "  (applying those changes with go-ldap, not part of the sync)", walls: []time.Duration{m.ChangeTime}, wallOnly: true},
			&row{name: fmt.Sprintf("first SyncChanges of a restarted Syncer after %d changes", m.Changes), walls: []time.Duration{m.Restart}, wallOnly: true,
				extra: fmt.Sprintf("%.1f%% of the full sync; %s", 100*float64(m.Restart)/float64(max(m.Wall, 1)), m.RestartReport)},
			&row{name: "offboarding latency with push (20 locks, Run, interval 1h)", walls: m.Latencies, wallOnly: true,
				extra: fmt.Sprintf("p50 %s p99 %s", pct(m.Latencies, 50), pct(m.Latencies, 99))},
		)
	}
	median := func(ws []time.Duration) time.Duration {
		s := slices.Clone(ws)
		slices.Sort(s)
		return s[len(s)/2]
	}
	var b strings.Builder
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "\n%d users in %d groups, %s/%s, GOMAXPROCS %d, load average %s\n", n, groups, runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), strings.TrimSpace(string(load)))
	if mb := os.Getenv("IDPROV_LDAP_BENCH_HOSTHEAP"); mb != "" {
		fmt.Fprintf(&b, "each process holds a live host heap of %s MB\n", mb)
	}
	for _, r := range rows {
		rss := "-"
		if !r.wallOnly {
			rss = fmt.Sprintf("%d MB", r.rss>>20)
		}
		if len(r.rsss) > 1 {
			rss += fmt.Sprintf(" (runs %v MB)", r.rsss)
		}
		cpu := "-"
		if len(r.cpus) > 0 {
			cpu = median(r.cpus).Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "%-62s median %8s  runs %v  process CPU %s  peak RSS %s  %s\n", r.name, median(r.walls).Round(time.Millisecond), roundAll(r.walls), cpu, rss, r.extra)
	}
	t.Log(b.String())
}

func roundAll(ws []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ws))
	for i, w := range ws {
		out[i] = w.Round(time.Millisecond)
	}
	return out
}

type measurement struct {
	Entries           int
	CPU               time.Duration // user + system time of the whole process
	LiveHeap          uint64        // heap after GC at the end of the sync, syncer alive
	PeakHeap          uint64        // highest HeapInuse sampled every 50 ms during the sync
	PeakPhase         string        // the sync's Phase when PeakHeap was sampled
	Wall              time.Duration
	Wall2             time.Duration
	RSS               int64
	BytesPerUser      int64
	Changes           int
	ChangeTime        time.Duration
	Incremental       time.Duration
	IncrementalReport string
	Restart           time.Duration
	RestartReport     string
	Latencies         []time.Duration
}

// pct is the p-th percentile of ws (nearest rank).
func pct(ws []time.Duration, p int) time.Duration {
	if len(ws) == 0 {
		return 0
	}
	s := slices.Clone(ws)
	slices.Sort(s)
	i := max(0, (p*len(s)+99)/100-1)
	return s[i].Round(time.Millisecond)
}

// TestMeasureChild is one contender of TestMeasure, in its own process.
func TestMeasureChild(t *testing.T) {
	mode := os.Getenv("IDPROV_LDAP_BENCH_CHILD")
	if mode == "" {
		t.Skip("run by TestMeasure")
	}
	ctx := context.Background()
	base := os.Getenv("IDPROV_LDAP_BENCH_BASE")
	n, _ := strconv.Atoi(os.Getenv("IDPROV_LDAP_BENCH_N"))
	cfg := Config{
		TenantID: tenant, ConnectionID: ldapConn,
		URL: os.Getenv("IDPROV_LDAP_BENCH_URL"), InsecurePlaintext: true,
		BindDN: os.Getenv("IDPROV_LDAP_BENCH_DN"), BindPassword: os.Getenv("IDPROV_LDAP_BENCH_PW"),
		UserBaseDN: "ou=people," + base, GroupBaseDN: "ou=groups," + base,
		Incremental: IncrementalSyncrepl,
	}
	var m measurement
	hostHeap := newHostHeap(os.Getenv("IDPROV_LDAP_BENCH_HOSTHEAP"))
	defer runtime.KeepAlive(hostHeap)
	if mode == "discard-heap" {
		offheapOff.Store(true)
		mode = "discard"
	}
	switch mode {
	case "bare":
		c, err := goldap.DialURL(cfg.URL)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(cfg.BindDN, cfg.BindPassword); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		m.Entries = bareRead(t, c, cfg.UserBaseDN, "(objectClass=inetOrgPerson)", OpenLDAP().userAttributes())
		m.Entries += bareRead(t, c, cfg.GroupBaseDN, OpenLDAP().GroupFilter, OpenLDAP().groupAttributes())
		m.Wall = time.Since(t0)
	case "discard":
		eng := newBenchEngine(t, &discardStore{})
		cfg.Engine = eng
		s, err := NewSyncer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if dir := os.Getenv("IDPROV_LDAP_BENCH_PROFILE"); dir != "" {
			pages := 0
			s.afterUserPage = func() {
				if pages++; pages == n/500*3/4 {
					f, err := os.Create(filepath.Join(dir, "discard.heap"))
					if err == nil {
						runtime.GC()
						_ = pprof.WriteHeapProfile(f)
						f.Close()
					}
				}
			}
		}
		stop := make(chan struct{})
		sampled := make(chan uint64)
		go func() {
			var peak uint64
			var ms runtime.MemStats
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak {
					peak = ms.HeapInuse
					if p, ok := s.Progress(); ok {
						m.PeakPhase = string(p.Phase)
					}
				}
				select {
				case <-stop:
					sampled <- peak
					return
				case <-tick.C:
				}
			}
		}()
		t0 := time.Now()
		rep, err := s.Sync(ctx)
		close(stop)
		m.PeakHeap = <-sampled
		if err != nil {
			t.Fatal(err)
		}
		m.Wall = time.Since(t0)
		m.Entries = rep.Entries
		if rep.Created != n || rep.Groups.Created != 100 {
			t.Fatalf("discard sync: %v", rep)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m.LiveHeap = ms.HeapAlloc
		runtime.KeepAlive(s)
	case "memstore":
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		store := memstore.New()
		eng := newBenchEngine(t, store)
		cfg.Engine = eng
		s, err := NewSyncer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		rep, err := s.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.Wall = time.Since(t0)
		m.Entries = rep.Entries
		t0 = time.Now()
		rep2, err := s.Sync(ctx)
		if err != nil || rep2.Unchanged != n {
			t.Fatalf("second sync: %v %v", rep2, err)
		}
		m.Wall2 = time.Since(t0)
		cache := s.cache
		s.cache = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		m.BytesPerUser = int64(after.HeapAlloc-before.HeapAlloc) / int64(n)
		s.cache = cache
		runtime.KeepAlive(store)

		t0 = time.Now()
		m.Changes = applyChanges(t, cfg, base, n, 0)
		m.ChangeTime = time.Since(t0)
		timed := func(s *Syncer) (time.Duration, *Report) {
			t0 := time.Now()
			rep, err := s.SyncChanges(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return time.Since(t0), rep
		}
		m.Incremental, rep = timed(s)
		m.IncrementalReport = rep.String()

		// A restarted process: a new Syncer on the same store.
		applyChanges(t, cfg, base, n, 1)
		restarted, err := NewSyncer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Restart, rep = timed(restarted)
		m.RestartReport = rep.String()
		if rep.Mode == ModeFull {
			t.Fatalf("the restarted Syncer ran a full sync: %s", rep.FullReason)
		}
		m.Latencies = pushLatencies(t, cfg, base, n)
	}
	b, _ := json.Marshal(m)
	fmt.Println("RESULT " + string(b))
}

func newBenchEngine(t testing.TB, st provision.Store) *provision.Engine {
	eng, err := provision.NewEngine(provision.Config{Store: st, Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{{ID: ldapConn, Kind: provision.KindLDAP}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// hostObj is a piece of a host's own live heap: pointers to scan and
// bytes to keep.
type hostObj struct {
	next *hostObj
	data [120]byte
}

// newHostHeap allocates mb megabytes of linked hostObjs ("" for none).
func newHostHeap(mb string) *hostObj {
	n, _ := strconv.Atoi(mb)
	var head *hostObj
	for range n << 20 / 128 {
		o := &hostObj{next: head}
		o.data[0] = 1
		head = o
	}
	return head
}

// bareRead streams a paged search and counts the entries: the least a
// go-ldap client can do.
func bareRead(t *testing.T, c *goldap.Conn, base, filter string, attrs []string) int {
	n := 0
	paging := goldap.NewControlPaging(500)
	for {
		req := goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, []goldap.Control{paging})
		r := c.SearchAsync(context.Background(), req, 64)
		var done *goldap.ControlPaging
		for r.Next() {
			if r.Entry() != nil {
				n++
			}
			if p, ok := goldap.FindControl(r.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
				done = p
			}
		}
		if err := r.Err(); err != nil || done == nil {
			t.Fatalf("bare read: %v", err)
		}
		if len(done.Cookie) == 0 {
			return n
		}
		paging.SetCookie(done.Cookie)
	}
}

// pushLatencies runs Run (push, interval an hour) and locks 20 users one
// after the other, each time measuring until the store has the user
// inactive.
func pushLatencies(t *testing.T, cfg Config, base string, n int) []time.Duration {
	cfg.Interval, cfg.FullInterval = time.Hour, 24*time.Hour
	s, err := NewSyncer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Minute); s.Status().Mode != StatusPersist; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no persistent search: %+v", s.Status())
		}
	}
	c := adminConn(t, cfg.URL)
	defer c.Close()
	o := provision.Origin{TenantID: tenant, ConnectionID: ldapConn}
	var out []time.Duration
	for k := range 20 {
		dn := ldaptest.UserDN(base, k*(n/20)+7)
		res, err := c.Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"entryUUID"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("entryUUID of %s: %v", dn, err)
		}
		id := canonicalID(res.Entries[0].GetAttributeValue("entryUUID"))
		req := goldap.NewModifyRequest(dn, nil)
		req.Replace("pwdAccountLockedTime", []string{"000001010000Z"})
		t0 := time.Now()
		if err := c.Modify(req); err != nil {
			t.Fatal(err)
		}
		for {
			u, err := cfg.Engine.UserByExternalID(context.Background(), o, id)
			if err == nil && !u.Active {
				break
			}
			if time.Since(t0) > time.Minute {
				t.Fatalf("lock of %s not applied within a minute (%v)", dn, err)
			}
			time.Sleep(time.Millisecond)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

// applyChanges makes 1,000 changes as the root DN: 800 attribute
// changes, 100 adds, 50 renames and 50 deletes; round (0, 1) picks
// other entries.
func applyChanges(t *testing.T, cfg Config, base string, n, round int) int {
	c := adminConn(t, cfg.URL)
	defer c.Close()
	count := 0
	step := n / 1000
	for k := range 800 {
		req := goldap.NewModifyRequest(ldaptest.UserDN(base, k*step+round), nil)
		req.Replace("title", []string{"Changed " + strconv.Itoa(k)})
		if err := c.Modify(req); err != nil {
			t.Fatal(err)
		}
		count++
	}
	for k := range 100 {
		req := goldap.NewAddRequest(fmt.Sprintf("uid=new%d%04d,ou=people,%s", round, k, base), nil)
		req.Attribute("objectClass", []string{"inetOrgPerson"})
		req.Attribute("uid", []string{fmt.Sprintf("new%d%04d", round, k)})
		req.Attribute("cn", []string{"New"})
		req.Attribute("sn", []string{"Hire"})
		if err := c.Add(req); err != nil {
			t.Fatal(err)
		}
		count++
	}
	for k := range 50 {
		i := k*step + step/2 + round
		if err := c.ModifyDN(goldap.NewModifyDNRequest(ldaptest.UserDN(base, i), fmt.Sprintf("uid=renamed%06d", i), true, "")); err != nil {
			t.Fatal(err)
		}
		count++
	}
	for k := range 50 {
		i := k*step + step/3 + round
		if err := c.Del(goldap.NewDelRequest(ldaptest.UserDN(base, i), nil)); err != nil {
			t.Fatal(err)
		}
		count++
	}
	return count
}

// discardStore is a Store that keeps nothing: every user and group is
// new, every member exists. It measures the Syncer without a store's
// cost. Its KV keeps small values (the cursor, plans) and discards the
// directory state's buckets, which a real store keeps in its database,
// not in the Syncer's process.
type discardStore struct {
	ids atomic.Int64
	mu  sync.Mutex
	kv  map[string][]byte
}

func (d *discardStore) KVGet(_ context.Context, tenantID, key string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.kv[tenantID+"\x00"+key]
	if !ok {
		return nil, provision.ErrNotFound
	}
	return v, nil
}

func (d *discardStore) KVSet(_ context.Context, tenantID, key string, value []byte, _ time.Duration) error {
	if strings.Contains(key, "/state/") {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kv == nil {
		d.kv = map[string][]byte{}
	}
	d.kv[tenantID+"\x00"+key] = slices.Clone(value)
	return nil
}

func (d *discardStore) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error) {
	if _, err := d.KVGet(ctx, tenantID, key); err == nil {
		return false, nil
	}
	return true, d.KVSet(ctx, tenantID, key, value, ttl)
}

func (d *discardStore) KVDelete(_ context.Context, tenantID, key string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.kv, tenantID+"\x00"+key)
	return nil
}

func (d *discardStore) id() string { return "d" + strconv.FormatInt(d.ids.Add(1), 10) }

func (d *discardStore) GetUser(_ context.Context, tenantID, id string) (provision.User, error) {
	return provision.User{ID: id, TenantID: tenantID, Active: true}, nil
}
func (d *discardStore) UserByUserName(context.Context, string, string) (provision.User, error) {
	return provision.User{}, provision.ErrNotFound
}
func (d *discardStore) UsersByEmail(context.Context, string, string) ([]provision.User, error) {
	return nil, nil
}
func (d *discardStore) ListUsers(context.Context, string, provision.Page) ([]provision.User, int, error) {
	return nil, 0, nil
}
func (d *discardStore) CreateUser(_ context.Context, u provision.User) (provision.User, error) {
	u.ID, u.Version = d.id(), 1
	return u, nil
}
func (d *discardStore) UpdateUser(_ context.Context, u provision.User, v int64) (provision.User, error) {
	u.Version = v + 1
	return u, nil
}
func (d *discardStore) DeletedUsers(context.Context, string, time.Time, int) ([]provision.User, error) {
	return nil, nil
}
func (d *discardStore) PurgeUser(context.Context, string, string) error { return nil }
func (d *discardStore) GetGroup(context.Context, string, string) (provision.Group, error) {
	return provision.Group{}, provision.ErrNotFound
}
func (d *discardStore) GroupsByDisplayName(context.Context, string, string) ([]provision.Group, error) {
	return nil, nil
}
func (d *discardStore) ListGroups(context.Context, string, provision.Page) ([]provision.Group, int, error) {
	return nil, 0, nil
}
func (d *discardStore) CreateGroup(_ context.Context, g provision.Group) (provision.Group, error) {
	g.ID, g.Version = d.id(), 1
	return g, nil
}
func (d *discardStore) UpdateGroup(_ context.Context, g provision.Group, v int64) (provision.Group, error) {
	g.Version = v + 1
	return g, nil
}
func (d *discardStore) DeleteGroup(context.Context, string, string, int64) error { return nil }
func (d *discardStore) AddMembers(_ context.Context, _, _ string, ids []string) ([]string, error) {
	return ids, nil
}
func (d *discardStore) RemoveMembers(context.Context, string, string, []string) ([]string, error) {
	return nil, nil
}
func (d *discardStore) ListMembers(context.Context, string, string, provision.Page) ([]string, int, error) {
	return nil, 0, nil
}
func (d *discardStore) IsMember(context.Context, string, string, string) (bool, error) {
	return false, nil
}
func (d *discardStore) GroupsOfUser(context.Context, string, string) ([]string, error) {
	return nil, nil
}
func (d *discardStore) GetLink(context.Context, string, provision.ResourceKind, string, string) (provision.Link, error) {
	return provision.Link{}, provision.ErrNotFound
}
func (d *discardStore) LinksOf(context.Context, string, provision.ResourceKind, string) ([]provision.Link, error) {
	return nil, nil
}
func (d *discardStore) CreateLink(context.Context, provision.Link) error { return nil }
func (d *discardStore) DeleteLink(context.Context, string, provision.ResourceKind, string, string) error {
	return nil
}
func (d *discardStore) Atomically(ctx context.Context, fn func(context.Context, provision.Store) error) error {
	return fn(ctx, d)
}

// adminConn is a connection bound as the root DN.
func adminConn(t *testing.T, url string) *goldap.Conn {
	c, err := goldap.DialURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(os.Getenv("IDPROV_LDAP_BENCH_ADMIN"), os.Getenv("IDPROV_LDAP_BENCH_ADMINPW")); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}
