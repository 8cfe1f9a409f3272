// Package adtest provisions a Samba Active Directory domain controller in
// a temporary directory, for tests of Active Directory sync against a
// real server: DirSync, tombstones, objectGUID, userAccountControl,
// uSNChanged, the in-chain matching rule.
//
// Provisioning takes a few seconds, so a test binary starts one server in
// TestMain and its tests share it, each under its own OU:
//
//	func TestMain(m *testing.M) {
//		srv, err := adtest.Start(dir)  // samba-tool domain provision + samba
//		...
//		code := m.Run()
//		srv.Stop()
//		os.Exit(code)
//	}
//
// Samba has no setting for its LDAP port: the server listens on
// 127.0.0.1:389 and 636 (and 3268/3269), which needs root, and only one
// server can run at a time (go test -p 1). Simple binds on ldap:// are
// allowed (ldap server require strong auth = no); ldaps:// uses a
// self-signed certificate the helper makes (Samba's own sometimes has a
// negative serial number, which Go refuses).
//
// It needs the Debian packages samba, samba-ad-provision,
// samba-dsdb-modules and samba-vfs-modules.
package adtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// The domain every Server provisions.
const (
	Realm         = "EXAMPLE.TEST"
	Domain        = "EXAMPLE"
	BaseDN        = "DC=example,DC=test"
	AdminDN       = "CN=Administrator,CN=Users," + BaseDN
	AdminPassword = "Adm1n-Passw0rd!"
)

// Server is a running Samba AD DC.
type Server struct {
	// URL is ldap://127.0.0.1:389 and LDAPSURL ldaps://127.0.0.1:636.
	URL      string
	LDAPSURL string
	// BaseDN is the domain's naming context; AdminDN and AdminPassword
	// the domain administrator's credentials (who holds "Replicating
	// Directory Changes").
	BaseDN        string
	AdminDN       string
	AdminPassword string
	// Dir holds the provisioned domain and smb.conf.
	Dir string
	// Provisioned is how long samba-tool domain provision took, Started
	// how long samba took to answer LDAP.
	Provisioned, Started time.Duration

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	mu    sync.Mutex
	log   bytes.Buffer
}

// Available reports whether samba and samba-tool are installed.
func Available() bool {
	for _, b := range []string{"samba", "samba-tool"} {
		if _, err := findBinary(b); err != nil {
			return false
		}
	}
	return true
}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/samba/sbin", "/usr/local/samba/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("adtest: %s not found (apt-get install samba samba-ad-provision samba-dsdb-modules samba-vfs-modules)", name)
}

// Require returns srv, or skips t when srv is nil (Samba is not
// installed), or fails t when CI=true: CI never skips the AD tests.
func Require(t testing.TB, srv *Server, startErr error) *Server {
	t.Helper()
	switch {
	case srv != nil:
		return srv
	case startErr != nil:
		t.Fatalf("adtest: %v", startErr)
	case os.Getenv("CI") == "true":
		t.Fatal("adtest: Samba is not installed, and CI=true: apt-get install samba samba-ad-provision samba-dsdb-modules samba-vfs-modules")
	default:
		t.Skip("adtest: Samba is not installed; skipping")
	}
	return nil
}

// Start provisions a domain into dir (which must be empty or absent) and
// starts samba on it. Stop stops it.
func Start(dir string) (*Server, error) {
	if !Available() {
		return nil, errors.New("adtest: samba is not installed")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:389", time.Second); err == nil {
		c.Close()
		return nil, errors.New("adtest: 127.0.0.1:389 is taken (a distro slapd or samba service, or another adtest server): stop it first")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{URL: "ldap://127.0.0.1:389", LDAPSURL: "ldaps://127.0.0.1:636", BaseDN: BaseDN, AdminDN: AdminDN, AdminPassword: AdminPassword, Dir: dir, done: make(chan struct{})}
	tool, _ := findBinary("samba-tool")
	start := time.Now()
	prov := exec.Command(tool, "domain", "provision", "--realm="+Realm, "--domain="+Domain, "--server-role=dc",
		"--dns-backend=NONE", "--adminpass="+AdminPassword, "--targetdir="+dir,
		"--option=interfaces=127.0.0.1", "--option=bind interfaces only=yes")
	if out, err := prov.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("adtest: samba-tool domain provision: %v\n%s", err, out)
	}
	s.Provisioned = time.Since(start)
	if err := s.patchConf(); err != nil {
		return nil, err
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

// conf is smb.conf's path.
func (s *Server) conf() string { return filepath.Join(s.Dir, "etc", "smb.conf") }

// patchConf keeps only the LDAP service, allows simple binds on ldap://
// (provision does not carry --option="ldap server require strong auth =
// no" into smb.conf), and keeps pid and log files in the directory.
func (s *Server) patchConf() error {
	b, err := os.ReadFile(s.conf())
	if err != nil {
		return err
	}
	for _, d := range []string{"run", "log", "ncalrpc"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	conf := string(b)
	conf = regexp.MustCompile(`(?m)^\s*(server services|log file)\s*=.*\n`).ReplaceAllString(conf, "")
	keyFile, certFile, err := s.writeTLS()
	if err != nil {
		return err
	}
	extra := fmt.Sprintf("\tserver services = ldap\n\tldap server require strong auth = no\n\tpid directory = %s\n\tncalrpc dir = %s\n\tlog file = %s\n\tlog level = 0\n"+
		"\ttls enabled = yes\n\ttls keyfile = %s\n\ttls certfile = %s\n\ttls cafile = \n",
		filepath.Join(s.Dir, "run"), filepath.Join(s.Dir, "ncalrpc"), filepath.Join(s.Dir, "log", "log.%m"), keyFile, certFile)
	conf = strings.Replace(conf, "[global]\n", "[global]\n"+extra, 1)
	return os.WriteFile(s.conf(), []byte(conf), 0o644)
}

// writeTLS makes the server's TLS key and self-signed certificate. Samba
// would generate its own, but with a random serial number that is
// negative about half the time, which Go's x509 parser refuses ("negative
// serial number"), failing ldaps:// connections at random.
func (s *Server) writeTLS() (keyFile, certFile string, err error) {
	dir := filepath.Join(s.Dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), // positive
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyFile, certFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return keyFile, certFile, os.WriteFile(certFile, certPEM, 0o644)
}

type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.log.Len() < 1<<20 {
		w.s.log.Write(p)
	}
	return len(p), nil
}

// launch starts samba in the foreground (interactive: it ends when its
// stdin closes, so it never outlives the test binary) and waits for LDAP.
func (s *Server) launch() error {
	bin, _ := findBinary("samba")
	s.cmd = exec.Command(bin, "-i", "-M", "single", "-s", s.conf())
	s.cmd.Stdout, s.cmd.Stderr = logWriter{s}, logWriter{s}
	stdin, err := s.cmd.StdinPipe()
	if err != nil {
		return err
	}
	s.stdin = stdin
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("adtest: start samba: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("adtest: samba exited: %s", s.Log())
		default:
		}
		if c, err := s.dial(); err == nil {
			c.Close()
			s.Started = time.Since(start)
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("adtest: samba did not answer LDAP within 60s: %s", s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops samba. The directory stays (the caller removes it).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stdin.Close()
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns samba's output.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *Server) dial() (*goldap.Conn, error) {
	c, err := goldap.DialURL(s.URL, goldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, err
	}
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Conn returns a connection bound as the administrator, closed when t
// ends.
func (s *Server) Conn(t testing.TB) *goldap.Conn {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("adtest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// do runs fn on a connection of its own, bound as the administrator.
func (s *Server) do(t testing.TB, what string, fn func(*goldap.Conn) error) {
	t.Helper()
	c, err := s.dial()
	if err == nil {
		err = fn(c)
		c.Close()
	}
	if err != nil {
		t.Fatalf("adtest: %s: %v", what, err)
	}
}

// Add adds an entry.
func (s *Server) Add(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	req := goldap.NewAddRequest(dn, nil)
	for k, v := range attrs {
		req.Attribute(k, v)
	}
	s.do(t, "add "+dn, func(c *goldap.Conn) error { return c.Add(req) })
}

// OU adds an organizational unit below the domain and returns its DN.
func (s *Server) OU(t testing.TB, name string) string {
	t.Helper()
	dn := "OU=" + goldap.EscapeDN(name) + "," + s.BaseDN
	s.Add(t, dn, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {name}})
	return dn
}

// AddUser adds an enabled user with sAMAccountName sam below parent (no
// password: userAccountControl 544, NORMAL_ACCOUNT|PASSWD_NOTREQD), with
// userPrincipalName sam@example.test, mail, givenName, sn and
// displayName; extra adds or replaces attributes. It returns the DN.
func (s *Server) AddUser(t testing.TB, parent, sam, given, family string, extra map[string][]string) string {
	t.Helper()
	dn := "CN=" + goldap.EscapeDN(sam) + "," + parent
	attrs := map[string][]string{
		"objectClass":        {"user"},
		"sAMAccountName":     {sam},
		"userPrincipalName":  {sam + "@example.test"},
		"mail":               {sam + "@example.test"},
		"givenName":          {given},
		"sn":                 {family},
		"displayName":        {given + " " + family},
		"userAccountControl": {"544"},
	}
	for k, v := range extra {
		attrs[k] = v
	}
	s.Add(t, dn, attrs)
	return dn
}

// AddAccount adds an enabled user with a password that can bind, holding
// no extra rights (a sync account without "Replicating Directory
// Changes"). It returns the DN.
func (s *Server) AddAccount(t testing.TB, parent, sam, password string) string {
	t.Helper()
	dn := "CN=" + goldap.EscapeDN(sam) + "," + parent
	req := goldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"user"})
	req.Attribute("sAMAccountName", []string{sam})
	req.Attribute("userPrincipalName", []string{sam + "@example.test"})
	req.Attribute("unicodePwd", []string{unicodePwd(password)})
	req.Attribute("userAccountControl", []string{"512"})
	c, err := goldap.DialURL(s.LDAPSURL, goldap.DialWithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if err == nil {
		defer c.Close()
		if err = c.Bind(s.AdminDN, s.AdminPassword); err == nil {
			err = c.Add(req)
		}
	}
	if err != nil {
		t.Fatalf("adtest: add account %s: %v", dn, err)
	}
	return dn
}

// unicodePwd encodes a password for AD's unicodePwd: the quoted password
// in UTF-16LE.
func unicodePwd(p string) string {
	u := utf16.Encode([]rune(`"` + p + `"`))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return string(b)
}

// AddGroup adds a global security group with the given member DNs (AD
// checks that they exist) and returns its DN.
func (s *Server) AddGroup(t testing.TB, parent, name string, members ...string) string {
	t.Helper()
	dn := "CN=" + goldap.EscapeDN(name) + "," + parent
	attrs := map[string][]string{"objectClass": {"group"}, "sAMAccountName": {name}}
	if len(members) > 0 {
		attrs["member"] = members
	}
	s.Add(t, dn, attrs)
	return dn
}

func (s *Server) modify(t testing.TB, dn string, fn func(*goldap.ModifyRequest)) {
	t.Helper()
	req := goldap.NewModifyRequest(dn, nil)
	fn(req)
	s.do(t, "modify "+dn, func(c *goldap.Conn) error { return c.Modify(req) })
}

// Replace replaces attributes (a nil value deletes the attribute).
func (s *Server) Replace(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	s.modify(t, dn, func(r *goldap.ModifyRequest) {
		for k, v := range attrs {
			r.Replace(k, v)
		}
	})
}

// AddValues adds values to an attribute (members to a group).
func (s *Server) AddValues(t testing.TB, dn, attr string, values ...string) {
	t.Helper()
	s.modify(t, dn, func(r *goldap.ModifyRequest) { r.Add(attr, values) })
}

// DeleteValues removes values from an attribute.
func (s *Server) DeleteValues(t testing.TB, dn, attr string, values ...string) {
	t.Helper()
	s.modify(t, dn, func(r *goldap.ModifyRequest) { r.Delete(attr, values) })
}

// Disable sets userAccountControl's ACCOUNTDISABLE bit (546), Enable
// clears it (544).
func (s *Server) Disable(t testing.TB, dn string) {
	t.Helper()
	s.Replace(t, dn, map[string][]string{"userAccountControl": {"546"}})
}

// Enable clears userAccountControl's ACCOUNTDISABLE bit (544).
func (s *Server) Enable(t testing.TB, dn string) {
	t.Helper()
	s.Replace(t, dn, map[string][]string{"userAccountControl": {"544"}})
}

// Delete deletes an entry: AD turns it into a tombstone under
// CN=Deleted Objects.
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	s.do(t, "delete "+dn, func(c *goldap.Conn) error { return c.Del(goldap.NewDelRequest(dn, nil)) })
}

// DeleteTree deletes an entry and everything below it (the tree-delete
// control).
func (s *Server) DeleteTree(t testing.TB, dn string) {
	t.Helper()
	req := goldap.NewDelRequest(dn, []goldap.Control{goldap.NewControlString("1.2.840.113556.1.4.805", true, "")})
	s.do(t, "tree delete "+dn, func(c *goldap.Conn) error { return c.Del(req) })
}

// Rename renames (newRDN) or moves (newSuperior) an entry.
func (s *Server) Rename(t testing.TB, dn, newRDN, newSuperior string) {
	t.Helper()
	s.do(t, "rename "+dn, func(c *goldap.Conn) error {
		return c.ModifyDN(goldap.NewModifyDNRequest(dn, newRDN, true, newSuperior))
	})
}

// GUID returns the entry's objectGUID as the server itself renders it:
// the <GUID=...> part of its extended DN (control 1.2.840.113556.1.4.529).
func (s *Server) GUID(t testing.TB, dn string) string {
	t.Helper()
	req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"},
		[]goldap.Control{extendedDN{}})
	var res *goldap.SearchResult
	s.do(t, "extended DN of "+dn, func(c *goldap.Conn) (err error) {
		if res, err = c.Search(req); err == nil && len(res.Entries) != 1 {
			err = fmt.Errorf("%d entries", len(res.Entries))
		}
		return err
	})
	m := regexp.MustCompile(`(?i)<GUID=([0-9a-f-]{36})>`).FindStringSubmatch(res.Entries[0].DN)
	if m == nil {
		t.Fatalf("adtest: no GUID in the extended DN %q", res.Entries[0].DN)
	}
	return strings.ToLower(m[1])
}

// InChain returns the DNs of the users the server itself counts as
// members of group, nested groups included: the in-chain matching rule
// (memberOf:1.2.840.113556.1.4.1941:=group).
func (s *Server) InChain(t testing.TB, base, group string) []string {
	t.Helper()
	f := "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + goldap.EscapeFilter(group) + "))"
	var res *goldap.SearchResult
	s.do(t, "in-chain members of "+group, func(c *goldap.Conn) (err error) {
		res, err = c.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, 0, 0, 0, false, f, []string{"1.1"}, nil))
		return err
	})
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	return out
}

// extendedDN is the extended DN control asking for the string form
// (ExtendedDnFlag 1: <GUID=f673ddf1-5059-...>; 0 would be the raw bytes
// in hex).
type extendedDN struct{}

func (extendedDN) GetControlType() string { return goldap.ControlTypeMicrosoftExtendedDN }

func (extendedDN) String() string { return "extended DN, string form" }

func (extendedDN) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, goldap.ControlTypeMicrosoftExtendedDN, "Control Type"))
	val := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Control Value")
	seq := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "ExtendedDnFlag")
	seq.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(1), "Flag"))
	val.AppendChild(seq)
	p.AppendChild(val)
	return p
}
