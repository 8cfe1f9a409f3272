package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// conn is one connection for one sync run.
type conn struct {
	c    goldap.Client
	stop func() bool
	cfg  *config
	// referrals counts the continuation references searches returned.
	referrals atomic.Int64
}

// dial connects, secures and binds. The connection is closed as soon as
// ctx ends, which makes every blocking go-ldap call return.
func (s *Syncer) dial(ctx context.Context) (*conn, error) {
	cfg := s.cfg
	if s.dialClient != nil {
		c, err := s.dialClient(ctx)
		if err != nil {
			return nil, fmt.Errorf("ldap: dial: %w", err)
		}
		cn := &conn{c: c, cfg: cfg}
		cn.stop = context.AfterFunc(ctx, func() { c.Close() })
		return cn, nil
	}
	scheme, addr, err := hostPort(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ldap: dial %s: %w", addr, err)
	}
	if scheme == "ldaps" {
		tc := tls.Client(nc, cfg.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("ldap: TLS handshake with %s: %w", addr, certErr(err))
		}
		nc = tc
	}
	c := goldap.NewConn(nc, scheme == "ldaps")
	c.Start()
	cn := &conn{c: c, cfg: cfg}
	cn.stop = context.AfterFunc(ctx, func() { c.Close() })
	// Bound the handshake steps, which go-ldap does not tie to a context.
	bindDone := context.AfterFunc(dctx, func() {
		if ctx.Err() == nil && dctx.Err() != nil {
			c.Close()
		}
	})
	defer bindDone()
	c.SetTimeout(cfg.DialTimeout)
	if cfg.StartTLS {
		if err := c.StartTLS(cfg.tls); err != nil {
			cn.close()
			return nil, fmt.Errorf("ldap: StartTLS with %s: %w", addr, certErr(ctxErr(ctx, dctx, err)))
		}
	}
	if cfg.BindDN != "" {
		if err := c.Bind(cfg.BindDN, cfg.BindPassword); err != nil {
			cn.close()
			err = bindErr(ctxErr(ctx, dctx, err))
			if (scheme == "ldaps" || cfg.StartTLS) && ctx.Err() == nil && !errors.Is(err, ErrBind) && !errors.Is(err, ErrCertificate) &&
				closedErr(err) {
				// TLS 1.3 checks the client's certificate after the
				// client's side of the handshake: a server that refuses
				// it closes the connection at the first request.
				err = fmt.Errorf("%w: the server closed the connection after the TLS handshake, at the first request: it refused the client certificate, or wants one (%w)", ErrCertificate, err)
			}
			return nil, fmt.Errorf("ldap: bind as %q: %w", cfg.BindDN, err)
		}
	}
	if cfg.SASLExternal {
		if err := c.ExternalBind(); err != nil {
			cn.close()
			err = bindErr(ctxErr(ctx, dctx, err))
			if ctx.Err() == nil && !errors.Is(err, ErrBind) && !errors.Is(err, ErrCertificate) && closedErr(err) {
				err = fmt.Errorf("%w: the server closed the connection after the TLS handshake, at the first request: it refused the client certificate, or wants one (%w)", ErrCertificate, err)
			}
			return nil, fmt.Errorf("ldap: SASL EXTERNAL bind with the client certificate: %w", err)
		}
	}
	// No per-request timeout from here on: go-ldap drops a response that
	// a slow reader does not take within it, which would silently lose
	// entries. Searches are bounded by their own contexts instead.
	c.SetTimeout(0)
	return cn, nil
}

// ctxErr prefers the context's error (cancelled, or the dial deadline)
// over the error a closed connection produced.
func ctxErr(ctx, dctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dctx.Err() != nil {
		return fmt.Errorf("%w (%v)", dctx.Err(), err)
	}
	return err
}

func (c *conn) close() {
	c.stop()
	c.c.Close()
}

// The errors that say which part of connecting failed: errors.Is finds
// them in what Sync, SyncChanges and Plan return.
var (
	// ErrCertificate: TLS failed on a certificate: the server's is not
	// trusted (not issued by the pinned CA or a root, another host name,
	// expired), the server refused the client certificate (missing, or
	// of a CA it does not trust), or a certificate setting is malformed.
	ErrCertificate = errors.New("ldap: certificate")
	// ErrBind: the server refused the bind (wrong DN or password, a
	// locked or expired account).
	ErrBind = errors.New("ldap: bind refused")
	// ErrBaseDN: a search base does not exist, or the bind account may
	// not see it.
	ErrBaseDN = errors.New("ldap: base DN not found")
)

// certErr marks a TLS failure that is about a certificate.
func certErr(err error) error {
	var (
		ua *x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
		cv *tls.CertificateVerificationError
		al tls.AlertError
	)
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), errors.As(err, &cv):
	case errors.As(err, &al):
		switch al {
		case 42, 43, 44, 45, 46, 48, 116: // bad, unsupported, revoked, expired, unknown certificate; unknown CA; certificate required
		default:
			return err
		}
	default:
		// go-ldap may report a refused client certificate (TLS 1.3: an
		// alert after the handshake) as a closed connection with the
		// alert's text only.
		if s := err.Error(); !strings.Contains(s, "tls: certificate required") && !strings.Contains(s, "tls: bad certificate") && !strings.Contains(s, "tls: unknown certificate authority") {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrCertificate, err)
}

// closedErr reports whether err says the connection was closed under a
// request (go-ldap words some of these only as text).
func closedErr(err error) bool {
	if errors.Is(err, io.EOF) || goldap.IsErrorWithCode(err, goldap.ErrorNetwork) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "unable to read LDAP response packet") || strings.Contains(s, "unable to send request") || strings.Contains(s, "connection closed")
}

// bindErr marks a refused bind; a certificate refused after the
// handshake surfaces at the bind too.
func bindErr(err error) error {
	if goldap.IsErrorAnyOf(err, goldap.LDAPResultInvalidCredentials, goldap.LDAPResultInvalidDNSyntax, goldap.LDAPResultInappropriateAuthentication,
		goldap.LDAPResultConfidentialityRequired, goldap.LDAPResultStrongAuthRequired, goldap.LDAPResultUnwillingToPerform) {
		return fmt.Errorf("%w: %w", ErrBind, err)
	}
	return certErr(err)
}

// ErrIncomplete says a search did not complete: the server ended it
// without the result that marks its end, or a time or size limit cut it
// off. An incomplete search never deactivates anyone.
var ErrIncomplete = errors.New("ldap: search incomplete")

type search struct {
	base   string
	scope  int
	filter string
	attrs  []string
	// pageSize overrides Config.PageSize when set.
	pageSize int
	// controls are sent with every page, besides the paging control.
	controls []goldap.Control
	// next, when set, sizes each next page from the one just read.
	next func(last []*goldap.Entry, size int) int
}

// groupPageSize bounds the page size of group searches: a group entry
// carries its members, a thousand DNs or more. A group search reads one
// group first; the pages after it are sized to hold about
// groupPageValues member values (groupPages): a value in flight costs about
// half a kilobyte of heap (its BER node, string and slices).
const (
	groupPageSize   = 20
	groupPageValues = 5000
)

// groupPages sizes the next page of a group search so that it holds
// about groupPageValues member values, as the largest group of the last
// page would: the memory a page takes stays flat as groups grow with the
// directory. (RFC 2696 lets a client change the size between pages.)
func groupPages(attrs []string) func([]*goldap.Entry, int) int {
	return func(last []*goldap.Entry, size int) int {
		most := 0
		for _, e := range last {
			n := 0
			for _, a := range attrs {
				n += len(e.GetEqualFoldAttributeValues(a))
			}
			most = max(most, n)
		}
		if most == 0 {
			return groupPageSize
		}
		return max(1, min(groupPageSize, groupPageValues/most))
	}
}

// page is one page of a paged search, or the error that ended it.
type page struct {
	entries []*goldap.Entry
	err     error
}

// pagedSearch streams a paged search (RFC 2696) to fn, one page at a
// time, reading the next page while fn handles the current one. Memory is
// bounded by two pages. It returns nil only when the server reported the
// search complete (a paging control with an empty cookie).
func (c *conn) pagedSearch(ctx context.Context, q search, fn func([]*goldap.Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		var cookie []byte
		q := q
		for {
			entries, next, err := c.readPage(ctx, q, cookie)
			if q.next != nil && err == nil {
				q.pageSize = q.next(entries, q.pageSize)
			}
			select {
			case pages <- page{entries: entries, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(next) == 0 {
				return
			}
			cookie = next
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := fn(p.entries); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// readPage reads one page with SearchAsync and a paging control: never
// SearchWithPaging, which holds the whole result in memory.
func (c *conn) readPage(ctx context.Context, q search, cookie []byte) ([]*goldap.Entry, []byte, error) {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	size := c.cfg.PageSize
	if q.pageSize > 0 {
		size = min(size, q.pageSize)
	}
	paging := goldap.NewControlPaging(uint32(size))
	paging.SetCookie(cookie)
	ctls := append([]goldap.Control{paging}, q.controls...)
	req := goldap.NewSearchRequest(q.base, q.scope, goldap.NeverDerefAliases, 0, 0, false, q.filter, q.attrs, ctls)
	r := c.c.SearchAsync(pctx, req, 64)
	entries := make([]*goldap.Entry, 0, size)
	var done *goldap.ControlPaging
	for r.Next() {
		if e := r.Entry(); e != nil {
			entries = append(entries, e)
		}
		if ref := r.Referral(); ref != "" {
			if err := c.referral(q.base, ref); err != nil {
				return nil, nil, err
			}
		}
		if ctl, ok := goldap.FindControl(r.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
			done = ctl
		}
	}
	if err := searchErr(ctx, pctx, r.Err(), q.base); err != nil {
		return nil, nil, err
	}
	if done == nil {
		return nil, nil, fmt.Errorf("%w: the search of %q ended without its paging control (connection closed?)", ErrIncomplete, q.base)
	}
	return entries, done.Cookie, nil
}

// searchErr turns the end of a go-ldap stream into an error: the stream's
// own, the caller's cancellation, or a timeout (go-ldap reports neither).
func searchErr(ctx, pctx context.Context, err error, base string) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		if goldap.IsErrorAnyOf(err, goldap.LDAPResultSizeLimitExceeded, goldap.LDAPResultTimeLimitExceeded, goldap.LDAPResultAdminLimitExceeded) {
			return fmt.Errorf("%w: search of %q: %w", ErrIncomplete, base, err)
		}
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("%w: search of %q: %w", ErrBaseDN, base, err)
		}
		return fmt.Errorf("ldap: search of %q: %w", base, err)
	case pctx.Err() != nil:
		return fmt.Errorf("%w: search of %q timed out", ErrIncomplete, base)
	}
	return nil
}

// referral handles a continuation reference: counted and ignored, or
// ErrIncomplete with Config.ReferralsIncomplete.
func (c *conn) referral(base, ref string) error {
	c.referrals.Add(1)
	if c.cfg.ReferralsIncomplete {
		return fmt.Errorf("%w: the search of %q returned a continuation reference to %s (Config.ReferralsIncomplete)", ErrIncomplete, base, ref)
	}
	return nil
}

// rootDSE is what the Syncer reads from the server's root DSE.
type rootDSE struct {
	controls []string
	// Active Directory: the DC's NTDS Settings DN, the naming contexts,
	// the DC's highest committed USN.
	dsServiceName  string
	defaultNC      string
	namingContexts []string
	highestUSN     int64
}

func (d *rootDSE) supports(oid string) bool {
	return slices.ContainsFunc(d.controls, func(s string) bool { return strings.TrimSpace(s) == oid })
}

// readEntry reads one entry with a base search (nil when there is none).
func (c *conn) readEntry(ctx context.Context, dn string, attrs []string) (*goldap.Entry, error) {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", attrs, nil)
	r := c.c.SearchAsync(pctx, req, 4)
	var out *goldap.Entry
	for r.Next() {
		if e := r.Entry(); e != nil {
			out = e
		}
	}
	name := dn
	if name == "" {
		name = "root DSE"
	}
	if err := searchErr(ctx, pctx, r.Err(), name); err != nil {
		return nil, err
	}
	return out, nil
}

// rootDSE reads the root DSE.
func (c *conn) rootDSE(ctx context.Context) (*rootDSE, error) {
	e, err := c.readEntry(ctx, "", []string{"supportedControl", "dsServiceName", "defaultNamingContext", "namingContexts", "highestCommittedUSN"})
	if err != nil {
		return nil, err
	}
	d := &rootDSE{}
	if e == nil {
		return d, nil
	}
	d.controls = e.GetEqualFoldAttributeValues("supportedControl")
	d.dsServiceName = e.GetEqualFoldAttributeValue("dsServiceName")
	d.defaultNC = e.GetEqualFoldAttributeValue("defaultNamingContext")
	d.namingContexts = e.GetEqualFoldAttributeValues("namingContexts")
	d.highestUSN, _ = strconv.ParseInt(e.GetEqualFoldAttributeValue("highestCommittedUSN"), 10, 64)
	return d, nil
}
