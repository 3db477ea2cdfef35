package lego

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
)

const (
	zone       = "pdns.test"
	thumbprint = "account-thumbprint"
)

// keyAuth is the key authorization of an account whose key's thumbprint
// is thumbprint.
func keyAuth(_ context.Context, token string) (string, error) { return token + "." + thumbprint, nil }

func dnsChallenge(name, token string) solvers.Challenge {
	sum := sha256.Sum256([]byte(token + "." + thumbprint))
	return solvers.Challenge{
		DNSName: strings.TrimPrefix(name, "*."), Wildcard: strings.HasPrefix(name, "*."),
		Type: solvers.TypeDNS01, Token: token, Key: base64.RawURLEncoding.EncodeToString(sum[:]),
	}
}

// startPDNS starts a real PowerDNS Authoritative server with zone, and
// points lego's lookups at it. Tests using it do not run in parallel: lego's
// DNS client is process-wide.
func startPDNS(t *testing.T) *stack.PDNS {
	t.Helper()
	p, err := stack.StartPDNS(t.TempDir())
	if err != nil {
		t.Fatalf("StartPDNS: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.CreateZone(zone); err != nil {
		t.Fatal(err)
	}
	UseRecursiveNameservers([]string{p.Addr}, 5*time.Second)
	return p
}

func newPDNSProvider(t *testing.T, p *stack.PDNS, settings map[string]string) *Provider {
	t.Helper()
	if settings == nil {
		settings = map[string]string{"PDNS_API_URL": p.APIURL, "PDNS_TTL": "60"}
	}
	prov, err := New(Config{Provider: "pdns", Settings: settings, Credentials: map[string]string{"PDNS_API_KEY": p.APIKey + "\n", "unrelated": "x"}, KeyAuthorization: keyAuth})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return prov
}

// An apex and its wildcard through lego's pdns provider into a real
// PowerDNS: two values at one name, each cleaned up on its own.
func TestPDNSPresentCleanUp(t *testing.T) {
	p := startPDNS(t)
	prov := newPDNSProvider(t, p, nil)
	ctx := t.Context()
	apex, wild := dnsChallenge("shop.pdns.test", "apex-token"), dnsChallenge("*.shop.pdns.test", "wildcard-token")
	for _, ch := range []solvers.Challenge{apex, wild} {
		if err := prov.Present(ctx, ch); err != nil {
			t.Fatalf("Present: %v", err)
		}
	}
	const name = "_acme-challenge.shop.pdns.test."
	want := []string{apex.Key, wild.Key}
	slices.Sort(want)
	if got := stacktest.TXT(t, p.Addr, name); !slices.Equal(got, want) {
		t.Fatalf("TXT after presenting = %q, want %q", got, want)
	}
	check, err := dns01.NewSelfCheck(dns01.SelfCheckConfig{RecursiveNameservers: []string{p.Addr}, RecursiveNameserversOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := check.Check(ctx, wild); err != nil {
		t.Errorf("self check: %v", err)
	}
	if err := prov.CleanUp(ctx, apex); err != nil {
		t.Fatal(err)
	}
	if got := stacktest.TXT(t, p.Addr, name); !slices.Equal(got, []string{wild.Key}) {
		t.Errorf("TXT after cleaning up the apex = %q, want the wildcard's only", got)
	}
	if err := prov.CleanUp(ctx, wild); err != nil {
		t.Fatal(err)
	}
	if got := stacktest.TXT(t, p.Addr, name); len(got) != 0 {
		t.Errorf("TXT after cleaning up both = %q", got)
	}
}

func TestPDNSFailures(t *testing.T) {
	p := startPDNS(t)
	ctx := t.Context()

	// A zone PowerDNS does not serve, then does.
	prov := newPDNSProvider(t, p, nil)
	ch := dnsChallenge("www.late.test", "tok")
	err := prov.Present(ctx, ch)
	if err == nil || !strings.HasPrefix(err.Error(), `lego: pdns: could not find zone for domain "www.late.test"`) {
		t.Fatalf("Present without a zone = %v", err)
	}
	if err := p.CreateZone("late.test"); err != nil {
		t.Fatal(err)
	}
	if err := prov.Present(ctx, ch); err != nil {
		t.Fatalf("Present once the zone exists: %v", err)
	}

	// A wrong API key.
	bad, err := New(Config{Provider: "pdns", Settings: map[string]string{"PDNS_API_URL": p.APIURL, "PDNS_API_VERSION": "1"},
		Credentials: map[string]string{"PDNS_API_KEY": "wrong"}, KeyAuthorization: keyAuth})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Present(ctx, dnsChallenge("a.pdns.test", "t")); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Present with a wrong API key = %v, want a 401", err)
	}

	// The account's key authorization does not give the challenge's value.
	other := dnsChallenge("a.pdns.test", "t")
	other.Key = "not-the-digest"
	err = prov.Present(ctx, other)
	if err == nil || err.Error() != `lego: pdns: the key authorization of the issuer's account does not match the challenge of "a.pdns.test" (was the account key replaced?)` {
		t.Errorf("Present with a foreign digest = %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		provider string
		settings map[string]string
		creds    []string
		want     string
	}{
		{"unknown provider", "route99", nil, nil, `lego: unknown provider "route99" (known: pdns)`},
		{"credential in config", "pdns", map[string]string{"PDNS_API_URL": "http://x", "PDNS_API_KEY": "k"}, nil,
			"lego: invalid provider settings: pdns: PDNS_API_KEY is a credential: put it in the credentials Secret, not in config"},
		{"unknown setting", "pdns", map[string]string{"PDNS_API_UR": "http://x"}, nil,
			"lego: invalid provider settings: pdns: unknown setting PDNS_API_UR (pdns accepts PDNS_API_URL, PDNS_SERVER_NAME, PDNS_API_VERSION, PDNS_TTL, PDNS_HTTP_TIMEOUT, PDNS_PROPAGATION_TIMEOUT, PDNS_POLLING_INTERVAL, PDNS_API_KEY)"},
		{"missing credentials", "pdns", map[string]string{"PDNS_API_URL": "http://x"}, []string{"other"},
			"lego: invalid provider settings: pdns: PDNS_API_KEY is required (in the credentials Secret)"},
		{"missing URL", "pdns", nil, []string{"PDNS_API_KEY"},
			"lego: invalid provider settings: pdns: PDNS_API_URL is required (in config)"},
		{"in both", "pdns", map[string]string{"PDNS_API_URL": "http://x"}, []string{"PDNS_API_KEY", "PDNS_API_URL"},
			"lego: invalid provider settings: pdns: PDNS_API_URL is set both in config and in the credentials Secret"},
		{"ok", "pdns", map[string]string{"PDNS_API_URL": "http://x"}, []string{"PDNS_API_KEY"}, ""},
		{"ok without the Secret's keys", "pdns", map[string]string{"PDNS_API_URL": "http://x"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.provider, tc.settings, tc.creds)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Validate = %v\nwant %s", err, tc.want)
			}
			if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrUnknownProvider) {
				t.Errorf("Validate = %v wraps neither ErrConfig nor ErrUnknownProvider", err)
			}
		})
	}
	// New checks values too.
	for _, tc := range []struct {
		settings map[string]string
		want     string
	}{
		{map[string]string{"PDNS_API_URL": "pdns:8081"}, `lego: invalid provider settings: pdns: PDNS_API_URL "pdns:8081" is not an absolute http or https URL`},
		{map[string]string{"PDNS_API_URL": "http://127.0.0.1:1", "PDNS_TTL": "soon"}, `lego: invalid provider settings: pdns: PDNS_TTL "soon" is not an integer`},
		{map[string]string{"PDNS_API_URL": "http://127.0.0.1:1", "PDNS_HTTP_TIMEOUT": "-3"}, `lego: invalid provider settings: pdns: PDNS_HTTP_TIMEOUT "-3" is not a number of seconds`},
	} {
		_, err := New(Config{Provider: "pdns", Settings: tc.settings, Credentials: map[string]string{"PDNS_API_KEY": "k"}, KeyAuthorization: keyAuth})
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrConfig) {
			t.Errorf("New(%v) = %v\nwant %s", tc.settings, err, tc.want)
		}
	}
}

// TestRegisterUnregister: a provider registered under a new name is found
// under it, and gone again after Unregister; the original stays.
func TestRegisterUnregister(t *testing.T) {
	r, ok := Lookup("pdns")
	if !ok {
		t.Fatal(`no "pdns" provider registered`)
	}
	Register("pdns-copy", r)
	if _, ok := Lookup("pdns-copy"); !ok {
		t.Fatal(`"pdns-copy" not found after Register`)
	}
	Unregister("pdns-copy")
	if _, ok := Lookup("pdns-copy"); ok {
		t.Error(`"pdns-copy" still found after Unregister`)
	}
	if _, ok := Lookup("pdns"); !ok {
		t.Error(`"pdns" gone after unregistering its copy`)
	}
}
