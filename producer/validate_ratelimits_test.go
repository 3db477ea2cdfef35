package producer

import (
	"strings"
	"testing"

	"github.com/acmeq/acmeq/messages"
)

func TestValidateIssuerRateLimits(t *testing.T) {
	t.Parallel()
	lim := func(count int, period string) *messages.RateLimit {
		return &messages.RateLimit{Count: count, Period: period}
	}
	tests := []struct {
		name string
		rl   *messages.RateLimits
		want []string // substrings, one per expected error; none: valid
	}{
		{name: "absent", rl: nil},
		{name: "preset only", rl: &messages.RateLimits{Preset: "letsencrypt"}},
		{name: "none", rl: &messages.RateLimits{Preset: "none"}},
		{name: "raised override", rl: &messages.RateLimits{
			Preset:                          "letsencrypt",
			NewOrdersPerAccount:             lim(3000, "3h"),
			CertificatesPerRegisteredDomain: lim(5000, "168h"),
		}},
		{name: "override disables one limit", rl: &messages.RateLimits{DuplicateCertificates: lim(0, "")}},
		{name: "every override", rl: &messages.RateLimits{
			NewOrdersPerAccount:             lim(1, "1s"),
			CertificatesPerRegisteredDomain: lim(2, "90m"),
			DuplicateCertificates:           lim(3, "168h"),
			FailedValidations:               lim(4, "1h"),
			NewAccountsPerIPAddress:         lim(5, "8784h"),
		}},
		{
			name: "unknown preset",
			rl:   &messages.RateLimits{Preset: "LetsEncrypt"},
			want: []string{`spec.acme.rateLimits.preset: "LetsEncrypt" is not a preset (want "letsencrypt" or "none")`},
		},
		{
			name: "bad overrides, each named",
			rl: &messages.RateLimits{
				NewOrdersPerAccount:             lim(300, "3 hours"),
				CertificatesPerRegisteredDomain: lim(-1, "168h"),
				DuplicateCertificates:           lim(5, ""),
				FailedValidations:               lim(5, "10ms"),
				NewAccountsPerIPAddress:         lim(messages.MaxRateLimitCount+1, "3h"),
			},
			want: []string{
				`spec.acme.rateLimits.newOrdersPerAccount.period: "3 hours" is not a duration`,
				`spec.acme.rateLimits.certificatesPerRegisteredDomain.count: -1 is out of range`,
				`spec.acme.rateLimits.duplicateCertificates.period: required when count is above 0`,
				`spec.acme.rateLimits.failedValidations.period: 10ms is out of range (1s to 8784h)`,
				`spec.acme.rateLimits.newAccountsPerIPAddress.count: 100000001 is out of range`,
			},
		},
		{
			name: "a disabled limit's period must still parse",
			rl:   &messages.RateLimits{NewOrdersPerAccount: lim(0, "forever")},
			want: []string{`spec.acme.rateLimits.newOrdersPerAccount.period: "forever" is not a duration`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iss := httpIssuer()
			iss.Spec.ACME.RateLimits = tt.rl
			err := ValidateIssuer(iss)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateIssuer: %v", err)
				}
				if _, err := messages.ResolveRateLimits(iss.Spec.ACME.Server, tt.rl); err != nil {
					t.Fatalf("ResolveRateLimits of a valid issuer: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateIssuer accepted %+v", tt.rl)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
			if _, err := messages.ResolveRateLimits(iss.Spec.ACME.Server, tt.rl); err == nil {
				t.Errorf("ResolveRateLimits accepted what ValidateIssuer refuses")
			}
		})
	}
}
