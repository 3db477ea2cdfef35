package dns01

import (
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
)

// testZone is the zone every test BIND serves.
const testZone = "example.test"

// startBIND starts a real BIND serving testZone, stopped when the test
// ends. A missing named fails the test; it never skips.
func startBIND(t *testing.T) *stack.BIND {
	t.Helper()
	b, err := stack.StartBIND(t.TempDir(), testZone)
	if err != nil {
		t.Fatalf("starting BIND: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("stopping BIND: %v", err)
		}
	})
	return b
}

// startBINDZones starts a real BIND serving zones, stopped when the test
// ends.
func startBINDZones(t *testing.T, zones ...string) *stack.BIND {
	t.Helper()
	b, err := stack.StartBIND(t.TempDir(), zones...)
	if err != nil {
		t.Fatalf("starting BIND: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

// rfc2136Config returns the configuration of a provider updating b with
// its key, with short timeouts.
func rfc2136Config(b *stack.BIND) RFC2136Config {
	return RFC2136Config{
		Nameserver:    b.Addr,
		TSIGKeyName:   b.TSIGKeyName,
		TSIGAlgorithm: b.TSIGAlgorithm,
		TSIGSecret:    b.TSIGSecret,
		Timeout:       5 * time.Second,
	}
}

// newRFC2136 returns a provider for cfg, failing the test on error.
func newRFC2136(t *testing.T, cfg RFC2136Config) *RFC2136 {
	t.Helper()
	p, err := NewRFC2136(cfg)
	if err != nil {
		t.Fatalf("NewRFC2136: %v", err)
	}
	return p
}

// newSelfCheck returns a SelfCheck asking only nameservers, as recursive
// nameservers: every one must return the value.
func newSelfCheck(t *testing.T, nameservers ...string) *SelfCheck {
	t.Helper()
	s, err := NewSelfCheck(SelfCheckConfig{RecursiveNameservers: nameservers, RecursiveNameserversOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("NewSelfCheck: %v", err)
	}
	return s
}

// challenge returns a DNS-01 challenge for name with digest key.
func challenge(name, key string) solvers.Challenge {
	wildcard := strings.HasPrefix(name, "*.")
	return solvers.Challenge{
		DNSName:  strings.TrimPrefix(name, "*."),
		Wildcard: wildcard,
		Type:     solvers.TypeDNS01,
		Token:    "token-" + key,
		Key:      key,
	}
}

// eventually calls f until it returns nil, failing the test with f's last
// error if that takes longer than timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	stacktest.Eventually(t, timeout, f)
}
