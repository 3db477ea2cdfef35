package stack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

const (
	// pebbleKeyAlg is the key algorithm of Pebble's root and intermediate.
	pebbleKeyAlg = "ecdsa"
	// pebbleChainLength is the number of intermediates between Pebble's
	// root and the leaf certificates it issues (root -> intermediate ->
	// leaf). It is what cmd/pebble uses by default; ca.New panics on 0.
	pebbleChainLength = 1
	// pebbleCAAIdentity is the CAA identity cmd/pebble uses by default.
	pebbleCAAIdentity = "pebble.letsencrypt.org"
	// pebbleHTTPTimeout bounds requests made by Pebble.HTTPClient.
	pebbleHTTPTimeout = 30 * time.Second
)

// PebbleConfig configures StartPebble.
type PebbleConfig struct {
	// HTTPPort is the port Pebble's VA dials for HTTP-01 validation.
	HTTPPort int
	// TLSPort is the port Pebble's VA dials for TLS-ALPN-01 validation.
	TLSPort int
	// DNSAddr is the host:port of the DNS server Pebble's VA queries (over
	// TCP, AAAA before A) to resolve identifiers and read TXT records. If
	// empty, the VA uses the system resolver.
	DNSAddr string
	// Logger receives Pebble's logs; nil discards them.
	Logger *log.Logger
	// OrderRetryAfter is the Retry-After, in seconds, Pebble sends with
	// orders that are still processing.
	OrderRetryAfter int
	// AuthzRetryAfter is the Retry-After, in seconds, Pebble sends with
	// authorizations that are still pending.
	AuthzRetryAfter int
	// Profiles are the ACME profiles Pebble offers (RFC draft
	// "ACME profiles"), by name. Defaults to one profile "default" with
	// Pebble's default validity. An order that names no profile gets a
	// random one of these (Pebble's chaos), so a test that wants one
	// validity offers one profile or names it on the Issuer.
	Profiles map[string]PebbleProfile
	// RequireEAB makes new-account require External Account Binding.
	RequireEAB bool
	// EABKeys are the External Account Binding keys Pebble accepts, key ID
	// to base64url HMAC key (as cmd/pebble's externalAccountMACKeys).
	EABKeys map[string]string
	// BlockedDomains are refused by policy at new-order (the problem
	// rejectedIdentifier), with their subdomains, as cmd/pebble's
	// domainBlocklist.
	BlockedDomains []string
	// NonceRejectPercent is the share of valid nonces Pebble rejects as
	// badNonce (PEBBLE_WFE_NONCEREJECT). Defaults to 0.
	NonceRejectPercent int
	// Unserialized lets Pebble's ACME handler serve requests concurrently.
	// Pebble v2.10.1's in-memory store can deadlock then (see
	// serialized); only a benchmark that patches Pebble should set it.
	Unserialized bool
}

// PebbleProfile is one ACME profile of Pebble.
type PebbleProfile struct {
	// Description is shown in the directory's meta.profiles.
	Description string
	// Validity of the certificates issued under the profile. Pebble's
	// precision is a second; zero selects Pebble's default (about 5 days).
	Validity time.Duration
}

// Pebble is an in-process Pebble ACME CA serving its ACME API and its
// management API over HTTPS on random ports of 127.0.0.1.
type Pebble struct {
	// DirectoryURL is the ACME directory, e.g. https://127.0.0.1:41234/dir.
	DirectoryURL string
	// ManagementURL is the base URL of Pebble's management API, e.g.
	// https://127.0.0.1:41235 (roots are at /roots/0, intermediates at
	// /intermediates/0).
	ManagementURL string
	// TLSCertPEM is the self-signed certificate of both HTTPS listeners;
	// clients must trust it to talk to Pebble.
	TLSCertPEM []byte

	ca   *ca.CAImpl
	acme *http.Server
	mgmt *http.Server
}

// StartPebble starts a Pebble ACME CA with an in-memory database, ECDSA
// keys, one intermediate and the default profile.
//
// Pebble's VA and WFE read their tuning from the environment when they are
// constructed, so StartPebble sets, for the whole process:
// PEBBLE_VA_NOSLEEP=1 (validate at once instead of sleeping up to 5s),
// PEBBLE_WFE_NONCEREJECT=cfg.NonceRejectPercent (0: don't reject 5% of
// valid nonces) and
// PEBBLE_AUTHZREUSE=0 (reuse a valid authorization of the same account only
// 1% of the time: Pebble reuses when rand.Intn(100) <= percent).
func StartPebble(cfg PebbleConfig) (*Pebble, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	cert, certPEM, err := selfSignedCert()
	if err != nil {
		return nil, err
	}

	caImpl, wfeImpl, err := newPebbleCore(cfg, logger)
	if err != nil {
		return nil, err
	}
	handler := wfeImpl.Handler()
	if !cfg.Unserialized {
		handler = serialized(handler)
	}

	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	acmeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("stack: pebble: listen: %w", err)
	}
	mgmtLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = acmeLn.Close()
		return nil, fmt.Errorf("stack: pebble: listen management: %w", err)
	}

	p := &Pebble{
		DirectoryURL:  "https://" + acmeLn.Addr().String() + wfe.DirectoryPath,
		ManagementURL: "https://" + mgmtLn.Addr().String(),
		TLSCertPEM:    certPEM,
		ca:            caImpl,
		acme:          newPebbleServer(handler, tlsConfig, logger),
		mgmt:          newPebbleServer(wfeImpl.ManagementHandler(), tlsConfig, logger),
	}
	go serveTLS(p.acme, acmeLn, logger)
	go serveTLS(p.mgmt, mgmtLn, logger)
	return p, nil
}

// newPebbleCore wires Pebble's CA, VA and WFE like cmd/pebble does, turning
// the panics of ca.New into an error.
func newPebbleCore(cfg PebbleConfig, logger *log.Logger) (caImpl *ca.CAImpl, wfeImpl *wfe.WebFrontEndImpl, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("stack: pebble: %v", r)
		}
	}()
	store := db.NewMemoryStore()
	for _, d := range cfg.BlockedDomains {
		if err := store.AddBlockedDomain(d); err != nil {
			return nil, nil, fmt.Errorf("stack: pebble: blocked domain %q: %w", d, err)
		}
	}
	for id, key := range cfg.EABKeys {
		if err := store.AddExternalAccountKeyByID(id, key); err != nil {
			return nil, nil, fmt.Errorf("stack: pebble: EAB key %q: %w", id, err)
		}
	}
	profiles := map[string]ca.Profile{
		// ValidityPeriod 0 selects Pebble's default.
		"default": {Description: "The default profile"},
	}
	if len(cfg.Profiles) > 0 {
		profiles = map[string]ca.Profile{}
		for name, p := range cfg.Profiles {
			profiles[name] = ca.Profile{Description: p.Description, ValidityPeriod: uint64(p.Validity / time.Second)}
		}
	}
	caImpl = ca.New(logger, store, "", pebbleKeyAlg, 0, pebbleChainLength, profiles)
	// The VA and WFE read their tuning from the environment when they are
	// built; the lock keeps two Pebbles starting at once (parallel tests)
	// from reading each other's values.
	pebbleEnvMu.Lock()
	defer pebbleEnvMu.Unlock()
	for k, v := range map[string]string{
		"PEBBLE_VA_NOSLEEP":      "1",
		"PEBBLE_WFE_NONCEREJECT": strconv.Itoa(cfg.NonceRejectPercent),
		"PEBBLE_AUTHZREUSE":      "0",
	} {
		if err := os.Setenv(k, v); err != nil {
			return nil, nil, fmt.Errorf("stack: pebble: set %s: %w", k, err)
		}
	}
	vaImpl := va.New(logger, cfg.HTTPPort, cfg.TLSPort, false, cfg.DNSAddr, store)
	w := wfe.New(logger, store, vaImpl, caImpl, []string{pebbleCAAIdentity},
		false, cfg.RequireEAB, cfg.AuthzRetryAfter, cfg.OrderRetryAfter)
	return caImpl, &w, nil
}

var pebbleEnvMu sync.Mutex

// newPebbleServer returns an HTTPS server for h.
// serialized runs one ACME request at a time. Pebble v2.10.1's in-memory
// store can deadlock under concurrent requests: FindValidAuthorization (on
// every new-order) holds the store's read lock while taking each
// authorization's lock, while other handlers hold an authorization's lock
// and wait for the store's, and Go's RWMutex blocks new readers behind a
// waiting writer. Seen here with a few hundred concurrent orders. With one
// request at a time no two handlers can form that cycle (the validator's
// goroutines take authorization locks only). Pebble is CPU-bound on one
// process anyway, so this costs little; every client, acmeq and the bare
// baseline of the benchmark alike, goes through it.
func serialized(h http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func newPebbleServer(h http.Handler, tlsConfig *tls.Config, logger *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          logger,
	}
}

// serveTLS serves srv on ln until srv is closed.
func serveTLS(srv *http.Server, ln net.Listener, logger *log.Logger) {
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Printf("stack: pebble: serve %s: %v", ln.Addr(), err)
	}
}

// RootPEM returns the PEM-encoded root certificate of the chain Pebble
// issues from. Leaf certificates chain to it through one intermediate, which
// Pebble sends along with the leaf.
func (p *Pebble) RootPEM() ([]byte, error) {
	root := p.ca.GetRootCert(0)
	if root == nil || len(root.DER) == 0 {
		return nil, errors.New("stack: pebble: no root certificate")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.DER}), nil
}

// HTTPClient returns a new HTTP client that trusts Pebble's listener
// certificate (TLSCertPEM) and nothing else, suitable for ACME clients.
func (p *Pebble) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.TLSCertPEM)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: pebbleHTTPTimeout,
		Transport: &http.Transport{
			Proxy:                 nil, // Pebble is on loopback
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          128,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: pebbleHTTPTimeout,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// Close stops both HTTPS listeners. Pebble's VA keeps one idle goroutine
// that cannot be stopped.
func (p *Pebble) Close() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*http.Server{p.acme, p.mgmt} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
}

// selfSignedCert returns an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost, valid for a year, and its PEM encoding.
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("stack: pebble: generate tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("stack: pebble: tls serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "acmeq stack pebble"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("stack: pebble: create tls certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("stack: pebble: parse tls certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
