package messages

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Rate-limit presets of spec.acme.rateLimits.preset.
const (
	// RateLimitPresetLetsEncrypt is Let's Encrypt's published limits (the
	// LetsEncrypt* constants). It is the default for the Let's Encrypt
	// production directory (LetsEncryptProductionHost).
	RateLimitPresetLetsEncrypt = "letsencrypt"
	// RateLimitPresetNone budgets nothing ahead of time: acmeq sends as
	// fast as the fleet goes, and only a 429 from the CA makes it wait (the
	// whole fleet, until the CA's Retry-After; acmeq then paces itself by
	// the limit the CA's problem document names). It is the default for
	// every other CA, including Let's Encrypt's staging directory, whose
	// limits are far higher than production's.
	RateLimitPresetNone = "none"
)

// RateLimitPresets lists the accepted values of spec.acme.rateLimits.preset.
var RateLimitPresets = []string{RateLimitPresetLetsEncrypt, RateLimitPresetNone}

// LetsEncryptProductionHost is the host of Let's Encrypt's production ACME
// directory; an Issuer whose server is on it defaults to the letsencrypt
// preset.
const LetsEncryptProductionHost = "acme-v02.api.letsencrypt.org"

// Let's Encrypt's published rate limits
// (https://letsencrypt.org/docs/rate-limits/), the one place acmeq keeps
// them. Every limit is a leaky bucket: Count requests at once, refilling
// one every Period/Count.
const (
	// LetsEncryptNewOrdersPerAccount new orders per account per
	// LetsEncryptNewOrdersPeriod: one more every 36 s.
	LetsEncryptNewOrdersPerAccount = 300
	LetsEncryptNewOrdersPeriod     = 3 * time.Hour
	// LetsEncryptCertificatesPerRegisteredDomain certificates per registered
	// domain (public suffix + 1 label) per week, across all accounts: one
	// more every 202 min.
	LetsEncryptCertificatesPerRegisteredDomain       = 50
	LetsEncryptCertificatesPerRegisteredDomainPeriod = 7 * 24 * time.Hour
	// LetsEncryptDuplicateCertificates certificates per exact set of names
	// per week: one more every 34 h.
	LetsEncryptDuplicateCertificates       = 5
	LetsEncryptDuplicateCertificatesPeriod = 7 * 24 * time.Hour
	// LetsEncryptFailedValidations failed authorizations per account and
	// hostname per hour: one more every 12 min.
	LetsEncryptFailedValidations       = 5
	LetsEncryptFailedValidationsPeriod = time.Hour
	// LetsEncryptNewAccountsPerIPAddress new accounts per IP address per
	// 3 hours: one more every 18 min.
	LetsEncryptNewAccountsPerIPAddress = 10
	LetsEncryptNewAccountsPeriod       = 3 * time.Hour
)

// Bounds on spec.acme.rateLimits overrides.
const (
	// MaxRateLimitCount is the largest count an override may set.
	MaxRateLimitCount = 100_000_000
	// MinRateLimitPeriod and MaxRateLimitPeriod bound an override's period.
	MinRateLimitPeriod = time.Second
	MaxRateLimitPeriod = 366 * 24 * time.Hour
)

// RateLimits is spec.acme.rateLimits: the CA's rate limits acmeq keeps
// within, fleet-wide, instead of collecting 429s. A preset gives every
// limit; an override replaces one (large integrators get raised limits
// from Let's Encrypt). ACME renewals that carry ARI's "replaces" are
// exempt from all of them, as Let's Encrypt exempts them.
type RateLimits struct {
	// Preset is "letsencrypt" (Let's Encrypt's published limits) or "none"
	// (no budgets; only the CA's 429s make the fleet wait). Defaults to
	// "letsencrypt" when spec.acme.server is on LetsEncryptProductionHost,
	// "none" otherwise.
	Preset string `json:"preset,omitempty"`
	// NewOrdersPerAccount overrides the new orders the account may create.
	// Defaults to the preset's (Let's Encrypt: 300 per 3h).
	NewOrdersPerAccount *RateLimit `json:"newOrdersPerAccount,omitempty"`
	// CertificatesPerRegisteredDomain overrides the certificates issued per
	// registered domain (example.com for www.example.com, by the public
	// suffix list), counted across every account at the CA. Defaults to the
	// preset's (Let's Encrypt: 50 per 168h).
	CertificatesPerRegisteredDomain *RateLimit `json:"certificatesPerRegisteredDomain,omitempty"`
	// DuplicateCertificates overrides the certificates issued for one exact
	// set of names. Defaults to the preset's (Let's Encrypt: 5 per 168h).
	DuplicateCertificates *RateLimit `json:"duplicateCertificates,omitempty"`
	// FailedValidations overrides the failed validations per account and
	// hostname; an order for a hostname whose budget is spent waits instead
	// of failing once more. Defaults to the preset's (Let's Encrypt: 5 per
	// 1h).
	FailedValidations *RateLimit `json:"failedValidations,omitempty"`
	// NewAccountsPerIPAddress overrides the accounts the fleet may register
	// (the fleet is taken to leave through one IP address). Defaults to the
	// preset's (Let's Encrypt: 10 per 3h).
	NewAccountsPerIPAddress *RateLimit `json:"newAccountsPerIPAddress,omitempty"`
}

// RateLimit is one leaky bucket: Count requests at once, refilling one
// every Period/Count.
type RateLimit struct {
	// Count is the bucket's size. 0 means no budget for this limit (only
	// the CA's 429s make the fleet wait). Must be 0 to MaxRateLimitCount.
	Count int `json:"count"`
	// Period is the time the bucket takes to refill from empty, as a Go
	// duration ("3h", "168h", "90m"). Required when Count is above 0; from
	// MinRateLimitPeriod to MaxRateLimitPeriod.
	Period string `json:"period,omitempty"`
}

// RateLimitValue is a resolved limit. Count 0 is unlimited.
type RateLimitValue struct {
	Count  int
	Period time.Duration
}

// Unlimited reports whether the limit budgets nothing.
func (v RateLimitValue) Unlimited() bool { return v.Count <= 0 || v.Period <= 0 }

// String renders "300 per 3h" (or "unlimited").
func (v RateLimitValue) String() string {
	if v.Unlimited() {
		return "unlimited"
	}
	return fmt.Sprintf("%d per %s", v.Count, FormatPeriod(v.Period))
}

// ResolvedRateLimits are an Issuer's effective limits: its preset with its
// overrides applied.
type ResolvedRateLimits struct {
	// Preset is the preset in effect (after defaulting).
	Preset                          string
	NewOrdersPerAccount             RateLimitValue
	CertificatesPerRegisteredDomain RateLimitValue
	DuplicateCertificates           RateLimitValue
	FailedValidations               RateLimitValue
	NewAccountsPerIPAddress         RateLimitValue
}

// LetsEncryptRateLimits is the letsencrypt preset.
var LetsEncryptRateLimits = ResolvedRateLimits{
	Preset:                          RateLimitPresetLetsEncrypt,
	NewOrdersPerAccount:             RateLimitValue{LetsEncryptNewOrdersPerAccount, LetsEncryptNewOrdersPeriod},
	CertificatesPerRegisteredDomain: RateLimitValue{LetsEncryptCertificatesPerRegisteredDomain, LetsEncryptCertificatesPerRegisteredDomainPeriod},
	DuplicateCertificates:           RateLimitValue{LetsEncryptDuplicateCertificates, LetsEncryptDuplicateCertificatesPeriod},
	FailedValidations:               RateLimitValue{LetsEncryptFailedValidations, LetsEncryptFailedValidationsPeriod},
	NewAccountsPerIPAddress:         RateLimitValue{LetsEncryptNewAccountsPerIPAddress, LetsEncryptNewAccountsPeriod},
}

// DefaultRateLimitPreset is the preset of an Issuer on server that sets
// none: letsencrypt for Let's Encrypt's production directory, none for any
// other (private CAs, Pebble, Let's Encrypt staging, ZeroSSL, ...).
func DefaultRateLimitPreset(server string) string {
	u, err := url.Parse(server)
	if err == nil && strings.EqualFold(u.Hostname(), LetsEncryptProductionHost) {
		return RateLimitPresetLetsEncrypt
	}
	return RateLimitPresetNone
}

// ResolveRateLimits returns the effective limits of an Issuer on server
// with spec.acme.rateLimits rl (nil: the default preset, no overrides).
// It fails on what ValidateIssuer refuses (an unknown preset, an
// unparsable period), naming the field.
func ResolveRateLimits(server string, rl *RateLimits) (ResolvedRateLimits, error) {
	preset := DefaultRateLimitPreset(server)
	if rl != nil && rl.Preset != "" {
		preset = rl.Preset
	}
	var out ResolvedRateLimits
	switch preset {
	case RateLimitPresetLetsEncrypt:
		out = LetsEncryptRateLimits
	case RateLimitPresetNone:
		out = ResolvedRateLimits{Preset: RateLimitPresetNone}
	default:
		return ResolvedRateLimits{}, fmt.Errorf("spec.acme.rateLimits.preset: %q is not a preset (want %s)", preset, strings.Join(RateLimitPresets, " or "))
	}
	if rl == nil {
		return out, nil
	}
	for _, o := range []struct {
		field string
		in    *RateLimit
		out   *RateLimitValue
	}{
		{"newOrdersPerAccount", rl.NewOrdersPerAccount, &out.NewOrdersPerAccount},
		{"certificatesPerRegisteredDomain", rl.CertificatesPerRegisteredDomain, &out.CertificatesPerRegisteredDomain},
		{"duplicateCertificates", rl.DuplicateCertificates, &out.DuplicateCertificates},
		{"failedValidations", rl.FailedValidations, &out.FailedValidations},
		{"newAccountsPerIPAddress", rl.NewAccountsPerIPAddress, &out.NewAccountsPerIPAddress},
	} {
		if o.in == nil {
			continue
		}
		v, err := o.in.Value()
		if err != nil {
			return ResolvedRateLimits{}, fmt.Errorf("spec.acme.rateLimits.%s.%w", o.field, err)
		}
		*o.out = v
	}
	return out, nil
}

// Value parses the limit. Count 0 is unlimited whatever the period.
func (l RateLimit) Value() (RateLimitValue, error) {
	if l.Count < 0 || l.Count > MaxRateLimitCount {
		return RateLimitValue{}, fmt.Errorf("count: %d is out of range (0 to %d)", l.Count, MaxRateLimitCount)
	}
	if l.Count == 0 && l.Period == "" {
		return RateLimitValue{}, nil
	}
	if l.Period == "" {
		return RateLimitValue{}, fmt.Errorf("period: required when count is above 0 (a Go duration, e.g. \"3h\")")
	}
	d, err := time.ParseDuration(l.Period)
	if err != nil {
		return RateLimitValue{}, fmt.Errorf("period: %q is not a duration (e.g. \"3h\", \"168h\")", l.Period)
	}
	if d < MinRateLimitPeriod || d > MaxRateLimitPeriod {
		return RateLimitValue{}, fmt.Errorf("period: %s is out of range (%s to %s)", l.Period, FormatPeriod(MinRateLimitPeriod), FormatPeriod(MaxRateLimitPeriod))
	}
	if l.Count == 0 {
		return RateLimitValue{}, nil
	}
	return RateLimitValue{Count: l.Count, Period: d}, nil
}

// FormatPeriod renders a period the way the rate-limit documentation does:
// "3h", "168h", "90m", "3s"; anything not whole seconds as Go prints it.
func FormatPeriod(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d > 0 && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d > 0 && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
