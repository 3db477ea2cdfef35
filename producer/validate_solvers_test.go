package producer

import (
	"testing"

	"github.com/acmeq/acmeq/messages"
)

func TestValidateIssuerSolvers(t *testing.T) {
	t.Parallel()
	caPEM := testCAPEM(t)
	ref := &messages.SecretKeySelector{Name: "hook", Key: "token"}
	dns := func(d messages.DNS01Solver, sel *messages.SolverSelector) func(i *messages.Issuer) {
		return func(i *messages.Issuer) {
			i.Spec.ACME.Solvers = []messages.ACMESolver{{Selector: sel, DNS01: &d}}
		}
	}
	http := func(sel *messages.SolverSelector) func(i *messages.Issuer) {
		return func(i *messages.Issuer) {
			i.Spec.ACME.Solvers = []messages.ACMESolver{{Selector: sel, HTTP01: &messages.HTTP01Solver{}}}
		}
	}
	hook := &messages.WebhookProvider{URL: "https://bridge.example.com/acme"}
	pdns := &messages.LegoProvider{Provider: "pdns", Config: map[string]string{"PDNS_API_URL": "http://pdns.internal:8081"}, CredentialsSecretRef: &messages.SecretRef{Name: "pdns-api"}}
	rfc := &messages.RFC2136Provider{Nameserver: "ns1.example.com:53"}
	const d0 = "spec.acme.solvers[0].dns01"
	const s0 = "spec.acme.solvers[0].selector"
	tests := []struct {
		name   string
		mutate func(i *messages.Issuer)
		want   string // "" means valid
	}{
		{"webhook", dns(messages.DNS01Solver{Webhook: hook}, nil), ""},
		{"webhook with everything", dns(messages.DNS01Solver{CNAMEStrategy: "Follow", Webhook: &messages.WebhookProvider{
			URL: "http://127.0.0.1:8080", BearerTokenSecretRef: ref, HMACSecretRef: ref, CABundle: caPEM, Timeout: "5s"}}, nil), ""},
		{"lego", dns(messages.DNS01Solver{Lego: pdns, CNAMEStrategy: "None"}, nil), ""},
		{"rfc2136 following CNAMEs", dns(messages.DNS01Solver{RFC2136: rfc, CNAMEStrategy: "Follow"}, nil), ""},
		{"selectors", http(&messages.SolverSelector{DNSNames: []string{"*.example.com", "www.example.com."}, DNSZones: []string{"example.com"},
			MatchLabels: map[string]string{"acmeq.io/tier": "gold", "team": "", "a.b_c-d": "x.y"}}), ""},

		{"no provider", dns(messages.DNS01Solver{CNAMEStrategy: "Follow"}, nil), d0 + ": a provider is required (rfc2136, webhook or lego)"},
		{"two providers", dns(messages.DNS01Solver{RFC2136: rfc, Webhook: hook}, nil), d0 + ": only one provider may be set, got rfc2136 and webhook"},
		{"cnameStrategy", dns(messages.DNS01Solver{Webhook: hook, CNAMEStrategy: "follow"}, nil), d0 + `.cnameStrategy: "follow" is not supported (want None or Follow)`},
		{"rfc2136 still checked", dns(messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{}}, nil), d0 + ".rfc2136.nameserver: required (host:port)"},
		{"webhook without url", dns(messages.DNS01Solver{Webhook: &messages.WebhookProvider{}}, nil),
			d0 + ".webhook.url: required (the base URL of a service implementing the webhook contract)"},
		{"webhook bad url", dns(messages.DNS01Solver{Webhook: &messages.WebhookProvider{URL: "bridge:8080/acme?x=1"}}, nil),
			d0 + `.webhook.url: "bridge:8080/acme?x=1" must be an absolute http or https URL without query or fragment`},
		{"webhook bad everything", dns(messages.DNS01Solver{Webhook: &messages.WebhookProvider{URL: "https://b", Timeout: "-1s",
			BearerTokenSecretRef: &messages.SecretKeySelector{Name: "Hook"}, CABundle: "nope"}}, nil),
			d0 + `.webhook.bearerTokenSecretRef.key: must not be empty` + "\n" +
				d0 + `.webhook.bearerTokenSecretRef.name: "Hook" ` + objectNameRule + "\n" +
				d0 + ".webhook.caBundle: no PEM CERTIFICATE block found\n" +
				d0 + `.webhook.timeout: "-1s" must be a positive duration, e.g. 30s`},
		{"lego without provider", dns(messages.DNS01Solver{Lego: &messages.LegoProvider{}}, nil), d0 + ".lego.provider: required (one of pdns)"},
		{"lego unknown provider", dns(messages.DNS01Solver{Lego: &messages.LegoProvider{Provider: "cloudflare"}}, nil),
			d0 + `.lego: lego: unknown provider "cloudflare" (known: pdns)`},
		{"lego credential in config", dns(messages.DNS01Solver{Lego: &messages.LegoProvider{Provider: "pdns", Config: map[string]string{"PDNS_API_KEY": "k"}}}, nil),
			d0 + ".lego: lego: invalid provider settings: pdns: PDNS_API_KEY is a credential: put it in the credentials Secret, not in config"},
		{"lego bad secret name", dns(messages.DNS01Solver{Lego: &messages.LegoProvider{Provider: "pdns", CredentialsSecretRef: &messages.SecretRef{Name: "PDNS"}}}, nil),
			d0 + `.lego.credentialsSecretRef.name: "PDNS" ` + objectNameRule},
		{"bad dnsNames", http(&messages.SolverSelector{DNSNames: []string{"a..b", "*", "x.*.y"}}),
			s0 + `.dnsNames[0]: "a..b" is not a valid DNS name: empty label` + "\n" +
				s0 + `.dnsNames[1]: "*" is not a valid DNS name: a wildcard is only allowed as the whole first label ("*.")` + "\n" +
				s0 + `.dnsNames[2]: "x.*.y" is not a valid DNS name: a wildcard is only allowed as the whole first label ("*.")`},
		{"bad dnsZones", http(&messages.SolverSelector{DNSZones: []string{"*.example.com", ""}}),
			s0 + `.dnsZones[0]: "*.example.com" is not a valid DNS zone: a zone cannot be a wildcard (a zone selects its subdomains: write "example.com")` + "\n" +
				s0 + `.dnsZones[1]: must not be empty`},
		{"bad matchLabels", http(&messages.SolverSelector{MatchLabels: map[string]string{"-team": "a", "Ex.com/x": "b", "tier": "gold plated"}}),
			s0 + `.matchLabels: key "-team" must be an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit` + "\n" +
				s0 + `.matchLabels: key "Ex.com/x" has a prefix that is not a lower-case DNS subdomain` + "\n" +
				s0 + `.matchLabels[tier]: value "gold plated" must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			i := httpIssuer()
			tt.mutate(i)
			err := ValidateIssuer(i)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ValidateIssuer: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("ValidateIssuer: nil error, want\n%s", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Errorf("ValidateIssuer:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}
