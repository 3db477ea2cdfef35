package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

func dns01Challenge(p *messages.RFC2136Provider) *messages.Challenge {
	ch := &messages.Challenge{
		Metadata: messages.ObjectMeta{Name: "c", Namespace: "default"},
		Spec:     messages.ChallengeSpec{DNSName: "www.example.test", Type: messages.ChallengeTypeDNS01, Token: "tok", Key: "digest"},
	}
	if p != nil {
		ch.Spec.Solver.DNS01 = &messages.DNS01Solver{RFC2136: p}
	}
	return ch
}

// Lego settings are checked when presenting, and their errors are
// retried: a provider unknown to this worker may be known to a newer one.
func TestLegoSettingsCheckedWhenPresenting(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: Config{DNS01SelfCheck: dns01.SelfCheckConfig{RecursiveNameservers: []string{"127.0.0.1:53"}}}}
	for p, want := range map[*messages.LegoProvider]string{
		{Provider: "route99"}: `lego: unknown provider "route99" (known: pdns)`,
		{Provider: "pdns", Config: map[string]string{"PDNS_API_KEY": "k"}}: "lego: invalid provider settings: pdns: PDNS_API_KEY is a credential: put it in the credentials Secret, not in config; " +
			"PDNS_API_URL is required (in config); PDNS_API_KEY is required (in the credentials Secret)",
	} {
		ch := dns01Challenge(nil)
		ch.Spec.Solver.DNS01 = &messages.DNS01Solver{Lego: p}
		s, err := w.solverFor(ch)
		if err != nil {
			t.Fatalf("solverFor: %v", err)
		}
		if err := s.Present(t.Context(), solverChallenge(ch)); err == nil || err.Error() != want {
			t.Errorf("Present = %v\nwant %s", err, want)
		}
	}
}

func TestSolverForDNS01Config(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: Config{DNS01SelfCheck: dns01.SelfCheckConfig{RecursiveNameservers: []string{"127.0.0.1:53"}}}}
	ref := &messages.SecretKeySelector{Name: "tsig", Key: "key"}
	with := func(d messages.DNS01Solver) *messages.Challenge {
		ch := dns01Challenge(nil)
		ch.Spec.Solver.DNS01 = &d
		return ch
	}
	rfc := &messages.RFC2136Provider{Nameserver: "127.0.0.1:53"}
	hook := &messages.WebhookProvider{URL: "https://dns-bridge.test/acme"}
	pdns := &messages.LegoProvider{Provider: "pdns", Config: map[string]string{"PDNS_API_URL": "http://127.0.0.1:8081"}, CredentialsSecretRef: &messages.SecretRef{Name: "pdns"}}
	tests := []struct {
		name string
		ch   *messages.Challenge
		want string // "" means a solver
	}{
		{"rfc2136", dns01Challenge(&messages.RFC2136Provider{Nameserver: "127.0.0.1:53", TSIGKeyName: "k.", TSIGSecretSecretRef: ref}), ""},
		{"unsigned", dns01Challenge(&messages.RFC2136Provider{Nameserver: "127.0.0.1:53"}), ""},
		{"no provider", dns01Challenge(nil),
			`DNS-01 solver for "www.example.test": the challenge's solver has no dns01 provider (want rfc2136, webhook or lego)`},
		{"bad nameserver", dns01Challenge(&messages.RFC2136Provider{Nameserver: "ns.example.test"}),
			`DNS-01 solver for "www.example.test": rfc2136: nameserver "ns.example.test" must be host:port, e.g. 10.0.0.53:53`},
		{"key name without secret", dns01Challenge(&messages.RFC2136Provider{Nameserver: "127.0.0.1:53", TSIGKeyName: "k."}),
			`DNS-01 solver for "www.example.test": rfc2136: tsigKeyName is set without tsigSecretSecretRef`},
		{"rfc2136 following CNAMEs", with(messages.DNS01Solver{RFC2136: rfc, CNAMEStrategy: "Follow"}), ""},
		{"webhook", with(messages.DNS01Solver{Webhook: hook}), ""},
		{"webhook with auth and timeout", with(messages.DNS01Solver{Webhook: &messages.WebhookProvider{URL: "http://127.0.0.1:1/x", Timeout: "2s",
			BearerTokenSecretRef: ref, HMACSecretRef: ref}, CNAMEStrategy: "None"}), ""},
		{"lego", with(messages.DNS01Solver{Lego: pdns}), ""},
		{"two providers", with(messages.DNS01Solver{RFC2136: rfc, Webhook: hook}),
			`DNS-01 solver for "www.example.test": the challenge's solver has more than one dns01 provider (want one of rfc2136, webhook or lego)`},
		{"bad cnameStrategy", with(messages.DNS01Solver{RFC2136: rfc, CNAMEStrategy: "follow"}),
			`DNS-01 solver for "www.example.test": cnameStrategy "follow" is not supported (want None or Follow)`},
		{"webhook URL", with(messages.DNS01Solver{Webhook: &messages.WebhookProvider{URL: "dns-bridge.test"}}),
			`DNS-01 solver for "www.example.test": webhook: url "dns-bridge.test" must be an absolute http or https URL`},
		{"webhook timeout", with(messages.DNS01Solver{Webhook: &messages.WebhookProvider{URL: "https://x.test", Timeout: "soon"}}),
			`DNS-01 solver for "www.example.test": webhook: timeout "soon" must be a positive duration, e.g. 30s`},
		{"unknown lego provider (checked when presenting)", with(messages.DNS01Solver{Lego: &messages.LegoProvider{Provider: "route99"}}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := w.solverFor(tt.ch)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("solverFor: %v", err)
			case tt.want == "":
				if _, ok := s.(solvers.SelfChecker); !ok {
					t.Errorf("solver %T has no self-check", s)
				}
			case err == nil || err.Error() != tt.want:
				t.Errorf("solverFor error:\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

// The self-check error reads like cert-manager's in the challenge reason:
// no "dns01: " package prefix, still matching dns01.ErrNotPropagated.
func TestDNS01SelfCheckError(t *testing.T) {
	t.Parallel()
	b, err := stack.StartBIND(t.TempDir(), "example.test")
	if err != nil {
		t.Fatalf("StartBIND: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	w := &Worker{cfg: Config{DNS01SelfCheck: dns01.SelfCheckConfig{RecursiveNameservers: []string{b.Addr}, RecursiveNameserversOnly: true}}}
	ch := dns01Challenge(&messages.RFC2136Provider{Nameserver: b.Addr})
	s, err := w.solverFor(ch)
	if err != nil {
		t.Fatal(err)
	}
	err = s.(solvers.SelfChecker).Check(ctx, solverChallenge(ch))
	want := `DNS record for "www.example.test" not yet propagated: _acme-challenge.www.example.test. TXT: ` + b.Addr + ` answered NXDOMAIN`
	if err == nil || err.Error() != want || !errors.Is(err, dns01.ErrNotPropagated) {
		t.Fatalf("Check = %v, want %s (wrapping ErrNotPropagated)", err, want)
	}
	if reason := "Waiting for dns-01 challenge propagation: " + err.Error(); !strings.HasPrefix(reason, `Waiting for dns-01 challenge propagation: DNS record for "www.example.test" not yet propagated`) {
		t.Errorf("reason %q", reason)
	}

	// Present it (unsigned updates are refused by the BIND: it wants its
	// key), with the provider itself, and the check passes.
	p, err := dns01.NewRFC2136(dns01.RFC2136Config{Nameserver: b.Addr, TSIGKeyName: b.TSIGKeyName, TSIGSecret: b.TSIGSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Present(ctx, solverChallenge(ch)); err != nil {
		t.Fatal(err)
	}
	if err := s.(solvers.SelfChecker).Check(ctx, solverChallenge(ch)); err != nil {
		t.Errorf("Check after presenting: %v", err)
	}

	// The unsigned provider's refusal has no package prefix either.
	err = s.Present(ctx, solverChallenge(ch))
	want = `rfc2136: update _acme-challenge.www.example.test. in zone example.test.: server answered REFUSED`
	if err == nil || err.Error() != want || !errors.Is(err, dns01.ErrNameserver) {
		t.Errorf("unsigned Present = %v, want %s", err, want)
	}
}
