package dev

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// The DNS-01 part of the dev stack (Options.DNS01).
const (
	// DNS01Zone is the zone the dev BIND serves and accepts RFC 2136
	// updates for: DNS-01 names must be in it (e.g. "a.dns.test",
	// "*.a.dns.test").
	DNS01Zone = "dns.test"
	// DNS01IssuerName is the issuer with an rfc2136 DNS-01 solver that
	// Start creates when Options.DNS01 is set.
	DNS01IssuerName = "dev-dns"
	// DNS01SecretName is the Secret holding the TSIG secret of the BIND
	// key, which the issuer references.
	DNS01SecretName = "dev-dns-tsig"
	// DNS01SecretKey is the key of the TSIG secret in DNS01SecretName.
	DNS01SecretKey = "tsig-secret-key"

	// pebbleTLSALPNPort is the port Pebble's VA would dial for
	// TLS-ALPN-01, as stack.Start sets it (nothing serves it).
	pebbleTLSALPNPort = 5001
	// dnsForwardTimeout bounds one query forwarded to BIND.
	dnsForwardTimeout = 5 * time.Second
)

// DNS01 is the DNS side of a dev stack started with Options.DNS01: a real
// BIND serving DNS01Zone, and the DNS server Pebble's VA asks, which sends
// every query for a name in BIND's zones to BIND (so the VA reads the TXT
// records the workers' RFC 2136 updates write) and answers every other
// name as stack.Start's DNS does (127.0.0.1, so HTTP-01 keeps working for
// any name outside the zone).
type DNS01 struct {
	// BIND is the nameserver of DNS01Zone; the dev-dns issuer's rfc2136
	// solver updates it with its TSIG key.
	BIND *stack.BIND
	// Addr is the host:port (UDP and TCP) of the DNS server Pebble's VA
	// queries.
	Addr string

	udp, tcp *dns.Server

	mu     sync.Mutex
	routes map[string]string // zone (canonical) -> host:port, besides BIND's zones
}

// dnsMaxCNAMEs bounds the CNAMEs the front chases for one question.
const dnsMaxCNAMEs = 8

// Route sends the queries for zone (and the names below it) to the DNS
// server at addr, as a resolver would find them through a delegation: a
// test adds a server it started (a second BIND, a PowerDNS) and Pebble's
// VA and the workers' self-checks, which ask the front, see its records.
// The longest matching zone wins; BIND's zones are routed to BIND.
func (d *DNS01) Route(zone, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes == nil {
		d.routes = map[string]string{}
	}
	d.routes[dns.CanonicalName(zone)] = addr
}

// SelfCheckConfig is the workers' DNS-01 self-check configuration: the
// front as their only recursive nameserver, asked directly (the zones'
// NS records name port 53, where nothing listens on loopback).
func (d *DNS01) SelfCheckConfig() dns01.SelfCheckConfig {
	return dns01.SelfCheckConfig{RecursiveNameservers: []string{d.Addr}, RecursiveNameserversOnly: true}
}

// startDNS01Stack starts what stack.Start starts, in the same order and
// with the same directories, plus BIND (in dir/bind), with Pebble's VA
// resolving through a DNS01 front instead of the stack's DNS server.
func startDNS01Stack(dir string, httpPort int, logger *log.Logger, pc stack.PebbleConfig) (s *stack.Stack, d *DNS01, err error) {
	s = &stack.Stack{Dir: dir}
	defer func() {
		if err != nil {
			s.Close()
			d.Close()
			s, d = nil, nil
		}
	}()
	if s.DNS, err = stack.StartDNS(net.IPv4(127, 0, 0, 1)); err != nil {
		return nil, nil, err
	}
	d = &DNS01{}
	if d.BIND, err = stack.StartBIND(filepath.Join(dir, "bind"), DNS01Zone); err != nil {
		return nil, nil, err
	}
	if err = d.serve(s.DNS); err != nil {
		return nil, nil, err
	}
	if s.NATS, err = stack.StartNATS(filepath.Join(dir, "nats")); err != nil {
		return nil, nil, err
	}
	if s.Redis, err = stack.StartRedis(filepath.Join(dir, "redis")); err != nil {
		return nil, nil, err
	}
	pc.HTTPPort, pc.TLSPort, pc.DNSAddr, pc.Logger = httpPort, pebbleTLSALPNPort, d.Addr, logger
	s.Pebble, err = stack.StartPebble(pc)
	if err != nil {
		return nil, nil, err
	}
	return s, d, nil
}

// serve starts the DNS front on one port of 127.0.0.1, UDP and TCP.
func (d *DNS01) serve(other dns.Handler) error {
	pc, ln, err := listenUDPAndTCP()
	if err != nil {
		return err
	}
	d.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if _, ok := d.route(req); ok {
			d.forward(w, req)
			return
		}
		other.ServeDNS(w, req)
	})
	d.udp = &dns.Server{PacketConn: pc, Handler: h}
	d.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan error, 2)
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				started <- err
			}
		}()
	}
	timeout := time.After(5 * time.Second)
	for range 2 {
		select {
		case err := <-started:
			if err != nil {
				return fmt.Errorf("dev: dns front: %w", err)
			}
		case <-timeout:
			return errors.New("dev: dns front: not started after 5s")
		}
	}
	return nil
}

// route returns the server of the zone the first question of req is in:
// the longest of the routed zones and BIND's that contains it.
func (d *DNS01) route(req *dns.Msg) (string, bool) {
	if len(req.Question) == 0 {
		return "", false
	}
	return d.routeName(req.Question[0].Name)
}

func (d *DNS01) routeName(name string) (string, bool) {
	name = dns.CanonicalName(name)
	best, addr := -1, ""
	for _, z := range d.BIND.Zones {
		if dns.IsSubDomain(z, name) && dns.CountLabel(z) > best {
			best, addr = dns.CountLabel(z), d.BIND.Addr
		}
	}
	d.mu.Lock()
	for z, a := range d.routes {
		if dns.IsSubDomain(z, name) && dns.CountLabel(z) > best {
			best, addr = dns.CountLabel(z), a
		}
	}
	d.mu.Unlock()
	return addr, best >= 0
}

// forward relays req to the server of its zone over the transport it came
// in on and, as a recursive resolver does, chases a CNAME answer into the
// zone of its target (which may be on another server), appending what it
// finds.
func (d *DNS01) forward(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, tcp := w.LocalAddr().(*net.TCPAddr); tcp {
		network = "tcp"
	}
	c := &dns.Client{Net: network, Timeout: dnsForwardTimeout}
	addr, _ := d.route(req)
	r, _, err := c.Exchange(req, addr)
	if err != nil {
		r = new(dns.Msg)
		r.SetRcode(req, dns.RcodeServerFailure)
		r.Id = req.Id
		_ = w.WriteMsg(r)
		return
	}
	q := req.Question[0]
	name := q.Name
	for range dnsMaxCNAMEs {
		if q.Qtype == dns.TypeCNAME || r.Rcode != dns.RcodeSuccess {
			break
		}
		target := ""
		answered := false
		for _, rr := range r.Answer {
			if !strings.EqualFold(rr.Header().Name, name) {
				continue
			}
			if cn, ok := rr.(*dns.CNAME); ok {
				target = cn.Target
			} else if rr.Header().Rrtype == q.Qtype {
				answered = true
			}
		}
		if answered || target == "" {
			break
		}
		a, ok := d.routeName(target)
		if !ok {
			break
		}
		sub := new(dns.Msg)
		sub.SetQuestion(target, q.Qtype)
		sr, _, err := c.Exchange(sub, a)
		if err != nil {
			break
		}
		r.Answer = append(r.Answer, sr.Answer...)
		r.Rcode = sr.Rcode
		name = target
	}
	r.Id = req.Id
	_ = w.WriteMsg(r)
}

// Close stops the DNS front and BIND. It is safe on a nil or partly
// started DNS01.
func (d *DNS01) Close() {
	if d == nil {
		return
	}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		if srv != nil {
			_ = srv.Shutdown()
		}
	}
	if d.BIND != nil {
		_ = d.BIND.Stop()
	}
}

// listenUDPAndTCP binds a UDP socket on a free port of 127.0.0.1 and a TCP
// listener on the same port.
func listenUDPAndTCP() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dev: dns front: listen udp: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
		_ = pc.Close()
	}
	return nil, nil, fmt.Errorf("dev: dns front: no port free for both udp and tcp: %w", lastErr)
}

// CreateDNS01Issuer writes the Secret with BIND's TSIG secret and applies
// the Issuer "dev-dns", whose one solver is dns01.rfc2136 against the dev
// BIND, then waits until a worker has registered its account. It needs a
// stack started with Options.DNS01.
func (env *Env) CreateDNS01Issuer(ctx context.Context) error {
	if env.DNS01 == nil {
		return errors.New("dev: the stack was started without Options.DNS01")
	}
	b := env.DNS01.BIND
	if err := env.Store.PutSecret(ctx, Namespace, DNS01SecretName, map[string][]byte{DNS01SecretKey: []byte(b.TSIGSecret)}, nil); err != nil {
		return fmt.Errorf("dev: create the TSIG secret: %w", err)
	}
	return env.CreateIssuerIn(ctx, Namespace, DNS01IssuerName, messages.ACMESolver{DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{
		Nameserver:          b.Addr,
		TSIGKeyName:         b.TSIGKeyName,
		TSIGAlgorithm:       b.TSIGAlgorithm,
		TSIGSecretSecretRef: &messages.SecretKeySelector{Name: DNS01SecretName, Key: DNS01SecretKey},
	}}})
}
