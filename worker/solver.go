package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// solverFor returns the solver of a challenge's spec. An error is a
// configuration the challenge can never be solved with (it fails the
// challenge); what may heal (a missing Secret, an unreachable nameserver)
// is reported by the solver's methods instead and retried.
func (w *Worker) solverFor(ch *messages.Challenge) (solvers.Solver, error) {
	switch ch.Spec.Type {
	case messages.ChallengeTypeHTTP01:
		return &checkedHTTP01{w.http01, w.check}, nil
	case messages.ChallengeTypeDNS01:
		return w.dns01Solver(ch)
	}
	return nil, fmt.Errorf("unknown challenge type %q", ch.Spec.Type)
}

// checkedHTTP01 is the HTTP-01 presenter with its self-check.
type checkedHTTP01 struct {
	solvers.Solver
	check solvers.SelfChecker
}

func (c *checkedHTTP01) Check(ctx context.Context, ch solvers.Challenge) error {
	return c.check.Check(ctx, ch)
}

// dns01Solver returns the DNS-01 solver of the challenge's
// spec.solver.dns01: an RFC 2136 provider with a self-check that asks the
// provider's nameserver.
func (w *Worker) dns01Solver(ch *messages.Challenge) (solvers.Solver, error) {
	d := ch.Spec.Solver.DNS01
	if d == nil || d.RFC2136 == nil {
		return nil, fmt.Errorf("DNS-01 solver for %q: the challenge's solver has no dns01 provider (want rfc2136)", ch.Spec.DNSName)
	}
	cfg := *d.RFC2136
	if cfg.TSIGKeyName != "" && cfg.TSIGSecretSecretRef == nil {
		return nil, fmt.Errorf("DNS-01 solver for %q: rfc2136: tsigKeyName is set without tsigSecretSecretRef", ch.Spec.DNSName)
	}
	check, err := dns01.NewSelfCheck(dns01.SelfCheckConfig{Nameservers: []string{cfg.Nameserver}})
	if err != nil {
		return nil, fmt.Errorf("DNS-01 solver for %q: rfc2136: nameserver %q must be host:port, e.g. 10.0.0.53:53", ch.Spec.DNSName, cfg.Nameserver)
	}
	return &rfc2136Solver{store: w.store, namespace: ch.Metadata.Namespace, cfg: cfg, check: check}, nil
}

// rfc2136Solver presents DNS-01 challenges with RFC 2136 updates signed
// with the TSIG key of an Issuer's rfc2136 solver, and self-checks them.
//
// The TSIG secret is read from its (sealed) Secret when the provider is
// needed, by Present and CleanUp only, so a rotated Secret is used from the
// next challenge on; the self-check, which runs on every retry, reads no
// Secret.
type rfc2136Solver struct {
	store     *store.Store
	namespace string
	cfg       messages.RFC2136Provider
	check     *dns01.SelfCheck
}

var (
	_ solvers.Solver      = (*rfc2136Solver)(nil)
	_ solvers.SelfChecker = (*rfc2136Solver)(nil)
)

// Present adds the challenge's TXT value. Its errors, like those of
// CleanUp and Check, have no "dns01: " package prefix: users read them in
// the challenge's reason, e.g. "Error presenting challenge: rfc2136: update
// _acme-challenge.example.com. in zone example.com.: server answered
// REFUSED".
func (s *rfc2136Solver) Present(ctx context.Context, ch solvers.Challenge) error {
	p, err := s.provider(ctx)
	if err != nil {
		return err
	}
	return unprefixed(p.Present(ctx, ch))
}

// CleanUp removes the challenge's TXT value, keeping any other.
func (s *rfc2136Solver) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	p, err := s.provider(ctx)
	if err != nil {
		return err
	}
	return unprefixed(p.CleanUp(ctx, ch))
}

// Check asks the nameserver for the challenge's TXT value. Its error reads
// like cert-manager's, which the challenge's reason quotes:
//
//	Waiting for dns-01 challenge propagation: DNS record for "example.com" not yet propagated: ...
//
// followed by what the nameserver answered. The error still wraps the
// package's (errors.Is(err, dns01.ErrNotPropagated)).
func (s *rfc2136Solver) Check(ctx context.Context, ch solvers.Challenge) error {
	return unprefixed(s.check.Check(ctx, ch))
}

// provider returns the RFC 2136 provider of the configuration with the
// current TSIG secret.
func (s *rfc2136Solver) provider(ctx context.Context) (*dns01.RFC2136, error) {
	cfg := dns01.RFC2136Config{
		Nameserver:    s.cfg.Nameserver,
		TSIGKeyName:   s.cfg.TSIGKeyName,
		TSIGAlgorithm: s.cfg.TSIGAlgorithm,
	}
	ref := s.cfg.TSIGSecretSecretRef
	if ref != nil {
		data, err := s.store.GetSecret(ctx, s.namespace, ref.Name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("rfc2136: TSIG secret: Secret %q not found in namespace %q", ref.Name, s.namespace)
		}
		if err != nil {
			return nil, fmt.Errorf("rfc2136: TSIG secret: reading Secret %q: %w", ref.Name, err)
		}
		v, ok := data[ref.Key]
		if !ok {
			return nil, fmt.Errorf("rfc2136: TSIG secret: no key %q in Secret %q", ref.Key, ref.Name)
		}
		// A value written from a file often ends with a newline.
		cfg.TSIGSecret = strings.TrimSpace(string(v))
		if cfg.TSIGSecret == "" {
			return nil, fmt.Errorf("rfc2136: TSIG secret: key %q of Secret %q is empty", ref.Key, ref.Name)
		}
	}
	p, err := rfc2136Providers.get(cfg)
	if err != nil && ref != nil {
		return nil, fmt.Errorf("%w (TSIG secret from key %q of Secret %q)", unprefixed(err), ref.Key, ref.Name)
	}
	return p, unprefixed(err)
}

// unprefixed returns err without the "dns01: " prefix of its message,
// still wrapping it; nil stays nil.
func unprefixed(err error) error {
	if err == nil {
		return nil
	}
	return &unprefixedError{msg: strings.TrimPrefix(err.Error(), "dns01: "), err: err}
}

// unprefixedError is an error with another message that still wraps it.
type unprefixedError struct {
	msg string
	err error
}

func (e *unprefixedError) Error() string { return e.msg }
func (e *unprefixedError) Unwrap() error { return e.err }

// rfc2136Providers keeps one provider per configuration (the TSIG secret
// included, so a rotated secret gets a new provider), shared by the
// workers of the process: a provider caches the zones it found, which
// saves SOA lookups on every Present and CleanUp.
var rfc2136Providers = &rfc2136Cache{m: map[dns01.RFC2136Config]*dns01.RFC2136{}}

// rfc2136CacheSize bounds the cache; when full it starts over.
const rfc2136CacheSize = 256

type rfc2136Cache struct {
	mu sync.Mutex
	m  map[dns01.RFC2136Config]*dns01.RFC2136
}

func (c *rfc2136Cache) get(cfg dns01.RFC2136Config) (*dns01.RFC2136, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[cfg]; ok {
		return p, nil
	}
	p, err := dns01.NewRFC2136(cfg)
	if err != nil {
		return nil, err
	}
	if len(c.m) >= rfc2136CacheSize {
		clear(c.m)
	}
	c.m[cfg] = p
	return p, nil
}
