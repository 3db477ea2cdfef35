package dns01

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
)

// zoneServer is a tiny DNS server (miekg/dns) answering from a map of
// records, on UDP and TCP of one address. As a "recursive" nameserver it
// holds every zone's SOA, NS, A and CNAME records; as an authoritative one
// it holds the challenge TXT records. It answers NXDOMAIN for a name with
// no record of any type.
type zoneServer struct {
	addr string
	mu   sync.Mutex
	rrs  []dns.RR
	hits int
}

// startZoneServer serves records on ip:port (port 0 picks a free one).
func startZoneServer(t *testing.T, ip string, port int, records ...string) *zoneServer {
	t.Helper()
	z := &zoneServer{}
	for _, r := range records {
		z.add(t, r)
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// With port 0 the UDP port found may be taken for TCP: try others.
	for range 20 {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("listen udp %s:%d: %v", ip, port, err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if port != 0 {
			break
		}
	}
	if err != nil {
		t.Fatalf("listen tcp on %s:%d: %v", ip, port, err)
	}
	z.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("zone server did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return z
}

// add adds a record in zone file syntax.
func (z *zoneServer) add(t *testing.T, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatalf("record %q: %v", record, err)
	}
	z.mu.Lock()
	z.rrs = append(z.rrs, rr)
	z.mu.Unlock()
}

// hitCount returns how many queries z answered.
func (z *zoneServer) hitCount() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.hits
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	z.mu.Lock()
	z.hits++
	exists := false
	for _, rr := range z.rrs {
		if !strings.EqualFold(rr.Header().Name, q.Name) {
			continue
		}
		exists = true
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	z.mu.Unlock()
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// freePortOn returns a port free for UDP and TCP on each of ips.
func freePortOn(t *testing.T, ips ...string) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		ok := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(port))
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			u.Close()
			l, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// delegation is a customer zone whose challenge names are CNAMEs into a
// platform zone, with two authoritative nameservers for the platform zone
// on 127.0.0.2 and 127.0.0.3 (one port), and a recursive nameserver that
// knows the zones' SOA, NS and A records and the CNAMEs.
type delegation struct {
	recursive  *zoneServer
	ns1, ns2   *zoneServer
	port       int
	selfCheck  *SelfCheck
	resolver   *Resolver
	ns1Label   string
	ns2Label   string
	targetName string
}

func setupDelegation(t *testing.T) *delegation {
	t.Helper()
	d := &delegation{port: freePortOn(t, "127.0.0.2", "127.0.0.3")}
	d.recursive = startZoneServer(t, "127.0.0.1", 0,
		"customer.test. 60 IN SOA ns.customer.test. h.customer.test. 1 3600 600 86400 60",
		"customer.test. 60 IN NS ns.customer.test.",
		"_acme-challenge.shop.customer.test. 60 IN CNAME shop.acme-delegation.test.",
		"_acme-challenge.loop.customer.test. 60 IN CNAME loop2.customer.test.",
		"loop2.customer.test. 60 IN CNAME _acme-challenge.loop.customer.test.",
		"acme-delegation.test. 60 IN SOA ns1.acme-delegation.test. h.acme-delegation.test. 1 3600 600 86400 60",
		"acme-delegation.test. 60 IN NS ns1.acme-delegation.test.",
		"acme-delegation.test. 60 IN NS ns2.acme-delegation.test.",
		"ns1.acme-delegation.test. 60 IN A 127.0.0.2",
		"ns2.acme-delegation.test. 60 IN A 127.0.0.3",
	)
	for i := range MaxCNAMEDepth + 1 {
		d.recursive.add(t, fmt.Sprintf("%s 60 IN CNAME c%d.customer.test.", deepName(i), i+1))
	}
	d.ns1 = startZoneServer(t, "127.0.0.2", d.port)
	d.ns2 = startZoneServer(t, "127.0.0.3", d.port)
	var err error
	d.selfCheck, err = NewSelfCheck(SelfCheckConfig{RecursiveNameservers: []string{d.recursive.addr}, AuthoritativePort: d.port, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.resolver = d.selfCheck.Resolver()
	d.ns1Label = "ns1.acme-delegation.test. (127.0.0.2:" + strconv.Itoa(d.port) + ")"
	d.ns2Label = "ns2.acme-delegation.test. (127.0.0.3:" + strconv.Itoa(d.port) + ")"
	d.targetName = "shop.acme-delegation.test."
	return d
}

// deepName is the i-th name of a CNAME chain longer than MaxCNAMEDepth.
func deepName(i int) string {
	if i == 0 {
		return "_acme-challenge.deep.customer.test."
	}
	return fmt.Sprintf("c%d.customer.test.", i)
}

func TestResolverFollowCNAME(t *testing.T) {
	t.Parallel()
	d := setupDelegation(t)
	ctx := t.Context()

	got, chain, err := d.resolver.FollowCNAME(ctx, "_acme-challenge.Shop.customer.test")
	if err != nil || got != d.targetName || !slices.Equal(chain, []string{"_acme-challenge.shop.customer.test.", d.targetName}) {
		t.Errorf("FollowCNAME(shop) = %q, %q, %v", got, chain, err)
	}
	// No CNAME, no record at all: the name itself.
	got, chain, err = d.resolver.FollowCNAME(ctx, "_acme-challenge.other.customer.test.")
	if err != nil || got != "_acme-challenge.other.customer.test." || len(chain) != 1 {
		t.Errorf("FollowCNAME(other) = %q, %q, %v", got, chain, err)
	}
	_, _, err = d.resolver.FollowCNAME(ctx, "_acme-challenge.loop.customer.test.")
	want := "dns01: CNAME loop at _acme-challenge.loop.customer.test.: _acme-challenge.loop.customer.test. -> loop2.customer.test. -> _acme-challenge.loop.customer.test."
	if !errors.Is(err, ErrCNAMELoop) || err.Error() != want {
		t.Errorf("FollowCNAME(loop) = %v, want %s", err, want)
	}
	_, chain, err = d.resolver.FollowCNAME(ctx, deepName(0))
	if !errors.Is(err, ErrCNAMELoop) || !strings.HasPrefix(err.Error(), fmt.Sprintf("dns01: more than %d CNAMEs from %s", MaxCNAMEDepth, deepName(0))) || len(chain) != MaxCNAMEDepth+2 {
		t.Errorf("FollowCNAME(deep) = %v (chain of %d)", err, len(chain))
	}
}

func TestResolverFindZone(t *testing.T) {
	t.Parallel()
	d := setupDelegation(t)
	for name, want := range map[string]string{
		"shop.acme-delegation.test.":         "acme-delegation.test.",
		"a.b.c.acme-delegation.test":         "acme-delegation.test.",
		"acme-delegation.test.":              "acme-delegation.test.",
		"_acme-challenge.x.customer.test.":   "customer.test.",
		"_acme-challenge.shop.customer.test": "customer.test.", // a CNAME is not a zone apex
	} {
		if got, err := d.resolver.FindZone(t.Context(), name); err != nil || got != want {
			t.Errorf("FindZone(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	_, err := d.resolver.FindZone(t.Context(), "www.nowhere.test")
	want := "dns01: no zone found for www.nowhere.test.: no SOA record for it or a parent at " + d.recursive.addr +
		" (answers: www.nowhere.test. NXDOMAIN, nowhere.test. NXDOMAIN, test. NXDOMAIN)"
	if !errors.Is(err, ErrZoneNotFound) || err.Error() != want {
		t.Errorf("FindZone(nowhere) = %v\nwant %s", err, want)
	}
}

// The self-check follows the CNAME, finds the platform zone, and asks both
// of its authoritative nameservers: it passes only once both answer.
func TestSelfCheckAuthoritativeThroughCNAME(t *testing.T) {
	t.Parallel()
	d := setupDelegation(t)
	ch := challenge("shop.customer.test", "digest-1")

	err := d.selfCheck.Check(t.Context(), ch)
	want := `dns01: DNS record for "shop.customer.test" not yet propagated: _acme-challenge.shop.customer.test. -> shop.acme-delegation.test. TXT: ` +
		d.ns1Label + ` answered NXDOMAIN; ` + d.ns2Label + ` answered NXDOMAIN`
	if !errors.Is(err, ErrNotPropagated) || err.Error() != want {
		t.Fatalf("Check before presenting = %v\nwant %s", err, want)
	}

	// The wildcard's value and ours at the first server, only the
	// wildcard's at the second.
	d.ns1.add(t, `shop.acme-delegation.test. 60 IN TXT "digest-wildcard"`)
	d.ns1.add(t, `shop.acme-delegation.test. 60 IN TXT "digest-1"`)
	d.ns2.add(t, `shop.acme-delegation.test. 60 IN TXT "digest-wildcard"`)
	err = d.selfCheck.Check(t.Context(), ch)
	want = `dns01: DNS record for "shop.customer.test" not yet propagated: _acme-challenge.shop.customer.test. -> shop.acme-delegation.test. TXT: ` +
		d.ns2Label + ` answered 1 other value`
	if !errors.Is(err, ErrNotPropagated) || err.Error() != want {
		t.Fatalf("Check with one server behind = %v\nwant %s", err, want)
	}

	d.ns2.add(t, `shop.acme-delegation.test. 60 IN TXT "digest-1"`)
	if err := d.selfCheck.Check(t.Context(), ch); err != nil {
		t.Fatalf("Check with both servers = %v", err)
	}
	if d.recursive.hitCount() == 0 || d.ns1.hitCount() == 0 || d.ns2.hitCount() == 0 {
		t.Errorf("hits: recursive %d, ns1 %d, ns2 %d; want every server asked", d.recursive.hitCount(), d.ns1.hitCount(), d.ns2.hitCount())
	}
}

func TestSelfCheckZoneAndLoopErrors(t *testing.T) {
	t.Parallel()
	d := setupDelegation(t)
	err := d.selfCheck.Check(t.Context(), challenge("www.nowhere.test", "v"))
	if !errors.Is(err, ErrZoneNotFound) || !strings.HasPrefix(err.Error(), "dns01: no zone found for _acme-challenge.www.nowhere.test.") {
		t.Errorf("Check outside every zone = %v", err)
	}
	err = d.selfCheck.Check(t.Context(), challenge("loop.customer.test", "v"))
	if !errors.Is(err, ErrCNAMELoop) {
		t.Errorf("Check of a CNAME loop = %v", err)
	}
	// A zone whose nameserver has no address.
	d.recursive.add(t, "broken.test. 60 IN SOA ns.broken.test. h.broken.test. 1 3600 600 86400 60")
	d.recursive.add(t, "broken.test. 60 IN NS ns.broken.test.")
	err = d.selfCheck.Check(t.Context(), challenge("a.broken.test", "v"))
	want := "dns01: nameserver ns.broken.test. of broken.test. has no address (A or AAAA) at " + d.recursive.addr
	if !errors.Is(err, ErrNameserver) || err.Error() != want {
		t.Errorf("Check with an unresolvable nameserver = %v\nwant %s", err, want)
	}
}

// CNAMEFollowing writes at the end of the chain and leaves a name without
// CNAME where it is.
func TestCNAMEFollowingRFC2136(t *testing.T) {
	t.Parallel()
	b := startBINDZones(t, "customer.test", "acme-delegation.test")
	p := newRFC2136(t, rfc2136Config(b))
	ctx := t.Context()
	// The customer's delegation, written into BIND.
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: "_acme-challenge.shop.customer.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "shop.acme-delegation.test."}
	if err := b.AddRecord("customer.test.", cname); err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(SelfCheckConfig{RecursiveNameservers: []string{b.Addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := &CNAMEFollowing{Provider: p, Resolver: r}
	apex, wild := challenge("shop.customer.test", "apex-value"), challenge("*.shop.customer.test", "wildcard-value")
	if err := f.Present(ctx, apex); err != nil {
		t.Fatalf("Present apex: %v", err)
	}
	if err := f.Present(ctx, wild); err != nil {
		t.Fatalf("Present wildcard: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, "shop.acme-delegation.test."); !slices.Equal(got, []string{"apex-value", "wildcard-value"}) {
		t.Errorf("TXT at the CNAME target = %q", got)
	}
	check := newSelfCheck(t, b.Addr)
	if err := check.Check(ctx, apex); err != nil {
		t.Errorf("Check apex through the CNAME: %v", err)
	}
	if err := f.CleanUp(ctx, apex); err != nil {
		t.Fatalf("CleanUp apex: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, "shop.acme-delegation.test."); !slices.Equal(got, []string{"wildcard-value"}) {
		t.Errorf("TXT after cleaning up the apex = %q, want the wildcard's only", got)
	}
	if err := f.CleanUp(ctx, wild); err != nil {
		t.Fatalf("CleanUp wildcard: %v", err)
	}
	if got := stacktest.TXT(t, b.Addr, "shop.acme-delegation.test."); len(got) != 0 {
		t.Errorf("TXT after cleaning up both = %q", got)
	}
	// No CNAME: written at the name itself.
	plain := challenge("plain.customer.test", "plain-value")
	if err := f.Present(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if got := stacktest.TXT(t, b.Addr, "_acme-challenge.plain.customer.test."); !slices.Equal(got, []string{"plain-value"}) {
		t.Errorf("TXT without CNAME = %q", got)
	}
}
