// Package stacktest starts a stack.Stack for a test.
package stacktest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack"
)

// New starts a stack.Stack in a temporary directory of t, with Pebble
// validating HTTP-01 challenges on httpPort, and stops it when the test
// ends. It fails the test (it never skips) if a component cannot start, for
// example because redis-server is not installed.
func New(t testing.TB, httpPort int) *stack.Stack {
	t.Helper()
	s, err := stack.Start(t.TempDir(), httpPort, nil)
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Eventually polls cond every 20ms until it returns nil, and fails the test
// with cond's last error if that has not happened within timeout. It is the
// one way tests wait for something: never a bare sleep.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// EventuallyTrue is Eventually for a condition without an error of its
// own: the test fails naming what it waited for.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("waiting for %s", what)
	})
}

// JetStream starts an in-process NATS server with JetStream in a temporary
// directory of t, connects to it, and returns the JetStream context; the
// connection and the server end with the test.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	n, err := stack.StartNATS(t.TempDir())
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(n.Shutdown)
	return Connect(t, n.URL)
}

// Connect opens a NATS connection to url, closed when the test ends, and
// returns JetStream through it (js.Conn() is the connection).
func Connect(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("stacktest: connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("stacktest: jetstream: %v", err)
	}
	return js
}

// TXT returns the values of the TXT records at name on the nameserver at
// addr, sorted (stack.QueryTXT), failing the test if it cannot ask.
func TXT(t testing.TB, addr, name string) []string {
	t.Helper()
	v, err := stack.QueryTXT(addr, name)
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	return v
}
