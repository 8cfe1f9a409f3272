//go:build samba

package ldap

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/idprov/idprov/ldap/adtest"
	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

// TestMeasureAD is the measurement program for the Active Directory
// figures: N users in 20 groups loaded into Samba AD (ldbadd into
// sam.ldb, 2,000 entries a transaction: 5 s for the first 2,000, 5m40s for
// 20,000 users and 20 groups of 1,000, no faster than LDAP adds at that size), then, median of 3, a bare
// go-ldap streaming read of the users (the attributes the Syncer asks
// for), a full sync into memstore, a bare DirSync read of everything, and
// an incremental DirSync sync after 1,000 modifications. It is skipped
// unless IDPROV_AD_BENCH gives N; it needs ldbadd (ldb-tools):
//
//	IDPROV_AD_BENCH=20000 go test -tags samba -p 1 ./ldap -run 'TestMeasureAD$' -v -timeout 30m
func TestMeasureAD(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("IDPROV_AD_BENCH"))
	if n <= 0 {
		t.Skip("set IDPROV_AD_BENCH=20000 to measure")
	}
	ad := adtest.Require(t, adSrv, adStartErr)
	ldbadd, err := exec.LookPath("ldbadd")
	if err != nil {
		t.Fatal("ldbadd not found (apt-get install ldb-tools)")
	}
	const groups = 20
	base := "OU=bench," + ad.BaseDN
	people, groupsDN := "OU=people,"+base, "OU=groups,"+base
	// One ldbadd per 2,000 entries: a single transaction of 20,000 grows
	// far worse than linearly.
	dir := t.TempDir()
	var files []string
	var w *bufio.Writer
	var f *os.File
	next := func() {
		if w != nil {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		var err error
		files = append(files, filepath.Join(dir, fmt.Sprintf("%03d.ldif", len(files))))
		if f, err = os.Create(files[len(files)-1]); err != nil {
			t.Fatal(err)
		}
		w = bufio.NewWriter(f)
	}
	next()
	for _, ou := range []string{base, people, groupsDN} {
		fmt.Fprintf(w, "dn: %s\nobjectClass: organizationalUnit\n\n", ou)
	}
	for i := range n {
		if i > 0 && i%2000 == 0 {
			next()
		}
		sam := fmt.Sprintf("b%06d", i)
		uac := 544
		if i%50 == 0 {
			uac = 546
		}
		fmt.Fprintf(w, "dn: CN=%s,%s\nobjectClass: user\nsAMAccountName: %s\nuserPrincipalName: %s@example.test\nmail: %s@example.test\n"+
			"givenName: Given%d\nsn: Family%d\ndisplayName: Given%d Family%d\ntitle: Engineer\ndepartment: Dept%d\nemployeeID: %d\n"+
			"telephoneNumber: +1 555 %04d\nuserAccountControl: %d\n\n", sam, people, sam, sam, sam, i, i, i, i, i%groups, i, i%10000, uac)
	}
	for g := range groups {
		next()
		fmt.Fprintf(w, "dn: CN=group%02d,%s\nobjectClass: group\nsAMAccountName: group%02d\n", g, groupsDN, g)
		for i := g; i < n; i += groups {
			fmt.Fprintf(w, "member: CN=b%06d,%s\n", i, people)
		}
		fmt.Fprintln(w)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	for _, file := range files {
		out, err := exec.Command(ldbadd, "-H", filepath.Join(ad.Dir, "private", "sam.ldb"), file).CombinedOutput()
		if err != nil {
			t.Fatalf("ldbadd %s: %v\n%s", file, err, out)
		}
	}
	t.Logf("ldbadd of %d users + %d groups: %s", n, groups, time.Since(start).Round(time.Millisecond))

	cfg := func(eng *provision.Engine) Config {
		return Config{
			Engine: eng, TenantID: tenant, ConnectionID: ldapConn, URL: ad.URL, InsecurePlaintext: true,
			BindDN: ad.AdminDN, BindPassword: ad.AdminPassword, UserBaseDN: people, GroupBaseDN: groupsDN,
			Mapping: ActiveDirectory(), Incremental: IncrementalDirSync, MaxDeactivationShare: 1, RequestTimeout: 10 * time.Minute,
		}
	}
	newEngine := func() *provision.Engine {
		eng, err := provision.NewEngine(provision.Config{Store: memstore.New(), Tenants: []provision.Tenant{{ID: tenant, Connections: []provision.Connection{{ID: ldapConn, Kind: provision.KindLDAP}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	median := func(name string, runs int, fn func() string) {
		var ws []time.Duration
		var note string
		for range runs {
			s := time.Now()
			note = fn()
			ws = append(ws, time.Since(s))
		}
		all := slices.Clone(ws)
		slices.Sort(ws)
		t.Logf("%-44s median %8s  runs %v  %s", name, ws[len(ws)/2].Round(time.Millisecond), roundAll(all), note)
	}
	ctx := t.Context()
	conn := func() *goldap.Conn {
		c, err := goldap.DialURL(ad.URL)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ad.AdminDN, ad.AdminPassword); err != nil {
			t.Fatal(err)
		}
		return c
	}
	attrs := ActiveDirectory().userAttributes()
	median("bare go-ldap read (SearchAsync, pages of 500)", 3, func() string {
		c := conn()
		defer c.Close()
		return fmt.Sprintf("%d entries", bareRead(t, c, people, "(&(objectCategory=person)(objectClass=user))", attrs))
	})
	median("bare go-ldap DirSync read of everything", 3, func() string {
		c := conn()
		defer c.Close()
		objs := 0
		req := goldap.NewSearchRequest(ad.BaseDN, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(|(&(objectCategory=person)(objectClass=user))(objectClass=group))", dirSyncAttributes(ActiveDirectory()), nil)
		r := c.DirSyncAsync(ctx, req, 64, 0, 0, nil)
		for r.Next() {
			if r.Entry() != nil {
				objs++
			}
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		return fmt.Sprintf("%d objects", objs)
	})
	var s *Syncer
	median("full sync into memstore", 3, func() string {
		var err error
		if s, err = NewSyncer(cfg(newEngine())); err != nil {
			t.Fatal(err)
		}
		rep, err := s.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep.String()
	})
	median("incremental DirSync sync, no change", 3, func() string {
		rep, err := s.SyncChanges(ctx)
		if err != nil || rep.Mode != ModeDirSync {
			t.Fatalf("%v %v", rep, err)
		}
		return rep.String()
	})
	c := conn()
	defer c.Close()
	for round := range 3 {
		start := time.Now()
		for i := range 1000 {
			dn := fmt.Sprintf("CN=b%06d,%s", (round*1000+i*(n/1000))%n, people)
			req := goldap.NewModifyRequest(dn, nil)
			req.Replace("title", []string{fmt.Sprintf("Title %d-%d", round, i)})
			if err := c.Modify(req); err != nil {
				t.Fatal(err)
			}
		}
		mod := time.Since(start)
		start = time.Now()
		rep, err := s.SyncChanges(ctx)
		if err != nil || rep.Mode != ModeDirSync {
			t.Fatalf("%v %v", rep, err)
		}
		t.Logf("incremental DirSync sync after 1,000 modifications (made in %s): %s  %s", mod.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), rep)
	}
}
