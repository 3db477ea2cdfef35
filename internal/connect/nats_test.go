package connect_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/connect"
)

// badInputLimit bounds how long a refused connection may take to fail:
// bad input is an error at once, never a hang.
const badInputLimit = 5 * time.Second

// startNATS runs an embedded nats-server with JetStream from conf (the
// text of a nats-server configuration file), on a random port of
// 127.0.0.1, and returns its client URL.
func startNATS(t *testing.T, conf string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "nats.conf")
	conf = fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\n%s\n", filepath.Join(dir, "js"), conf)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server configuration: %v\n%s", err, conf)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s.ClientURL()
}

// usable checks that nc works for acmeq: it creates acmeq's streams.
func usable(t *testing.T, nc *nats.Conn) {
	t.Helper()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 1}); err != nil {
		t.Fatalf("EnsureStreams over the connection: %v", err)
	}
}

func connectNATS(t *testing.T, c connect.NATSConfig) (*nats.Conn, error) {
	t.Helper()
	c.ConnectTimeout = 2 * time.Second
	return bounded(t, badInputLimit, func() (*nats.Conn, error) { return c.Connect("acmeq-test") })
}

func TestNATSUserPassword(t *testing.T) {
	url := startNATS(t, `authorization { users: [ {user: worker, password: "s3cret"} ] }`)
	nc, err := connectNATS(t, connect.NATSConfig{URL: url, User: "worker", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	usable(t, nc)

	_, err = connectNATS(t, connect.NATSConfig{URL: url, User: "worker", Password: "wrong"})
	wantConfigError(t, err, "ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD", "refused the credentials")
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("error %v does not wrap nats.ErrAuthorization", err)
	}
	// Credentials in the URL, the form nats.go accepts.
	nc, err = connectNATS(t, connect.NATSConfig{URL: strings.Replace(url, "nats://", "nats://worker:s3cret@", 1)})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	_, err = connectNATS(t, connect.NATSConfig{URL: strings.Replace(url, "nats://", "nats://worker:nope@", 1)})
	wantConfigError(t, err, "ACMEQ_NATS_URL", "refused")
	if strings.Contains(err.Error(), "nope") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestNATSToken(t *testing.T) {
	url := startNATS(t, `authorization { token: "t0ken" }`)
	nc, err := connectNATS(t, connect.NATSConfig{URL: url, Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	usable(t, nc)
	_, err = connectNATS(t, connect.NATSConfig{URL: url, Token: "other"})
	wantConfigError(t, err, "ACMEQ_NATS_TOKEN", "refused")
	_, err = connectNATS(t, connect.NATSConfig{URL: url})
	wantConfigError(t, err, "ACMEQ_NATS_URL", "refused")
}

func TestNATSNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	url := startNATS(t, fmt.Sprintf(`authorization { users: [ {nkey: %q} ] }`, pub))
	seedFile := writeFile(t, "worker.nk", string(seed)+"\n")
	nc, err := connectNATS(t, connect.NATSConfig{URL: url, NKey: seedFile})
	if err != nil {
		t.Fatal(err)
	}
	usable(t, nc)

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	_, err = connectNATS(t, connect.NATSConfig{URL: url, NKey: writeFile(t, "other.nk", string(otherSeed))})
	wantConfigError(t, err, "ACMEQ_NATS_NKEY", "refused")

	_, err = connectNATS(t, connect.NATSConfig{URL: url, NKey: filepath.Join(t.TempDir(), "missing.nk")})
	wantConfigError(t, err, "ACMEQ_NATS_NKEY")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing seed file: %v does not wrap fs.ErrNotExist", err)
	}
	_, err = connectNATS(t, connect.NATSConfig{URL: url, NKey: writeFile(t, "junk.nk", "not a seed\n")})
	wantConfigError(t, err, "ACMEQ_NATS_NKEY", "no user NKey seed")
}

// operatorSetup makes an operator, an account with JetStream and a user of
// it, and returns the server configuration (operator mode, memory
// resolver) and the user's .creds file content. expires, if set, is when
// the user JWT expires.
func operatorSetup(t *testing.T, expires time.Time) (conf string, creds []byte) {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	// JetStream in operator mode needs a system account.
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "acmeq-test"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "ACMEQ"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := nkeys.CreateUser()
	usrPub, _ := usr.PublicKey()
	uc := jwt.NewUserClaims(usrPub)
	uc.Name = "worker"
	uc.IssuerAccount = ""
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	usrJWT, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := usr.Seed()
	creds, err = jwt.FormatUserConfig(usrJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	opFile := writeFile(t, "operator.jwt", opJWT)
	conf = fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: { %s: %q, %s: %q }\n",
		opFile, sysPub, accPub, accJWT, sysPub, sysJWT)
	return conf, creds
}

func TestNATSCreds(t *testing.T) {
	conf, creds := operatorSetup(t, time.Time{})
	url := startNATS(t, conf)
	credsFile := writeFile(t, "worker.creds", string(creds))
	nc, err := connectNATS(t, connect.NATSConfig{URL: url, Creds: credsFile})
	if err != nil {
		t.Fatal(err)
	}
	usable(t, nc)

	_, err = connectNATS(t, connect.NATSConfig{URL: url, Creds: filepath.Join(t.TempDir(), "missing.creds")})
	wantConfigError(t, err, "ACMEQ_NATS_CREDS")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing creds file: %v does not wrap fs.ErrNotExist", err)
	}
	// Unreadable: a directory where the file should be (root reads any
	// file whatever its mode, so a mode would not do).
	_, err = connectNATS(t, connect.NATSConfig{URL: url, Creds: t.TempDir()})
	wantConfigError(t, err, "ACMEQ_NATS_CREDS", "is a directory")
	_, err = connectNATS(t, connect.NATSConfig{URL: url, Creds: writeFile(t, "junk.creds", "-----BEGIN NATS USER JWT-----\nxyz\n------END NATS USER JWT------\n")})
	wantConfigError(t, err, "ACMEQ_NATS_CREDS", "no user JWT")

	// A user of another operator: refused by the server.
	_, otherCreds := operatorSetup(t, time.Time{})
	_, err = connectNATS(t, connect.NATSConfig{URL: url, Creds: writeFile(t, "other.creds", string(otherCreds))})
	wantConfigError(t, err, "ACMEQ_NATS_CREDS", "refused")
}

func TestNATSCredsExpired(t *testing.T) {
	conf, creds := operatorSetup(t, time.Now().Add(-time.Minute))
	url := startNATS(t, conf)
	_, err := connectNATS(t, connect.NATSConfig{URL: url, Creds: writeFile(t, "expired.creds", string(creds))})
	wantConfigError(t, err, "ACMEQ_NATS_CREDS", "refused")
}

func TestNATSTLS(t *testing.T) {
	ca := newCA(t, "nats")
	cert, key := ca.issue(t, "nats-server")
	url := startNATS(t, fmt.Sprintf(`tls { cert_file: %q, key_file: %q }`, cert, key))

	nc, err := connectNATS(t, connect.NATSConfig{URL: url, TLSCA: ca.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	if !nc.TLSRequired() {
		t.Error("connection not over TLS")
	}
	usable(t, nc)
	// tls:// in the URL and a custom CA.
	nc, err = connectNATS(t, connect.NATSConfig{URL: strings.Replace(url, "nats://", "tls://", 1), TLSCA: ca.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()

	other := newCA(t, "other")
	_, err = connectNATS(t, connect.NATSConfig{URL: url, TLSCA: other.CertPEM})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CA", "does not verify against "+other.CertPEM)
	// No CA: the system's roots do not know this one.
	_, err = connectNATS(t, connect.NATSConfig{URL: strings.Replace(url, "nats://", "tls://", 1)})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CA", "system's roots")
	// No TLS settings against a server that requires TLS: nats.go
	// upgrades, and the system's roots do not know the CA.
	_, err = connectNATS(t, connect.NATSConfig{URL: url})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CA", "system's roots")

	_, err = connectNATS(t, connect.NATSConfig{URL: url, TLSCA: filepath.Join(t.TempDir(), "none.pem")})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CA")
	_, err = connectNATS(t, connect.NATSConfig{URL: url, TLSCA: writeFile(t, "empty.pem", "nothing here\n")})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CA", "no PEM certificate")
}

func TestNATSMutualTLS(t *testing.T) {
	ca := newCA(t, "nats")
	cert, key := ca.issue(t, "nats-server")
	clientCert, clientKey := ca.issue(t, "worker")
	url := startNATS(t, fmt.Sprintf(`tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }`, cert, key, ca.CertPEM))

	nc, err := connectNATS(t, connect.NATSConfig{URL: url, TLSCA: ca.CertPEM, TLSCert: clientCert, TLSKey: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	usable(t, nc)
	// Without a client certificate the server refuses, promptly.
	if _, err := connectNATS(t, connect.NATSConfig{URL: url, TLSCA: ca.CertPEM}); err == nil {
		t.Error("connected without a client certificate")
	}
	_, err = connectNATS(t, connect.NATSConfig{URL: url, TLSCA: ca.CertPEM, TLSCert: clientCert})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_KEY")
	_, err = connectNATS(t, connect.NATSConfig{URL: url, TLSCA: ca.CertPEM, TLSCert: clientCert, TLSKey: cert})
	wantConfigError(t, err, "ACMEQ_NATS_TLS_CERT/ACMEQ_NATS_TLS_KEY")
}

// A server that accepts the TCP connection and never speaks: the connect
// timeout ends the wait.
func TestNATSConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	c := connect.NATSConfig{URL: "nats://" + ln.Addr().String(), ConnectTimeout: 500 * time.Millisecond}
	_, err = bounded(t, badInputLimit, func() (*nats.Conn, error) { return c.Connect("acmeq-test") })
	if err == nil || !strings.Contains(err.Error(), "ACMEQ_NATS_URL") {
		t.Errorf("Connect to a silent server = %v, want an error naming ACMEQ_NATS_URL", err)
	}
}

func TestNATSConfigValidate(t *testing.T) {
	nkeyFile := writeFile(t, "x.nk", "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY\n")
	for _, tc := range []struct {
		name string
		cfg  connect.NATSConfig
		v    string
	}{
		{"two ways to authenticate", connect.NATSConfig{User: "a", Password: "b", Token: "c"}, "ACMEQ_NATS_TOKEN"},
		{"user without password", connect.NATSConfig{User: "a"}, "ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD"},
		{"password without user", connect.NATSConfig{Password: "a"}, "ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD"},
		{"URL credentials and variables", connect.NATSConfig{URL: "nats://u:p@127.0.0.1:4222", Token: "t"}, "ACMEQ_NATS_URL"},
		{"bad scheme", connect.NATSConfig{URL: "http://127.0.0.1:4222"}, "ACMEQ_NATS_URL"},
		{"no host", connect.NATSConfig{URL: "nats://"}, "ACMEQ_NATS_URL"},
		{"creds and nkey", connect.NATSConfig{Creds: nkeyFile, NKey: nkeyFile}, "ACMEQ_NATS_CREDS"},
		{"key without cert", connect.NATSConfig{TLSKey: nkeyFile}, "ACMEQ_NATS_TLS_CERT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantConfigError(t, tc.cfg.Validate(), tc.v)
		})
	}
	if err := (connect.NATSConfig{URL: "nats://a:4222, nats://b:4222,tls://c:4443", NKey: nkeyFile}).Validate(); err != nil {
		t.Errorf("valid configuration: %v", err)
	}
	if err := (connect.NATSConfig{}).Validate(); err != nil {
		t.Errorf("zero configuration: %v", err)
	}
}
