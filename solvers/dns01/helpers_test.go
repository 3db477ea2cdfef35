package dns01

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

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

// updateRR adds rr to zone at b with an RFC 2136 update signed with b's
// key, as a zone's owner would (e.g. a customer's CNAME).
func updateRR(b *stack.BIND, zone string, rr dns.RR) error {
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Insert([]dns.RR{rr})
	m.SetTsig(b.TSIGKeyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{b.TSIGKeyName: b.TSIGSecret}}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("update %s: %s", rr.Header().Name, dns.RcodeToString[r.Rcode])
	}
	return nil
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

// txtValues asks addr over TCP for the TXT records at name and returns
// their values, sorted.
func txtValues(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("TXT query for %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		t.Fatalf("TXT query for %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var values []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			values = append(values, txtValue(txt))
		}
	}
	slices.Sort(values)
	return values
}

// eventually calls f until it returns nil, failing the test with f's last
// error if that takes longer than timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	stacktest.Eventually(t, timeout, f)
}
