package stack

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startBIND starts named serving zones in a temporary directory and stops
// it when the test ends. A missing named fails the test.
func startBIND(t *testing.T, zones ...string) *BIND {
	t.Helper()
	b, err := StartBIND(t.TempDir(), zones...)
	if err != nil {
		t.Fatalf("StartBIND: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return b
}

// bindUpdate sends an RFC 2136 update of zone that adds rrs, over TCP,
// signed with b's key if sign is set, and returns the response.
func bindUpdate(t *testing.T, b *BIND, zone string, sign bool, secret string, rrs ...dns.RR) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Insert(rrs)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if sign {
		m.SetTsig(b.TSIGKeyName, dns.HmacSHA256, 300, time.Now().Unix())
		c.TsigSecret = map[string]string{b.TSIGKeyName: secret}
	}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil && (r == nil || r.Rcode == dns.RcodeSuccess) {
		t.Fatalf("update: %v", err)
	}
	return r
}

// bindTXT queries b over network for the TXT records of name.
func bindTXT(t *testing.T, b *BIND, network, name string) (int, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		t.Fatalf("TXT query over %s: %v", network, err)
	}
	var values []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			values = append(values, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(values)
	return r.Rcode, values
}

func TestStartBIND(t *testing.T) {
	b := startBIND(t, "example.test", "Other.Test.")

	if b.TSIGKeyName != "acmeq-key." || b.TSIGAlgorithm != "hmac-sha256" {
		t.Errorf("key = %q %q, want %q %q", b.TSIGKeyName, b.TSIGAlgorithm, "acmeq-key.", "hmac-sha256")
	}
	if secret, err := base64.StdEncoding.DecodeString(b.TSIGSecret); err != nil || len(secret) != 32 {
		t.Errorf("TSIGSecret %q: %d bytes, %v; want 32 bytes of base64", b.TSIGSecret, len(secret), err)
	}
	if want := []string{"example.test.", "other.test."}; !slices.Equal(b.Zones, want) {
		t.Errorf("Zones = %q, want %q", b.Zones, want)
	}
	if !strings.HasPrefix(b.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want 127.0.0.1:<port>", b.Addr)
	}
	for _, name := range []string{"named.conf", "named.log", "named.pid", "example.test.zone", "other.test.zone"} {
		if _, err := os.Stat(filepath.Join(b.Dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	const name = "_acme-challenge.www.example.test."
	if rcode, values := bindTXT(t, b, "udp", name); rcode != dns.RcodeNameError || len(values) != 0 {
		t.Fatalf("before update: %s %q, want NXDOMAIN", dns.RcodeToString[rcode], values)
	}

	txt := func(v string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}}
	}
	if r := bindUpdate(t, b, "example.test.", true, b.TSIGSecret, txt("one"), txt("two")); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("signed update: %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	for _, network := range []string{"udp", "tcp"} {
		rcode, values := bindTXT(t, b, network, name)
		if want := []string{"one", "two"}; rcode != dns.RcodeSuccess || !slices.Equal(values, want) {
			t.Errorf("over %s: %s %q, want NOERROR %q", network, dns.RcodeToString[rcode], values, want)
		}
	}

	if r := bindUpdate(t, b, "example.test.", false, "", txt("unsigned")); r.Rcode != dns.RcodeRefused {
		t.Errorf("unsigned update: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	wrong := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if r := bindUpdate(t, b, "example.test.", true, wrong, txt("forged")); r.Rcode != dns.RcodeNotAuth {
		t.Errorf("update with a wrong secret: %s, want NOTAUTH", dns.RcodeToString[r.Rcode])
	}
	if _, values := bindTXT(t, b, "tcp", name); !slices.Equal(values, []string{"one", "two"}) {
		t.Errorf("after refused updates: %q, want [one two]", values)
	}

	// The second zone is served too; names outside the zones are refused.
	if err := querySOA(b.Addr, "udp", "other.test."); err != nil {
		t.Errorf("SOA other.test.: %v", err)
	}
	if rcode, _ := bindTXT(t, b, "udp", "example.com."); rcode != dns.RcodeRefused {
		t.Errorf("query outside the zones: %s, want REFUSED", dns.RcodeToString[rcode])
	}

	if !strings.Contains(b.Output(), "running") {
		t.Errorf("Output() lacks %q:\n%s", "running", b.Output())
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := querySOA(b.Addr, "tcp", "example.test."); err == nil {
		t.Error("server still answers after Stop")
	}
}

func TestBINDKill(t *testing.T) {
	b := startBIND(t, "example.test")
	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if err := querySOA(b.Addr, "tcp", "example.test."); err == nil {
		t.Error("server still answers after Kill")
	}
}

func TestStartBINDMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := namedFallbackPath
	namedFallbackPath = filepath.Join(t.TempDir(), "named")
	t.Cleanup(func() { namedFallbackPath = old })

	_, err := StartBIND(t.TempDir(), "example.test")
	const want = "stack: named not found in PATH: install it (Debian/Ubuntu: apt-get install -y bind9)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestStartBINDInvalidZones(t *testing.T) {
	for _, tc := range []struct {
		zones []string
		want  string
	}{
		{nil, "stack: bind: at least one zone is required"},
		{[]string{"."}, `stack: bind: invalid zone name "."`},
		{[]string{"a..b"}, `stack: bind: invalid zone name "a..b"`},
		{[]string{`a"b.test`}, `stack: bind: invalid zone name "a\"b.test": only letters, digits, '-', '_' and '.' are supported`},
		{[]string{"example.test", "EXAMPLE.test."}, `stack: bind: zone "EXAMPLE.test." given twice`},
	} {
		_, err := StartBIND(t.TempDir(), tc.zones...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("StartBIND(%q): err = %v, want %q", tc.zones, err, tc.want)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 3, "a\nb\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
	} {
		if got := lastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
