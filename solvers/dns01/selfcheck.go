package dns01

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

// selfCheckUDPSize is the EDNS0 buffer size of self check queries, the one
// recommended by DNS Flag Day 2020. Larger answers come over TCP.
const selfCheckUDPSize = 1232

// SelfCheckConfig configures a [SelfCheck].
type SelfCheckConfig struct {
	// Nameservers are the host:port addresses of the nameservers to ask
	// for the challenge record, e.g. "10.0.0.53:53". Check succeeds when
	// every one of them returns the expected value, so list the
	// authoritative nameservers of the zone (for an [RFC2136] provider, at
	// least its Nameserver), not caching resolvers. Required: unlike
	// cert-manager, which finds the authoritative nameservers of the zone
	// with an NS lookup through the system's recursive resolvers, acmeq
	// does not look them up.
	Nameservers []string

	// Timeout bounds each call to Check, all nameservers included.
	// Defaults to DefaultTimeout (10s).
	Timeout time.Duration
}

// SelfCheck verifies that a DNS-01 challenge record has propagated, by
// asking each configured nameserver for the TXT records at
// [ChallengeRecordName](ch.DNSName) (over UDP, and over TCP when the answer
// is truncated) and looking for ch.Key among them. Other values at the same
// name, such as the one of a wildcard's challenge, are ignored. It
// implements [solvers.SelfChecker] and is safe for concurrent use.
type SelfCheck struct {
	nameservers []string
	timeout     time.Duration
}

var _ solvers.SelfChecker = (*SelfCheck)(nil)

// NewSelfCheck returns a SelfCheck configured by cfg, or an error naming the
// invalid field.
func NewSelfCheck(cfg SelfCheckConfig) (*SelfCheck, error) {
	if len(cfg.Nameservers) == 0 {
		return nil, errors.New("dns01: self check: nameservers is required (host:port of each authoritative nameserver)")
	}
	for i, ns := range cfg.Nameservers {
		if !validHostPort(ns) {
			return nil, fmt.Errorf("dns01: self check: nameservers[%d] %q must be host:port, e.g. 10.0.0.53:53", i, ns)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("dns01: self check: negative timeout %s", cfg.Timeout)
	}
	return &SelfCheck{
		nameservers: append([]string(nil), cfg.Nameservers...),
		timeout:     cfg.Timeout,
	}, nil
}

// nsResult is what one nameserver said about the challenge record.
type nsResult struct {
	found  bool
	detail string // why the value was not found, when err is nil
	err    error  // the nameserver could not be asked or answered an error
}

// Check returns nil when every nameserver returns ch.Key among the TXT
// records at the challenge record name. Otherwise it returns:
//
//   - when a nameserver could not be asked or answered an rcode other than
//     NOERROR and NXDOMAIN, an error wrapping [ErrNameserver] that names
//     it, like cert-manager's "NS 10.0.0.53:53 returned REFUSED for
//     _acme-challenge.example.com.";
//   - when a nameserver answered without the value, an error wrapping
//     [ErrNotPropagated] that reads like cert-manager's reason,
//     `DNS record for "example.com" not yet propagated`, followed by what
//     each such nameserver answered;
//   - an error wrapping [ErrUnsupportedChallenge] for a challenge DNS-01
//     cannot solve, and one wrapping ctx.Err() when ctx ends first.
func (s *SelfCheck) Check(ctx context.Context, ch solvers.Challenge) error {
	name, err := validateChallenge(ch)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	results := make([]nsResult, len(s.nameservers))
	var wg sync.WaitGroup
	for i, ns := range s.nameservers {
		wg.Go(func() { results[i] = s.checkOne(cctx, ns, name, ch.Key) })
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
			missing = append(missing, s.nameservers[i]+" "+r.detail)
		}
	}
	if len(missing) > 0 {
		return newError(ErrNotPropagated, nil, "dns01: DNS record for %q not yet propagated: %s TXT: %s",
			ch.DNSName, name, strings.Join(missing, "; "))
	}
	return nil
}

// checkOne asks ns for the TXT records at name and looks for value.
func (s *SelfCheck) checkOne(ctx context.Context, ns, name, value string) nsResult {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = false
	m.SetEdns0(selfCheckUDPSize, false)
	r, err := query(ctx, &dns.Client{Timeout: s.timeout}, ns, m, false)
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
