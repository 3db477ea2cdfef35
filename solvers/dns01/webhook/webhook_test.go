package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

const testZone = "example.test"

// service is a DNS bridge implementing the contract: a real HTTP server on
// loopback whose Handler writes into a real BIND with RFC 2136, recording
// the requests it got.
type service struct {
	bind   *stack.BIND
	srv    *httptest.Server
	mu     sync.Mutex
	got    []Request
	paths  []string
	token  string
	hmac   []byte
	rfc    *dns01.RFC2136
	resolv *dns01.Resolver
}

func setup(t *testing.T) *service {
	t.Helper()
	b, err := stack.StartBIND(t.TempDir(), testZone)
	if err != nil {
		t.Fatalf("starting BIND: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	rfc, err := dns01.NewRFC2136(dns01.RFC2136Config{Nameserver: b.Addr, TSIGKeyName: b.TSIGKeyName, TSIGSecret: b.TSIGSecret, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resolv, err := dns01.NewResolver(dns01.SelfCheckConfig{RecursiveNameservers: []string{b.Addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := &service{bind: b, token: "s3cret-token", hmac: []byte("hmac-key"), rfc: rfc, resolv: resolv}
	h := &Handler{Provider: rfc, BearerToken: s.token, HMACKey: s.hmac}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req Request
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		s.got = append(s.got, req)
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *service) provider(t *testing.T, mod func(*Config)) *Provider {
	t.Helper()
	cfg := Config{URL: s.srv.URL + "/dns/", BearerToken: s.token, HMACKey: s.hmac, Resolver: s.resolv, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dnsChallenge(name, key string) solvers.Challenge {
	return solvers.Challenge{DNSName: strings.TrimPrefix(name, "*."), Wildcard: strings.HasPrefix(name, "*."), Type: solvers.TypeDNS01, Token: "t", Key: key}
}

// A name and its wildcard: two values at one record name, each removed on
// its own, through the contract into BIND.
func TestWebhookPresentCleanUp(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := s.provider(t, nil)
	ctx := t.Context()
	apex, wild := dnsChallenge("shop.example.test", "apex-digest"), dnsChallenge("*.shop.example.test", "wildcard-digest")
	for _, ch := range []solvers.Challenge{apex, wild, apex} { // presenting twice is harmless
		if err := p.Present(ctx, ch); err != nil {
			t.Fatalf("Present %s: %v", ch.Key, err)
		}
	}
	const name = "_acme-challenge.shop.example.test."
	if got := stacktest.TXT(t, s.bind.Addr, name); !slices.Equal(got, []string{"apex-digest", "wildcard-digest"}) {
		t.Fatalf("TXT after presenting = %q", got)
	}
	check, err := dns01.NewSelfCheck(dns01.SelfCheckConfig{RecursiveNameservers: []string{s.bind.Addr}, RecursiveNameserversOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []solvers.Challenge{apex, wild} {
		if err := check.Check(ctx, ch); err != nil {
			t.Errorf("self check of %s: %v", ch.Key, err)
		}
	}
	if err := p.CleanUp(ctx, apex); err != nil {
		t.Fatal(err)
	}
	if got := stacktest.TXT(t, s.bind.Addr, name); !slices.Equal(got, []string{"wildcard-digest"}) {
		t.Errorf("TXT after cleaning up the apex = %q, want the wildcard's only", got)
	}
	for range 2 { // cleaning up twice is harmless
		if err := p.CleanUp(ctx, wild); err != nil {
			t.Fatal(err)
		}
	}
	if got := stacktest.TXT(t, s.bind.Addr, name); len(got) != 0 {
		t.Errorf("TXT after cleaning up both = %q", got)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	want := Request{FQDN: name, Zone: "example.test.", Value: "wildcard-digest", DNSName: "shop.example.test", Wildcard: true}
	if s.got[1] != want {
		t.Errorf("request = %+v, want %+v", s.got[1], want)
	}
	if s.paths[0] != "/dns/present" || s.paths[3] != "/dns/cleanup" {
		t.Errorf("paths = %q", s.paths)
	}
}

func TestWebhookAuthentication(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ch := dnsChallenge("a.example.test", "v")
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		body string
	}{
		{"wrong token", func(c *Config) { c.BearerToken = "wrong" }, "missing or wrong bearer token"},
		{"no token", func(c *Config) { c.BearerToken = "" }, "missing or wrong bearer token"},
		{"wrong HMAC key", func(c *Config) { c.HMACKey = []byte("other") }, "missing or wrong X-Acmeq-Signature"},
		{"no signature", func(c *Config) { c.HMACKey = nil }, "missing or malformed X-Acmeq-Timestamp"},
		{"stale timestamp", func(c *Config) { c.Now = func() time.Time { return time.Now().Add(-time.Hour) } }, "X-Acmeq-Timestamp is 1h0m0s away from the receiver's clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.provider(t, tc.mod).Present(t.Context(), ch)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || se.Body != tc.body {
				t.Fatalf("Present = %v, want 401 %q", err, tc.body)
			}
			want := "webhook: present " + s.srv.URL + "/dns/present: service answered 401 Unauthorized: " + tc.body
			if err.Error() != want || !errors.Is(err, ErrStatus) {
				t.Errorf("error = %q\nwant %q", err, want)
			}
		})
	}
	if got := stacktest.TXT(t, s.bind.Addr, "_acme-challenge.a.example.test."); len(got) != 0 {
		t.Errorf("TXT written without authentication: %q", got)
	}
}

func TestWebhookFailures(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail/present":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "zone\nexample.test: "+strings.Repeat("x", 600))
		case "/slow/present":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	ch := dnsChallenge("a.example.test", "v")

	p, err := New(Config{URL: srv.URL + "/fail"})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Present(t.Context(), ch)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("Present = %v, want a 500 StatusError", err)
	}
	wantBody := "zone example.test: " + strings.Repeat("x", BodyLimit-len("zone\nexample.test: ")) + "..."
	if se.Body != wantBody || err.Error() != "webhook: present "+srv.URL+"/fail/present: service answered 500 Internal Server Error: "+wantBody {
		t.Errorf("error = %q", err)
	}

	p, err = New(Config{URL: srv.URL + "/slow", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Present(t.Context(), ch)
	want := "webhook: present " + srv.URL + "/slow/present: no answer within 200ms: context deadline exceeded"
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != want {
		t.Errorf("Present to a slow service = %v\nwant %s", err, want)
	}

	// A zone the resolver cannot find: the service is not called.
	s := setup(t)
	p = s.provider(t, nil)
	err = p.Present(t.Context(), dnsChallenge("www.example.org", "v"))
	if !errors.Is(err, dns01.ErrZoneNotFound) && !errors.Is(err, dns01.ErrNameserver) {
		t.Errorf("Present outside every zone = %v", err)
	}
	s.mu.Lock()
	if len(s.got) != 0 {
		t.Errorf("the service was called for a name without zone: %+v", s.got)
	}
	s.mu.Unlock()
}

// The signature's format is pinned (computed independently with Python's
// hmac module), so that receivers in other languages can rely on it.
func TestSignFormat(t *testing.T) {
	t.Parallel()
	got := Sign([]byte("k3y"), "1700000000", []byte(`{"fqdn":"_acme-challenge.example.com."}`))
	if want := "sha256=48e54075139ccd24446d0ec2b63bb52c3ef7b43cbe0df952aaed7d64cbf3407c"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "webhook: url is required"},
		{Config{URL: "ftp://x"}, `webhook: url "ftp://x" must be an absolute http or https URL`},
		{Config{URL: "/relative"}, `webhook: url "/relative" must be an absolute http or https URL`},
		{Config{URL: "https://x/a?b=c"}, `webhook: url "https://x/a?b=c" must have no query or fragment`},
		{Config{URL: "https://x", Timeout: -1}, "webhook: negative timeout -1ns"},
		{Config{URL: "https://x", CABundle: []byte("nope")}, "webhook: caBundle holds no PEM certificate"},
		{Config{URL: "https://x", BearerToken: "a\nb"}, "webhook: the bearer token must be one line"},
	} {
		if _, err := New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %s", tc.cfg, err, tc.want)
		}
	}
}
