// Package stacktest starts a stack.Stack for a test.
package stacktest

import (
	"testing"

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
