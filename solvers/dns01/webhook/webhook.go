// Package webhook presents DNS-01 challenge records through an HTTP
// service, so that users can bridge any DNS API that acmeq has no
// provider for.
//
// # The contract
//
// For each challenge value to add, acmeq sends
//
//	POST {url}/present
//	Content-Type: application/json
//	Authorization: Bearer <token>              (when a bearer token is configured)
//	X-Acmeq-Timestamp: <unix seconds>          (when an HMAC key is configured)
//	X-Acmeq-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">
//
//	{"fqdn":"_acme-challenge.example.com.","zone":"example.com.","value":"<digest>","dnsName":"example.com","wildcard":false}
//
// and, once the authorization is decided, the same body to {url}/cleanup.
// The fields are a [Request]:
//
//   - fqdn: the owner name of the TXT record, fully qualified, in lower
//     case; where the CNAMEs of _acme-challenge.<dnsName> lead when the
//     solver's cnameStrategy is Follow.
//   - zone: the zone fqdn is in, found by SOA queries through the
//     recursive nameservers (as cert-manager's ResolvedZone); omitted when
//     the solver was built without a resolver.
//   - value: the TXT value, the challenge's key authorization digest.
//   - dnsName, wildcard: the name being validated ("example.com" and true
//     for "*.example.com").
//
// The service answers 2xx once the value is added (present) or removed
// (cleanup), anything else on failure; acmeq retries later and shows the
// status and the start of the body in the challenge's reason. The service
// must:
//
//   - add or remove that one value and keep every other value at fqdn: a
//     name and its wildcard are validated at the same fqdn, with two values
//     at once;
//   - be idempotent: presenting a value already there and cleaning up one
//     that is not there both succeed (any acmeq worker may repeat a call
//     after a crash);
//   - answer within the solver's timeout (30s by default).
//
// The HMAC signature covers the timestamp, so a receiver should reject
// timestamps far from its clock (the [Handler] here allows five minutes)
// to stop replays. [Handler] implements the receiving side on top of any
// [dns01.RecordProvider], for services written in Go.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// Defaults and limits of [Config].
const (
	// DefaultTimeout bounds one call to the service.
	DefaultTimeout = 30 * time.Second
	// BodyLimit is how many bytes of a failed answer's body an error
	// quotes.
	BodyLimit = 512
	// SignatureHeader carries the HMAC-SHA256 signature, "sha256=<hex>".
	SignatureHeader = "X-Acmeq-Signature"
	// TimestampHeader carries the signing time in Unix seconds.
	TimestampHeader = "X-Acmeq-Timestamp"
)

// ErrStatus is wrapped by the error of a call the service answered with a
// status other than 2xx; the error is a [*StatusError].
var ErrStatus = errors.New("webhook: service answered an error")

// StatusError is a non-2xx answer of the service.
type StatusError struct {
	// Op is "present" or "cleanup"; URL is the URL called.
	Op, URL string
	// Status is the HTTP status, e.g. "500 Internal Server Error".
	Status string
	// Code is the HTTP status code.
	Code int
	// Body is the start of the answer's body, at most BodyLimit bytes.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook: %s %s: service answered %s", e.Op, e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Unwrap returns ErrStatus.
func (e *StatusError) Unwrap() error { return ErrStatus }

// Request is the JSON body of a present or cleanup call.
type Request struct {
	FQDN     string `json:"fqdn"`
	Zone     string `json:"zone,omitempty"`
	Value    string `json:"value"`
	DNSName  string `json:"dnsName"`
	Wildcard bool   `json:"wildcard"`
}

// Config configures a [Provider].
type Config struct {
	// URL is the service's base URL, http or https; /present and /cleanup
	// are appended to its path. Required.
	URL string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	// Defaults to "" (no Authorization header).
	BearerToken string
	// HMACKey, when set, signs every request (see the package doc).
	// Defaults to nil (no signature).
	HMACKey []byte
	// CABundle is PEM CA certificates trusted for the service's TLS in
	// addition to the system's. Defaults to nil (the system's only).
	CABundle []byte
	// Timeout bounds each call, zone lookup included. Defaults to
	// DefaultTimeout (30s).
	Timeout time.Duration
	// Resolver finds the zone of each record for the request's zone
	// field; a record whose zone cannot be found is not sent and fails
	// with an error wrapping dns01.ErrZoneNotFound. Defaults to nil (no
	// lookup, zone omitted).
	Resolver *dns01.Resolver
	// Transport sends the requests. Defaults to a clone of
	// http.DefaultTransport with CABundle's roots.
	Transport http.RoundTripper
	// Now is the clock of the signature's timestamp. Defaults to time.Now.
	Now func() time.Time
}

// Provider calls a webhook service to present and clean up challenge
// records. It is a [dns01.Provider] and a [dns01.RecordProvider] (so that
// [dns01.CNAMEFollowing] can use it) and is safe for concurrent use.
type Provider struct {
	base     *url.URL
	token    string
	key      []byte
	timeout  time.Duration
	resolver *dns01.Resolver
	client   *http.Client
	now      func() time.Time
}

var (
	_ dns01.Provider       = (*Provider)(nil)
	_ dns01.RecordProvider = (*Provider)(nil)
	_ solvers.Solver       = (*Provider)(nil)
)

// New returns a Provider configured by cfg, or an error naming the invalid
// field. It does not call the service.
func New(cfg Config) (*Provider, error) {
	if cfg.URL == "" {
		return nil, errors.New("webhook: url is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: url %q must be an absolute http or https URL", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("webhook: url %q must have no query or fragment", cfg.URL)
	}
	if strings.ContainsAny(cfg.BearerToken, "\r\n") {
		return nil, errors.New("webhook: the bearer token must be one line")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("webhook: negative timeout %s", cfg.Timeout)
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if len(cfg.CABundle) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(cfg.CABundle) {
				return nil, errors.New("webhook: caBundle holds no PEM certificate")
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = t
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Provider{
		base:     u,
		token:    cfg.BearerToken,
		key:      append([]byte(nil), cfg.HMACKey...),
		timeout:  timeout,
		resolver: cfg.Resolver,
		// Redirects would resend the signed body elsewhere: refuse them.
		client: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		now:    now,
	}, nil
}

// Present asks the service to add ch's value at its challenge record name.
func (p *Provider) Present(ctx context.Context, ch solvers.Challenge) error {
	r, err := dns01.RecordOf(ch)
	if err != nil {
		return err
	}
	return p.PresentRecord(ctx, r)
}

// CleanUp asks the service to remove ch's value at its challenge record
// name.
func (p *Provider) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	r, err := dns01.RecordOf(ch)
	if err != nil {
		return err
	}
	return p.CleanUpRecord(ctx, r)
}

// PresentRecord calls {url}/present for r.
func (p *Provider) PresentRecord(ctx context.Context, r dns01.Record) error {
	return p.call(ctx, "present", r)
}

// CleanUpRecord calls {url}/cleanup for r.
func (p *Provider) CleanUpRecord(ctx context.Context, r dns01.Record) error {
	return p.call(ctx, "cleanup", r)
}

// endpoint returns the URL of op.
func (p *Provider) endpoint(op string) string {
	u := *p.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + op
	u.RawPath = ""
	return u.String()
}

func (p *Provider) call(ctx context.Context, op string, r dns01.Record) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req := Request{FQDN: r.FQDN, Value: r.Value, DNSName: r.DNSName, Wildcard: r.Wildcard}
	if p.resolver != nil {
		zone, err := p.resolver.FindZone(ctx, r.FQDN)
		if err != nil {
			// "webhook: present X: no zone found ...", without dns01's prefix
			// in the middle, still wrapping dns01.ErrZoneNotFound.
			return &lookupError{msg: fmt.Sprintf("webhook: %s %s: %s", op, r.FQDN, strings.TrimPrefix(err.Error(), "dns01: ")), err: err}
		}
		req.Zone = zone
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("webhook: %s: %w", op, err)
	}
	endpoint := p.endpoint(op)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %s: %w", op, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "acmeq-dns01-webhook")
	if p.token != "" {
		hr.Header.Set("Authorization", "Bearer "+p.token)
	}
	if len(p.key) > 0 {
		ts := strconv.FormatInt(p.now().Unix(), 10)
		hr.Header.Set(TimestampHeader, ts)
		hr.Header.Set(SignatureHeader, Sign(p.key, ts, body))
	}
	resp, err := p.client.Do(hr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("webhook: %s %s: no answer within %s: %w", op, endpoint, p.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("webhook: %s %s: %w", op, endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, BodyLimit+1))
	return &StatusError{Op: op, URL: endpoint, Status: resp.Status, Code: resp.StatusCode, Body: truncate(b)}
}

// truncate returns b as one line of text of at most BodyLimit bytes, with
// "..." when it was cut.
func truncate(b []byte) string {
	cut := len(b) > BodyLimit
	if cut {
		b = b[:BodyLimit]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if cut {
		s += "..."
	}
	return s
}

// Sign returns the signature header value of body sent at timestamp (Unix
// seconds, as in TimestampHeader): "sha256=" and the hex HMAC-SHA256, with
// key, of timestamp + "." + body.
func Sign(key []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// lookupError is a failed zone lookup, with a message of its own.
type lookupError struct {
	msg string
	err error
}

func (e *lookupError) Error() string { return e.msg }
func (e *lookupError) Unwrap() error { return e.err }
