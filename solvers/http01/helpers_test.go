package http01

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
)

// setup starts an embedded NATS server with JetStream, stopped when the test
// ends, and returns its client URL.
func setup(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("creating NATS server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready for connections")
	}
	return srv.ClientURL()
}

// connect opens a new NATS connection to url, closed when the test ends,
// and returns the bucket through it, creating the bucket if needed.
func connect(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	return connectTTL(t, url, DefaultTokenTTL)
}

func connectTTL(t *testing.T, url string, ttl time.Duration) jetstream.KeyValue {
	t.Helper()
	js := stacktest.Connect(t, url)
	kv, err := ensureBucket(t.Context(), js, ttl, 0)
	if err != nil {
		t.Fatalf("ensureBucket: %v", err)
	}
	return kv
}

// startResponder starts a Responder on kv, stopped when the test ends.
func startResponder(t *testing.T, kv jetstream.KeyValue) *Responder {
	t.Helper()
	r := NewResponder(kv, testLogger(t))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// serve serves h on 127.0.0.1 for the rest of the test and returns its URL.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// eventually fails the test unless cond returns true within timeout. It
// polls cond every 10ms.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	stacktest.EventuallyTrue(t, timeout, "the condition", cond)
}

// get performs method on url and returns the status and body.
func get(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of %s %s: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// testLogger logs through t, so output shows only for failing tests.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
