package dns01

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
)

func TestNewRFC2136Validation(t *testing.T) {
	const secret = "c2VjcmV0"
	valid := RFC2136Config{Nameserver: "10.0.0.53:53", TSIGKeyName: "k", TSIGSecret: secret}
	for _, tc := range []struct {
		name string
		mod  func(*RFC2136Config)
		want string
	}{
		{"no nameserver", func(c *RFC2136Config) { c.Nameserver = "" },
			`dns01: rfc2136: nameserver is required (host:port)`},
		{"nameserver without port", func(c *RFC2136Config) { c.Nameserver = "10.0.0.53" },
			`dns01: rfc2136: nameserver "10.0.0.53" must be host:port, e.g. 10.0.0.53:53`},
		{"nameserver without host", func(c *RFC2136Config) { c.Nameserver = ":53" },
			`dns01: rfc2136: nameserver ":53" must be host:port, e.g. 10.0.0.53:53`},
		{"nameserver port 0", func(c *RFC2136Config) { c.Nameserver = "ns.example.test:0" },
			`dns01: rfc2136: nameserver "ns.example.test:0" must be host:port, e.g. 10.0.0.53:53`},
		{"nameserver port name", func(c *RFC2136Config) { c.Nameserver = "ns.example.test:domain" },
			`dns01: rfc2136: nameserver "ns.example.test:domain" must be host:port, e.g. 10.0.0.53:53`},
		{"md5", func(c *RFC2136Config) { c.TSIGAlgorithm = "md5" },
			`dns01: rfc2136: tsigAlgorithm "md5" is not supported (want hmac-sha1, hmac-sha256 or hmac-sha512)`},
		{"hmac-md5", func(c *RFC2136Config) { c.TSIGAlgorithm = "hmac-md5.sig-alg.reg.int." },
			`dns01: rfc2136: tsigAlgorithm "hmac-md5.sig-alg.reg.int." is not supported (want hmac-sha1, hmac-sha256 or hmac-sha512)`},
		{"key without secret", func(c *RFC2136Config) { c.TSIGSecret = "" },
			`dns01: rfc2136: tsigKeyName and tsigSecret must be set together`},
		{"secret without key", func(c *RFC2136Config) { c.TSIGKeyName = "" },
			`dns01: rfc2136: tsigKeyName and tsigSecret must be set together`},
		{"bad key name", func(c *RFC2136Config) { c.TSIGKeyName = "a..b" },
			`dns01: rfc2136: tsigKeyName "a..b" is not a valid DNS name`},
		{"secret not base64", func(c *RFC2136Config) { c.TSIGSecret = "not base64!" },
			`dns01: rfc2136: tsigSecret is not valid base64: illegal base64 data at input byte 3`},
		{"secret url base64", func(c *RFC2136Config) { c.TSIGSecret = "-_-_" },
			`dns01: rfc2136: tsigSecret is not valid base64: illegal base64 data at input byte 0`},
		{"bad zone", func(c *RFC2136Config) { c.Zone = "a..example.test" },
			`dns01: rfc2136: zone "a..example.test" is not a valid DNS name`},
		{"negative timeout", func(c *RFC2136Config) { c.Timeout = -time.Second },
			`dns01: rfc2136: negative timeout -1s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.mod(&cfg)
			p, err := NewRFC2136(cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("NewRFC2136: %v, %v; want error %q", p, err, tc.want)
			}
		})
	}
}

func TestNewRFC2136Defaults(t *testing.T) {
	for _, tc := range []struct {
		cfg       RFC2136Config
		algorithm string
	}{
		{RFC2136Config{Nameserver: "[::1]:53", TSIGKeyName: "Key", TSIGSecret: "c2VjcmV0"}, dns.HmacSHA256},
		{RFC2136Config{Nameserver: "ns:53", TSIGKeyName: "key.", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "HMAC-SHA1."}, dns.HmacSHA1},
		{RFC2136Config{Nameserver: "ns:53", TSIGKeyName: "key.", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "hmac-sha512"}, dns.HmacSHA512},
		{RFC2136Config{Nameserver: "ns:53", TSIGKeyName: "key.", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "HMACSHA512"}, dns.HmacSHA512}, // cert-manager's spelling
		{RFC2136Config{Nameserver: "ns:53", TSIGKeyName: "key.", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "HMACSHA256"}, dns.HmacSHA256},
		{RFC2136Config{Nameserver: "ns:53", TSIGKeyName: "key.", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "HMACSHA1"}, dns.HmacSHA1},
		{RFC2136Config{Nameserver: "ns:53"}, dns.HmacSHA256}, // unsigned
	} {
		p, err := NewRFC2136(tc.cfg)
		if err != nil {
			t.Fatalf("NewRFC2136(%+v): %v", tc.cfg, err)
		}
		if p.algorithm != tc.algorithm || p.ttl != DefaultTTL || p.timeout != DefaultTimeout || p.zone != "" {
			t.Errorf("NewRFC2136(%+v) = algorithm %q ttl %d timeout %s zone %q", tc.cfg, p.algorithm, p.ttl, p.timeout, p.zone)
		}
		if tc.cfg.TSIGKeyName != "" && p.keyName != "key." {
			t.Errorf("key name %q, want %q", p.keyName, "key.")
		}
	}
	p, err := NewRFC2136(RFC2136Config{Nameserver: "ns:53", Zone: "Example.Test", TTL: 5, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.zone != "example.test." || p.ttl != 5 || p.timeout != time.Second {
		t.Errorf("zone %q ttl %d timeout %s", p.zone, p.ttl, p.timeout)
	}
}

func TestRFC2136PresentAndCleanUp(t *testing.T) {
	b := startBIND(t)
	p := newRFC2136(t, rfc2136Config(b))
	check := newSelfCheck(t, b.Addr)
	ctx := t.Context()

	const name = "_acme-challenge.a.example.test."
	apex := challenge("a.example.test", "apex-digest")
	wildcard := challenge("*.a.example.test", "wildcard-digest")

	// Before Present the self check reports the record as not propagated.
	err := check.Check(ctx, apex)
	if !errors.Is(err, ErrNotPropagated) {
		t.Fatalf("Check before Present = %v, want ErrNotPropagated", err)
	}
	want := `dns01: DNS record for "a.example.test" not yet propagated: ` + name + ` TXT: ` + b.Addr + ` answered NXDOMAIN`
	if err.Error() != want {
		t.Fatalf("Check before Present = %q, want %q", err, want)
	}

	if err := p.Present(ctx, apex); err != nil {
		t.Fatalf("Present: %v", err)
	}
	eventually(t, 5*time.Second, func() error { return check.Check(ctx, apex) })
	if got := stacktest.TXT(t, b.Addr, name); !slices.Equal(got, []string{"apex-digest"}) {
		t.Fatalf("after Present: %q", got)
	}
	// Presenting again is harmless.
	if err := p.Present(ctx, apex); err != nil {
		t.Fatalf("second Present: %v", err)
	}

	// The wildcard's challenge shares the record name: both values coexist.
	err = check.Check(ctx, wildcard)
	want = `dns01: DNS record for "a.example.test" not yet propagated: ` + name + ` TXT: ` + b.Addr + ` answered 1 other value`
	if !errors.Is(err, ErrNotPropagated) || err.Error() != want {
		t.Fatalf("Check of the wildcard before its Present = %v, want %q", err, want)
	}
	if err := p.Present(ctx, wildcard); err != nil {
		t.Fatalf("Present wildcard: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, name); !slices.Equal(got, []string{"apex-digest", "wildcard-digest"}) {
		t.Fatalf("after both Presents: %q", got)
	}
	if err := check.Check(ctx, apex); err != nil {
		t.Errorf("Check apex with both present: %v", err)
	}
	if err := check.Check(ctx, wildcard); err != nil {
		t.Errorf("Check wildcard with both present: %v", err)
	}

	// Cleaning up one keeps the other, and cleaning up twice is fine.
	if err := p.CleanUp(ctx, apex); err != nil {
		t.Fatalf("CleanUp apex: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, name); !slices.Equal(got, []string{"wildcard-digest"}) {
		t.Fatalf("after CleanUp of apex: %q", got)
	}
	if err := p.CleanUp(ctx, apex); err != nil {
		t.Fatalf("second CleanUp apex: %v", err)
	}
	if err := check.Check(ctx, wildcard); err != nil {
		t.Errorf("Check wildcard after CleanUp of apex: %v", err)
	}
	if err := check.Check(ctx, apex); !errors.Is(err, ErrNotPropagated) {
		t.Errorf("Check apex after its CleanUp = %v, want ErrNotPropagated", err)
	}
	if err := p.CleanUp(ctx, wildcard); err != nil {
		t.Fatalf("CleanUp wildcard: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, name); len(got) != 0 {
		t.Fatalf("after both CleanUps: %q", got)
	}
	// Cleaning up something never presented is fine too.
	if err := p.CleanUp(ctx, challenge("never.example.test", "x")); err != nil {
		t.Fatalf("CleanUp of a never presented challenge: %v", err)
	}
}

func TestRFC2136SeparateProviders(t *testing.T) {
	// What one worker presents, another cleans up.
	b := startBIND(t)
	ch := challenge("w.example.test", "digest")
	if err := newRFC2136(t, rfc2136Config(b)).Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if err := newRFC2136(t, rfc2136Config(b)).CleanUp(t.Context(), ch); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, ChallengeRecordName(ch.DNSName)); len(got) != 0 {
		t.Fatalf("after CleanUp by another provider: %q", got)
	}
}

func TestRFC2136LongValue(t *testing.T) {
	b := startBIND(t)
	p := newRFC2136(t, rfc2136Config(b))
	ch := challenge("long.example.test", strings.Repeat("v", 300))
	if err := p.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if err := newSelfCheck(t, b.Addr).Check(t.Context(), ch); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := p.CleanUp(t.Context(), ch); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, ChallengeRecordName(ch.DNSName)); len(got) != 0 {
		t.Fatalf("after CleanUp: %q", got)
	}
}

func TestRFC2136WrongSecret(t *testing.T) {
	b := startBIND(t)
	cfg := rfc2136Config(b)
	cfg.TSIGSecret = base64.StdEncoding.EncodeToString(make([]byte, 32))
	p := newRFC2136(t, cfg)
	err := p.Present(t.Context(), challenge("a.example.test", "digest"))
	const want = "dns01: rfc2136: update _acme-challenge.a.example.test. in zone example.test.: server answered NOTAUTH (TSIG error BADSIG)"
	if err == nil || err.Error() != want {
		t.Fatalf("Present with a wrong secret = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrNameserver) {
		t.Fatalf("error does not wrap ErrNameserver: %v", err)
	}

	cfg = rfc2136Config(b)
	cfg.TSIGKeyName = "other-key"
	err = newRFC2136(t, cfg).Present(t.Context(), challenge("a.example.test", "digest"))
	if err == nil || !strings.HasSuffix(err.Error(), "server answered NOTAUTH (TSIG error BADKEY)") {
		t.Fatalf("Present with an unknown key = %v, want NOTAUTH (TSIG error BADKEY)", err)
	}
	if got := stacktest.TXT(t, b.Addr, "_acme-challenge.a.example.test."); len(got) != 0 {
		t.Fatalf("rejected updates changed the zone: %q", got)
	}
}

func TestRFC2136Unsigned(t *testing.T) {
	b := startBIND(t)
	p := newRFC2136(t, RFC2136Config{Nameserver: b.Addr, Timeout: 5 * time.Second})
	err := p.Present(t.Context(), challenge("a.example.test", "digest"))
	const want = "dns01: rfc2136: update _acme-challenge.a.example.test. in zone example.test.: server answered REFUSED"
	if err == nil || err.Error() != want {
		t.Fatalf("unsigned Present = %v, want %q", err, want)
	}
}

func TestRFC2136ZoneDetection(t *testing.T) {
	b := startBIND(t)
	p := newRFC2136(t, rfc2136Config(b))
	ctx := t.Context()

	ch := challenge("x.y.example.test", "deep-digest")
	name := ChallengeRecordName(ch.DNSName)
	zone, err := p.findZone(ctx, name)
	if err != nil || zone != "example.test." {
		t.Fatalf("findZone(%s) = %q, %v; want example.test.", name, zone, err)
	}
	if c, ok := p.zones[name]; !ok || c.zone != "example.test." {
		t.Fatalf("zone of %s not cached: %+v", name, p.zones)
	}
	if err := p.Present(ctx, ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, name); !slices.Equal(got, []string{"deep-digest"}) {
		t.Fatalf("after Present: %q", got)
	}
	if err := newSelfCheck(t, b.Addr).Check(ctx, ch); err != nil {
		t.Fatalf("Check: %v", err)
	}

	// The apex itself.
	if zone, err := p.findZone(ctx, "example.test."); err != nil || zone != "example.test." {
		t.Fatalf("findZone(example.test.) = %q, %v", zone, err)
	}

	// The cache is used: with the server stopped, the cached zone is still
	// found, while an uncached name needs the server.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if zone, err := p.findZone(ctx, name); err != nil || zone != "example.test." {
		t.Fatalf("cached findZone = %q, %v", zone, err)
	}
	p.timeout = 500 * time.Millisecond
	if _, err := p.findZone(ctx, "_acme-challenge.other.example.test."); !errors.Is(err, ErrNameserver) {
		t.Fatalf("uncached findZone with the server down = %v, want ErrNameserver", err)
	}
}

func TestRFC2136ZoneNotFound(t *testing.T) {
	b := startBIND(t)
	p := newRFC2136(t, rfc2136Config(b))
	err := p.Present(t.Context(), challenge("a.example.com", "digest"))
	want := "dns01: rfc2136: no SOA record for _acme-challenge.a.example.com. or a parent at " + b.Addr +
		" (answers: _acme-challenge.a.example.com. REFUSED, a.example.com. REFUSED, example.com. REFUSED, com. REFUSED)"
	if err == nil || err.Error() != want {
		t.Fatalf("Present outside the zones = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrZoneNotFound) {
		t.Fatalf("error does not wrap ErrZoneNotFound: %v", err)
	}
}

func TestRFC2136ConfiguredZone(t *testing.T) {
	b := startBIND(t)
	cfg := rfc2136Config(b)
	cfg.Zone = "Example.Test"
	p := newRFC2136(t, cfg)
	ch := challenge("z.example.test", "digest")
	if err := p.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if len(p.zones) != 0 {
		t.Errorf("a configured zone was looked up: %+v", p.zones)
	}
	if got := stacktest.TXT(t, b.Addr, ChallengeRecordName(ch.DNSName)); !slices.Equal(got, []string{"digest"}) {
		t.Fatalf("after Present: %q", got)
	}

	err := p.Present(t.Context(), challenge("a.example.com", "digest"))
	const want = "dns01: rfc2136: _acme-challenge.a.example.com. is not in the configured zone example.test."
	if err == nil || err.Error() != want || !errors.Is(err, ErrZoneNotFound) {
		t.Fatalf("Present outside the configured zone = %v, want %q", err, want)
	}

	// A configured zone the server does not serve: BIND answers NOTAUTH.
	cfg.Zone = "sub.example.test"
	err = newRFC2136(t, cfg).Present(t.Context(), challenge("a.sub.example.test", "digest"))
	if err == nil || !strings.Contains(err.Error(), "in zone sub.example.test.: server answered NOT") {
		t.Fatalf("Present to a zone not served = %v", err)
	}
}

func TestRFC2136ServerDown(t *testing.T) {
	b := startBIND(t)
	cfg := rfc2136Config(b)
	cfg.Zone = testZone
	cfg.Timeout = 500 * time.Millisecond
	p := newRFC2136(t, cfg)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	err := p.Present(t.Context(), challenge("a.example.test", "digest"))
	if !errors.Is(err, ErrNameserver) || !strings.Contains(err.Error(), " at "+b.Addr+": ") {
		t.Fatalf("Present with the server down = %v, want ErrNameserver naming %s", err, b.Addr)
	}
}

func TestRFC2136Unsupported(t *testing.T) {
	p := newRFC2136(t, RFC2136Config{Nameserver: "127.0.0.1:1"})
	ch := challenge("a.example.test", "digest")
	ch.Type = "HTTP-01"
	for _, f := range []func(context.Context, solvers.Challenge) error{p.Present, p.CleanUp} {
		if err := f(t.Context(), ch); !errors.Is(err, ErrUnsupportedChallenge) {
			t.Errorf("err = %v, want ErrUnsupportedChallenge", err)
		}
	}
}
