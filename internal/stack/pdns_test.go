package stack

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestPDNS(t *testing.T) {
	p, err := StartPDNS(t.TempDir())
	if err != nil {
		t.Fatalf("StartPDNS: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if !strings.HasPrefix(p.APIURL, "http://127.0.0.1:") || !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.APIKey == "" {
		t.Fatalf("PDNS = %+v", p)
	}

	soa := func(network string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("pdns.test.", dns.TypeSOA)
		r, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, p.Addr)
		if err != nil {
			t.Fatalf("SOA over %s: %v", network, err)
		}
		return r
	}
	if r := soa("udp"); r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
		t.Fatalf("SOA before the zone exists: %v", r)
	}
	if err := p.CreateZone("pdns.test"); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		r := soa(network)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
			t.Errorf("SOA over %s after CreateZone: %v", network, r)
		}
	}
	if err := p.CreateZone("pdns.test"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("creating the zone twice = %v, want a 409 Conflict", err)
	}
	if err := p.DeleteZone("pdns.test"); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestPDNSMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := pdnsFallbackDir
	pdnsFallbackDir = t.TempDir()
	t.Cleanup(func() { pdnsFallbackDir = old })
	_, err := StartPDNS(t.TempDir())
	if !errors.Is(err, errPDNSNotFound) || !strings.Contains(err.Error(), "apt-get install -y pdns-server pdns-backend-sqlite3 sqlite3") {
		t.Fatalf("StartPDNS without pdns_server = %v", err)
	}
}
