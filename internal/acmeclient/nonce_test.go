package acmeclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/stack"
)

func TestNoSleepBackoff(t *testing.T) {
	for _, tc := range []struct {
		n      int
		status int
		want   time.Duration
	}{
		{1, http.StatusBadRequest, badNonceRetryDelay},
		{MaxBadNonceRetries, http.StatusBadRequest, badNonceRetryDelay},
		{MaxBadNonceRetries + 1, http.StatusBadRequest, -1},
		{1, http.StatusTooManyRequests, -1},
		{1, http.StatusServiceUnavailable, -1},
		{1, http.StatusInternalServerError, -1},
	} {
		got := noSleepBackoff(tc.n, nil, &http.Response{StatusCode: tc.status})
		if got != tc.want {
			t.Errorf("noSleepBackoff(%d, %d) = %v, want %v", tc.n, tc.status, got, tc.want)
		}
		// x/crypto/acme stops retrying on anything <= 0.
		if tc.want > 0 && got <= 0 {
			t.Errorf("noSleepBackoff(%d, %d) = %v: the library would not retry", tc.n, tc.status, got)
		}
	}
}

func TestNoncePool(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := newNonceTransport(nil)
	tr.now = func() time.Time { return now }
	tr.keep("ca", "n1")
	now = now.Add(time.Second)
	tr.keep("ca", "n2")
	if got := tr.take("other"); got != "" {
		t.Errorf("take(other) = %q, want none", got)
	}
	if got := tr.take("ca"); got != "n2" {
		t.Errorf("take = %q, want the newest, n2", got)
	}
	if got := tr.take("ca"); got != "n1" {
		t.Errorf("take = %q, want n1", got)
	}
	if got := tr.take("ca"); got != "" {
		t.Errorf("take from an empty pool = %q", got)
	}
	tr.keep("ca", "n3")
	now = now.Add(pooledNonceTTL)
	if got := tr.take("ca"); got != "" {
		t.Errorf("take after the TTL = %q, want none", got)
	}
	for i := range maxPooledNonces + 5 {
		tr.keep("ca", strconv.Itoa(i))
	}
	n := 0
	for tr.take("ca") != "" {
		n++
	}
	if n != maxPooledNonces {
		t.Errorf("kept %d nonces, want at most %d", n, maxPooledNonces)
	}
}

// requestLog counts the requests that reach the CA, through Observe.
type requestLog struct {
	mu sync.Mutex
	n  map[string]int // "endpoint status"
}

func (l *requestLog) observe(endpoint string, status int, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[endpoint+" "+strconv.Itoa(status)]++
}

func (l *requestLog) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[key]
}

func (l *requestLog) total(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, v := range l.n {
		if len(k) > 3 && k[len(k)-3:] == strconv.Itoa(status) {
			n += v
		}
	}
	return n
}

// Against a real Pebble rejecting 30% of good nonces, every request
// succeeds: each badNonce is retried at once with the nonce of its error
// response, and the CA sees one nonce request in all, before the first
// POST: the pool refills from every response.
func TestBadNonceRetriedWithTheFreshNonce(t *testing.T) {
	p, err := stack.StartPebble(stack.PebbleConfig{HTTPPort: 5002, TLSPort: 5001, NonceRejectPercent: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	log := &requestLog{n: map[string]int{}}
	o := Options{DirectoryURL: p.DirectoryURL, CABundle: p.TLSCertPEM, Observe: log.observe}
	hc, err := NewHTTPClient(o)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := New(o, hc, key, "")
	acct, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	cl.KID = acme.KeyID(acct.URI)

	const orders = 40
	start := time.Now()
	for i := range orders {
		if _, err := cl.AuthorizeOrder(ctx, acme.DomainIDs("n"+strconv.Itoa(i)+".acmeq.test")); err != nil {
			t.Fatalf("order %d: %v (a badNonce must be retried, not returned)", i, err)
		}
	}
	elapsed := time.Since(start)
	rejected := log.total(http.StatusBadRequest)
	heads := log.count("nonce 200")
	t.Logf("%d orders in %s: %d badNonce rejections retried, %d nonce requests sent to the CA", orders, elapsed.Round(time.Millisecond), rejected, heads)
	// 41 POSTs at 30%: no rejection at all has odds of 0.7^41, 4 in a
	// million.
	if rejected == 0 {
		t.Fatal("Pebble rejected no nonce: the test proves nothing")
	}
	// One nonce request before the first POST; every request after that
	// uses the nonce of a previous response, a rejection's included.
	if heads > 1 {
		t.Errorf("%d nonce requests reached the CA, want 1: the nonce of the badNonce response was not used", heads)
	}
}
