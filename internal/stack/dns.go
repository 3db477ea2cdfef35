package stack

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// dnsTTL is the TTL of every record the DNS server returns.
	dnsTTL = 0
	// dnsListenAttempts is how many ports StartDNS tries to get the same
	// port for UDP and TCP.
	dnsListenAttempts = 10
	// dnsStartTimeout bounds how long StartDNS waits for its servers.
	dnsStartTimeout = 5 * time.Second
)

// DNS is a tiny authoritative DNS server for every name, listening on UDP
// and TCP on the same port of 127.0.0.1.
//
// It answers A queries with the configured IPv4 address (AAAA queries if the
// address is IPv6), TXT queries from records set with SetTXT, and anything
// else with NOERROR and no answers. It never answers NXDOMAIN.
type DNS struct {
	// Addr is the host:port the server listens on, for both UDP and TCP.
	Addr string

	ip  net.IP
	udp *dns.Server
	tcp *dns.Server

	mu  sync.RWMutex
	txt map[string][]string
}

// StartDNS starts a DNS server on a free port of 127.0.0.1 that resolves
// every name to ip. If ip is IPv4, AAAA queries get NOERROR with no answers
// (so resolvers that try AAAA first, like Pebble's VA, fall back to A); if ip
// is IPv6 it is the other way round.
func StartDNS(ip net.IP) (*DNS, error) {
	if ip == nil {
		return nil, errors.New("stack: dns: nil ip")
	}
	d := &DNS{ip: ip, txt: make(map[string][]string)}

	pc, ln, err := listenUDPAndTCP()
	if err != nil {
		return nil, err
	}
	d.Addr = pc.LocalAddr().String()
	d.udp = &dns.Server{PacketConn: pc, Handler: d}
	d.tcp = &dns.Server{Listener: ln, Handler: d}

	started := make(chan struct{}, 2)
	failed := make(chan error, 2)
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
	}
	timeout := time.After(dnsStartTimeout)
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			d.Close()
			return nil, fmt.Errorf("stack: dns: serve: %w", err)
		case <-timeout:
			d.Close()
			return nil, fmt.Errorf("stack: dns: not started after %s", dnsStartTimeout)
		}
	}
	return d, nil
}

// listenUDPAndTCP binds a UDP socket on a free port of 127.0.0.1 and a TCP
// listener on the same port.
func listenUDPAndTCP() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range dnsListenAttempts {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("stack: dns: listen udp: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
		_ = pc.Close()
	}
	return nil, nil, fmt.Errorf("stack: dns: no port free for both udp and tcp after %d attempts: %w", dnsListenAttempts, lastErr)
}

// SetTXT replaces the TXT records of fqdn with values. The name is
// case-insensitive and a trailing dot is optional.
func (d *DNS) SetTXT(fqdn string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[canonicalName(fqdn)] = append([]string(nil), values...)
}

// DeleteTXT removes the TXT records of fqdn.
func (d *DNS) DeleteTXT(fqdn string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.txt, canonicalName(fqdn))
}

// Close stops the UDP and TCP servers.
func (d *DNS) Close() {
	if d == nil {
		return
	}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(); err != nil {
			// Not started (yet): close the sockets directly.
			if srv.PacketConn != nil {
				_ = srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				_ = srv.Listener.Close()
			}
		}
	}
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	for _, q := range req.Question {
		if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
			continue
		}
		m.Answer = append(m.Answer, d.answer(q)...)
	}

	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer returns the records answering q.
func (d *DNS) answer(q dns.Question) []dns.RR {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: dnsTTL}
	}
	switch q.Qtype {
	case dns.TypeA:
		if v4 := d.ip.To4(); v4 != nil {
			return []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: v4}}
		}
	case dns.TypeAAAA:
		if d.ip.To4() == nil {
			return []dns.RR{&dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: d.ip}}
		}
	case dns.TypeTXT:
		d.mu.RLock()
		values := d.txt[canonicalName(q.Name)]
		d.mu.RUnlock()
		rrs := make([]dns.RR, 0, len(values))
		for _, v := range values {
			rrs = append(rrs, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(v)})
		}
		return rrs
	}
	return nil
}

// canonicalName returns name fully qualified and in lower case.
func canonicalName(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// splitTXT splits v into the 255-byte character-strings of one TXT record.
func splitTXT(v string) []string {
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
