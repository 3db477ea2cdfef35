package dns01

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

func TestChallengeRecordName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "_acme-challenge.example.com."},
		{"*.example.com", "_acme-challenge.example.com."},
		{"www.Example.COM.", "_acme-challenge.www.example.com."},
		{"a.b.example.test", "_acme-challenge.a.b.example.test."},
	} {
		if got := ChallengeRecordName(tc.in); got != tc.want {
			t.Errorf("ChallengeRecordName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidateChallenge(t *testing.T) {
	ok := solvers.Challenge{DNSName: "a.example.test", Type: solvers.TypeDNS01, Key: "digest"}
	if name, err := validateChallenge(ok); err != nil || name != "_acme-challenge.a.example.test." {
		t.Fatalf("validateChallenge(valid) = %q, %v", name, err)
	}
	untyped := ok
	untyped.Type = ""
	if _, err := validateChallenge(untyped); err != nil {
		t.Fatalf("validateChallenge(no type) = %v", err)
	}
	lower := ok
	lower.Type = "dns-01"
	if _, err := validateChallenge(lower); err != nil {
		t.Fatalf("validateChallenge(dns-01) = %v", err)
	}

	for _, tc := range []struct {
		name string
		mod  func(*solvers.Challenge)
		want string
	}{
		{"http-01", func(c *solvers.Challenge) { c.Type = solvers.TypeHTTP01 },
			`dns01: unsupported challenge: type "HTTP-01" for "a.example.test", want "DNS-01"`},
		{"empty name", func(c *solvers.Challenge) { c.DNSName = "" },
			`dns01: unsupported challenge: empty DNS name`},
		{"empty label", func(c *solvers.Challenge) { c.DNSName = "a..example.test" },
			`dns01: unsupported challenge: "a..example.test" is not a valid DNS name`},
		{"space", func(c *solvers.Challenge) { c.DNSName = "a b.example.test" },
			`dns01: unsupported challenge: "a b.example.test" is not a valid DNS name`},
		{"too long", func(c *solvers.Challenge) { c.DNSName = strings.Repeat("a", 64) + ".test" },
			`dns01: unsupported challenge: "` + strings.Repeat("a", 64) + `.test" is not a valid DNS name`},
		{"empty key", func(c *solvers.Challenge) { c.Key = "" },
			`dns01: unsupported challenge: challenge for "a.example.test" has an empty key authorization digest`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := ok
			tc.mod(&ch)
			_, err := validateChallenge(ch)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !errors.Is(err, ErrUnsupportedChallenge) {
				t.Fatalf("err = %v, does not wrap ErrUnsupportedChallenge", err)
			}
		})
	}
}

func TestTXTStrings(t *testing.T) {
	long := strings.Repeat("x", 600)
	parts := txtStrings(long)
	if len(parts) != 3 || len(parts[0]) != 255 || len(parts[1]) != 255 || len(parts[2]) != 90 {
		t.Fatalf("txtStrings(600 bytes): %d parts", len(parts))
	}
	if got := txtValue(&dns.TXT{Txt: parts}); got != long {
		t.Fatal("txtValue does not join the parts back")
	}
	if got := txtStrings("short"); len(got) != 1 || got[0] != "short" {
		t.Fatalf("txtStrings(short) = %q", got)
	}
}

func TestRcodeString(t *testing.T) {
	m := new(dns.Msg)
	m.Rcode = dns.RcodeRefused
	if got := rcodeString(m); got != "REFUSED" {
		t.Errorf("rcodeString(REFUSED) = %q", got)
	}
	m.Rcode = dns.RcodeNotAuth
	m.Extra = append(m.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "k.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY}, Error: dns.RcodeBadSig})
	if got := rcodeString(m); got != "NOTAUTH (TSIG error BADSIG)" {
		t.Errorf("rcodeString(NOTAUTH+BADSIG) = %q", got)
	}
	m = new(dns.Msg)
	m.Rcode = 3000
	if got := rcodeString(m); got != "rcode 3000" {
		t.Errorf("rcodeString(3000) = %q", got)
	}
}
