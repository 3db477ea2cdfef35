package http01

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// Responder answers ACME HTTP-01 validation requests for tokens presented by
// any worker. It keeps an in-memory copy of [Bucket], kept current by a
// JetStream watch, so that serving a request never touches NATS.
//
// A Responder serves
//
//	GET  /.well-known/acme-challenge/<token>
//	HEAD /.well-known/acme-challenge/<token>
//
// with status 200 and the token's key authorization as a text/plain body. It
// answers 404 for a token that is not presented, for a token outside the
// base64url alphabet (which it never looks up) and for any other path, and
// 405 for any other method on a challenge path. It ignores the Host header:
// a token is served for every name.
//
// Call [Responder.Start] before serving, and [Responder.Stop] when done. The
// zero value is not usable; create Responders with [NewResponder]. All
// methods are safe for concurrent use.
type Responder struct {
	kv     jetstream.KeyValue
	logger *slog.Logger

	tokensMu sync.RWMutex
	tokens   map[string]string // token -> key authorization

	mu      sync.Mutex // guards the lifecycle fields below
	started bool
	cancel  context.CancelFunc   // ends the watch's context; set by Start
	watcher jetstream.KeyWatcher // set by Start
	done    chan struct{}        // closed when the watch loop returns

	ready    atomic.Bool
	stopped  atomic.Bool // set by Stop, so the watch loop knows its end is expected
	stopOnce sync.Once

	served, notFound, methodNotAllowed atomic.Uint64
}

// ResponderStats is a snapshot of a [Responder]'s counters, for metrics.
type ResponderStats struct {
	// Served is the number of challenge requests answered with 200.
	Served uint64
	// NotFound is the number of requests answered with 404.
	NotFound uint64
	// MethodNotAllowed is the number of requests answered with 405.
	MethodNotAllowed uint64
	// Tokens is the number of tokens currently held in memory.
	Tokens int
}

// NewResponder returns a Responder that serves the tokens in kv, normally
// the bucket returned by [EnsureBucket]. A nil logger uses [slog.Default].
func NewResponder(kv jetstream.KeyValue, logger *slog.Logger) *Responder {
	if logger == nil {
		logger = slog.Default()
	}
	return &Responder{
		kv:     kv,
		logger: logger,
		tokens: make(map[string]string),
		done:   make(chan struct{}),
	}
}

// Start starts watching the bucket and returns once every token present in
// it has been loaded, at which point [Responder.Ready] reports true. The
// watch then continues in the background until [Responder.Stop] is called or
// the NATS connection is closed; it survives reconnects.
//
// ctx bounds only the start-up: cancelling it later does not end the watch.
// If ctx ends before the initial tokens are loaded, Start stops the
// Responder and returns an error wrapping ctx.Err(). Start may be called
// only once; a Responder whose Start failed cannot be started again.
func (r *Responder) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("http01: responder already started")
	}
	r.started = true
	// The watch's ordered consumer reuses this context whenever it has to
	// recreate itself after a reconnect, so it must outlive ctx.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	w, err := r.kv.WatchAll(wctx)
	if err != nil {
		r.mu.Unlock()
		cancel()
		close(r.done)
		return fmt.Errorf("http01: watching bucket %s: %w", r.kv.Bucket(), err)
	}
	r.watcher = w
	r.mu.Unlock()

	loaded := make(chan struct{})
	go r.watch(w, loaded)

	select {
	case <-loaded:
		r.logger.Info("http01 responder loaded challenge tokens",
			"bucket", r.kv.Bucket(), "tokens", r.Stats().Tokens)
		return nil
	case <-r.done:
		return fmt.Errorf("http01: watch of bucket %s ended before its tokens were loaded", r.kv.Bucket())
	case <-ctx.Done():
		r.Stop()
		return fmt.Errorf("http01: loading tokens from bucket %s: %w", r.kv.Bucket(), ctx.Err())
	}
}

// watch applies updates from w to r.tokens until w's channel is closed,
// closing loaded after the initial values have been applied.
func (r *Responder) watch(w jetstream.KeyWatcher, loaded chan<- struct{}) {
	defer close(r.done)
	defer r.ready.Store(false)
	initial := true
	for e := range w.Updates() {
		if e == nil { // all values present at the start have been delivered
			if initial {
				initial = false
				r.ready.Store(true)
				close(loaded)
			}
			continue
		}
		token := e.Key()
		if !validToken(token) {
			r.logger.Warn("http01 responder ignoring invalid token in bucket",
				"bucket", e.Bucket(), "token", quoteTruncated(token, 64))
			continue
		}
		switch e.Operation() {
		case jetstream.KeyValuePut:
			r.tokensMu.Lock()
			r.tokens[token] = string(e.Value())
			r.tokensMu.Unlock()
			r.logger.Debug("http01 responder added token", "token", token)
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			r.tokensMu.Lock()
			delete(r.tokens, token)
			r.tokensMu.Unlock()
			r.logger.Debug("http01 responder removed token", "token", token, "op", e.Operation().String())
		}
	}
	if !r.stopped.Load() {
		r.logger.Error("http01 responder stopped watching bucket; tokens presented from now on will not be served",
			"bucket", r.kv.Bucket())
	}
}

// Stop ends the watch and waits for it to finish. Afterwards
// [Responder.Ready] reports false, but requests are still answered from the
// last known tokens. Stop is idempotent, and a no-op before Start.
func (r *Responder) Stop() {
	r.mu.Lock()
	started, cancel, w := r.started, r.cancel, r.watcher
	r.mu.Unlock()
	if !started {
		return
	}
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		cancel()
		if w != nil {
			if err := w.Stop(); err != nil {
				r.logger.Warn("http01 responder could not stop watch", "error", err)
			}
		}
	})
	<-r.done
}

// Ready reports whether the initial tokens have been loaded and the watch
// is still running. Use it as a readiness probe.
func (r *Responder) Ready() bool {
	return r.ready.Load()
}

// Stats returns a snapshot of the Responder's counters.
func (r *Responder) Stats() ResponderStats {
	r.tokensMu.RLock()
	n := len(r.tokens)
	r.tokensMu.RUnlock()
	return ResponderStats{
		Served:           r.served.Load(),
		NotFound:         r.notFound.Load(),
		MethodNotAllowed: r.methodNotAllowed.Load(),
		Tokens:           n,
	}
}

// ServeHTTP implements [net/http.Handler].
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	token, ok := strings.CutPrefix(req.URL.Path, ChallengePath)
	if !ok || !validToken(token) {
		r.notFound.Add(1)
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		r.methodNotAllowed.Add(1)
		h.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	r.tokensMu.RLock()
	key, ok := r.tokens[token]
	r.tokensMu.RUnlock()
	if !ok {
		r.notFound.Add(1)
		r.logger.Debug("http01 responder has no such token", "token", token, "host", req.Host, "remote", req.RemoteAddr)
		http.NotFound(w, req)
		return
	}
	r.served.Add(1)
	r.logger.Debug("http01 responder served token", "token", token, "host", req.Host, "remote", req.RemoteAddr)
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(key)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write([]byte(key))
	}
}
