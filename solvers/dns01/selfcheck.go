package dns01

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

// selfCheckUDPSize is the EDNS0 buffer size of self check queries, the one
// recommended by DNS Flag Day 2020. Larger answers come over TCP.
const selfCheckUDPSize = 1232

// SelfCheckConfig configures a [SelfCheck] and its [Resolver]: the
// equivalent of cert-manager's --dns01-recursive-nameservers and
// --dns01-recursive-nameservers-only flags.
type SelfCheckConfig struct {
	// RecursiveNameservers are the host:port addresses of the recursive
	// nameservers that CNAMEs, zones and authoritative nameservers are
	// looked up with, e.g. "10.0.0.53:53" (ACMEQ_DNS01_RECURSIVE_NAMESERVERS,
	// a comma-separated list). They are tried in order until one answers.
	// Defaults to the nameservers of DefaultResolvConf (/etc/resolv.conf).
	RecursiveNameservers []string

	// RecursiveNameserversOnly makes the self-check ask only the recursive
	// nameservers (every one of them must return the value) instead of
	// the zone's authoritative nameservers, for networks where those
	// cannot be reached (ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY). Defaults
	// to false.
	RecursiveNameserversOnly bool

	// AuthoritativePort is the port the authoritative nameservers found by
	// their NS records are asked on. Defaults to DefaultAuthoritativePort
	// (53); tests on loopback set another.
	AuthoritativePort int

	// Timeout bounds each call to Check, all lookups and nameservers
	// included, and each lookup of a Resolver. Defaults to DefaultTimeout
	// (10s).
	Timeout time.Duration
}

// SelfCheck verifies that a DNS-01 challenge record has propagated, as
// cert-manager's self-check does: it follows the CNAMEs of
// [ChallengeRecordName](ch.DNSName) through the recursive nameservers
// (always, whatever a solver's cnameStrategy, since the CA follows them
// too), finds the zone of the name the chain ends at by walking SOA
// queries up its labels, asks for the zone's NS records and their
// addresses, and then asks every authoritative nameserver for the TXT
// records at that name (over UDP, and over TCP when the answer is
// truncated). Check succeeds once every one of them returns ch.Key among
// its values; other values at the same name, such as the one of a
// wildcard's challenge, are ignored. With RecursiveNameserversOnly, the
// recursive nameservers are asked instead of the authoritative ones.
//
// It implements [solvers.SelfChecker] and is safe for concurrent use.
type SelfCheck struct {
	resolver *Resolver
	only     bool
	timeout  time.Duration
}

var _ solvers.SelfChecker = (*SelfCheck)(nil)

// NewSelfCheck returns a SelfCheck configured by cfg, or an error naming the
// invalid field (and its environment variable). It reads DefaultResolvConf
// when cfg.RecursiveNameservers is empty.
func NewSelfCheck(cfg SelfCheckConfig) (*SelfCheck, error) {
	r, err := NewResolver(cfg)
	if err != nil {
		return nil, err
	}
	return &SelfCheck{resolver: r, only: cfg.RecursiveNameserversOnly, timeout: r.timeout}, nil
}

// NewResolver returns the Resolver of cfg (its RecursiveNameservers,
// AuthoritativePort and Timeout), or an error naming the invalid field.
func NewResolver(cfg SelfCheckConfig) (*Resolver, error) {
	ns := cfg.RecursiveNameservers
	if len(ns) == 0 {
		cc, err := dns.ClientConfigFromFile(DefaultResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns01: self check: RecursiveNameservers (ACMEQ_DNS01_RECURSIVE_NAMESERVERS) is empty and %s cannot be read: %w", DefaultResolvConf, err)
		}
		for _, s := range cc.Servers {
			ns = append(ns, net.JoinHostPort(s, cc.Port))
		}
		if len(ns) == 0 {
			return nil, fmt.Errorf("dns01: self check: RecursiveNameservers (ACMEQ_DNS01_RECURSIVE_NAMESERVERS) is empty and %s lists no nameserver", DefaultResolvConf)
		}
	}
	for i, s := range ns {
		if !validHostPort(s) {
			return nil, fmt.Errorf("dns01: self check: RecursiveNameservers[%d] (ACMEQ_DNS01_RECURSIVE_NAMESERVERS) %q must be host:port, e.g. 10.0.0.53:53", i, s)
		}
	}
	port := cfg.AuthoritativePort
	if port == 0 {
		port = DefaultAuthoritativePort
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("dns01: self check: AuthoritativePort %d is not a port number", cfg.AuthoritativePort)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("dns01: self check: negative Timeout %s", cfg.Timeout)
	}
	return &Resolver{nameservers: slices.Clone(ns), port: port, timeout: timeout}, nil
}

// Resolver returns the resolver the self-check looks names up with.
func (s *SelfCheck) Resolver() *Resolver { return s.resolver }

// nsResult is what one nameserver said about the challenge record.
type nsResult struct {
	found  bool
	detail string // why the value was not found, when err is nil
	err    error  // the nameserver could not be asked or answered an error
}

// target is one nameserver Check asks.
type target struct {
	label string // how the reason names it
	addr  string
	rd    bool // recursion desired
}

// Check returns nil when every nameserver asked returns ch.Key among the
// TXT records at the challenge record name (or where its CNAMEs lead).
// Otherwise it returns:
//
//   - when a nameserver could not be asked or answered an rcode other than
//     NOERROR and NXDOMAIN, an error wrapping [ErrNameserver] that names
//     it, like cert-manager's "NS 10.0.0.53:53 returned REFUSED for
//     _acme-challenge.example.com.";
//   - when a nameserver answered without the value, an error wrapping
//     [ErrNotPropagated] that reads like cert-manager's reason,
//     `DNS record for "example.com" not yet propagated`, followed by the
//     record name (and the CNAMEs followed) and what each such nameserver
//     answered, e.g.
//     `DNS record for "shop.customer.test" not yet propagated: _acme-challenge.shop.customer.test. -> shop.acme-delegation.test. TXT: ns.acme-delegation.test. (127.0.0.1:53) answered NXDOMAIN`;
//   - an error wrapping [ErrZoneNotFound] when no zone was found for the
//     name, [ErrCNAMELoop] for a CNAME loop, [ErrUnsupportedChallenge] for
//     a challenge DNS-01 cannot solve, and one wrapping ctx.Err() when ctx
//     ends first.
func (s *SelfCheck) Check(ctx context.Context, ch solvers.Challenge) error {
	name, err := validateChallenge(ch)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	fqdn, chain, err := s.resolver.FollowCNAME(cctx, name)
	if err != nil {
		return s.ended(ctx, name, err)
	}
	var targets []target
	if s.only {
		for _, ns := range s.resolver.nameservers {
			targets = append(targets, target{label: ns, addr: ns, rd: true})
		}
	} else {
		zone, err := s.resolver.FindZone(cctx, fqdn)
		if err != nil {
			return s.ended(ctx, name, err)
		}
		auth, err := s.resolver.authoritative(cctx, zone)
		if err != nil {
			return s.ended(ctx, name, err)
		}
		for _, a := range auth {
			targets = append(targets, target{label: a.name + " (" + a.addr + ")", addr: a.addr})
		}
	}

	results := make([]nsResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = s.checkOne(cctx, t, fqdn, ch.Key) })
	}
	wg.Wait()

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dns01: self check of %s: %w", name, err)
	}
	var missing []string
	for i, r := range results {
		switch {
		case r.err != nil:
			return r.err
		case !r.found:
			missing = append(missing, targets[i].label+" "+r.detail)
		}
	}
	if len(missing) > 0 {
		return newError(ErrNotPropagated, nil, "dns01: DNS record for %q not yet propagated: %s TXT: %s",
			ch.DNSName, strings.Join(chain, " -> "), strings.Join(missing, "; "))
	}
	return nil
}

// ended returns err, or the context's error if ctx ended.
func (s *SelfCheck) ended(ctx context.Context, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("dns01: self check of %s: %w", name, cerr)
	}
	return err
}

// checkOne asks ns for the TXT records at name and looks for value.
func (s *SelfCheck) checkOne(ctx context.Context, t target, name, value string) nsResult {
	ns := t.label
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = t.rd
	m.SetEdns0(selfCheckUDPSize, false)
	r, err := query(ctx, &dns.Client{Timeout: s.timeout}, t.addr, m, false)
	if err != nil {
		err = contextCause(ctx, err)
		return nsResult{err: newError(ErrNameserver, err, "dns01: NS %s: TXT query for %s: %v", ns, name, err)}
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nsResult{detail: "answered NXDOMAIN"}
	default:
		return nsResult{err: newError(ErrNameserver, nil, "dns01: NS %s returned %s for %s", ns, rcodeString(r), name)}
	}
	n := 0
	for _, rr := range r.Answer {
		txt, ok := rr.(*dns.TXT)
		if !ok || !strings.EqualFold(txt.Hdr.Name, name) {
			continue
		}
		if txtValue(txt) == value {
			return nsResult{found: true}
		}
		n++
	}
	switch n {
	case 0:
		return nsResult{detail: "answered no records"}
	case 1:
		return nsResult{detail: "answered 1 other value"}
	default:
		return nsResult{detail: fmt.Sprintf("answered %d other values", n)}
	}
}
