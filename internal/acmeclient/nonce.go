package acmeclient

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Bad nonces (RFC 8555 §6.5). A CA that rejects a request's nonce answers
// 400 with a badNonce problem and a fresh nonce in Replay-Nonce, and the
// client should retry at once with that nonce. x/crypto/acme retries a
// badNonce through its RetryBackoff, which acmeq replaces so that nothing
// sleeps (see noSleepBackoff), and it throws away the fresh nonce of the
// error response, fetching another with a HEAD to newNonce. Here:
//   - noSleepBackoff lets the library retry a badNonce MaxBadNonceRetries
//     times at once, inside the same call (and so the same delivery of a
//     worker's message);
//   - nonceTransport keeps the fresh nonce of each badNonce response and
//     answers the library's next HEAD to newNonce with it, so the retry
//     costs one request, not two.
const (
	// MaxBadNonceRetries bounds the immediate retries of one request
	// rejected with badNonce. Even a CA that rejects 30% of good nonces
	// (Pebble's PEBBLE_WFE_NONCEREJECT=30) fails a request that many
	// times in a row once in 0.3^9, about 2 in 100,000.
	MaxBadNonceRetries = 8
	// badNonceRetryDelay is what noSleepBackoff returns for a badNonce:
	// x/crypto/acme reads 0 as "no more retries", so it is the smallest
	// positive duration, a timer that fires at once.
	badNonceRetryDelay = time.Nanosecond
	// maxSpareNonces bounds the nonces kept per CA host, and
	// spareNonceTTL how long one is kept (a CA forgets nonces after a
	// while; an expired one costs a retry, not a failure).
	maxSpareNonces = 16
	spareNonceTTL  = 30 * time.Second
	// maxProblemBody bounds how much of a 400 response is read to tell a
	// badNonce from other problems.
	maxProblemBody = 64 << 10
	// badNonceSuffix ends the badNonce problem type; CAs in the wild vary
	// the prefix and case (x/crypto/acme's isBadNonce).
	badNonceSuffix = ":badnonce"
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

// nonceTransport keeps the fresh nonce of each badNonce response and hands
// it to the next HEAD request for a nonce to the same host, answering it
// without a round trip. x/crypto/acme only sends HEAD requests to fetch a
// nonce, and it drops every nonce it holds after a badNonce, so a nonce
// kept here is in no one else's hands.
type nonceTransport struct {
	base http.RoundTripper
	now  func() time.Time

	mu    sync.Mutex
	spare map[string][]spareNonce // by host
}

type spareNonce struct {
	nonce string
	at    time.Time
}

func newNonceTransport(base http.RoundTripper) *nonceTransport {
	return &nonceTransport{base: base, now: time.Now, spare: map[string][]spareNonce{}}
}

func (t *nonceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		if n := t.take(req.URL.Host); n != "" {
			return nonceResponse(req, n), nil
		}
	}
	res, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || res.StatusCode != http.StatusBadRequest {
		return res, err
	}
	nonce := res.Header.Get("Replay-Nonce")
	if nonce == "" {
		return res, nil
	}
	// Read the problem to tell a badNonce from other 400s, and give the
	// library the same bytes.
	body, rerr := io.ReadAll(io.LimitReader(res.Body, maxProblemBody))
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	if rerr == nil && isBadNonceProblem(body) {
		t.keep(req.URL.Host, nonce)
	}
	return res, nil
}

// isBadNonceProblem reports a problem document whose type ends in
// ":badNonce".
func isBadNonceProblem(body []byte) bool {
	var p struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(body, &p) == nil && strings.HasSuffix(strings.ToLower(p.Type), badNonceSuffix)
}

func (t *nonceTransport) keep(host, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := append(t.spare[host], spareNonce{nonce: nonce, at: t.now()})
	if len(s) > maxSpareNonces {
		s = s[len(s)-maxSpareNonces:]
	}
	t.spare[host] = s
}

// take returns the newest spare nonce of host that is not too old, or "".
func (t *nonceTransport) take(host string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.spare[host]
	for len(s) > 0 {
		n := s[len(s)-1]
		s = s[:len(s)-1]
		if t.now().Sub(n.at) < spareNonceTTL {
			t.spare[host] = s
			return n.nonce
		}
	}
	delete(t.spare, host)
	return ""
}

// nonceResponse is the answer of a newNonce HEAD request (RFC 8555 §7.2)
// carrying nonce.
func nonceResponse(req *http.Request, nonce string) *http.Response {
	h := http.Header{}
	h.Set("Replay-Nonce", nonce)
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
