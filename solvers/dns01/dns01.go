// Package dns01 solves ACME DNS-01 challenges (RFC 8555, section 8.4).
//
// A DNS-01 challenge for example.com is answered by a TXT record at
// _acme-challenge.example.com (see [ChallengeRecordName]) whose value is the
// challenge's key authorization digest, which acmeq passes in
// [solvers.Challenge.Key]. The pieces are:
//
//   - A [Provider] presents the record in a DNS zone and cleans it up. The
//     only provider is [RFC2136], which sends TSIG-signed RFC 2136 dynamic
//     updates to a primary nameserver such as BIND. Providers keep nothing
//     in memory that another worker would need: the zone itself is the
//     shared state, so any worker may clean up what another presented.
//   - A [SelfCheck] asks nameservers for the record and succeeds once every
//     one of them returns the expected value, so that a worker waits for
//     propagation before asking the ACME server to validate.
//
// A name and its wildcard share one record name (_acme-challenge.example.com
// serves both example.com and *.example.com), so providers add and remove
// single values of the TXT record set and never replace the whole set.
package dns01

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

// ChallengeLabel is the label prepended to a name to form the owner of its
// DNS-01 TXT record (RFC 8555, section 8.4).
const ChallengeLabel = "_acme-challenge"

// ErrUnsupportedChallenge is returned, wrapped, for a challenge that DNS-01
// cannot solve: one whose Type is neither empty nor [solvers.TypeDNS01], or
// whose DNSName is not a valid DNS name, or whose Key is empty.
var ErrUnsupportedChallenge = errors.New("dns01: unsupported challenge")

// ErrNotPropagated is wrapped by every error [SelfCheck.Check] returns
// because a nameserver answered without the expected TXT value: the record
// does not exist yet, or has other values only. Callers should try again
// later.
var ErrNotPropagated = errors.New("dns01: not propagated")

// ErrNameserver is wrapped by errors about a nameserver that could not be
// asked or that answered with an error: a network failure or timeout, or an
// rcode such as SERVFAIL, REFUSED or NOTAUTH. The error names the server.
// Such a failure may be temporary, but unlike [ErrNotPropagated] it usually
// points at a configuration problem.
var ErrNameserver = errors.New("dns01: nameserver error")

// ErrZoneNotFound is wrapped by the error of an [RFC2136] provider that
// cannot find the zone a challenge record belongs to: no SOA record was
// found at the nameserver for the record name or any of its parents, or the
// configured zone does not contain the record name.
var ErrZoneNotFound = errors.New("dns01: zone not found")

// Provider presents and cleans up DNS-01 challenges by editing a DNS zone.
// Present adds ch.Key to the TXT record set at
// [ChallengeRecordName](ch.DNSName), keeping the values already there;
// CleanUp removes that one value. Both are idempotent.
type Provider interface {
	solvers.Solver
}

// ChallengeRecordName returns the fully qualified owner name of the TXT
// record that answers a DNS-01 challenge for dnsName, in lower case:
// "_acme-challenge." + dnsName + ".". A leading "*." is removed first, since
// a wildcard name is validated at the record of its base name, and a
// trailing dot is accepted:
//
//	ChallengeRecordName("www.Example.com") == "_acme-challenge.www.example.com."
//	ChallengeRecordName("*.example.com")   == "_acme-challenge.example.com."
func ChallengeRecordName(dnsName string) string {
	name := strings.TrimPrefix(dnsName, "*.")
	name = strings.TrimSuffix(name, ".")
	return strings.ToLower(ChallengeLabel + "." + name + ".")
}

// validateChallenge checks ch and returns the owner name of its TXT record.
func validateChallenge(ch solvers.Challenge) (string, error) {
	if ch.Type != "" && !strings.EqualFold(ch.Type, solvers.TypeDNS01) {
		return "", fmt.Errorf("%w: type %q for %q, want %q", ErrUnsupportedChallenge, ch.Type, ch.DNSName, solvers.TypeDNS01)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(ch.DNSName, "*."), ".")
	if base == "" {
		return "", fmt.Errorf("%w: empty DNS name", ErrUnsupportedChallenge)
	}
	name := ChallengeRecordName(ch.DNSName)
	if _, ok := dns.IsDomainName(name); !ok || strings.Contains(base, "..") || strings.ContainsAny(base, " \t\r\n\"\\") {
		return "", fmt.Errorf("%w: %q is not a valid DNS name", ErrUnsupportedChallenge, ch.DNSName)
	}
	if ch.Key == "" {
		return "", fmt.Errorf("%w: challenge for %q has an empty key authorization digest", ErrUnsupportedChallenge, ch.DNSName)
	}
	return name, nil
}

// txtStrings splits v into the character-strings of one TXT record, each at
// most 255 bytes long.
func txtStrings(v string) []string {
	const limit = 255
	if len(v) <= limit {
		return []string{v}
	}
	var parts []string
	for len(v) > limit {
		parts = append(parts, v[:limit])
		v = v[limit:]
	}
	return append(parts, v)
}

// txtValue returns the value of a TXT record: its character-strings
// concatenated, as ACME servers read it.
func txtValue(txt *dns.TXT) string {
	return strings.Join(txt.Txt, "")
}

// rcodeString names the rcode of r and, if r carries a TSIG record with an
// error, the TSIG error, e.g. "NOTAUTH (TSIG error BADSIG)".
func rcodeString(r *dns.Msg) string {
	s := rcodeName(r.Rcode)
	if t := r.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
		s += " (TSIG error " + rcodeName(int(t.Error)) + ")"
	}
	return s
}

// rcodeName returns the mnemonic of rcode, or "rcode N" for an unknown one.
func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rcode)
}

// query sends m to server, over UDP and again over TCP if the UDP answer
// was truncated, or over TCP only if tcp is set. An answer whose TSIG could
// not be verified is returned with the error.
func query(ctx context.Context, c *dns.Client, server string, m *dns.Msg, tcp bool) (*dns.Msg, error) {
	if !tcp {
		udp := *c
		udp.Net = "udp"
		r, _, err := udp.ExchangeContext(ctx, m, server)
		if err != nil || !r.Truncated {
			return r, err
		}
	}
	t := *c
	t.Net = "tcp"
	r, _, err := t.ExchangeContext(ctx, m, server)
	return r, err
}

// dnsError is an error whose message does not repeat the sentinel it wraps,
// so that it can read like "dns01: rfc2136: ..." and still match
// errors.Is(err, ErrNameserver).
type dnsError struct {
	msg      string
	sentinel error
	cause    error // may be nil
}

// newError returns a dnsError wrapping sentinel and cause (which may be
// nil) with the message format and args.
func newError(sentinel, cause error, format string, args ...any) error {
	return &dnsError{msg: fmt.Sprintf(format, args...), sentinel: sentinel, cause: cause}
}

func (e *dnsError) Error() string { return e.msg }

func (e *dnsError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// contextCause returns err, wrapped with ctx.Err() if ctx has ended, so
// that callers can tell a timeout or cancellation from other failures.
//
// A network timeout at or after ctx's deadline counts as the context's
// deadline, since that is where the connection's deadline comes from, even
// if ctx has not been marked done yet.
func contextCause(ctx context.Context, err error) error {
	cerr := ctx.Err()
	var nerr net.Error
	if d, ok := ctx.Deadline(); cerr == nil && ok && errors.As(err, &nerr) && nerr.Timeout() && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}
