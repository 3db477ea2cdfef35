package dns01

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

// Defaults for [RFC2136Config].
const (
	// DefaultTTL is the TTL of the TXT records an [RFC2136] provider adds.
	// It is short, so that resolvers do not cache a missing or stale record
	// for long.
	DefaultTTL = 60
	// DefaultTimeout bounds one call to Present or CleanUp of an [RFC2136]
	// provider, zone lookup included, and one call to [SelfCheck.Check].
	DefaultTimeout = 10 * time.Second
	// DefaultTSIGAlgorithm is the TSIG algorithm used when a key name and
	// secret are given without an algorithm.
	DefaultTSIGAlgorithm = "hmac-sha256"
)

const (
	// tsigFudge is the TSIG fudge: how far apart, in seconds, the clocks of
	// acmeq and the nameserver may be (RFC 8945 recommends 300).
	tsigFudge = 300
	// zoneCacheTTL is how long a provider remembers the zone found for a
	// record name. Zones rarely change, but a sub-zone may be delegated
	// later; an update answered NOTZONE also forgets the cached zone.
	zoneCacheTTL = 10 * time.Minute
)

// tsigAlgorithms maps the TSIG algorithm names accepted in [RFC2136Config]
// (lower-cased, without a trailing dot) to miekg/dns's: the RFC 8945 names,
// and cert-manager's spellings (HMACSHA256, ...) so that its rfc2136
// configurations work unchanged.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha512": dns.HmacSHA512,
	"hmacsha1":    dns.HmacSHA1,
	"hmacsha256":  dns.HmacSHA256,
	"hmacsha512":  dns.HmacSHA512,
}

// RFC2136Config configures an [RFC2136] provider. Its fields mirror
// cert-manager's rfc2136 solver (and acmeq's messages.RFC2136Provider).
type RFC2136Config struct {
	// Nameserver is the host:port of the primary nameserver that accepts
	// dynamic updates for the zone, e.g. "10.0.0.53:53". Required.
	Nameserver string

	// TSIGKeyName is the name of the TSIG key updates are signed with, e.g.
	// "acmeq-key." (a trailing dot is optional). TSIGKeyName and TSIGSecret
	// must be set together. Defaults to "", which sends unsigned updates.
	TSIGKeyName string

	// TSIGAlgorithm is the HMAC algorithm of the key: hmac-sha1,
	// hmac-sha256 or hmac-sha512, or cert-manager's HMACSHA1, HMACSHA256 or
	// HMACSHA512 (case-insensitive, a trailing dot is optional). Defaults to
	// DefaultTSIGAlgorithm (hmac-sha256).
	TSIGAlgorithm string

	// TSIGSecret is the key's secret in standard base64, as named.conf and
	// tsig-keygen write it. Defaults to "", which sends unsigned updates.
	TSIGSecret string

	// Zone is the zone the challenge records are added to, e.g.
	// "example.com". Defaults to "", which finds the zone of each record
	// name by asking Nameserver for the SOA record of the name and then of
	// each of its parents, and caches the result.
	Zone string

	// TTL is the TTL of the TXT records added. Defaults to DefaultTTL (60).
	TTL uint32

	// Timeout bounds each call to Present or CleanUp, zone lookup included.
	// Defaults to DefaultTimeout (10s).
	Timeout time.Duration
}

// RFC2136 is a [Provider] that adds and removes challenge TXT records with
// RFC 2136 dynamic updates, signed with TSIG (RFC 8945) when a key is
// configured, sent over TCP to one nameserver. It is safe for concurrent
// use. Any number of RFC2136 providers, in any number of processes, may
// present and clean up challenges in the same zone: every update adds or
// deletes one record and needs no prerequisite.
type RFC2136 struct {
	nameserver string
	keyName    string // canonical, "" for unsigned updates
	algorithm  string // miekg/dns algorithm name
	secret     string
	zone       string // canonical, "" to look it up
	ttl        uint32
	timeout    time.Duration

	mu    sync.Mutex
	zones map[string]cachedZone // by canonical record name
}

// cachedZone is the zone found for a record name.
type cachedZone struct {
	zone    string
	expires time.Time
}

var (
	_ Provider       = (*RFC2136)(nil)
	_ RecordProvider = (*RFC2136)(nil)
)

// NewRFC2136 returns an RFC2136 provider configured by cfg, or an error
// naming the first invalid field, e.g.
//
//	dns01: rfc2136: tsigAlgorithm "md5" is not supported (want hmac-sha1, hmac-sha256 or hmac-sha512)
//
// It does not contact the nameserver.
func NewRFC2136(cfg RFC2136Config) (*RFC2136, error) {
	if cfg.Nameserver == "" {
		return nil, errors.New("dns01: rfc2136: nameserver is required (host:port)")
	}
	if !validHostPort(cfg.Nameserver) {
		return nil, fmt.Errorf("dns01: rfc2136: nameserver %q must be host:port, e.g. 10.0.0.53:53", cfg.Nameserver)
	}
	p := &RFC2136{
		nameserver: cfg.Nameserver,
		ttl:        cfg.TTL,
		timeout:    cfg.Timeout,
		zones:      make(map[string]cachedZone),
	}

	algorithm := strings.ToLower(strings.TrimSuffix(cfg.TSIGAlgorithm, "."))
	if algorithm == "" {
		algorithm = DefaultTSIGAlgorithm
	}
	var ok bool
	if p.algorithm, ok = tsigAlgorithms[algorithm]; !ok {
		return nil, fmt.Errorf("dns01: rfc2136: tsigAlgorithm %q is not supported (want hmac-sha1, hmac-sha256 or hmac-sha512)", cfg.TSIGAlgorithm)
	}
	if (cfg.TSIGKeyName == "") != (cfg.TSIGSecret == "") {
		return nil, errors.New("dns01: rfc2136: tsigKeyName and tsigSecret must be set together")
	}
	if cfg.TSIGKeyName != "" {
		p.keyName = strings.ToLower(dns.Fqdn(cfg.TSIGKeyName))
		if _, ok := dns.IsDomainName(p.keyName); !ok || p.keyName == "." {
			return nil, fmt.Errorf("dns01: rfc2136: tsigKeyName %q is not a valid DNS name", cfg.TSIGKeyName)
		}
		secret, err := base64.StdEncoding.DecodeString(cfg.TSIGSecret)
		if err != nil {
			return nil, fmt.Errorf("dns01: rfc2136: tsigSecret is not valid base64: %w", err)
		}
		if len(secret) == 0 {
			return nil, errors.New("dns01: rfc2136: tsigSecret is empty")
		}
		p.secret = cfg.TSIGSecret
	}

	if cfg.Zone != "" {
		p.zone = strings.ToLower(dns.Fqdn(cfg.Zone))
		if _, ok := dns.IsDomainName(p.zone); !ok || strings.Contains(p.zone, "..") {
			return nil, fmt.Errorf("dns01: rfc2136: zone %q is not a valid DNS name", cfg.Zone)
		}
	}
	if p.ttl == 0 {
		p.ttl = DefaultTTL
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.timeout < 0 {
		return nil, fmt.Errorf("dns01: rfc2136: negative timeout %s", cfg.Timeout)
	}
	return p, nil
}

// validHostPort reports whether s is host:port with a non-empty host and a
// port from 1 to 65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// Present adds ch.Key to the TXT records at [ChallengeRecordName](ch.DNSName),
// keeping any other values, with one RFC 2136 update. Presenting a value
// that is already there is harmless (the server ignores the duplicate).
//
// An update the server rejects returns an error naming the rcode, e.g.
//
//	dns01: rfc2136: update _acme-challenge.a.example.test. in zone example.test.: server answered REFUSED
func (p *RFC2136) Present(ctx context.Context, ch solvers.Challenge) error {
	r, err := RecordOf(ch)
	if err != nil {
		return err
	}
	return p.PresentRecord(ctx, r)
}

// CleanUp removes ch.Key from the TXT records at
// [ChallengeRecordName](ch.DNSName), keeping any other values, with one RFC
// 2136 update that deletes that record only. Cleaning up a value that is
// not there is not an error.
func (p *RFC2136) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	r, err := RecordOf(ch)
	if err != nil {
		return err
	}
	return p.CleanUpRecord(ctx, r)
}

// PresentRecord adds r.Value to the TXT records at r.FQDN, keeping any
// other values, as Present does.
func (p *RFC2136) PresentRecord(ctx context.Context, r Record) error {
	name, err := validateRecord(r)
	if err != nil {
		return err
	}
	return p.update(ctx, name, r.Value, true)
}

// CleanUpRecord removes r.Value from the TXT records at r.FQDN, keeping
// any other values, as CleanUp does.
func (p *RFC2136) CleanUpRecord(ctx context.Context, r Record) error {
	name, err := validateRecord(r)
	if err != nil {
		return err
	}
	return p.update(ctx, name, r.Value, false)
}

// update adds (add) or deletes the TXT record name with value.
func (p *RFC2136) update(ctx context.Context, name, value string, add bool) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	zone, err := p.findZone(ctx, name)
	if err != nil {
		return err
	}

	rr := &dns.TXT{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: p.ttl},
		Txt: txtStrings(value),
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	if add {
		m.Insert([]dns.RR{rr})
	} else {
		m.Remove([]dns.RR{rr}) // class NONE: delete this record only
	}
	c := &dns.Client{Net: "tcp", Timeout: p.timeout}
	if p.keyName != "" {
		m.SetTsig(p.keyName, p.algorithm, tsigFudge, time.Now().Unix())
		c.TsigSecret = map[string]string{p.keyName: p.secret}
	}

	r, _, err := c.ExchangeContext(ctx, m, p.nameserver)
	switch {
	case r != nil && r.Rcode != dns.RcodeSuccess:
		if r.Rcode == dns.RcodeNotZone {
			p.forgetZone(name)
		}
		return newError(ErrNameserver, nil, "dns01: rfc2136: update %s in zone %s: server answered %s",
			name, zone, rcodeString(r))
	case err != nil && r != nil:
		return newError(ErrNameserver, err, "dns01: rfc2136: update %s in zone %s: server answered NOERROR, but its answer failed verification: %v",
			name, zone, err)
	case err != nil:
		err = contextCause(ctx, err)
		return newError(ErrNameserver, err, "dns01: rfc2136: update %s in zone %s at %s: %v",
			name, zone, p.nameserver, err)
	}
	return nil
}

// findZone returns the zone name belongs to: the configured zone, a cached
// one, or the first of name and its parents for which the nameserver
// returns an SOA record.
func (p *RFC2136) findZone(ctx context.Context, name string) (string, error) {
	if p.zone != "" {
		if !dns.IsSubDomain(p.zone, name) {
			return "", newError(ErrZoneNotFound, nil, "dns01: rfc2136: %s is not in the configured zone %s", name, p.zone)
		}
		return p.zone, nil
	}

	p.mu.Lock()
	c, ok := p.zones[name]
	p.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.zone, nil
	}

	zone, err := p.lookupZone(ctx, name)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.zones[name] = cachedZone{zone: zone, expires: time.Now().Add(zoneCacheTTL)}
	p.mu.Unlock()
	return zone, nil
}

// forgetZone removes the cached zone of name.
func (p *RFC2136) forgetZone(name string) {
	p.mu.Lock()
	delete(p.zones, name)
	p.mu.Unlock()
}

// lookupZone asks the nameserver for the SOA record of name and of each of
// its parents, stopping below the root, and returns the first owner of one.
func (p *RFC2136) lookupZone(ctx context.Context, name string) (string, error) {
	c := &dns.Client{Timeout: p.timeout}
	answers := make([]string, 0, dns.CountLabel(name))
	for _, off := range dns.Split(name) {
		candidate := name[off:]
		m := new(dns.Msg)
		m.SetQuestion(candidate, dns.TypeSOA)
		m.RecursionDesired = false
		r, err := query(ctx, c, p.nameserver, m, false)
		if err != nil {
			err = contextCause(ctx, err)
			return "", newError(ErrNameserver, err, "dns01: rfc2136: finding the zone of %s: SOA query for %s at %s: %v",
				name, candidate, p.nameserver, err)
		}
		if r.Rcode == dns.RcodeSuccess {
			for _, rr := range r.Answer {
				if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, candidate) {
					return strings.ToLower(soa.Hdr.Name), nil
				}
			}
		}
		answers = append(answers, candidate+" "+rcodeString(r))
	}
	return "", newError(ErrZoneNotFound, nil, "dns01: rfc2136: no SOA record for %s or a parent at %s (answers: %s)",
		name, p.nameserver, strings.Join(answers, ", "))
}
