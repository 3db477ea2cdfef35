package messages

import (
	"testing"
	"time"
)

func TestResolveRateLimits(t *testing.T) {
	t.Parallel()
	const (
		le      = "https://acme-v02.api.letsencrypt.org/directory"
		staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
		private = "https://ca.internal.example/acme/directory"
	)
	tests := []struct {
		name   string
		server string
		rl     *RateLimits
		want   ResolvedRateLimits
	}{
		{"Let's Encrypt production defaults to its limits", le, nil, LetsEncryptRateLimits},
		{"case of the host does not matter", "https://ACME-v02.api.LetsEncrypt.org/directory", nil, LetsEncryptRateLimits},
		{"staging defaults to none", staging, nil, ResolvedRateLimits{Preset: RateLimitPresetNone}},
		{"a private CA defaults to none", private, nil, ResolvedRateLimits{Preset: RateLimitPresetNone}},
		{"an empty block is the default", le, &RateLimits{}, LetsEncryptRateLimits},
		{"none on Let's Encrypt", le, &RateLimits{Preset: RateLimitPresetNone}, ResolvedRateLimits{Preset: RateLimitPresetNone}},
		{"the preset on a private CA", private, &RateLimits{Preset: RateLimitPresetLetsEncrypt}, LetsEncryptRateLimits},
		{
			"overrides replace one limit each",
			le,
			&RateLimits{
				NewOrdersPerAccount:   &RateLimit{Count: 1500, Period: "3h"},
				DuplicateCertificates: &RateLimit{Count: 0},
			},
			func() ResolvedRateLimits {
				r := LetsEncryptRateLimits
				r.NewOrdersPerAccount = RateLimitValue{1500, 3 * time.Hour}
				r.DuplicateCertificates = RateLimitValue{}
				return r
			}(),
		},
		{
			"an override on none",
			private,
			&RateLimits{FailedValidations: &RateLimit{Count: 2, Period: "30m"}},
			ResolvedRateLimits{Preset: RateLimitPresetNone, FailedValidations: RateLimitValue{2, 30 * time.Minute}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveRateLimits(tt.server, tt.rl)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("ResolveRateLimits = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The preset is Let's Encrypt's published table: 300 new orders per 3h
// refilling one per 36 s, 50 per registered domain per week, 5 duplicates
// per week, 5 failed validations per hour, 10 accounts per 3h.
func TestLetsEncryptPresetRefills(t *testing.T) {
	t.Parallel()
	r := LetsEncryptRateLimits
	for _, c := range []struct {
		name   string
		v      RateLimitValue
		refill time.Duration
		text   string
	}{
		{"new orders", r.NewOrdersPerAccount, 36 * time.Second, "300 per 3h"},
		{"certificates per registered domain", r.CertificatesPerRegisteredDomain, 202*time.Minute - 24*time.Second, "50 per 168h"},
		{"duplicates", r.DuplicateCertificates, 33*time.Hour + 36*time.Minute, "5 per 168h"},
		{"failed validations", r.FailedValidations, 12 * time.Minute, "5 per 1h"},
		{"new accounts", r.NewAccountsPerIPAddress, 18 * time.Minute, "10 per 3h"},
	} {
		if got := c.v.Period / time.Duration(c.v.Count); got != c.refill {
			t.Errorf("%s refill one per %s, want %s", c.name, got, c.refill)
		}
		if c.v.String() != c.text {
			t.Errorf("%s = %q, want %q", c.name, c.v.String(), c.text)
		}
	}
	if (RateLimitValue{}).String() != "unlimited" {
		t.Errorf("zero limit = %q", RateLimitValue{}.String())
	}
}
