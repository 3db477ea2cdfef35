package dev

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// IssuerReadyTimeout bounds how long CreateIssuerIn waits for a worker to
// register the issuer's account.
const IssuerReadyTimeout = 30 * time.Second

// CreateIssuerIn applies an ACME Issuer name in namespace ns for the local
// Pebble, with the given solvers (one HTTP-01 solver when none is given),
// and waits until a worker has registered its account. Issuers are
// namespaced: a Certificate names an issuer of its own namespace.
//
// The issuer reaches Pebble through SerialACME, which lets one ACME
// request through at a time: Pebble deadlocks under concurrent load (see
// SerialACME), which the hundreds of certificates of a stress test reach.
func (env *Env) CreateIssuerIn(ctx context.Context, ns, name string, solvers ...messages.ACMESolver) error {
	if len(solvers) == 0 {
		solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
	dir, caPEM, err := env.SerialACME()
	if err != nil {
		return err
	}
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: name, Namespace: ns},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:              dir,
			Email:               "dev@acmeq.test",
			PrivateKeySecretRef: messages.SecretRef{Name: name + "-account-key"},
			CABundle:            caPEM,
			Solvers:             solvers,
		}},
	}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		return fmt.Errorf("dev: create issuer %s/%s: %w", ns, name, err)
	}
	return env.WaitIssuerReady(ctx, ns, name)
}

// WaitIssuerReady waits until the Issuer ns/name is Ready, fails (its
// Ready condition is False) or IssuerReadyTimeout passes.
func (env *Env) WaitIssuerReady(ctx context.Context, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, IssuerReadyTimeout)
	defer cancel()
	for {
		got := &messages.Issuer{}
		if err := env.Store.Get(ctx, ns, name, got); err == nil {
			if messages.IsReady(got.Status.Conditions) {
				return nil
			}
			if c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady); c != nil && c.Status == messages.ConditionFalse {
				return fmt.Errorf("dev: issuer %s/%s is not ready: %s: %s", ns, name, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev: issuer %s/%s did not become ready within %s", ns, name, IssuerReadyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serialFronts holds the SerialACME front of each Env (Env's fields are
// declared in dev.go).
var serialFronts sync.Map // *Env -> *serialFront

type serialFront struct {
	once       sync.Once
	dir, caPEM string
	err        error
	mu         sync.Mutex
}

// SerialACME returns the directory URL and the CA bundle of an HTTPS
// reverse proxy in front of Pebble's ACME API that lets one request
// through at a time. It is started on first use and stopped by Close.
//
// Why: Pebble v2.10.1 deadlocks under concurrent load. Its Authz handler
// holds the authorization's lock while it takes the MemoryStore's read
// lock (wfe.go: authz.Lock, then validPOSTAsGET -> getAcctByKey ->
// m.RLock), while new-order takes them in the other order
// (FindValidAuthorization: m.RLock, then authz.RLock of every
// authorization). With any writer waiting for the MemoryStore (AddChallenge,
// AddCertificate...), sync.RWMutex holds back new readers and the three
// wait for each other forever: every later ACME request hangs. Serialized,
// no two handlers overlap; Pebble's own goroutines (the VA, finalization)
// never wait for another lock while holding the MemoryStore's.
func (env *Env) SerialACME() (dir, caPEM string, err error) {
	v, _ := serialFronts.LoadOrStore(env, &serialFront{})
	f := v.(*serialFront)
	f.once.Do(func() { f.err = f.start(env) })
	return f.dir, f.caPEM, f.err
}

func (f *serialFront) start(env *Env) error {
	target, err := url.Parse(env.Stack.Pebble.DirectoryURL)
	if err != nil {
		return fmt.Errorf("dev: serial acme: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(env.Stack.Pebble.TLSCertPEM) {
		return fmt.Errorf("dev: serial acme: no certificate in Pebble's TLS PEM")
	}
	cert, certPEM, err := loopbackCert()
	if err != nil {
		return err
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			// Pebble builds its URLs from the Host it is asked for: keep
			// the proxy's, so that every URL it hands out comes back here.
			r.Out.Host = r.In.Host
		},
		Transport: tr,
		// A client that gives up (acmeclient.Finalize cancels the request
		// that follows the finalize on purpose) is not worth a log line.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dev: serial acme: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	env.closers = append(env.closers, func() {
		_ = srv.Close()
		tr.CloseIdleConnections()
		serialFronts.Delete(env)
	})
	f.dir = "https://" + ln.Addr().String() + target.Path
	f.caPEM = string(certPEM)
	return nil
}

// loopbackCert is a self-signed certificate for 127.0.0.1 and localhost.
func loopbackCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dev: serial acme: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dev: serial acme: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "acmeq dev serial acme"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("dev: serial acme: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
