package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
	"github.com/acmeq/acmeq/solvers/dns01/lego"
	"github.com/acmeq/acmeq/solvers/dns01/webhook"
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
// spec.solver.dns01: its provider (rfc2136, webhook or lego), following
// CNAMEs when its cnameStrategy is Follow, with the self-check of the
// worker's Config.DNS01SelfCheck (recursive nameservers, authoritative
// nameservers).
//
// An error is a configuration that can never work (it fails the
// challenge); what may heal (a missing Secret, a provider that answers an
// error, a zone not found) comes from the solver's methods and is retried.
func (w *Worker) dns01Solver(ch *messages.Challenge) (solvers.Solver, error) {
	d := ch.Spec.Solver.DNS01
	fail := func(format string, args ...any) (solvers.Solver, error) {
		return nil, fmt.Errorf("DNS-01 solver for %q: %s", ch.Spec.DNSName, fmt.Sprintf(format, args...))
	}
	if d == nil {
		return fail("the challenge's solver has no dns01 provider (want rfc2136, webhook or lego)")
	}
	n := 0
	for _, set := range []bool{d.RFC2136 != nil, d.Webhook != nil, d.Lego != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return fail("the challenge's solver has no dns01 provider (want rfc2136, webhook or lego)")
	case n > 1:
		return fail("the challenge's solver has more than one dns01 provider (want one of rfc2136, webhook or lego)")
	}
	follow := false
	switch d.CNAMEStrategy {
	case "", messages.CNAMEStrategyNone:
	case messages.CNAMEStrategyFollow:
		follow = true
	default:
		return fail("cnameStrategy %q is not supported (want %s or %s)", d.CNAMEStrategy, messages.CNAMEStrategyNone, messages.CNAMEStrategyFollow)
	}
	check, err := selfChecks.get(w.cfg.DNS01SelfCheck)
	if err != nil {
		return fail("%v", unprefixed(err))
	}
	s := &dnsSolver{check: check, follow: follow}
	ns := w.secretNamespace(ch)
	switch {
	case d.RFC2136 != nil:
		cfg := *d.RFC2136
		if cfg.TSIGKeyName != "" && cfg.TSIGSecretSecretRef == nil {
			return fail("rfc2136: tsigKeyName is set without tsigSecretSecretRef")
		}
		if !validHostPort(cfg.Nameserver) {
			return fail("rfc2136: nameserver %q must be host:port, e.g. 10.0.0.53:53", cfg.Nameserver)
		}
		s.provider = func(ctx context.Context) (solvers.Solver, error) { return w.rfc2136Provider(ctx, ns, cfg) }
	case d.Webhook != nil:
		cfg := *d.Webhook
		timeout, err := webhookTimeout(cfg.Timeout)
		if err != nil {
			return fail("webhook: %v", err)
		}
		// Checked now, so that a bad URL fails the challenge at once.
		if _, err := webhook.New(webhook.Config{URL: cfg.URL, CABundle: []byte(cfg.CABundle), Timeout: timeout}); err != nil {
			return fail("%v", err)
		}
		s.provider = func(ctx context.Context) (solvers.Solver, error) {
			return w.webhookProvider(ctx, ns, cfg, timeout, check.Resolver())
		}
	case d.Lego != nil:
		// Its settings are checked when presenting: a provider unknown
		// to this worker may be known to a newer one, so the challenge is
		// retried rather than failed.
		cfg := *d.Lego
		if follow {
			// lego providers follow CNAMEs themselves (see package lego).
			s.follow = false
		}
		issuer := ch.Spec.IssuerRef
		s.provider = func(ctx context.Context) (solvers.Solver, error) {
			return w.legoProvider(ctx, ns, issuer, cfg, check.Resolver())
		}
	}
	return s, nil
}

// secretNamespace is the namespace the Secrets of a challenge's solver
// are read in: its issuer's resource namespace. For an Issuer that is the
// challenge's own namespace; for a ClusterIssuer, which has none, it is
// Config.ClusterResourceNamespace, as cert-manager's
// --cluster-resource-namespace, whatever namespace the challenge is in.
func (w *Worker) secretNamespace(ch *messages.Challenge) string {
	if ch.Spec.IssuerRef.IssuerKind() == messages.KindClusterIssuer {
		return w.cfg.ClusterResourceNamespace
	}
	return ch.Metadata.Namespace
}

// validHostPort reports whether s is host:port with a port from 1 to 65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// webhookTimeout parses a webhook solver's timeout ("" is the default).
func webhookTimeout(s string) (time.Duration, error) {
	if s == "" {
		return webhook.DefaultTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout %q must be a positive duration, e.g. 30s", s)
	}
	return d, nil
}

// dnsSolver presents DNS-01 challenges with the provider of a solver and
// self-checks them.
//
// The provider is built for each Present and CleanUp, from the Secrets as
// they are then, so that a created or rotated Secret is used from the next
// attempt on; the self-check, which runs on every retry, reads no Secret.
type dnsSolver struct {
	provider func(ctx context.Context) (solvers.Solver, error)
	check    *dns01.SelfCheck
	follow   bool // cnameStrategy Follow, for providers that write records
}

var (
	_ solvers.Solver      = (*dnsSolver)(nil)
	_ solvers.SelfChecker = (*dnsSolver)(nil)
)

// solver returns the provider, wrapped to follow CNAMEs when asked.
func (s *dnsSolver) solver(ctx context.Context) (solvers.Solver, error) {
	p, err := s.provider(ctx)
	if err != nil {
		return nil, err
	}
	if rp, ok := p.(dns01.RecordProvider); ok && s.follow {
		return &dns01.CNAMEFollowing{Provider: rp, Resolver: s.check.Resolver()}, nil
	}
	return p, nil
}

// Present adds the challenge's TXT value. Its errors, like those of
// CleanUp and Check, have no "dns01: " package prefix: users read them in
// the challenge's reason, e.g. "Error presenting challenge: rfc2136: update
// _acme-challenge.example.com. in zone example.com.: server answered
// REFUSED".
func (s *dnsSolver) Present(ctx context.Context, ch solvers.Challenge) error {
	p, err := s.solver(ctx)
	if err != nil {
		return err
	}
	return unprefixed(p.Present(ctx, ch))
}

// CleanUp removes the challenge's TXT value, keeping any other.
func (s *dnsSolver) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	p, err := s.solver(ctx)
	if err != nil {
		return err
	}
	return unprefixed(p.CleanUp(ctx, ch))
}

// Check asks the authoritative (or recursive) nameservers for the
// challenge's TXT value. Its error reads like cert-manager's, which the
// challenge's reason quotes:
//
//	Waiting for dns-01 challenge propagation: DNS record for "example.com" not yet propagated: ...
//
// followed by what each nameserver answered. The error still wraps the
// package's (errors.Is(err, dns01.ErrNotPropagated)).
func (s *dnsSolver) Check(ctx context.Context, ch solvers.Challenge) error {
	return unprefixed(s.check.Check(ctx, ch))
}

// secretValue reads one key of a Secret of namespace ns; what names it in
// errors, e.g. "rfc2136: TSIG secret". A value written from a file often
// ends with a newline: white space around it is removed.
func (w *Worker) secretValue(ctx context.Context, ns string, ref *messages.SecretKeySelector, what string) (string, error) {
	data, err := w.secretData(ctx, ns, ref.Name, what)
	if err != nil {
		return "", err
	}
	v, ok := data[ref.Key]
	if !ok {
		return "", fmt.Errorf("%s: no key %q in Secret %q", what, ref.Key, ref.Name)
	}
	s := strings.TrimSpace(string(v))
	if s == "" {
		return "", fmt.Errorf("%s: key %q of Secret %q is empty", what, ref.Key, ref.Name)
	}
	return s, nil
}

// secretData reads a whole Secret of namespace ns.
func (w *Worker) secretData(ctx context.Context, ns, name, what string) (map[string][]byte, error) {
	data, err := w.store.GetSecret(ctx, ns, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: Secret %q not found in namespace %q", what, name, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading Secret %q: %w", what, name, err)
	}
	return data, nil
}

// rfc2136Provider returns the RFC 2136 provider of cfg with the current
// TSIG secret.
func (w *Worker) rfc2136Provider(ctx context.Context, ns string, c messages.RFC2136Provider) (solvers.Solver, error) {
	cfg := dns01.RFC2136Config{
		Nameserver:    c.Nameserver,
		TSIGKeyName:   c.TSIGKeyName,
		TSIGAlgorithm: c.TSIGAlgorithm,
	}
	ref := c.TSIGSecretSecretRef
	if ref != nil {
		var err error
		if cfg.TSIGSecret, err = w.secretValue(ctx, ns, ref, "rfc2136: TSIG secret"); err != nil {
			return nil, err
		}
	}
	p, err := rfc2136Providers.get(cfg, func() (*dns01.RFC2136, error) { return dns01.NewRFC2136(cfg) })
	if err != nil && ref != nil {
		return nil, fmt.Errorf("%w (TSIG secret from key %q of Secret %q)", unprefixed(err), ref.Key, ref.Name)
	}
	return p, unprefixed(err)
}

// webhookProvider returns the webhook provider of cfg with the current
// bearer token and HMAC key.
func (w *Worker) webhookProvider(ctx context.Context, ns string, c messages.WebhookProvider, timeout time.Duration, r *dns01.Resolver) (solvers.Solver, error) {
	cfg := webhook.Config{URL: c.URL, CABundle: []byte(c.CABundle), Timeout: timeout, Resolver: r}
	if ref := c.BearerTokenSecretRef; ref != nil {
		var err error
		if cfg.BearerToken, err = w.secretValue(ctx, ns, ref, "webhook: bearer token"); err != nil {
			return nil, err
		}
	}
	if ref := c.HMACSecretRef; ref != nil {
		key, err := w.secretValue(ctx, ns, ref, "webhook: HMAC key")
		if err != nil {
			return nil, err
		}
		cfg.HMACKey = []byte(key)
	}
	return webhookProviders.get(webhookKey{url: c.URL, token: cfg.BearerToken, key: string(cfg.HMACKey), ca: c.CABundle, timeout: timeout, resolver: r},
		func() (*webhook.Provider, error) { return webhook.New(cfg) })
}

// legoProvider returns the lego provider of cfg with the current
// credentials, computing key authorizations with the account key of the
// challenge's issuer.
func (w *Worker) legoProvider(ctx context.Context, ns string, issuer messages.IssuerRef, c messages.LegoProvider, r *dns01.Resolver) (solvers.Solver, error) {
	creds := map[string]string{}
	if ref := c.CredentialsSecretRef; ref != nil {
		data, err := w.secretData(ctx, ns, ref.Name, "lego: "+c.Provider+": credentials")
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			creds[k] = string(v)
		}
	}
	keys := append([]string{}, slices.Collect(maps.Keys(creds))...) // never nil: required settings are checked
	if err := lego.Validate(c.Provider, c.Config, keys); err != nil {
		return nil, err
	}
	lego.UseRecursiveNameservers(r.Nameservers(), dns01.DefaultTimeout)
	// The issuer's kind is in the key: an Issuer and a ClusterIssuer of
	// one name have different accounts, so different key authorizations.
	key := legoKey(ns, string(issuer.IssuerKind())+"/"+issuer.Name, c.Provider, c.Config, creds)
	return legoProviders.get(key, func() (*lego.Provider, error) {
		return lego.New(lego.Config{
			Provider: c.Provider, Settings: c.Config, Credentials: creds,
			KeyAuthorization: func(ctx context.Context, token string) (string, error) {
				cl, _, err := w.acme.client(ctx, ns, issuer)
				if err != nil {
					return "", err
				}
				thumb, err := acme.JWKThumbprint(cl.Key.Public())
				if err != nil {
					return "", err
				}
				return token + "." + thumb, nil
			},
		})
	})
}

// legoKey identifies a lego provider: its issuer (whose account key makes
// the key authorizations) and every setting, credentials included, so a
// rotated credential gets a new provider.
func legoKey(ns, issuer, provider string, settings, creds map[string]string) string {
	h := sha256.New()
	for _, m := range []map[string]string{settings, creds} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(h, "%q=%q;", k, m[k])
		}
		h.Write([]byte{0})
	}
	return ns + "/" + issuer + "/" + provider + "/" + hex.EncodeToString(h.Sum(nil))
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

// Providers and self-checks are cached per configuration and shared by
// the workers of the process: an RFC 2136 provider caches the zones it
// found, a lego provider may have asked its API for its version, and a
// self-check may have read /etc/resolv.conf. Each key includes the secrets
// used, so a rotated Secret gets a new provider.
var (
	rfc2136Providers = newCache[dns01.RFC2136Config, *dns01.RFC2136]()
	webhookProviders = newCache[webhookKey, *webhook.Provider]()
	legoProviders    = newCache[string, *lego.Provider]()
	selfCheckCache   = newCache[string, *dns01.SelfCheck]()
	selfChecks       = selfCheckGetter{}
)

// webhookKey identifies a webhook provider.
type webhookKey struct {
	url, token, key, ca string
	timeout             time.Duration
	resolver            *dns01.Resolver
}

// selfCheckGetter returns the self-check of a configuration.
type selfCheckGetter struct{}

func (selfCheckGetter) get(cfg dns01.SelfCheckConfig) (*dns01.SelfCheck, error) {
	key := fmt.Sprintf("%q|%v|%d|%s", cfg.RecursiveNameservers, cfg.RecursiveNameserversOnly, cfg.AuthoritativePort, cfg.Timeout)
	return selfCheckCache.get(key, func() (*dns01.SelfCheck, error) { return dns01.NewSelfCheck(cfg) })
}

// providerCacheSize bounds each cache; when full it starts over.
const providerCacheSize = 256

// cache is a small concurrent map from a configuration to what was built
// from it.
type cache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func newCache[K comparable, V any]() *cache[K, V] { return &cache[K, V]{m: map[K]V{}} }

// get returns the value of k, building it with build the first time.
// Build errors are not cached.
func (c *cache[K, V]) get(k K, build func() (V, error)) (V, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	if len(c.m) >= providerCacheSize {
		clear(c.m)
	}
	c.m[k] = v
	return v, nil
}
