package dns01

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Limits of the lookups a [Resolver] makes.
const (
	// MaxCNAMEDepth is how many CNAMEs [Resolver.FollowCNAME] follows
	// before giving up; resolvers commonly stop at 8 to 16.
	MaxCNAMEDepth = 10
	// DefaultAuthoritativePort is the port authoritative nameservers are
	// asked on.
	DefaultAuthoritativePort = 53
	// DefaultResolvConf is the file whose nameservers are the default
	// recursive nameservers, as cert-manager's.
	DefaultResolvConf = "/etc/resolv.conf"
)

// ErrCNAMELoop is wrapped by the error of [Resolver.FollowCNAME] for a
// chain of CNAMEs that comes back to a name it passed, or is longer than
// [MaxCNAMEDepth].
var ErrCNAMELoop = errors.New("dns01: CNAME loop")

// Resolver looks names up through recursive nameservers, as cert-manager's
// DNS-01 code does: it follows the CNAMEs of a challenge record, finds the
// zone of a name by walking SOA queries up its labels, and finds the
// authoritative nameservers of a zone. It keeps no state and is safe for
// concurrent use.
type Resolver struct {
	nameservers []string
	port        int
	timeout     time.Duration
}

// Nameservers returns the recursive nameservers r asks, host:port.
func (r *Resolver) Nameservers() []string { return slices.Clone(r.nameservers) }

// exchange sends a query for name and qtype to the recursive nameservers in
// turn and returns the first answer with NOERROR or NXDOMAIN. Other answers
// and network errors are returned, named, when no server answered better.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(selfCheckUDPSize, false)
	c := &dns.Client{Timeout: r.timeout}
	var errs []string
	var last *dns.Msg
	for _, ns := range r.nameservers {
		resp, err := query(ctx, c, ns, m, false)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Sprintf("%s: %v", ns, contextCause(ctx, err)))
		case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
			return resp, nil
		default:
			last = resp
			errs = append(errs, fmt.Sprintf("%s answered %s", ns, rcodeString(resp)))
		}
	}
	if last != nil {
		return last, newError(ErrNameserver, nil, "%s query for %s: %s", dns.TypeToString[qtype], name, strings.Join(errs, "; "))
	}
	return nil, newError(ErrNameserver, nil, "%s query for %s: %s", dns.TypeToString[qtype], name, strings.Join(errs, "; "))
}

// FollowCNAME returns where a chain of CNAMEs starting at fqdn ends, and
// the names passed on the way (fqdn first), all fully qualified and lower
// case. A name that is not a CNAME ends the chain: FollowCNAME(n) is n for
// a name with a TXT record or none at all. A chain longer than
// [MaxCNAMEDepth] or with a loop is an error wrapping [ErrCNAMELoop].
func (r *Resolver) FollowCNAME(ctx context.Context, fqdn string) (string, []string, error) {
	name := strings.ToLower(dns.Fqdn(fqdn))
	chain := []string{name}
	for range MaxCNAMEDepth + 1 {
		resp, err := r.exchange(ctx, name, dns.TypeCNAME)
		if err != nil {
			return "", chain, fmt.Errorf("dns01: following the CNAMEs of %s: %w", chain[0], err)
		}
		target := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				target = strings.ToLower(dns.Fqdn(c.Target))
				break
			}
		}
		if target == "" {
			return name, chain, nil
		}
		if slices.Contains(chain, target) {
			return "", chain, newError(ErrCNAMELoop, nil, "dns01: CNAME loop at %s: %s", chain[0], strings.Join(append(chain, target), " -> "))
		}
		chain = append(chain, target)
		name = target
	}
	return "", chain, newError(ErrCNAMELoop, nil, "dns01: more than %d CNAMEs from %s: %s", MaxCNAMEDepth, chain[0], strings.Join(chain, " -> "))
}

// FindZone returns the zone fqdn belongs to: the first of fqdn and its
// parents for which the recursive nameservers return an SOA record in the
// answer (a name that is a CNAME is skipped: it cannot be a zone's apex).
// No zone found is an error wrapping [ErrZoneNotFound].
func (r *Resolver) FindZone(ctx context.Context, fqdn string) (string, error) {
	name := strings.ToLower(dns.Fqdn(fqdn))
	answers := make([]string, 0, dns.CountLabel(name))
	for _, off := range dns.Split(name) {
		candidate := name[off:]
		resp, err := r.exchange(ctx, candidate, dns.TypeSOA)
		if err != nil {
			return "", fmt.Errorf("dns01: finding the zone of %s: %w", name, err)
		}
		if resp.Rcode == dns.RcodeSuccess {
			cname := false
			for _, rr := range resp.Answer {
				if _, ok := rr.(*dns.CNAME); ok {
					cname = true
				}
			}
			for _, rr := range resp.Answer {
				if soa, ok := rr.(*dns.SOA); ok && !cname && strings.EqualFold(soa.Hdr.Name, candidate) {
					return strings.ToLower(soa.Hdr.Name), nil
				}
			}
		}
		answers = append(answers, candidate+" "+rcodeString(resp))
	}
	return "", newError(ErrZoneNotFound, nil, "dns01: no zone found for %s: no SOA record for it or a parent at %s (answers: %s)",
		name, strings.Join(r.nameservers, ", "), strings.Join(answers, ", "))
}

// authoritative is one authoritative nameserver of a zone.
type authoritative struct {
	name string // NS target, e.g. "ns1.example.com."
	addr string // host:port
}

// authoritative returns the authoritative nameservers of zone: the
// targets of its NS records and, for each, the addresses of its A and AAAA
// records (asked of the recursive nameservers) with the authoritative port. AAAA
// records are asked only for a nameserver without an A record.
func (r *Resolver) authoritative(ctx context.Context, zone string) ([]authoritative, error) {
	resp, err := r.exchange(ctx, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("dns01: finding the nameservers of %s: %w", zone, err)
	}
	var names []string
	for _, rr := range resp.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			names = append(names, strings.ToLower(dns.Fqdn(ns.Ns)))
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil, newError(ErrZoneNotFound, nil, "dns01: zone %s has no NS records at %s (%s)", zone, strings.Join(r.nameservers, ", "), rcodeString(resp))
	}
	var out []authoritative
	for _, n := range names {
		// IPv4 first: an address of each family would double the queries,
		// and a host without an IPv6 route could never succeed.
		var addrs []string
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if len(addrs) > 0 {
				break
			}
			resp, err := r.exchange(ctx, n, qt)
			if err != nil {
				return nil, fmt.Errorf("dns01: finding the address of nameserver %s of %s: %w", n, zone, err)
			}
			for _, rr := range resp.Answer {
				switch a := rr.(type) {
				case *dns.A:
					addrs = append(addrs, a.A.String())
				case *dns.AAAA:
					addrs = append(addrs, a.AAAA.String())
				}
			}
		}
		if len(addrs) == 0 {
			return nil, newError(ErrNameserver, nil, "dns01: nameserver %s of %s has no address (A or AAAA) at %s", n, zone, strings.Join(r.nameservers, ", "))
		}
		for _, a := range addrs {
			out = append(out, authoritative{name: n, addr: net.JoinHostPort(a, strconv.Itoa(r.port))})
		}
	}
	return out, nil
}
