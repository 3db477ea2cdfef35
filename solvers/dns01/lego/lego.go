// Package lego bridges lego's catalogue of DNS providers
// (github.com/go-acme/lego/v5/providers/dns/<name>) to acmeq's DNS-01
// solvers.
//
// A solver names a provider and gives its settings, keyed by the
// environment variable names lego documents for it (e.g. PDNS_API_URL):
// non-secret settings in the solver's config, credentials in a sealed
// Secret. The bridge maps them onto the provider's Config struct itself:
// it never sets or reads process environment variables, which would leak
// one issuer's credentials into another's provider.
//
// Only the providers in the registry (see registry.go) are compiled in:
// importing lego's whole providers/dns package would pull in hundreds of
// cloud SDKs. Adding one is a few lines there.
//
// Two things lego does process-wide: its providers look zones (and CNAMEs)
// up through lego's default DNS client, which [UseRecursiveNameservers]
// points at acmeq's recursive nameservers; and they follow a CNAME at
// _acme-challenge.<name> whatever the solver's cnameStrategy, unless
// LEGO_DISABLE_CNAME_SUPPORT=true is set in the worker's environment.
package lego

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	legodns01 "github.com/go-acme/lego/v5/challenge/dns01"

	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// ErrUnknownProvider is wrapped by the error of [New] for a provider that
// is not in the registry.
var ErrUnknownProvider = errors.New("lego: unknown provider")

// ErrConfig is wrapped by the errors of [New] and [Validate] about
// settings: a missing required one, an unknown one, a credential outside
// the Secret, or a value that does not parse.
var ErrConfig = errors.New("lego: invalid provider settings")

// Config configures a [Provider].
type Config struct {
	// Provider is the registry name of the lego provider, e.g. "pdns".
	// Required.
	Provider string
	// Settings are the provider's non-secret settings, keyed by lego's
	// environment variable names. Defaults to none.
	Settings map[string]string
	// Credentials are the provider's secret settings from the solver's
	// credentials Secret, keyed the same way. Defaults to none.
	Credentials map[string]string
	// KeyAuthorization returns the key authorization of a challenge token
	// (token + "." + the account key's thumbprint): lego providers compute
	// the TXT value from it, while acmeq's challenges carry only the
	// digest. Required.
	KeyAuthorization func(ctx context.Context, token string) (string, error)
}

// Provider presents DNS-01 challenges with a lego DNS provider. It is a
// [dns01.Provider] and safe for concurrent use if the lego provider is
// (lego's are).
type Provider struct {
	name    string
	p       challenge.Provider
	keyAuth func(ctx context.Context, token string) (string, error)
}

var (
	_ dns01.Provider = (*Provider)(nil)
	_ solvers.Solver = (*Provider)(nil)
)

// New builds the lego provider cfg names from its settings. Some providers
// contact their API here (pdns asks for its API version unless
// PDNS_API_VERSION is set). Errors wrap [ErrUnknownProvider] or
// [ErrConfig] and name the setting.
func New(cfg Config) (*Provider, error) {
	e, ok := Lookup(cfg.Provider)
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownProvider, cfg.Provider, knownList())
	}
	if cfg.KeyAuthorization == nil {
		return nil, errors.New("lego: KeyAuthorization is required")
	}
	s, err := e.settings(cfg.Provider, cfg.Settings, cfg.Credentials)
	if err != nil {
		return nil, err
	}
	p, err := e.Build(s)
	if err != nil {
		if errors.Is(err, ErrConfig) {
			return nil, err
		}
		return nil, fmt.Errorf("lego: %s: %w", cfg.Provider, err)
	}
	return &Provider{name: cfg.Provider, p: p, keyAuth: cfg.KeyAuthorization}, nil
}

// Validate checks the settings of a solver without building the provider
// (it contacts nothing): the provider is known, every setting is one it
// documents, credentials (such as PDNS_API_KEY) are not in settings, and
// every required setting is in one of settings or credentialKeys (the
// keys the credentials Secret is expected to hold; nil skips that check,
// as at apply, when the Secret may not exist yet).
func Validate(provider string, settings map[string]string, credentialKeys []string) error {
	e, ok := Lookup(provider)
	if !ok {
		return fmt.Errorf("%w %q (known: %s)", ErrUnknownProvider, provider, knownList())
	}
	creds := map[string]string{}
	for _, k := range credentialKeys {
		creds[k] = "x"
	}
	_, err := e.check(provider, settings, creds, credentialKeys != nil)
	return err
}

// Known returns the names of the providers in the registry, sorted.
func Known() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}

func knownList() string {
	s := ""
	for i, n := range Known() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// Present has the lego provider add the challenge's TXT value.
func (p *Provider) Present(ctx context.Context, ch solvers.Challenge) error {
	domain, ka, err := p.challenge(ctx, ch)
	if err != nil {
		return err
	}
	if err := p.p.Present(ctx, domain, ch.Token, ka); err != nil {
		return fmt.Errorf("lego: %w", err)
	}
	return nil
}

// CleanUp has the lego provider remove the challenge's TXT value.
func (p *Provider) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	domain, ka, err := p.challenge(ctx, ch)
	if err != nil {
		return err
	}
	if err := p.p.CleanUp(ctx, domain, ch.Token, ka); err != nil {
		return fmt.Errorf("lego: %w", err)
	}
	return nil
}

// challenge returns the domain and key authorization lego wants for ch,
// checking that the key authorization's digest is the challenge's value.
func (p *Provider) challenge(ctx context.Context, ch solvers.Challenge) (string, string, error) {
	r, err := dns01.RecordOf(ch)
	if err != nil {
		return "", "", err
	}
	ka, err := p.keyAuth(ctx, ch.Token)
	if err != nil {
		return "", "", fmt.Errorf("lego: %s: key authorization of %q: %w", p.name, r.DNSName, err)
	}
	sum := sha256.Sum256([]byte(ka))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != ch.Key {
		return "", "", fmt.Errorf("lego: %s: the key authorization of the issuer's account does not match the challenge of %q (was the account key replaced?)", p.name, r.DNSName)
	}
	return r.DNSName, ka, nil
}

// nameservers is what UseRecursiveNameservers last set.
var nameservers struct {
	mu      sync.Mutex
	list    []string
	timeout time.Duration
}

// UseRecursiveNameservers points lego's default DNS client, which every
// lego provider of the process uses to find zones and follow CNAMEs, at
// the given recursive nameservers (host:port) with the given query
// timeout. It is process-wide: the last call wins, so every worker of a
// process must use the same nameservers (acmeq's workers take them from
// ACMEQ_DNS01_RECURSIVE_NAMESERVERS). Calling it again with the same
// values does nothing (lego's zone cache is kept).
func UseRecursiveNameservers(list []string, timeout time.Duration) {
	nameservers.mu.Lock()
	defer nameservers.mu.Unlock()
	if slices.Equal(list, nameservers.list) && timeout == nameservers.timeout {
		return
	}
	opts := legodns01.NewOptions()
	opts.RecursiveNameservers = slices.Clone(list)
	opts.Timeout = timeout
	legodns01.SetDefaultClient(legodns01.NewClient(opts))
	nameservers.list, nameservers.timeout = slices.Clone(list), timeout
}
