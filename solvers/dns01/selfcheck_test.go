package dns01

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestNewSelfCheckValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  SelfCheckConfig
		want string
	}{
		{"no port", SelfCheckConfig{RecursiveNameservers: []string{"10.0.0.53:53", "10.0.0.54"}},
			`dns01: self check: RecursiveNameservers[1] (ACMEQ_DNS01_RECURSIVE_NAMESERVERS) "10.0.0.54" must be host:port, e.g. 10.0.0.53:53`},
		{"negative timeout", SelfCheckConfig{RecursiveNameservers: []string{"10.0.0.53:53"}, Timeout: -time.Second},
			`dns01: self check: negative Timeout -1s`},
		{"bad port", SelfCheckConfig{RecursiveNameservers: []string{"10.0.0.53:53"}, AuthoritativePort: 70000},
			`dns01: self check: AuthoritativePort 70000 is not a port number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSelfCheck(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("NewSelfCheck: %v, %v; want error %q", s, err, tc.want)
			}
		})
	}
	s, err := NewSelfCheck(SelfCheckConfig{RecursiveNameservers: []string{"[::1]:53"}})
	if err != nil || s.timeout != DefaultTimeout || s.resolver.port != DefaultAuthoritativePort || s.only {
		t.Fatalf("NewSelfCheck(defaults) = %+v, %v", s, err)
	}
}

func TestSelfCheckAllNameservers(t *testing.T) {
	// The record must be at every nameserver: present it at one of two.
	b1, b2 := startBIND(t), startBIND(t)
	ch := challenge("*.m.example.test", "digest")
	if err := newRFC2136(t, rfc2136Config(b1)).Present(t.Context(), ch); err != nil {
		t.Fatalf("Present at the first server: %v", err)
	}
	check := newSelfCheck(t, b1.Addr, b2.Addr)
	err := check.Check(t.Context(), ch)
	want := `dns01: DNS record for "m.example.test" not yet propagated: _acme-challenge.m.example.test. TXT: ` + b2.Addr + ` answered NXDOMAIN`
	if !errors.Is(err, ErrNotPropagated) || err.Error() != want {
		t.Fatalf("Check = %v, want %q", err, want)
	}
	if err := newSelfCheck(t, b1.Addr).Check(t.Context(), ch); err != nil {
		t.Fatalf("Check at the first server only: %v", err)
	}

	if err := newRFC2136(t, rfc2136Config(b2)).Present(t.Context(), ch); err != nil {
		t.Fatalf("Present at the second server: %v", err)
	}
	eventually(t, 5*time.Second, func() error { return check.Check(t.Context(), ch) })
}

func TestSelfCheckNameserverErrors(t *testing.T) {
	b := startBIND(t)

	// BIND refuses names outside its zones.
	err := newSelfCheck(t, b.Addr).Check(t.Context(), challenge("a.example.com", "digest"))
	want := "dns01: following the CNAMEs of _acme-challenge.a.example.com.: CNAME query for _acme-challenge.a.example.com.: " + b.Addr + " answered REFUSED"
	if err == nil || err.Error() != want {
		t.Fatalf("Check outside the zones = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrNameserver) || errors.Is(err, ErrNotPropagated) {
		t.Fatalf("Check outside the zones = %v, want ErrNameserver only", err)
	}

	// A nameserver that does not answer.
	blackhole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blackhole.Close()
	silent := blackhole.LocalAddr().String()
	s, err := NewSelfCheck(SelfCheckConfig{RecursiveNameservers: []string{b.Addr, silent}, RecursiveNameserversOnly: true, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check(t.Context(), challenge("a.example.test", "digest"))
	if !errors.Is(err, ErrNameserver) || !strings.HasPrefix(err.Error(), "dns01: NS "+silent+": TXT query for _acme-challenge.a.example.test.: ") {
		t.Fatalf("Check with a silent nameserver = %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout error does not wrap context.DeadlineExceeded: %v", err)
	}
}

func TestSelfCheckContextAndChallenge(t *testing.T) {
	s := newSelfCheck(t, "127.0.0.1:1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Check(ctx, challenge("a.example.test", "digest")); !errors.Is(err, context.Canceled) {
		t.Errorf("Check with a cancelled context = %v, want context.Canceled", err)
	}
	ch := challenge("a.example.test", "digest")
	ch.Type = "HTTP-01"
	if err := s.Check(t.Context(), ch); !errors.Is(err, ErrUnsupportedChallenge) {
		t.Errorf("Check of an HTTP-01 challenge = %v, want ErrUnsupportedChallenge", err)
	}
}
