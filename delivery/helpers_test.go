package delivery

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// env is a real NATS JetStream with acmeq's buckets (created as a worker
// does), a store to write Certificates and Secrets the way the workers do,
// and a test CA to issue certificates from.
type env struct {
	nats   *stack.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.Store
	sealer *store.Sealer
	key    []byte
	ca     *testCA
}

func setup(t *testing.T) *env {
	t.Helper()
	n, err := stack.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	e := &env{nats: n}
	e.connect(t)
	return e
}

func (e *env) connect(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(e.nats.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	e.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.key == nil {
		e.key = make([]byte, 32)
		_, _ = rand.Read(e.key)
	}
	e.sealer, _ = store.NewSealer(e.key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.st, err = store.Open(ctx, e.js, e.sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if e.ca == nil {
		e.ca = newTestCA(t)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// putCertificate creates or replaces a Certificate.
func (e *env) putCertificate(t *testing.T, ns, name string, lbls map[string]string, dnsNames ...string) {
	t.Helper()
	ctx := ctxT(t)
	c := &messages.Certificate{
		Metadata: messages.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:     messages.CertificateSpec{SecretName: name, DNSNames: dnsNames, IssuerRef: messages.IssuerRef{Name: "dev"}},
	}
	old := &messages.Certificate{}
	if err := e.st.Get(ctx, ns, name, old); err == nil {
		c.Metadata.ResourceVersion = old.Metadata.ResourceVersion
		c.Metadata.CreationTimestamp = old.Metadata.CreationTimestamp
		if err := e.st.Update(ctx, c); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := e.st.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// issue writes the Secret of ns/name as the worker does on issuance: a
// fresh key and a certificate for dnsNames from the test CA. It returns
// the serial.
func (e *env) issue(t *testing.T, ns, name string, dnsNames ...string) string {
	t.Helper()
	chain, key, serial := e.ca.issue(t, dnsNames...)
	e.putSecret(t, ns, name, map[string][]byte{messages.SecretTLSCert: chain, messages.SecretTLSKey: key, messages.SecretCACert: e.ca.pem})
	return serial
}

func (e *env) putSecret(t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	owner := &messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: name}
	if err := e.st.PutSecret(ctxT(t), ns, name, data, owner); err != nil {
		t.Fatal(err)
	}
}

// testCA issues leaf certificates signed by an intermediate, as an ACME
// CA's chain: tls.crt is leaf + intermediate, ca.crt the root.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	pem               []byte // the root
	interPEM          []byte
	serial            int64
	mu                sync.Mutex
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{rootKey: newKey(t), interKey: newKey(t), serial: 1000}
	now := time.Now()
	rootT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acmeq test root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rootT, rootT, ca.rootKey.Public(), ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ca.root, _ = x509.ParseCertificate(der)
	ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	interT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "acmeq test intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err = x509.CreateCertificate(rand.Reader, interT, ca.root, ca.interKey.Public(), ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ca.inter, _ = x509.ParseCertificate(der)
	ca.interPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// issue returns a chain (leaf, intermediate), the leaf's PKCS#8 key and
// its serial in hex.
func (ca *testCA) issue(t *testing.T, dnsNames ...string) (chain, key []byte, serial string) {
	t.Helper()
	ca.mu.Lock()
	ca.serial++
	sn := big.NewInt(ca.serial)
	ca.mu.Unlock()
	k := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: sn, DNSNames: dnsNames, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Duration(ca.serial%50+1) * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.inter, k.Public(), ca.interKey)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	chain = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.interPEM...)
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), fmt.Sprintf("%x", sn)
}

// pair is what a reader finds in dir/ns/name.
type pair struct {
	serial  string
	version string // the directory the symlink names
	names   []string
}

// readPair resolves dir/ns/name once and reads tls.crt and tls.key from
// the version it names, as a careful reader does; it fails the test unless
// they form a matching pair whose chain verifies against roots (if given)
// and tls.pem holds the same key and chain.
func readPair(t *testing.T, dir, ns, name string, roots *x509.CertPool) pair {
	t.Helper()
	p, err := checkPair(dir, ns, name, roots)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkPair(dir, ns, name string, roots *x509.CertPool) (pair, error) {
	target, err := os.Readlink(filepath.Join(dir, ns, name))
	if err != nil {
		return pair{}, err
	}
	vdir := filepath.Join(dir, ns, target)
	crt, err := os.ReadFile(filepath.Join(vdir, FileCert))
	if err != nil {
		return pair{}, err
	}
	key, err := os.ReadFile(filepath.Join(vdir, FileKey))
	if err != nil {
		return pair{}, err
	}
	b, err := newBundle(map[string][]byte{messages.SecretTLSCert: crt, messages.SecretTLSKey: key})
	if err != nil {
		return pair{}, fmt.Errorf("%s: %w", vdir, err)
	}
	combined, err := os.ReadFile(filepath.Join(vdir, FilePEM))
	if err != nil {
		return pair{}, err
	}
	if !bytes.Equal(combined, append(append([]byte{}, key...), crt...)) {
		return pair{}, fmt.Errorf("%s: tls.pem is not tls.key followed by tls.crt", vdir)
	}
	if roots != nil {
		chain, _ := parseChain(crt)
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := b.leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return pair{}, fmt.Errorf("%s: %w", vdir, err)
		}
	}
	return pair{serial: serialHex(b.leaf), version: target, names: b.leaf.DNSNames}, nil
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// running is an Agent running in the test's process.
type running struct {
	a    *Agent
	reg  *prometheus.Registry
	done chan error
	stop context.CancelFunc
	log  *logBuffer
}

// start runs an Agent with cfg until the test ends (or stop is called).
func (e *env) start(t *testing.T, cfg Config) *running {
	t.Helper()
	r := &running{reg: prometheus.NewRegistry(), done: make(chan error, 1), log: &logBuffer{}}
	cfg.Registerer = r.reg
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(r.log, testWriter{t}), nil))
	if cfg.Debounce == 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	a, err := New(e.js, e.sealer, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop within 30s")
		}
	})
	return r
}

// once runs an Agent with cfg and Once set, and returns the metrics
// registry, the logs and Run's error.
func (e *env) once(t *testing.T, cfg Config) (*prometheus.Registry, string, error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	cfg.Once = true
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), nil))
	a, err := New(e.js, e.sealer, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(ctxT(t))
	return reg, logs.String(), err
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	stacktest.EventuallyTrue(t, timeout, what, cond)
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testWriter sends log lines to t.Log (visible with -v or on failure).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
