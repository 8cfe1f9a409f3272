// Package scimtest replays recorded identity-provider lifecycles against
// a mounted SCIM 2.0 server: a host runs it in its own CI against its own
// handler and Store, and sees, step by step, whether Okta and Microsoft
// Entra ID would provision into it.
//
// The lifecycles (Lifecycles) are idprov's fixtures, embedded in the
// package: Okta's user lifecycle and group push, Entra's user
// provisioning in both PATCH dialects and its group provisioning, with
// the request bodies those identity providers send (Body). Each run
// makes its own users and groups (userNames, externalIds and group names
// carry a random run suffix) and deletes them at the end, so it can run
// against a store that already holds data, again and again.
//
// In a test:
//
//	func TestSCIMConformance(t *testing.T) {
//		srv := httptest.NewServer(myApp.Handler()) // SCIM mounted at /scim/v2
//		defer srv.Close()
//		scimtest.Run(t, srv.URL+"/scim/v2", tokenOfATestDirectory)
//	}
//
// Anywhere else (a health check, a command), Replay returns the report:
//
//	results, err := scimtest.Replay(ctx, http.DefaultClient, baseURL, token)
//
// The server must accept the token as a SCIM directory's bearer token.
// The lifecycles check the protocol only (statuses, bodies, ETags of
// versions 1 and 2 after create and PUT), never the host's store.
package scimtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed testdata
var fixtures embed.FS

// Fixtures returns the embedded fixtures: lifecycles/*.json (the
// lifecycles) and bodies/*.json (the request bodies they name).
func Fixtures() fs.FS {
	sub, err := fs.Sub(fixtures, "testdata")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Body returns the request body fixture name ("okta-create-user",
// "okta-put-user", "okta-deactivate-user", "okta-create-group",
// "entra-create-user", "entra-create-group") with its placeholders
// replaced by vars; a placeholder without a value ("{{run}}" when vars
// lacks "run") is removed, which leaves the literal body the identity
// provider sends. It panics on an unknown name.
func Body(name string, vars map[string]string) string {
	b, err := fs.ReadFile(fixtures, "testdata/bodies/"+name+".json")
	if err != nil {
		panic("scimtest: no body fixture " + strconv.Quote(name))
	}
	return expand(strings.TrimSpace(string(b)), vars, nil)
}

// Lifecycle is one recorded provisioning lifecycle: steps replayed in
// order, each depending on the ones before it.
type Lifecycle struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Steps       []Step `json:"steps"`
}

// Step is one request of a lifecycle and what its answer must be.
// Strings of the step may hold placeholders: {{run}} (the run's suffix)
// and the names Save gave ids of earlier answers ({{user}}).
type Step struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	// Path is relative to the base URL; its query is written unescaped
	// (filter=userName eq "x") and escaped when sent.
	Path   string            `json:"path"`
	Header map[string]string `json:"header,omitempty"`
	// Body is the request body; BodyRef names a body fixture instead.
	Body    json.RawMessage `json:"body,omitempty"`
	BodyRef string          `json:"bodyRef,omitempty"`
	// Status is the status the answer must have.
	Status int `json:"status"`
	// Save names values of the answer for later steps: placeholder name
	// to a path in the body ("id").
	Save map[string]string `json:"save,omitempty"`
	// Expect maps paths in the answer's body to the JSON value they must
	// hold. A path is keys and list indexes joined by "/" ("emails/0/value";
	// keys may hold dots and colons); a last element "#" is the length of
	// a list.
	Expect map[string]any `json:"expect,omitempty"`
	// Absent lists paths that must not be in the answer.
	Absent []string `json:"absent,omitempty"`
	// ExpectHeader maps response headers to the value they must have.
	ExpectHeader map[string]string `json:"expectHeader,omitempty"`
}

// Lifecycles returns the recorded lifecycles: okta-users, okta-groups,
// entra-users, entra-groups.
func Lifecycles() []Lifecycle {
	names, _ := fs.Glob(fixtures, "testdata/lifecycles/*.json")
	sort.Strings(names)
	order := map[string]int{"okta-users": 0, "okta-groups": 1, "entra-users": 2, "entra-groups": 3}
	var out []Lifecycle
	for _, n := range names {
		b, _ := fixtures.ReadFile(n)
		var lc Lifecycle
		if err := json.Unmarshal(b, &lc); err != nil {
			panic("scimtest: fixture " + path.Base(n) + ": " + err.Error())
		}
		out = append(out, lc)
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].Name] < order[out[j].Name] })
	return out
}

// StepResult is the outcome of one step.
type StepResult struct {
	Lifecycle string
	Step      string
	Method    string
	// Path is the path sent, placeholders replaced.
	Path       string
	Status     int
	WantStatus int
	Duration   time.Duration
	// Skipped is set for the steps after a failed one in its lifecycle.
	Skipped bool
	// Failure says what was wrong; empty when the step passed.
	Failure string
	// Body is the answer's body (for a failed step's report).
	Body string
}

// OK reports whether the step ran and passed.
func (r StepResult) OK() bool { return !r.Skipped && r.Failure == "" }

// String renders the result on one line, for a report.
func (r StepResult) String() string {
	switch {
	case r.Skipped:
		return fmt.Sprintf("%s / %s: skipped", r.Lifecycle, r.Step)
	case r.Failure != "":
		return fmt.Sprintf("%s / %s: %s %s: FAIL: %s", r.Lifecycle, r.Step, r.Method, r.Path, r.Failure)
	}
	return fmt.Sprintf("%s / %s: %s %s: %d ok (%s)", r.Lifecycle, r.Step, r.Method, r.Path, r.Status, r.Duration.Round(time.Microsecond))
}

// Replay runs every lifecycle against the SCIM server at baseURL (the
// URL an identity provider is given, such as
// "https://app.example.com/scim/v2") with the bearer token, and returns
// the result of each step. A step that fails skips the rest of its
// lifecycle; the next lifecycle still runs. The error is for what stops
// the whole replay: the context ending, or the server unreachable. A nil
// client means http.DefaultClient.
func Replay(ctx context.Context, client *http.Client, baseURL, token string) ([]StepResult, error) {
	var out []StepResult
	err := replay(ctx, client, baseURL, token, Lifecycles(), func(r StepResult) { out = append(out, r) })
	return out, err
}

// Run replays every lifecycle as subtests of t (one per lifecycle, one
// per step), failing a step's subtest with what was wrong.
func Run(t *testing.T, baseURL, token string) {
	t.Helper()
	for _, lc := range Lifecycles() {
		t.Run(lc.Name, func(t *testing.T) {
			var results []StepResult
			err := replay(t.Context(), nil, baseURL, token, []Lifecycle{lc}, func(r StepResult) { results = append(results, r) })
			for _, r := range results {
				t.Run(r.Step, func(t *testing.T) {
					switch {
					case r.Skipped:
						t.Skip("an earlier step failed")
					case r.Failure != "":
						t.Errorf("%s %s: %s\nbody: %s", r.Method, r.Path, r.Failure, r.Body)
					default:
						t.Logf("%s %s: %d (%s)", r.Method, r.Path, r.Status, r.Duration)
					}
				})
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "-" + hex.EncodeToString(b[:])
}

func replay(ctx context.Context, client *http.Client, baseURL, token string, lcs []Lifecycle, report func(StepResult)) error {
	if client == nil {
		client = http.DefaultClient
	}
	baseURL = strings.TrimRight(baseURL, "/")
	for _, lc := range lcs {
		vars := map[string]string{"run": newRunID()}
		failed := false
		for _, s := range lc.Steps {
			r := StepResult{Lifecycle: lc.Name, Step: s.Name, Method: s.Method, WantStatus: s.Status}
			if failed {
				r.Skipped = true
				report(r)
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := runStep(ctx, client, baseURL, token, s, vars, &r); err != nil {
				return fmt.Errorf("scimtest: %s / %s: %w", lc.Name, s.Name, err)
			}
			failed = r.Failure != ""
			report(r)
		}
	}
	return nil
}

func runStep(ctx context.Context, client *http.Client, baseURL, token string, s Step, vars map[string]string, r *StepResult) error {
	p := expand(s.Path, vars, nil)
	if i := strings.IndexByte(p, '?'); i >= 0 {
		q, err := url.ParseQuery(p[i+1:])
		if err != nil {
			r.Failure = "the step's query is malformed: " + err.Error()
			return nil
		}
		p = p[:i] + "?" + q.Encode()
	}
	r.Path = p
	var body io.Reader
	switch {
	case s.BodyRef != "":
		body = strings.NewReader(Body(s.BodyRef, vars))
	case len(s.Body) > 0:
		body = strings.NewReader(expand(string(s.Body), vars, nil))
	}
	req, err := http.NewRequestWithContext(ctx, s.Method, baseURL+p, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for k, v := range s.Header {
		req.Header.Set(k, expand(v, vars, nil))
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	r.Duration = time.Since(start)
	r.Status = resp.StatusCode
	r.Body = string(raw)
	var failures []string
	if resp.StatusCode != s.Status {
		failures = append(failures, fmt.Sprintf("status %d, want %d", resp.StatusCode, s.Status))
	}
	var doc any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &doc); err != nil {
			failures = append(failures, "the body is not JSON")
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") && !strings.HasPrefix(ct, "application/json") {
			failures = append(failures, fmt.Sprintf("Content-Type %q", ct))
		}
	}
	for _, k := range sortedKeys(s.ExpectHeader) {
		if got, want := resp.Header.Get(k), expand(s.ExpectHeader[k], vars, nil); got != want {
			failures = append(failures, fmt.Sprintf("header %s = %q, want %q", k, got, want))
		}
	}
	for _, k := range sortedKeys(s.Expect) {
		want := expandValue(s.Expect[k], vars)
		got, ok := lookup(doc, expand(k, vars, nil))
		if !ok {
			failures = append(failures, fmt.Sprintf("%s is absent, want %s", k, show(want)))
			continue
		}
		if !equalJSON(got, want) {
			failures = append(failures, fmt.Sprintf("%s = %s, want %s", k, show(got), show(want)))
		}
	}
	for _, k := range s.Absent {
		if got, ok := lookup(doc, expand(k, vars, nil)); ok {
			failures = append(failures, fmt.Sprintf("%s = %s, want it absent", k, show(got)))
		}
	}
	for _, name := range sortedKeys(s.Save) {
		v, ok := lookup(doc, s.Save[name])
		str, isStr := v.(string)
		if !ok || !isStr || str == "" {
			failures = append(failures, fmt.Sprintf("no %s to save as {{%s}}", s.Save[name], name))
			continue
		}
		vars[name] = str
	}
	r.Failure = strings.Join(failures, "; ")
	return nil
}

// expand replaces {{name}} placeholders by vars; unknown ones are removed
// (missing, when non-nil, collects them).
func expand(s string, vars map[string]string, missing *[]string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		name := s[i+2 : i+j]
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else if missing != nil {
			*missing = append(*missing, name)
		}
		s = s[i+j+2:]
	}
}

func expandValue(v any, vars map[string]string) any {
	switch v := v.(type) {
	case string:
		return expand(v, vars, nil)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = expandValue(e, vars)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = expandValue(e, vars)
		}
		return out
	}
	return v
}

// lookup walks a decoded JSON document by a "/"-separated path.
func lookup(doc any, p string) (any, bool) {
	v := doc
	for _, seg := range strings.Split(p, "/") {
		switch c := v.(type) {
		case map[string]any:
			e, ok := c[seg]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			if seg == "#" {
				return float64(len(c)), true
			}
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// equalJSON compares decoded JSON values; numbers as float64.
func equalJSON(a, b any) bool {
	na, _ := json.Marshal(a)
	nb, _ := json.Marshal(b)
	var x, y any
	if json.Unmarshal(na, &x) != nil || json.Unmarshal(nb, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ErrFailed is what Check returns when a step failed.
var ErrFailed = errors.New("scimtest: a lifecycle step failed")

// Check replays every lifecycle like Replay and returns ErrFailed (with
// the failed steps) when a step failed: for a command or a readiness
// probe that only needs a verdict.
func Check(ctx context.Context, client *http.Client, baseURL, token string) error {
	results, err := Replay(ctx, client, baseURL, token)
	if err != nil {
		return err
	}
	var bad []string
	for _, r := range results {
		if r.Failure != "" {
			bad = append(bad, r.String())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w:\n%s", ErrFailed, strings.Join(bad, "\n"))
	}
	return nil
}
