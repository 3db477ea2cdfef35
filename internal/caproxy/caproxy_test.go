package caproxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/caproxy"
	"github.com/acmeq/acmeq/internal/stack"
)

// clock is the proxy's injectable clock: tests advance it instead of
// waiting for a refill.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

type env struct {
	px  *caproxy.Proxy
	dns *stack.DNS
	clk *clock
}

// setup starts a DNS server, a fresh Pebble validating DNS-01 against it,
// and the proxy in front of Pebble with limits.
func setup(t *testing.T, limits caproxy.Limits) *env {
	t.Helper()
	dns, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatalf("start dns: %v", err)
	}
	t.Cleanup(dns.Close)
	httpPort, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	peb, err := stack.StartPebble(stack.PebbleConfig{HTTPPort: httpPort, TLSPort: 5001, DNSAddr: dns.Addr})
	if err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	t.Cleanup(peb.Close)
	clk := &clock{t: time.Now()}
	px, err := caproxy.Start(caproxy.Config{Upstream: peb.DirectoryURL, Client: peb.HTTPClient(), Limits: limits, Now: clk.Now})
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(px.Close)
	return &env{px: px, dns: dns, clk: clk}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	// Every test against Pebble has a deadline: a hang is a Pebble hang.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noRetry makes x/crypto/acme return a 429 instead of retrying it.
func noRetry(int, *http.Request, *http.Response) time.Duration { return -1 }

func (e *env) client(t *testing.T, ctx context.Context) (*acme.Client, *acme.Account) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{Key: key, DirectoryURL: e.px.DirectoryURL, HTTPClient: e.px.HTTPClient(), RetryBackoff: noRetry}
	acct, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	if err != nil {
		t.Fatalf("register through the proxy: %v", err)
	}
	return c, acct
}

// wantRateLimited checks that err is the 429 x/crypto/acme makes of the
// proxy's answer, with a detail starting with prefix.
func wantRateLimited(t *testing.T, err error, prefix string) *acme.Error {
	t.Helper()
	var ae *acme.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want an *acme.Error", err, err)
	}
	if ae.StatusCode != http.StatusTooManyRequests || ae.ProblemType != caproxy.ProblemRateLimited {
		t.Fatalf("error = %d %s, want 429 %s", ae.StatusCode, ae.ProblemType, caproxy.ProblemRateLimited)
	}
	if !strings.HasPrefix(ae.Detail, prefix) {
		t.Fatalf("detail = %q\nwant prefix %q", ae.Detail, prefix)
	}
	if _, ok := acme.RateLimit(err); !ok {
		t.Fatalf("acme.RateLimit does not recognise %v", err)
	}
	return ae
}

// issue gets a certificate for names through the proxy, solving DNS-01.
func (e *env) issue(t *testing.T, ctx context.Context, c *acme.Client, names ...string) *x509.Certificate {
	t.Helper()
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		t.Fatalf("order %v: %v", names, err)
	}
	for _, u := range order.AuthzURLs {
		a, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var chal *acme.Challenge
		for _, ch := range a.Challenges {
			if ch.Type == "dns-01" {
				chal = ch
			}
		}
		rec, err := c.DNS01ChallengeRecord(chal.Token)
		if err != nil {
			t.Fatal(err)
		}
		e.dns.SetTXT("_acme-challenge."+a.Identifier.Value, rec)
		if _, err := c.Accept(ctx, chal); err != nil {
			t.Fatalf("accept %s: %v", a.Identifier.Value, err)
		}
		if st := pollAuthz(t, ctx, c, u); st != acme.StatusValid {
			t.Fatalf("authorization of %s is %s", a.Identifier.Value, st)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	for order.Status != acme.StatusReady {
		if order, err = c.GetOrder(ctx, order.URI); err != nil {
			t.Fatal(err)
		}
	}
	ders, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize %v: %v", names, err)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// pollAuthz fetches an authorization through the proxy until it is final.
func pollAuthz(t *testing.T, ctx context.Context, c *acme.Client, u string) string {
	t.Helper()
	for i := 0; ; i++ {
		a, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status == acme.StatusValid || a.Status == acme.StatusInvalid {
			return a.Status
		}
		if i == 500 {
			t.Fatalf("authorization %s still %s after 500 polls", u, a.Status)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond): // polling interval, as a client's
		}
	}
}

func limits(mod func(*caproxy.Limits)) caproxy.Limits {
	l := caproxy.LetsEncrypt(3600)
	mod(&l)
	return l
}

func TestLetsEncryptScaled(t *testing.T) {
	l := caproxy.LetsEncrypt(3600)
	for name, got := range map[string]caproxy.Limit{
		"new orders":     l.NewOrdersPerAccount,
		"per domain":     l.CertificatesPerDomain,
		"duplicates":     l.CertificatesPerFQDNSet,
		"failed":         l.FailedAuthorizationsPerDomainPerAccount,
		"registrations":  l.NewRegistrationsPerIPAddress,
		"renewal window": {Count: 1, Period: l.RenewalWindow},
	} {
		want := map[string]string{
			"new orders": "300 per 3s", "per domain": "50 per 168s", "duplicates": "5 per 168s",
			"failed": "5 per 1s", "registrations": "10 per 3s", "renewal window": "1 per 48m",
		}[name]
		if got.String() != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if real := caproxy.LetsEncrypt(1); real.NewOrdersPerAccount.String() != "300 per 3h" {
		t.Errorf("unscaled new orders = %s", real.NewOrdersPerAccount)
	}
}

// New orders per account: over the limit x/crypto/acme gets the 429 as an
// *acme.Error with Retry-After; a refill lets the next one through; the
// limit is per account, and can be lowered while the proxy runs.
func TestNewOrdersPerAccount(t *testing.T) {
	e := setup(t, limits(func(l *caproxy.Limits) { l.NewOrdersPerAccount = caproxy.Limit{Count: 3, Period: 3 * time.Second} }))
	ctx := testCtx(t)
	c, acct := e.client(t, ctx)
	for i := range 3 {
		if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("a.example.com")); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	_, err := c.AuthorizeOrder(ctx, acme.DomainIDs("a.example.com"))
	ae := wantRateLimited(t, err, "too many new orders (3) from this account in the last 3s, retry after ")
	if d, _ := acme.RateLimit(err); d != time.Second || ae.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After = %q (%s), want 1 s: one order refills per second", ae.Header.Get("Retry-After"), d)
	}
	if !strings.HasSuffix(ae.Detail, "UTC: see https://letsencrypt.org/docs/rate-limits/#new-orders-per-account") {
		t.Fatalf("detail = %q", ae.Detail)
	}
	s := e.px.Stats()
	if s.RateLimited != 1 || s.RateLimitedByAccount[acct.URI] != 1 || s.RateLimitedByLimit[caproxy.LimitNewOrdersPerAccount] != 1 {
		t.Fatalf("stats = %+v, want one 429 for %s", s, acct.URI)
	}
	if s.Forwarded == 0 {
		t.Fatal("Forwarded = 0")
	}

	// One refill later (on the proxy's clock) one more order passes.
	e.clk.Add(time.Second)
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("b.example.com")); err != nil {
		t.Fatalf("order after a refill: %v", err)
	}
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("b.example.com")); err == nil {
		t.Fatal("second order after one refill passed")
	}

	// Another account has its own budget, until the limit is lowered
	// behind the clients' back.
	c2, acct2 := e.client(t, ctx)
	if _, err := c2.AuthorizeOrder(ctx, acme.DomainIDs("c.example.com")); err != nil {
		t.Fatalf("another account's order: %v", err)
	}
	low := e.px.Limits()
	low.NewOrdersPerAccount = caproxy.Limit{Count: 1, Period: time.Hour}
	e.px.SetLimits(low)
	_, err = c2.AuthorizeOrder(ctx, acme.DomainIDs("c.example.com"))
	wantRateLimited(t, err, "too many new orders (1) from this account in the last 1h0m0s, retry after ")
	if s := e.px.Stats(); s.RateLimited != 3 || s.RateLimitedByAccount[acct2.URI] != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

// The 429 on the wire, byte for byte where Boulder's is fixed: status,
// Content-Type, a problem document of exactly type, detail and status,
// Retry-After in seconds, a Replay-Nonce the CA accepts, the index link;
// and the refused request never reaches the CA.
func TestRateLimitedWireFormat(t *testing.T) {
	e := setup(t, limits(func(l *caproxy.Limits) { l.NewOrdersPerAccount = caproxy.Limit{Count: 1, Period: 3 * time.Second} }))
	ctx := testCtx(t)
	c, acct := e.client(t, ctx)
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("a.example.com")); err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, ctx, e.px, c.Key.(*ecdsa.PrivateKey), acct.URI)
	nonce := r.nonce(t)
	before := e.px.Stats().Forwarded
	res, body := r.post(t, nonce, r.dir.NewOrder, map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "a.example.com"}}})
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, body %s", res.StatusCode, body)
	}
	if got := e.px.Stats().Forwarded; got != before {
		t.Fatalf("Forwarded went from %d to %d: the refused request reached the CA", before, got)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if ra := res.Header.Get("Retry-After"); ra != "3" {
		t.Fatalf("Retry-After = %q, want 3 (one order per 3 s)", ra)
	}
	if l := res.Header.Get("Link"); !strings.HasSuffix(l, `/dir>;rel="index"`) {
		t.Fatalf("Link = %q", l)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if len(doc) != 3 || doc["type"] != "urn:ietf:params:acme:error:rateLimited" || doc["status"] != float64(429) ||
		!strings.HasPrefix(doc["detail"].(string), "too many new orders (1) from this account in the last 3s, retry after ") {
		t.Fatalf("problem document %s", body)
	}
	// The nonce of the 429 is good for the next request.
	fresh := res.Header.Get("Replay-Nonce")
	if fresh == "" {
		t.Fatal("no Replay-Nonce on the 429")
	}
	res, body = r.post(t, fresh, acct.URI, nil) // POST-as-GET of the account
	if res.StatusCode != http.StatusOK {
		t.Fatalf("request with the 429's nonce: %d %s", res.StatusCode, body)
	}
}

// Certificates per registered domain and duplicates are counted at
// issuance and checked at new-order; a renewal by ARI "replaces" is exempt.
func TestCertificatesPerDomainAndDuplicates(t *testing.T) {
	e := setup(t, limits(func(l *caproxy.Limits) {
		l.CertificatesPerDomain = caproxy.Limit{Count: 2, Period: time.Hour}
		l.CertificatesPerFQDNSet = caproxy.Limit{Count: 1, Period: 2 * time.Hour}
	}))
	ctx := testCtx(t)
	c, acct := e.client(t, ctx)
	a := e.issue(t, ctx, c, "a.example.com")
	e.issue(t, ctx, c, "b.example.com", "www.b.example.com")
	if s := e.px.Stats(); s.Issued != 2 {
		t.Fatalf("Issued = %d, want 2", s.Issued)
	}
	_, err := c.AuthorizeOrder(ctx, acme.DomainIDs("c.example.com"))
	wantRateLimited(t, err, `too many certificates (2) already issued for "example.com" in the last 1h0m0s, retry after `)
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("x.example.org")); err != nil {
		t.Fatalf("another registered domain: %v", err)
	}
	// The same set again is a renewal for the per-domain limit, but a duplicate.
	_, err = c.AuthorizeOrder(ctx, acme.DomainIDs("a.example.com"))
	wantRateLimited(t, err, "too many certificates (1) already issued for this exact set of identifiers in the last 2h0m0s, retry after ")

	// An ARI renewal of a's certificate passes both.
	r := newRaw(t, ctx, e.px, c.Key.(*ecdsa.PrivateKey), acct.URI)
	certID := base64.RawURLEncoding.EncodeToString(a.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(a.SerialNumber.Bytes())
	res, body := r.post(t, r.nonce(t), r.dir.NewOrder, map[string]any{
		"identifiers": []map[string]string{{"type": "dns", "value": "a.example.com"}},
		"replaces":    certID,
	})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("ARI renewal: %d %s", res.StatusCode, body)
	}
	// Half an hour later one more certificate of example.com is allowed.
	e.clk.Add(30 * time.Minute)
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("c.example.com")); err != nil {
		t.Fatalf("after a refill: %v", err)
	}
	if s := e.px.Stats(); s.RateLimitedByLimit[caproxy.LimitCertificatesPerDomain] != 1 || s.RateLimitedByLimit[caproxy.LimitCertificatesPerFQDNSet] != 1 {
		t.Fatalf("stats by limit = %v", s.RateLimitedByLimit)
	}
}

// A validation that fails is counted per account and hostname; over the
// limit, a new order for that hostname is refused, others are not.
func TestFailedValidations(t *testing.T) {
	e := setup(t, limits(func(l *caproxy.Limits) {
		l.FailedAuthorizationsPerDomainPerAccount = caproxy.Limit{Count: 1, Period: time.Hour}
	}))
	ctx := testCtx(t)
	c, _ := e.client(t, ctx)
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs("fail.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range a.Challenges {
		if ch.Type == "dns-01" {
			// No TXT record: the validation fails.
			if _, err := c.Accept(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := pollAuthz(t, ctx, c, order.AuthzURLs[0]); st != acme.StatusInvalid {
		t.Fatalf("authorization is %s, want invalid", st)
	}
	if s := e.px.Stats(); s.FailedValidations != 1 {
		t.Fatalf("FailedValidations = %d", s.FailedValidations)
	}
	_, err = c.AuthorizeOrder(ctx, acme.DomainIDs("ok.example.com", "fail.example.com"))
	wantRateLimited(t, err, `too many failed authorizations (1) for "fail.example.com" in the last 1h0m0s, retry after `)
	if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("ok.example.com")); err != nil {
		t.Fatalf("another hostname: %v", err)
	}
}

// New accounts per IP address; looking an existing account up is free.
func TestNewRegistrationsPerIP(t *testing.T) {
	e := setup(t, limits(func(l *caproxy.Limits) {
		l.NewRegistrationsPerIPAddress = caproxy.Limit{Count: 2, Period: 3 * time.Hour}
	}))
	ctx := testCtx(t)
	c, _ := e.client(t, ctx)
	e.client(t, ctx)
	if _, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS); !errors.Is(err, acme.ErrAccountAlreadyExists) {
		t.Fatalf("registering an existing key again = %v, want ErrAccountAlreadyExists", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	third := &acme.Client{Key: key, DirectoryURL: e.px.DirectoryURL, HTTPClient: e.px.HTTPClient(), RetryBackoff: noRetry}
	_, err = third.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	wantRateLimited(t, err, "too many new registrations (2) from this IP address in the last 3h0m0s, retry after ")
	if s := e.px.Stats(); s.RateLimitedByAccount["ip:127.0.0.1"] != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

// raw signs and posts JWS requests by hand, for what x/crypto/acme
// cannot send (ARI's "replaces") or hides (the 429's headers).
type raw struct {
	ctx context.Context
	hc  *http.Client
	key *ecdsa.PrivateKey
	kid string
	dir struct {
		NewNonce string `json:"newNonce"`
		NewOrder string `json:"newOrder"`
	}
}

func newRaw(t *testing.T, ctx context.Context, px *caproxy.Proxy, key *ecdsa.PrivateKey, kid string) *raw {
	t.Helper()
	r := &raw{ctx: ctx, hc: px.HTTPClient(), key: key, kid: kid}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, px.DirectoryURL, nil)
	res, err := r.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&r.dir); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *raw) nonce(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(r.ctx, http.MethodHead, r.dir.NewNonce, nil)
	res, err := r.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return res.Header.Get("Replay-Nonce")
}

// rawResponse is what post keeps of a response, whose body it has read and
// closed.
type rawResponse struct {
	StatusCode int
	Header     http.Header
}

// post sends payload (nil: POST-as-GET) to url, signed with ES256.
func (r *raw) post(t *testing.T, nonce, url string, payload any) (rawResponse, []byte) {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	prot, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": r.kid, "nonce": nonce, "url": url})
	pay := ""
	if payload != nil {
		p, _ := json.Marshal(payload)
		pay = b64(p)
	}
	sum := sha256.Sum256([]byte(b64(prot) + "." + pay))
	rs, ss, err := ecdsa.Sign(rand.Reader, r.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	rs.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	body, _ := json.Marshal(map[string]string{"protected": b64(prot), "payload": pay, "signature": b64(sig)})
	req, _ := http.NewRequestWithContext(r.ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/jose+json")
	res, err := r.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{StatusCode: res.StatusCode, Header: res.Header}, b
}
