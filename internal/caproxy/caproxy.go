// Package caproxy is a reverse proxy in front of an ACME CA (Pebble, in
// tests and the benchmark) that enforces Let's Encrypt's rate limits the
// way Boulder does, on the wire: Let's Encrypt's rate limiting is a
// third-party behaviour we cannot run here, so this speaks its format.
//
// The limits are leaky buckets in Boulder's GCRA form (Count at once, one
// more every Period/Count), usually Let's Encrypt's scaled down in time
// (LetsEncrypt(3600) is 300 new orders per 3 s):
//
//   - new orders per account (the JWS kid), taken at new-order;
//   - certificates per registered domain (public suffix + 1 label of each
//     identifier), checked at new-order and counted when a finalize is
//     accepted;
//   - certificates per exact set of names (duplicates), likewise;
//   - failed validations per account and hostname, checked at new-order
//     and counted when an authorization the client fetches (or a
//     challenge, through its "up" link) comes back invalid;
//   - new accounts per client IP address, taken at new-account when the
//     key is new.
//
// A new order that carries ARI's "replaces" is exempt from all of them,
// as Let's Encrypt exempts it; so, from new orders and certificates per
// domain, is a new order for a set of names issued within RenewalWindow.
//
// Over a limit, the proxy answers as Boulder does: HTTP 429,
// Content-Type application/problem+json, a problem document
// {"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new
// orders (300) from this account in the last 3h0m0s, retry after ...",
// "status":429}, a Retry-After header in seconds and a fresh Replay-Nonce
// from the CA. It reads JWS bodies (flattened JSON) without verifying
// them: the CA behind it does.
//
// The limits can be changed while it runs (SetLimits), so a test can
// lower them behind acmeq's back; Stats counts every request forwarded and
// every 429 sent, per account and per limit. Time comes from Config.Now,
// so tests advance a clock instead of sleeping.
package caproxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/acmeq/acmeq/messages"
)

// ProblemRateLimited is RFC 8555's rateLimited problem type.
const ProblemRateLimited = "urn:ietf:params:acme:error:rateLimited"

// Limit is one leaky bucket; Count 0 is no limit.
type Limit = messages.RateLimitValue

// Limits are the limits the proxy enforces, named as Boulder names them.
type Limits struct {
	NewOrdersPerAccount                     Limit
	CertificatesPerDomain                   Limit
	CertificatesPerFQDNSet                  Limit
	FailedAuthorizationsPerDomainPerAccount Limit
	NewRegistrationsPerIPAddress            Limit
	// RenewalWindow: a new order for a set of names issued within it is a
	// renewal, exempt from NewOrdersPerAccount and CertificatesPerDomain
	// (Boulder looks back 120 days). 0: no such exemption.
	RenewalWindow time.Duration
}

// boulderRenewalWindow is how far back Boulder looks for a renewal.
const boulderRenewalWindow = 120 * 24 * time.Hour

// LetsEncrypt returns Let's Encrypt's published limits with every period
// (and the renewal window) divided by factor: LetsEncrypt(1) is the real
// thing, LetsEncrypt(3600) turns 300 new orders per 3h into 300 per 3s.
func LetsEncrypt(factor int) Limits {
	if factor < 1 {
		factor = 1
	}
	le := messages.LetsEncryptRateLimits
	scale := func(v messages.RateLimitValue) Limit {
		return Limit{Count: v.Count, Period: v.Period / time.Duration(factor)}
	}
	return Limits{
		NewOrdersPerAccount:                     scale(le.NewOrdersPerAccount),
		CertificatesPerDomain:                   scale(le.CertificatesPerRegisteredDomain),
		CertificatesPerFQDNSet:                  scale(le.DuplicateCertificates),
		FailedAuthorizationsPerDomainPerAccount: scale(le.FailedValidations),
		NewRegistrationsPerIPAddress:            scale(le.NewAccountsPerIPAddress),
		RenewalWindow:                           boulderRenewalWindow / time.Duration(factor),
	}
}

// Limit names, as Boulder's ratelimits package names them; the keys of
// Stats.RateLimitedByLimit.
const (
	LimitNewOrdersPerAccount                     = "NewOrdersPerAccount"
	LimitCertificatesPerDomain                   = "CertificatesPerDomain"
	LimitCertificatesPerFQDNSet                  = "CertificatesPerFQDNSet"
	LimitFailedAuthorizationsPerDomainPerAccount = "FailedAuthorizationsPerDomainPerAccount"
	LimitNewRegistrationsPerIPAddress            = "NewRegistrationsPerIPAddress"
)

func (l Limits) of(name string) Limit {
	switch name {
	case LimitNewOrdersPerAccount:
		return l.NewOrdersPerAccount
	case LimitCertificatesPerDomain:
		return l.CertificatesPerDomain
	case LimitCertificatesPerFQDNSet:
		return l.CertificatesPerFQDNSet
	case LimitFailedAuthorizationsPerDomainPerAccount:
		return l.FailedAuthorizationsPerDomainPerAccount
	case LimitNewRegistrationsPerIPAddress:
		return l.NewRegistrationsPerIPAddress
	}
	return Limit{}
}

// Config configures Start.
type Config struct {
	// Upstream is the CA's directory URL, e.g. Pebble's DirectoryURL.
	// Required.
	Upstream string
	// Client reaches Upstream (Pebble.HTTPClient()). Defaults to
	// http.DefaultClient.
	Client *http.Client
	// Limits are the limits enforced at first (see SetLimits). The zero
	// value limits nothing.
	Limits Limits
	// Now is the proxy's clock. Defaults to time.Now.
	Now func() time.Time
	// Logger receives errors of the listener; nil discards them.
	Logger *log.Logger
}

// Stats are the proxy's counters.
type Stats struct {
	// Forwarded counts client requests passed to the CA.
	Forwarded int64
	// RateLimited counts the 429s sent.
	RateLimited int64
	// RateLimitedByAccount counts 429s per account URL (the JWS kid), and
	// per "ip:<address>" for new-account requests.
	RateLimitedByAccount map[string]int64
	// RateLimitedByLimit counts 429s per limit (Limit* names).
	RateLimitedByLimit map[string]int64
	// Issued counts accepted finalizes; FailedValidations counts
	// authorizations seen invalid.
	Issued, FailedValidations int64
}

// Proxy is a running rate-limiting proxy on a loopback HTTPS port.
type Proxy struct {
	// DirectoryURL is the proxy's ACME directory: give it to clients
	// instead of the CA's.
	DirectoryURL string
	// TLSCertPEM is the proxy's self-signed certificate; clients must
	// trust it (see HTTPClient).
	TLSCertPEM []byte

	cfg      Config
	upstream *url.URL
	dir      struct{ newNonce, newAccount, newOrder string } // upstream URLs
	paths    struct{ newAccount, newOrder string }
	rp       *httputil.ReverseProxy
	srv      *http.Server

	mu        sync.Mutex
	limits    Limits
	tats      map[string]time.Time  // bucket -> theoretical arrival time
	orders    map[string]*orderInfo // finalize path -> order
	authzs    map[string]*authzInfo // authorization path -> authorization
	chals     map[string]string     // challenge path -> authorization path
	issued    map[string]time.Time  // set of names -> last issuance
	knownKeys map[string]bool       // JWKs with an account
	stats     Stats
}

type orderInfo struct {
	account string
	names   []string
	exempt  bool // ARI renewal
	renewal bool // set of names issued within the renewal window
	counted bool
}

type authzInfo struct {
	account, identifier string
	counted             bool
}

// Start fetches the CA's directory through cfg.Client and starts the
// proxy on a free port of 127.0.0.1.
func Start(cfg Config) (*Proxy, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("caproxy: Config.Upstream (the CA's directory URL) is required")
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	up, err := url.Parse(cfg.Upstream)
	if err != nil || up.Host == "" {
		return nil, fmt.Errorf("caproxy: Config.Upstream %q is not an absolute URL", cfg.Upstream)
	}
	p := &Proxy{
		cfg: cfg, upstream: &url.URL{Scheme: up.Scheme, Host: up.Host},
		limits: cfg.Limits, tats: map[string]time.Time{}, orders: map[string]*orderInfo{},
		authzs: map[string]*authzInfo{}, chals: map[string]string{}, issued: map[string]time.Time{},
		knownKeys: map[string]bool{},
		stats:     Stats{RateLimitedByAccount: map[string]int64{}, RateLimitedByLimit: map[string]int64{}},
	}
	if err := p.fetchDirectory(); err != nil {
		return nil, err
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.upstream)
			// The CA builds its URLs from Host: keep the proxy's, so that
			// clients keep talking to the proxy.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
		},
		Transport:      cfg.Client.Transport,
		ModifyResponse: p.observe,
		ErrorLog:       cfg.Logger,
	}
	cert, certPEM, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("caproxy: listen: %w", err)
	}
	p.TLSCertPEM = certPEM
	p.DirectoryURL = "https://" + ln.Addr().String() + up.Path
	p.srv = &http.Server{
		Handler:           p,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          cfg.Logger,
	}
	go func() {
		if err := p.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Printf("caproxy: serve: %v", err)
		}
	}()
	return p, nil
}

func (p *Proxy) fetchDirectory() error {
	res, err := p.cfg.Client.Get(p.cfg.Upstream)
	if err != nil {
		return fmt.Errorf("caproxy: fetch directory %s: %w", p.cfg.Upstream, err)
	}
	defer res.Body.Close()
	var d struct {
		NewNonce   string `json:"newNonce"`
		NewAccount string `json:"newAccount"`
		NewOrder   string `json:"newOrder"`
	}
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
		return fmt.Errorf("caproxy: directory %s (status %d): %w", p.cfg.Upstream, res.StatusCode, err)
	}
	if d.NewNonce == "" || d.NewOrder == "" || d.NewAccount == "" {
		return fmt.Errorf("caproxy: directory %s (status %d) lacks newNonce/newAccount/newOrder", p.cfg.Upstream, res.StatusCode)
	}
	p.dir.newNonce, p.dir.newAccount, p.dir.newOrder = d.NewNonce, d.NewAccount, d.NewOrder
	p.paths.newAccount, p.paths.newOrder = urlPath(d.NewAccount), urlPath(d.NewOrder)
	return nil
}

// Close stops the proxy.
func (p *Proxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

// HTTPClient returns a client that trusts the proxy's certificate.
func (p *Proxy) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.TLSCertPEM)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
		},
	}
}

// SetLimits replaces the limits; buckets keep their state.
func (p *Proxy) SetLimits(l Limits) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limits = l
}

// Limits returns the limits in force.
func (p *Proxy) Limits() Limits {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limits
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.RateLimitedByAccount = make(map[string]int64, len(p.stats.RateLimitedByAccount))
	for k, v := range p.stats.RateLimitedByAccount {
		s.RateLimitedByAccount[k] = v
	}
	s.RateLimitedByLimit = make(map[string]int64, len(p.stats.RateLimitedByLimit))
	for k, v := range p.stats.RateLimitedByLimit {
		s.RateLimitedByLimit[k] = v
	}
	return s
}

// maxBody bounds the request and response bodies the proxy reads.
const maxBody = 1 << 20

// jws is what the proxy reads of a flattened JWS: the protected header's
// kid, jwk and url, and the payload.
type jws struct {
	KID     string          `json:"kid"`
	JWK     json.RawMessage `json:"jwk"`
	URL     string          `json:"url"`
	Payload []byte          `json:"-"`
}

func parseJWS(body []byte) (jws, bool) {
	var flat struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
	}
	if json.Unmarshal(body, &flat) != nil || flat.Protected == "" {
		return jws{}, false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(flat.Protected)
	if err != nil {
		return jws{}, false
	}
	var j jws
	if json.Unmarshal(hdr, &j) != nil {
		return jws{}, false
	}
	if j.Payload, err = base64.RawURLEncoding.DecodeString(flat.Payload); err != nil {
		return jws{}, false
	}
	return j, true
}

type ctxKey struct{}

// reservation is what a request took before it was forwarded, settled by
// observe once the CA answered.
type reservation struct {
	j        jws
	ip       string
	newOrder *orderInfo
	buckets  []bucketRef // taken; refunded if the CA refused
	newAcct  bool
}

type bucketRef struct {
	limit, key string
}

func (b bucketRef) id() string { return b.limit + ":" + b.key }

// ServeHTTP checks a request against the limits, answers 429 over them,
// and forwards it otherwise.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := &reservation{ip: clientIP(r)}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, "caproxy: read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if j, ok := parseJWS(body); ok {
			res.j = j
			if d := p.admit(res, r.URL.Path); d != nil {
				p.reject(w, r, d)
				return
			}
		}
	}
	p.mu.Lock()
	p.stats.Forwarded++
	p.mu.Unlock()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, res)))
}

// denial is a refused request: the limit and key that refused it and
// how long until it would pass.
type denial struct {
	limit   string
	key     string
	l       Limit
	retryIn time.Duration
	account string
}

// admit takes or checks the buckets of a new-account or new-order
// request, all or none, and returns the strictest denial, or nil.
func (p *Proxy) admit(res *reservation, path string) *denial {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	switch path {
	case p.paths.newAccount:
		var req struct {
			OnlyReturnExisting bool `json:"onlyReturnExisting"`
		}
		_ = json.Unmarshal(res.j.Payload, &req)
		if res.j.KID != "" || req.OnlyReturnExisting || p.knownKeys[string(res.j.JWK)] {
			return nil // looks an account up, creates none
		}
		res.newAcct = true
		return p.batch(now, res, "ip:"+res.ip, []txn{{LimitNewRegistrationsPerIPAddress, res.ip, spendTxn}})
	case p.paths.newOrder:
		var req struct {
			Identifiers []struct {
				Type  string `json:"type"`
				Value string `json:"value"`
			} `json:"identifiers"`
			Replaces string `json:"replaces"`
		}
		if json.Unmarshal(res.j.Payload, &req) != nil {
			return nil // the CA will say what is wrong with it
		}
		var names []string
		for _, id := range req.Identifiers {
			names = append(names, strings.TrimSuffix(strings.ToLower(id.Value), "."))
		}
		slices.Sort(names)
		names = slices.Compact(names)
		o := &orderInfo{account: res.j.KID, names: names, exempt: req.Replaces != ""}
		res.newOrder = o
		if o.exempt {
			return nil // ARI renewals are exempt from every new-order limit
		}
		set := strings.Join(names, ",")
		if last, ok := p.issued[set]; ok && p.limits.RenewalWindow > 0 && now.Sub(last) < p.limits.RenewalWindow {
			o.renewal = true
		}
		var txns []txn
		if !o.renewal {
			txns = append(txns, txn{LimitNewOrdersPerAccount, o.account, spendTxn})
		}
		for _, n := range names {
			txns = append(txns, txn{LimitFailedAuthorizationsPerDomainPerAccount, o.account + ":" + strings.TrimPrefix(n, "*."), checkTxn})
		}
		if !o.renewal {
			for _, d := range registeredDomains(names) {
				txns = append(txns, txn{LimitCertificatesPerDomain, d, checkTxn})
			}
		}
		txns = append(txns, txn{LimitCertificatesPerFQDNSet, set, checkTxn})
		return p.batch(now, res, o.account, txns)
	}
	return nil
}

type txnKind int

const (
	spendTxn txnKind = iota // take a unit, or deny
	checkTxn                // deny if no unit is left; take nothing
)

type txn struct {
	limit, key string
	kind       txnKind
}

// batch decides txns all or none (p.mu held): the strictest denial, or
// the spends taken and recorded in res.
func (p *Proxy) batch(now time.Time, res *reservation, account string, txns []txn) *denial {
	var worst *denial
	for _, t := range txns {
		l := p.limits.of(t.limit)
		if l.Unlimited() {
			continue
		}
		b := bucketRef{t.limit, t.key}
		if ok, retryIn := p.gcra(now, b, l, false); !ok {
			if worst == nil || retryIn > worst.retryIn {
				worst = &denial{limit: t.limit, key: t.key, l: l, retryIn: retryIn, account: account}
			}
		}
	}
	if worst != nil {
		return worst
	}
	for _, t := range txns {
		l := p.limits.of(t.limit)
		if t.kind == spendTxn && !l.Unlimited() {
			b := bucketRef{t.limit, t.key}
			p.gcra(now, b, l, true)
			res.buckets = append(res.buckets, b)
		}
	}
	return nil
}

// gcra decides one unit of bucket b under l at now, as Boulder's
// maybeSpend: allowed when the new theoretical arrival time is within
// the burst; taken (stored) only if spend and allowed (p.mu held).
func (p *Proxy) gcra(now time.Time, b bucketRef, l Limit, spend bool) (bool, time.Duration) {
	interval := l.Period / time.Duration(l.Count)
	tat := p.tats[b.id()]
	if tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(interval)
	if excess := newTAT.Sub(now) - l.Period; excess > 0 {
		return false, excess
	}
	if spend {
		p.tats[b.id()] = newTAT
	}
	return true, 0
}

// refund gives one unit back to b (p.mu held).
func (p *Proxy) refund(now time.Time, b bucketRef) {
	l := p.limits.of(b.limit)
	tat, ok := p.tats[b.id()]
	if !ok || l.Unlimited() {
		return
	}
	tat = tat.Add(-l.Period / time.Duration(l.Count))
	if tat.Before(now) {
		delete(p.tats, b.id())
		return
	}
	p.tats[b.id()] = tat
}

// observe settles a reservation once the CA answered and learns what
// later requests need: orders' finalize URLs, authorizations' identifiers,
// failed validations, issuances.
func (p *Proxy) observe(resp *http.Response) error {
	res, _ := resp.Request.Context().Value(ctxKey{}).(*reservation)
	if res == nil || resp.Request.Method != http.MethodPost {
		return nil
	}
	path := resp.Request.URL.Path
	p.mu.Lock()
	_, isFinalize := p.orders[path]
	_, isAuthz := p.authzs[path]
	_, isChal := p.chals[path]
	p.mu.Unlock()
	var body []byte
	if res.newOrder != nil || res.newAcct || isFinalize || isAuthz || isChal {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("caproxy: read response of %s: %w", path, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		body = b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	p.settle(now, res, resp.StatusCode)
	switch {
	case res.newOrder != nil && resp.StatusCode == http.StatusCreated:
		p.orderCreated(res.newOrder, body)
	case isFinalize && resp.StatusCode == http.StatusOK:
		p.finalized(now, path, body)
	case isAuthz && resp.StatusCode == http.StatusOK:
		p.authorization(now, path, body)
	case isChal && resp.StatusCode == http.StatusOK:
		p.challenge(now, path, body)
	}
	return nil
}

// settle refunds the buckets of a new-order or new-account the CA did not
// create, and learns the key of an account it created or found (p.mu
// held).
func (p *Proxy) settle(now time.Time, res *reservation, status int) {
	if (res.newOrder != nil || res.newAcct) && status != http.StatusCreated {
		// Not created: the CA did not count it, nor do we.
		for _, b := range res.buckets {
			p.refund(now, b)
		}
	}
	if res.newAcct && (status == http.StatusCreated || status == http.StatusOK) {
		p.knownKeys[string(res.j.JWK)] = true
	}
}

// orderCreated learns a new order's finalize URL and authorizations (p.mu
// held).
func (p *Proxy) orderCreated(o *orderInfo, body []byte) {
	var doc struct {
		Authorizations []string `json:"authorizations"`
		Finalize       string   `json:"finalize"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	p.orders[urlPath(doc.Finalize)] = o
	for _, a := range doc.Authorizations {
		if _, ok := p.authzs[urlPath(a)]; !ok {
			p.authzs[urlPath(a)] = &authzInfo{account: o.account}
		}
	}
}

// challenge counts a failed validation when the challenge at path is
// invalid (p.mu held).
func (p *Proxy) challenge(now time.Time, path string, body []byte) {
	var c struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &c) == nil && c.Status == "invalid" {
		p.failed(now, p.chals[path])
	}
}

// finalized counts an issuance: certificates per registered domain
// (unless a renewal) and per set of names, as Boulder spends them, only
// where a unit is left (p.mu held).
func (p *Proxy) finalized(now time.Time, path string, body []byte) {
	o := p.orders[path]
	var st struct {
		Status string `json:"status"`
	}
	if o.counted || json.Unmarshal(body, &st) != nil || (st.Status != "processing" && st.Status != "valid") {
		return
	}
	o.counted = true
	p.stats.Issued++
	set := strings.Join(o.names, ",")
	p.issued[set] = now
	if !o.exempt && !o.renewal {
		for _, d := range registeredDomains(o.names) {
			if l := p.limits.CertificatesPerDomain; !l.Unlimited() {
				p.gcra(now, bucketRef{LimitCertificatesPerDomain, d}, l, true)
			}
		}
	}
	if l := p.limits.CertificatesPerFQDNSet; !l.Unlimited() {
		p.gcra(now, bucketRef{LimitCertificatesPerFQDNSet, set}, l, true)
	}
}

// authorization learns an authorization's identifier and challenges, and
// counts it if it failed (p.mu held).
func (p *Proxy) authorization(now time.Time, path string, body []byte) {
	var a struct {
		Status     string `json:"status"`
		Identifier struct {
			Value string `json:"value"`
		} `json:"identifier"`
		Challenges []struct {
			URL string `json:"url"`
		} `json:"challenges"`
	}
	if json.Unmarshal(body, &a) != nil {
		return
	}
	info := p.authzs[path]
	info.identifier = strings.ToLower(a.Identifier.Value)
	for _, c := range a.Challenges {
		p.chals[urlPath(c.URL)] = path
	}
	if a.Status == "invalid" {
		p.failed(now, path)
	}
}

// failed counts a failed validation of an authorization once (p.mu held).
func (p *Proxy) failed(now time.Time, authzPath string) {
	info := p.authzs[authzPath]
	if info == nil || info.counted || info.identifier == "" {
		return
	}
	info.counted = true
	p.stats.FailedValidations++
	if l := p.limits.FailedAuthorizationsPerDomainPerAccount; !l.Unlimited() {
		p.gcra(now, bucketRef{LimitFailedAuthorizationsPerDomainPerAccount, info.account + ":" + info.identifier}, l, true)
	}
}

// problem is an RFC 7807 problem document as Boulder writes it.
type problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// reject answers a denied request as Boulder does.
func (p *Proxy) reject(w http.ResponseWriter, r *http.Request, d *denial) {
	now := p.cfg.Now()
	secs := int(math.Ceil(d.retryIn.Seconds()))
	if secs < 1 {
		secs = 1
	}
	retryAt := now.UTC().Add(d.retryIn).Format("2006-01-02 15:04:05 MST")
	var detail string
	switch d.limit {
	case LimitNewRegistrationsPerIPAddress:
		detail = fmt.Sprintf("too many new registrations (%d) from this IP address in the last %s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#new-registrations-per-ip-address", d.l.Count, d.l.Period, retryAt)
	case LimitNewOrdersPerAccount:
		detail = fmt.Sprintf("too many new orders (%d) from this account in the last %s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#new-orders-per-account", d.l.Count, d.l.Period, retryAt)
	case LimitFailedAuthorizationsPerDomainPerAccount:
		_, host, _ := strings.Cut(strings.TrimPrefix(d.key, d.account), ":")
		detail = fmt.Sprintf("too many failed authorizations (%d) for %q in the last %s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#authorization-failures-per-hostname-per-account", d.l.Count, host, d.l.Period, retryAt)
	case LimitCertificatesPerDomain:
		detail = fmt.Sprintf("too many certificates (%d) already issued for %q in the last %s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-registered-domain", d.l.Count, d.key, d.l.Period, retryAt)
	case LimitCertificatesPerFQDNSet:
		detail = fmt.Sprintf("too many certificates (%d) already issued for this exact set of identifiers in the last %s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers", d.l.Count, d.l.Period, retryAt)
	}
	doc, _ := json.MarshalIndent(problem{Type: ProblemRateLimited, Detail: detail, Status: http.StatusTooManyRequests}, "", "  ")

	h := w.Header()
	if nonce, err := p.nonce(r.Context()); err == nil {
		h.Set("Replay-Nonce", nonce)
	} else {
		p.cfg.Logger.Printf("caproxy: %v", err)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Retry-After", strconv.Itoa(secs))
	h.Set("Cache-Control", "public, max-age=0, no-cache")
	h.Add("Link", fmt.Sprintf(`<%s>;rel="index"`, "https://"+r.Host+urlPath(p.cfg.Upstream)))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(doc)

	p.mu.Lock()
	p.stats.RateLimited++
	p.stats.RateLimitedByAccount[d.account]++
	p.stats.RateLimitedByLimit[d.limit]++
	p.mu.Unlock()
}

// nonce gets a fresh nonce from the CA, so that the client's next request
// after a 429 carries one the CA accepts.
func (p *Proxy) nonce(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, p.dir.newNonce, nil)
	if err != nil {
		return "", fmt.Errorf("caproxy: new nonce: %w", err)
	}
	res, err := p.cfg.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("caproxy: new nonce: %w", err)
	}
	_ = res.Body.Close()
	n := res.Header.Get("Replay-Nonce")
	if n == "" {
		return "", fmt.Errorf("caproxy: new nonce: %s answered %d without Replay-Nonce", p.dir.newNonce, res.StatusCode)
	}
	return n, nil
}

// registeredDomains are the distinct registered domains of names.
func registeredDomains(names []string) []string {
	var out []string
	for _, n := range names {
		n = strings.TrimPrefix(n, "*.")
		d, err := publicsuffix.EffectiveTLDPlusOne(n)
		if err != nil {
			d = n
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func urlPath(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Path
	}
	return u
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// selfSignedCert returns an ECDSA P-256 certificate for 127.0.0.1, ::1
// and localhost, valid for a year, and its PEM encoding.
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("caproxy: generate tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("caproxy: tls serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "acmeq caproxy"},
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
		return tls.Certificate{}, nil, fmt.Errorf("caproxy: create tls certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
