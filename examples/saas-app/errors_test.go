package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runErr runs the app with args and returns the error it stops with, and
// what it printed.
func runErr(t *testing.T, args ...string) (error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), &out)
	if err == nil {
		t.Fatalf("run %v: no error", args)
	}
	return err, out.String()
}

// TestNewcomerErrors: the first errors a newcomer meets say what is wrong
// and where.
func TestNewcomerErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"db directory missing", []string{"-db", filepath.Join(dir, "no-such-dir", "app.db")},
			[]string{"the directory " + filepath.Join(dir, "no-such-dir") + " does not exist"}},
		{"truncated config", []string{"-db", "memory", "-config", write("cut.json", "{\"tenants\": [\n  {\"id\": \"globex\",\n   \"name\": \"Glo")},
			[]string{"cut.json:3:16:", "the JSON ends too early"}},
		{"config syntax error", []string{"-db", "memory", "-config", write("syntax.json", "{\"tenants\": [\n  {\"id\": \"globex\",,}]}")},
			[]string{"syntax.json:2:19:", "invalid character ','"}},
		{"config type error", []string{"-db", "memory", "-config", write("type.json", "{\"tenants\": [\n  {\"id\": \"globex\",\n   \"verifiedDomains\": \"globex.example\"}]}")},
			[]string{"type.json:3:", `tenant "globex"`, "verifiedDomains"}},
		{"bad duration", []string{"-db", "memory", "-config", write("dur.json", "{\"tenants\": [{\"id\": \"acme2\"},\n {\"id\": \"globex\",\n  \"ldap\": [{\"id\": \"corp\", \"url\": \"ldap://127.0.0.1:1\", \"baseDN\": \"dc=x\",\n            \"interval\": \"1x\"}]}]}")},
			[]string{"dur.json:4:13:", `tenant "globex"`, "interval", `"1x" is not a duration such as "90s" or "1m"`}},
		{"bad filter", []string{"-db", "memory", "-config", write("filter.json", `{"tenants": [{"id": "globex", "accessRules": [{"id": "fin", "filter": "department eq", "roles": ["billing"]}]}]}`)},
			[]string{`tenant "globex"`, `accessRules[0] ("fin")`, `filter "department eq"`}},
		{"bad flag", []string{"-nope"}, []string{"flag provided but not defined: -nope", "-h lists the flags"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err, out := runErr(t, c.args...)
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || out != "" {
				t.Errorf("more than one line: %q, printed %q", msg, out)
			}
		})
	}
	err, out := runErr(t, "-h")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "-scim-token") {
		t.Fatalf("-h: %v, printed %q", err, out)
	}
}

// TestUnreachableLDAPLoggedOncePerRound: an LDAP server that does not
// answer is one log line per sync round, naming the tenant, the
// connection and the address.
func TestUnreachableLDAPLoggedOncePerRound(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w // run's logger writes to os.Stderr
	lines, stop := launch(t, []string{"scim", "ldap"}, "-ldap-url", "ldap://127.0.0.1:1", "-ldap-base-dn", "dc=acme,dc=test", "-ldap-interval", "300ms")
	os.Stderr = stderr
	time.Sleep(1100 * time.Millisecond)
	stop()
	w.Close()
	var failed []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "ldap") && strings.Contains(l, "fail") {
			failed = append(failed, l)
		}
	}
	if len(failed) == 0 {
		t.Fatalf("no log line for the unreachable LDAP server (%v)", lines)
	}
	for _, l := range failed {
		if !strings.Contains(l, "ldap: sync failed") || !strings.Contains(l, "tenant=acme") || !strings.Contains(l, "connection=ldap") || !strings.Contains(l, "127.0.0.1:1") {
			t.Errorf("log line %q: want one 'ldap: sync failed' line per round with tenant, connection and address", l)
		}
	}
	// Rounds are 300 ms apart: about four in 1.1 s, never two lines each.
	if len(failed) > 5 {
		t.Errorf("%d failure lines in about four rounds:\n%s", len(failed), strings.Join(failed, "\n"))
	}
}
