package http01

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
)

func TestResponderRouting(t *testing.T) {
	url := setup(t)
	kv := connect(t, url)
	if err := NewPresenter(kv).Present(t.Context(), solvers.Challenge{Token: "tok", Key: "tok.thumb"}); err != nil {
		t.Fatalf("Present: %v", err)
	}
	// Presented before Start: must be served as soon as Start returns.
	r := startResponder(t, connect(t, url))
	ts := serve(t, r)

	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string // checked unless empty
	}{
		{"presented token", "GET", ChallengePath + "tok", 200, "tok.thumb"},
		{"unknown token", "GET", ChallengePath + "nope", 404, ""},
		{"token with a dot", "GET", ChallengePath + "tok.thumb", 404, ""},
		{"token with encoded slash", "GET", ChallengePath + "a%2Fb", 404, ""},
		{"NATS wildcard token", "GET", ChallengePath + "*", 404, ""},
		{"token too long", "GET", ChallengePath + strings.Repeat("a", MaxTokenLength+1), 404, ""},
		{"empty token", "GET", ChallengePath, 404, ""},
		{"sub-path of a token", "GET", ChallengePath + "tok/x", 404, ""},
		{"challenge directory without slash", "GET", "/.well-known/acme-challenge", 404, ""},
		{"root", "GET", "/", 404, ""},
		{"other path ending in token", "GET", "/tok", 404, ""},
		{"POST", "POST", ChallengePath + "tok", 405, ""},
		{"PUT", "PUT", ChallengePath + "tok", 405, ""},
		{"DELETE", "DELETE", ChallengePath + "tok", 405, ""},
		{"POST to other path", "POST", "/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := get(t, tt.method, ts.URL+tt.path)
			if code != tt.wantCode {
				t.Fatalf("%s %s: status %d, want %d (body %q)", tt.method, tt.path, code, tt.wantCode, body)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if code == 405 && h.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want %q", h.Get("Allow"), "GET, HEAD")
			}
		})
	}

	st := r.Stats()
	want := ResponderStats{Served: 1, NotFound: 11, MethodNotAllowed: 3, Tokens: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestResponderLifecycle(t *testing.T) {
	url := setup(t)
	kv := connect(t, url)
	r := NewResponder(kv, testLogger(t))
	if r.Ready() {
		t.Fatal("Ready before Start")
	}
	r.Stop() // a no-op before Start
	if err := r.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !r.Ready() {
		t.Fatal("not Ready after Start")
	}
	if err := r.Start(t.Context()); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := NewPresenter(kv).Present(t.Context(), solvers.Challenge{Token: "tok", Key: "tok.k"}); err != nil {
		t.Fatalf("Present: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return r.Stats().Tokens == 1 })
	r.Stop()
	r.Stop() // idempotent
	if r.Ready() {
		t.Fatal("Ready after Stop")
	}
	// Requests are still answered from the last known tokens.
	code, _, body := get(t, "GET", serve(t, r).URL+ChallengePath+"tok")
	if code != 200 || body != "tok.k" {
		t.Errorf("after Stop: %d %q, want 200 %q", code, body, "tok.k")
	}
}

func TestResponderStartCancelled(t *testing.T) {
	kv := connect(t, setup(t))
	r := NewResponder(kv, testLogger(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := r.Start(ctx)
	// Loading an empty bucket may win the race against the cancelled
	// context; either outcome is correct, but a failure must say why.
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want nil or context.Canceled", err)
	}
	r.Stop()
	if r.Ready() {
		t.Fatal("Ready after Stop")
	}
}

func TestResponderNotReadyWhenConnectionCloses(t *testing.T) {
	js := stacktest.Connect(t, setup(t))
	kv, err := EnsureBucket(t.Context(), js)
	if err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	r := startResponder(t, kv)
	js.Conn().Close()
	eventually(t, 5*time.Second, func() bool { return !r.Ready() })
}

func TestResponderForgetsExpiredTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a token to expire")
	}
	url := setup(t)
	kv := connectTTL(t, url, time.Second)
	r := startResponder(t, kv)
	if err := NewPresenter(kv).Present(t.Context(), solvers.Challenge{Token: "tok", Key: "tok.k"}); err != nil {
		t.Fatalf("Present: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return r.Stats().Tokens == 1 })
	eventually(t, 15*time.Second, func() bool { return r.Stats().Tokens == 0 })
}
