// Package ldaptest starts a real OpenLDAP slapd for tests: in a temporary
// directory, on a free loopback port, with the mdb backend and the
// syncprov (RFC 4533 syncrepl), memberof, refint and ppolicy overlays, and
// stops it when the test ends.
//
// It needs the Debian/Ubuntu packages slapd and ldap-utils (slapd and
// slapadd; the package's own system slapd is not used and may be stopped).
// When slapd is missing, Start skips the test, or fails it when the
// environment variable CI is "true", so a CI run can never pass by skipping.
//
//	srv := ldaptest.Start(t, ldaptest.Options{TLS: true})
//	conn := srv.Conn(t) // bound as the root DN
//	srv.Add(t, "uid=ada,ou=people,"+srv.BaseDN, map[string][]string{...})
//
// Hosts embedding idprov can use it to test their own LDAP configuration.
package ldaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// Options configures a test directory. The zero value is a directory
// dc=example,dc=com with ou=people, ou=groups and the sync account.
type Options struct {
	// BaseDN is the suffix. Default "dc=example,dc=com".
	BaseDN string
	// TLS adds an ldaps:// listener and StartTLS on the ldap:// one, with
	// a server certificate for 127.0.0.1 issued by a fresh test CA
	// (Server.CAPool).
	TLS bool
	// ClientCertificates (which implies TLS) makes slapd demand a client
	// certificate issued by the test CA in every TLS handshake
	// (TLSVerifyClient demand), as Google Secure LDAP does; the server's
	// ClientCertPEM and ClientKeyPEM are one. A SASL EXTERNAL bind with
	// it is the sync account (SyncDN).
	ClientCertificates bool
	// Schema, when set, is more schema in slapd.conf syntax
	// (attributetype and objectclass definitions), loaded after core,
	// cosine, inetorgperson and nis: the attributes of a directory
	// service a test imitates (FreeIPA's ipaUniqueID, Google's
	// googleUid).
	Schema string
	// LDIFFile, when set, is loaded with slapadd (offline, fast) after the
	// base entries and before slapd starts. Its entries must be under
	// BaseDN and must not repeat the base entries.
	LDIFFile string
	// SessionLog is the size of syncprov's in-memory session log: a
	// syncrepl client whose cookie it covers gets the deleted entries' ids
	// (the delete phase); otherwise it gets the ids of every live entry
	// (the present phase). Default 1000; negative disables the log.
	SessionLog int
	// ModuleDir is where slapd's modules live. Default: the first of
	// /usr/lib/ldap, /usr/lib64/openldap, /usr/lib/openldap,
	// /usr/local/libexec/openldap that exists.
	ModuleDir string
	// SchemaDir holds core.schema and friends. Default /etc/ldap/schema,
	// else /etc/openldap/schema.
	SchemaDir string
}

// Server is a running slapd.
type Server struct {
	// URL is the ldap:// address (StartTLS is offered on it with TLS).
	URL string
	// LDAPSURL is the ldaps:// address; empty without Options.TLS.
	LDAPSURL string
	// BaseDN is the directory's suffix.
	BaseDN string
	// AdminDN and AdminPassword are the root DN's credentials (no ACL,
	// no limits).
	AdminDN, AdminPassword string
	// SyncDN and SyncPassword are a non-root account with exactly the
	// grants an idprov sync account needs: read access to the subtree
	// (entries, entryUUID, modifyTimestamp, the member attributes,
	// pwdAccountLockedTime) and no size limit on paged and syncrepl
	// searches.
	SyncDN, SyncPassword string
	// PeopleDN and GroupsDN are the two organizational units created
	// under BaseDN.
	PeopleDN, GroupsDN string
	// CAPool trusts the test CA that issued the server's certificate
	// (nil without Options.TLS); CAPEM is that CA certificate in PEM.
	CAPool *x509.CertPool
	CAPEM  []byte
	// ClientCertPEM and ClientKeyPEM are a client certificate issued by
	// the test CA and its key (with Options.TLS or ClientCertificates).
	ClientCertPEM, ClientKeyPEM []byte
	// Dir is the temporary directory holding the configuration and data.
	Dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	args []string
	bin  string
	log  *bytes.Buffer
}

// Available reports whether slapd and slapadd can be found.
func Available() bool {
	_, err := findBinary("slapd")
	if err != nil {
		return false
	}
	_, err = findBinary("slapadd")
	return err == nil
}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/libexec"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("ldaptest: %s not found (install the slapd package)", name)
}

// Start starts a slapd for t and registers its stop with t.Cleanup. A
// missing slapd skips t, or fails it when CI=true.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if !Available() {
		if os.Getenv("CI") == "true" {
			t.Fatal("ldaptest: slapd is not installed, and CI=true: install the slapd and ldap-utils packages")
		}
		t.Skip("ldaptest: slapd is not installed (apt-get install slapd ldap-utils); skipping")
	}
	s, err := start(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(dir string, opts Options) (*Server, error) {
	if opts.BaseDN == "" {
		opts.BaseDN = "dc=example,dc=com"
	}
	if opts.SessionLog == 0 {
		opts.SessionLog = 1000
	}
	moduleDir := opts.ModuleDir
	if moduleDir == "" {
		moduleDir = firstDir("/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap", "/usr/local/libexec/openldap")
	}
	schemaDir := opts.SchemaDir
	if schemaDir == "" {
		schemaDir = firstDir("/etc/ldap/schema", "/etc/openldap/schema")
	}
	slapd, err := findBinary("slapd")
	if err != nil {
		return nil, err
	}
	slapadd, err := findBinary("slapadd")
	if err != nil {
		return nil, err
	}
	s := &Server{
		BaseDN:        opts.BaseDN,
		AdminDN:       "cn=admin," + opts.BaseDN,
		AdminPassword: "admin-secret",
		SyncDN:        "cn=idprov-sync," + opts.BaseDN,
		SyncPassword:  "sync-secret",
		PeopleDN:      "ou=people," + opts.BaseDN,
		GroupsDN:      "ou=groups," + opts.BaseDN,
		Dir:           dir,
		bin:           slapd,
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	var tlsConf string
	if opts.ClientCertificates {
		opts.TLS = true
	}
	if opts.TLS {
		if err := s.makeCerts(); err != nil {
			return nil, err
		}
		tlsConf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
		if opts.ClientCertificates {
			tlsConf += "TLSVerifyClient demand\n" + fmt.Sprintf("authz-regexp \"^cn=idprov-sync$\" \"%s\"\n", s.SyncDN)
		}
	}
	schema := ""
	if opts.Schema != "" {
		path := filepath.Join(dir, "extra.schema")
		if err := os.WriteFile(path, []byte(opts.Schema), 0o600); err != nil {
			return nil, err
		}
		schema = "include " + path
	}
	sessionLog := ""
	if opts.SessionLog > 0 {
		sessionLog = fmt.Sprintf("syncprov-sessionlog %d\n", opts.SessionLog)
	}
	conf := fmt.Sprintf(`include %[1]s/core.schema
include %[1]s/cosine.schema
include %[1]s/inetorgperson.schema
include %[1]s/nis.schema
%[11]s
modulepath %[2]s
moduleload back_mdb
moduleload syncprov
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile %[3]s/slapd.pid
argsfile %[3]s/slapd.args
sizelimit 500
%[7]s
database mdb
maxsize 4294967296
suffix "%[4]s"
rootdn "%[5]s"
rootpw %[6]s
directory %[8]s
index objectClass,entryUUID,entryCSN eq
index uid,cn,mail,member,uniqueMember,memberUid eq
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by dn.exact="%[9]s" read
	by * none
limits dn.exact="%[9]s" size=unlimited time=unlimited
overlay syncprov
syncprov-checkpoint 100 5
%[10]s
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member uniqueMember
refint_nothing "%[5]s"
overlay ppolicy
`, schemaDir, moduleDir, dir, s.BaseDN, s.AdminDN, s.AdminPassword, tlsConf, dataDir, s.SyncDN, sessionLog, schema)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	basePath := filepath.Join(dir, "base.ldif")
	if err := os.WriteFile(basePath, []byte(s.baseLDIF()), 0o600); err != nil {
		return nil, err
	}
	for _, f := range []string{basePath, opts.LDIFFile} {
		if f == "" {
			continue
		}
		out, err := exec.Command(slapadd, "-f", confPath, "-q", "-w", "-l", f).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ldaptest: slapadd %s: %v\n%s", f, err, out)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	urls := s.URL + "/"
	if opts.TLS {
		sport, err := freePort()
		if err != nil {
			return nil, err
		}
		s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", sport)
		urls += " " + s.LDAPSURL + "/"
	}
	s.args = []string{"-f", confPath, "-h", urls, "-d", "0"}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) baseLDIF() string {
	rdn := strings.SplitN(s.BaseDN, ",", 2)[0]
	dc := strings.TrimPrefix(rdn, "dc=")
	return fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
o: %s
dc: %s

dn: %s
objectClass: organizationalUnit
ou: people

dn: %s
objectClass: organizationalUnit
ou: groups

dn: %s
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: idprov-sync
userPassword: %s

`, s.BaseDN, dc, dc, s.PeopleDN, s.GroupsDN, s.SyncDN, s.SyncPassword)
}

func firstDir(dirs ...string) string {
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return dirs[0]
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts slapd in the foreground and waits until it answers.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &bytes.Buffer{}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("ldaptest: start slapd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	addr := strings.TrimPrefix(s.URL, "ldap://")
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("ldaptest: slapd exited at start:\n%s", s.log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("ldaptest: slapd did not listen on %s within 15s:\n%s", addr, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops slapd abruptly (SIGKILL), as a crash would; Restart brings it
// back on the same ports with the same data.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts slapd again after Kill, with the same data and ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		t.Fatal(err)
	}
}

// Stop stops slapd gracefully (SIGTERM, then SIGKILL after 5s).
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Log returns what slapd wrote to stdout and stderr.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// TLSConfig returns a client configuration trusting the test CA.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// Conn returns a connection bound as the root DN, closed when t ends.
func (s *Server) Conn(t testing.TB) *goldap.Conn {
	t.Helper()
	c, err := goldap.DialURL(s.URL)
	if err != nil {
		t.Fatalf("ldaptest: dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		t.Fatalf("ldaptest: bind: %v", err)
	}
	return c
}

// Add adds an entry as the root DN.
func (s *Server) Add(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	req := goldap.NewAddRequest(dn, nil)
	for _, name := range sortedKeys(attrs) {
		req.Attribute(name, attrs[name])
	}
	if err := s.Conn(t).Add(req); err != nil {
		t.Fatalf("ldaptest: add %s: %v", dn, err)
	}
}

// Replace replaces the values of attributes of dn as the root DN; an
// empty value list deletes the attribute.
func (s *Server) Replace(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	req := goldap.NewModifyRequest(dn, nil)
	for _, name := range sortedKeys(attrs) {
		req.Replace(name, attrs[name])
	}
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("ldaptest: modify %s: %v", dn, err)
	}
}

// AddValues adds values to an attribute of dn as the root DN.
func (s *Server) AddValues(t testing.TB, dn, attr string, values ...string) {
	t.Helper()
	req := goldap.NewModifyRequest(dn, nil)
	req.Add(attr, values)
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("ldaptest: modify %s: %v", dn, err)
	}
}

// DeleteValues removes values from an attribute of dn as the root DN.
func (s *Server) DeleteValues(t testing.TB, dn, attr string, values ...string) {
	t.Helper()
	req := goldap.NewModifyRequest(dn, nil)
	req.Delete(attr, values)
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("ldaptest: modify %s: %v", dn, err)
	}
}

// Delete deletes the entry dn as the root DN.
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	if err := s.Conn(t).Del(goldap.NewDelRequest(dn, nil)); err != nil {
		t.Fatalf("ldaptest: delete %s: %v", dn, err)
	}
}

// Rename renames (modrdn) or moves the entry dn: newRDN is its new RDN,
// and newSuperior, when not empty, its new parent.
func (s *Server) Rename(t testing.TB, dn, newRDN, newSuperior string) {
	t.Helper()
	if err := s.Conn(t).ModifyDN(goldap.NewModifyDNRequest(dn, newRDN, true, newSuperior)); err != nil {
		t.Fatalf("ldaptest: modrdn %s: %v", dn, err)
	}
}

// EntryUUID returns the entryUUID of dn.
func (s *Server) EntryUUID(t testing.TB, dn string) string {
	t.Helper()
	res, err := s.Conn(t).Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"entryUUID"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("ldaptest: entryUUID of %s: %v", dn, err)
	}
	return res.Entries[0].GetAttributeValue("entryUUID")
}

func sortedKeys(m map[string][]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// makeCerts writes a fresh CA and a server certificate for 127.0.0.1.
func (s *Server) makeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "idprov ldaptest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	serverPEM, serverKey, err := issue(caCert, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	})
	if err != nil {
		return err
	}
	s.ClientCertPEM, s.ClientKeyPEM, err = issue(caCert, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "idprov-sync"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.CAPool = x509.NewCertPool()
	s.CAPool.AddCert(caCert)
	files := map[string][]byte{
		"ca.pem":     s.CAPEM,
		"server.pem": serverPEM,
		"server.key": serverKey,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// issue makes a key and a certificate of tmpl signed by the CA, in PEM.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
