package acmeclient

import (
	"net/http"
	"sync"
	"time"
)

// Nonces (RFC 8555 §6.5, §7.2). Every POST needs a fresh nonce from the
// CA; a CA that rejects one answers 400 with a badNonce problem and a
// fresh nonce in Replay-Nonce, and the client should retry at once with
// it. x/crypto/acme keeps the nonces of responses in a pool per
// acme.Client, and on a badNonce it empties that pool and retries through
// its RetryBackoff, which acmeq replaces so that nothing sleeps. Here:
//   - noSleepBackoff lets the library retry a badNonce MaxBadNonceRetries
//     times at once, inside the same call (and so the same delivery of a
//     worker's message);
//   - nonceTransport owns the nonces instead of the library: it takes the
//     Replay-Nonce of every response (the badNonce one included) into a
//     pool per CA host, and answers the library's HEAD requests to
//     newNonce from it, newest first. The library then never holds a
//     nonce, emptying its pool loses nothing, and a retry costs one
//     request, not a HEAD round trip as well.
const (
	// MaxBadNonceRetries bounds the immediate retries of one request
	// rejected with badNonce. Even a CA that rejects 30% of good nonces
	// (Pebble's PEBBLE_WFE_NONCEREJECT=30) fails a request that many
	// times in a row once in 0.3^13, about 2 in 10 million.
	MaxBadNonceRetries = 12
	// badNonceRetryDelay is what noSleepBackoff returns for a badNonce:
	// x/crypto/acme reads 0 as "no more retries", so it is the smallest
	// positive duration, a timer that fires at once.
	badNonceRetryDelay = time.Nanosecond
	// maxPooledNonces bounds the nonces kept per CA host (the oldest go
	// first), and pooledNonceTTL how long one is kept: a CA forgets
	// nonces after a while, and the newest is handed out first, so a
	// stale one costs at most a retry.
	maxPooledNonces = 100
	pooledNonceTTL  = 30 * time.Second
)

// noSleepBackoff is the RetryBackoff of every acmeq client. x/crypto/acme
// calls it after a failed request that it could retry: a badNonce (400)
// or a 5xx, 429 or other retriable status. A badNonce is a protocol
// detail, not a wait: it is retried at once, MaxBadNonceRetries times.
// Everything else (rate limits, server errors) comes back to acmeq, which
// waits by NakWithDelay instead of holding a goroutine.
func noSleepBackoff(n int, _ *http.Request, res *http.Response) time.Duration {
	// The library only asks about a 400 when its problem is badNonce.
	if res != nil && res.StatusCode == http.StatusBadRequest && n <= MaxBadNonceRetries {
		return badNonceRetryDelay
	}
	return -1
}

// nonceTransport is the nonce pool of the acme.Clients that share an HTTP
// client: see the comment at the top of this file. x/crypto/acme only
// sends HEAD requests to fetch a nonce, and reads Replay-Nonce only to
// pool it, so taking the header out of every other response leaves the
// library nothing to pool and every nonce is handed out once.
type nonceTransport struct {
	base http.RoundTripper
	now  func() time.Time

	mu   sync.Mutex
	pool map[string][]pooledNonce // by host, oldest first
}

type pooledNonce struct {
	nonce string
	at    time.Time
}

func newNonceTransport(base http.RoundTripper) *nonceTransport {
	return &nonceTransport{base: base, now: time.Now, pool: map[string][]pooledNonce{}}
}

func (t *nonceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		if n := t.take(req.URL.Host); n != "" {
			return nonceResponse(req, n), nil
		}
		// The library uses the nonce of a real HEAD at once.
		return t.base.RoundTrip(req)
	}
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if n := res.Header.Get(replayNonce); n != "" {
		res.Header.Del(replayNonce)
		t.keep(req.URL.Host, n)
	}
	return res, nil
}

const replayNonce = "Replay-Nonce"

func (t *nonceTransport) keep(host, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := append(t.pool[host], pooledNonce{nonce: nonce, at: t.now()})
	if len(s) > maxPooledNonces {
		s = s[len(s)-maxPooledNonces:]
	}
	t.pool[host] = s
}

// take returns the newest pooled nonce of host that is not too old, or "".
func (t *nonceTransport) take(host string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.pool[host]
	if len(s) == 0 {
		return ""
	}
	n := s[len(s)-1]
	if t.now().Sub(n.at) >= pooledNonceTTL {
		// The newest is too old: so are the others.
		delete(t.pool, host)
		return ""
	}
	t.pool[host] = s[:len(s)-1]
	return n.nonce
}

// nonceResponse is the answer of a newNonce HEAD request (RFC 8555 §7.2)
// carrying nonce.
func nonceResponse(req *http.Request, nonce string) *http.Response {
	h := http.Header{}
	h.Set(replayNonce, nonce)
	h.Set("Cache-Control", "no-store")
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Request:    req,
	}
}
