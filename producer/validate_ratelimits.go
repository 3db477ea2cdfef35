package producer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/acmeq/acmeq/messages"
)

// validateRateLimits checks spec.acme.rateLimits (nil is valid: the
// server's default preset). Each problem names its field, e.g.
//
//	spec.acme.rateLimits.newOrdersPerAccount.period: "3 hours" is not a duration (e.g. "3h", "168h")
func validateRateLimits(field string, rl *messages.RateLimits) []error {
	if rl == nil {
		return nil
	}
	var errs []error
	if rl.Preset != "" && !slices.Contains(messages.RateLimitPresets, rl.Preset) {
		errs = append(errs, fmt.Errorf("%s.preset: %q is not a preset (want %s)", field, rl.Preset, orList(quoted(messages.RateLimitPresets))))
	}
	for _, o := range []struct {
		name string
		l    *messages.RateLimit
	}{
		{"newOrdersPerAccount", rl.NewOrdersPerAccount},
		{"certificatesPerRegisteredDomain", rl.CertificatesPerRegisteredDomain},
		{"duplicateCertificates", rl.DuplicateCertificates},
		{"failedValidations", rl.FailedValidations},
		{"newAccountsPerIPAddress", rl.NewAccountsPerIPAddress},
	} {
		if o.l == nil {
			continue
		}
		if _, err := o.l.Value(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s.%w", field, o.name, err))
		}
	}
	return errs
}

func quoted(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return out
}
