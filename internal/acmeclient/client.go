// Package acmeclient wraps golang.org/x/crypto/acme for queue-driven use:
// nothing here sleeps. The library's own retry and polling sleep (about a
// second when the CA sends no Retry-After); acmeq instead returns to the
// queue and comes back with NakWithDelay, so a worker never holds a
// goroutine while the CA works.
package acmeclient

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// UserAgent is sent with every ACME request.
const UserAgent = "acmeq/1"

// Options are what an Issuer says about its CA.
type Options struct {
	DirectoryURL  string
	CABundle      []byte
	SkipTLSVerify bool
	// Timeout bounds each HTTP request. Defaults to 30s.
	Timeout time.Duration
	// Observe, if set, is called after every request with the endpoint
	// (see Endpoint), the status code (0 for a transport error) and the
	// latency.
	Observe Observer
}

// Observer receives one call per HTTP request to the CA.
type Observer func(endpoint string, status int, d time.Duration)

// Endpoint names the ACME resource a URL addresses, for metrics: directory,
// nonce, account, order, authz, challenge, finalize, cert, or other. It
// knows the path shapes of Boulder (Let's Encrypt) and Pebble.
func Endpoint(method, path string) string {
	p := strings.ToLower(path)
	switch {
	case strings.Contains(p, "nonce"):
		return "nonce"
	case strings.Contains(p, "finalize"):
		return "finalize"
	case strings.Contains(p, "authz"):
		return "authz"
	case strings.Contains(p, "chal"):
		return "challenge"
	case strings.Contains(p, "cert"):
		return "cert"
	case strings.Contains(p, "new-order"), strings.Contains(p, "order-plz"):
		return "new-order"
	case strings.Contains(p, "order"):
		return "order"
	case strings.Contains(p, "acct"), strings.Contains(p, "account"), strings.Contains(p, "reg"):
		return "account"
	case strings.HasSuffix(p, "/dir"), strings.HasSuffix(p, "/directory"):
		return "directory"
	}
	return "other"
}

// NewHTTPClient returns the HTTP client for a CA: it pools nonces (see
// nonce.go) and reports every request to o.Observe.
func NewHTTPClient(o Options) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(o.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.CABundle) {
			return nil, errors.New("acmeclient: caBundle holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	if o.SkipTLSVerify {
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // the user asked for it (skipTLSVerify).
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	// nonceTransport is outermost: a nonce it answers from a badNonce
	// response is no request to the CA (nonce.go).
	return &http.Client{Transport: newNonceTransport(&observeTransport{base: tr, observe: o.Observe}), Timeout: timeout}, nil
}

// New returns a Client for key at the CA of o. kid is the account URL when
// known (saves a round trip per request).
func New(o Options, hc *http.Client, key crypto.Signer, kid string) *Client {
	return Wrap(&acme.Client{
		Key:          key,
		HTTPClient:   hc,
		DirectoryURL: o.DirectoryURL,
		UserAgent:    UserAgent,
		KID:          acme.KeyID(kid),
		RetryBackoff: noSleepBackoff,
	})
}

// observeTransport reports every request to the CA to an Observer
// (metrics by endpoint and status).
type observeTransport struct {
	base    http.RoundTripper
	observe Observer
}

func (t *observeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := t.base.RoundTrip(req)
	if t.observe != nil {
		status := 0
		if err == nil {
			status = res.StatusCode
		}
		t.observe(Endpoint(req.Method, req.URL.Path), status, time.Since(start))
	}
	return res, err
}
