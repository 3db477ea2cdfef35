package http01

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/acmeq/acmeq/solvers"
)

// Defaults for [SelfCheckConfig].
const (
	// DefaultSelfCheckPort is the port a self check dials: the one ACME
	// servers use for HTTP-01.
	DefaultSelfCheckPort = 80
	// DefaultSelfCheckTimeout bounds one self check, redirects and reading
	// the body included.
	DefaultSelfCheckTimeout = 10 * time.Second
)

const (
	// maxRedirects is how many redirects a self check follows, as many as
	// Let's Encrypt (Boulder) and Pebble do.
	maxRedirects = 10
	// maxBodySize is how much of a response body a self check reads. A key
	// authorization is under 300 bytes; anything longer cannot match.
	maxBodySize = 64 << 10
	// maxShownBody is how much of a mismatched body an error quotes.
	maxShownBody = 64
	// userAgent identifies self check requests in responders' access logs.
	userAgent = "acmeq-http01-self-check"
)

// ErrSelfCheckFailed is wrapped by every error [SelfCheck.Check] returns
// because the challenge could not be observed: the request failed, the
// status was not 200, or the body was not the key authorization. It is not
// wrapped by errors about the challenge or configuration itself, nor when
// the caller's context ends, so callers can tell "not propagated yet, try
// again" from "will never work".
var ErrSelfCheckFailed = errors.New("http01: self check failed")

// SelfCheckConfig configures a [SelfCheck]. The zero value is ready to use.
type SelfCheckConfig struct {
	// Port is the TCP port dialed for http:// URLs, which name port 80. An
	// https:// URL reached by a redirect is dialed on port 443 regardless.
	// Defaults to DefaultSelfCheckPort (80).
	Port int

	// Timeout bounds each call to Check, from dialing to reading the body
	// of the last redirect. Defaults to DefaultSelfCheckTimeout (10s).
	Timeout time.Duration

	// Resolve maps a host name from a challenge or redirect URL to the IP
	// address (or other host) to dial; the request itself keeps the name in
	// its URL and Host header. Tests use it to point names at 127.0.0.1.
	// Defaults to nil, which dials the name itself through the system
	// resolver.
	Resolve func(ctx context.Context, host string) (string, error)
}

// SelfCheck verifies that an HTTP-01 challenge is being served, by fetching
//
//	http://<DNSName>/.well-known/acme-challenge/<Token>
//
// the way an ACME server does and comparing the body with the key
// authorization. Like Let's Encrypt it follows up to 10 redirects to http or
// https URLs on the default ports, ignores certificate errors after a
// redirect to https, ignores trailing whitespace in the body, and uses no
// proxy. It implements [solvers.SelfChecker] and is safe for concurrent use.
//
// Its error messages match cert-manager's, so that they can be shown to
// users as the reason a challenge is not yet ready.
type SelfCheck struct {
	client  *http.Client
	port    string
	timeout time.Duration
	resolve func(ctx context.Context, host string) (string, error)
}

var _ solvers.SelfChecker = (*SelfCheck)(nil)

// NewSelfCheck returns a SelfCheck configured by cfg, or an error if cfg is
// invalid.
func NewSelfCheck(cfg SelfCheckConfig) (*SelfCheck, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultSelfCheckPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("http01: self check port %d out of range", cfg.Port)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultSelfCheckTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("http01: negative self check timeout %s", cfg.Timeout)
	}
	s := &SelfCheck{
		port:    strconv.Itoa(cfg.Port),
		timeout: cfg.Timeout,
		resolve: cfg.Resolve,
	}
	s.client = &http.Client{
		Transport: &http.Transport{
			Proxy:       nil, // the ACME server connects directly
			DialContext: s.dial,
			// Let's Encrypt accepts any certificate after a redirect to
			// https; so must the self check, or it would block issuance
			// that would have succeeded.
			TLSClientConfig:        &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			TLSHandshakeTimeout:    cfg.Timeout,
			DisableKeepAlives:      true, // every check sees current routing
			MaxResponseHeaderBytes: maxBodySize,
		},
		CheckRedirect: checkRedirect,
	}
	return s, nil
}

// dial connects to addr's host, mapped through Resolve, on s.port for port
// 80 and on addr's own port otherwise.
func (s *SelfCheck) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if port == "80" {
		port = s.port
	}
	if s.resolve != nil {
		resolved, err := s.resolve(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		if resolved == "" {
			return nil, fmt.Errorf("resolving %s: no address", host)
		}
		host = resolved
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort(host, port))
}

// checkRedirect allows the redirects an ACME server follows.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %q: only http and https are allowed", req.URL.Redacted())
	}
	if p := req.URL.Port(); p != "" && p != "80" && p != "443" {
		return fmt.Errorf("redirect to %q: only ports 80 and 443 are allowed", req.URL.Redacted())
	}
	return nil
}

// selfCheckError is a failed self check. Its message is "http01: " and
// cert-manager's wording for the failure.
type selfCheckError struct {
	reason string
	cause  error // may be nil
}

func (e *selfCheckError) Error() string { return "http01: " + e.reason }

func (e *selfCheckError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrSelfCheckFailed}
	}
	return []error{ErrSelfCheckFailed, e.cause}
}

// Check fetches ch's challenge URL and returns nil if the response is 200
// with ch.Key as its body. Otherwise it returns an error wrapping
// [ErrSelfCheckFailed] that reads, after the "http01: " prefix, like
// cert-manager's:
//
//	failed to perform self check GET request 'http://example.com/.well-known/acme-challenge/TOKEN': <cause>
//	wrong status code '404', expected '200'
//	did not get expected response when querying endpoint, expected "KEY" but got: "<first 64 characters>"
//
// Check returns an error not wrapping ErrSelfCheckFailed for a challenge
// HTTP-01 cannot solve (wrapping [ErrUnsupportedChallenge] or
// [ErrInvalidToken]), and one wrapping ctx.Err() when ctx ends first.
func (s *SelfCheck) Check(ctx context.Context, ch solvers.Challenge) error {
	if err := validateChallenge(ch); err != nil {
		return err
	}
	if ch.DNSName == "" {
		return fmt.Errorf("http01: self check of token %q: empty DNS name", ch.Token)
	}
	host := ch.DNSName
	if strings.Contains(host, ":") { // an IPv6 address identifier (RFC 8738)
		host = "[" + host + "]"
	}
	u := (&url.URL{Scheme: "http", Host: host, Path: ChallengePath + ch.Token}).String()

	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("http01: self check of %q: %w", ch.DNSName, err)
	}
	req.Header.Set("User-Agent", userAgent)

	resp, err := s.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
	}
	var body []byte
	if err == nil && resp.StatusCode == http.StatusOK {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBodySize))
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("http01: self check GET request %q: %w", u, ctx.Err())
		}
		var uerr *url.Error // its message repeats the URL; ours already has it
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no response within %s: %w", s.timeout, err)
		}
		return &selfCheckError{
			reason: fmt.Sprintf("failed to perform self check GET request '%s': %v", u, err),
			cause:  err,
		}
	}
	if resp.StatusCode != http.StatusOK {
		return &selfCheckError{
			reason: fmt.Sprintf("wrong status code '%d', expected '%d'", resp.StatusCode, http.StatusOK),
		}
	}
	// RFC 8555, section 8.3: "The server SHOULD ignore whitespace characters
	// at the end of the body."
	got := strings.TrimRight(string(body), " \t\r\n")
	if got != ch.Key {
		shown := quoteTruncated(got, maxShownBody)
		return &selfCheckError{
			reason: fmt.Sprintf("did not get expected response when querying endpoint, expected %q but got: %s", ch.Key, shown),
		}
	}
	return nil
}
