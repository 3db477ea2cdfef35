package producer

import (
	"fmt"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// Limits of a Certificate's renewal fields.
const (
	// MinDuration is the shortest spec.duration accepted: below it a
	// certificate would be renewed before it could be delivered. Pebble's
	// short-lived profiles and tests go down to seconds, so this is low.
	MinDuration = 10 * time.Second
	// MaxRevisionHistoryLimit bounds spec.revisionHistoryLimit.
	MaxRevisionHistoryLimit = 100
)

// validateRenewal checks spec.duration, spec.renewBefore,
// spec.renewBeforePercentage, spec.revisionHistoryLimit and
// spec.privateKey.rotationPolicy and .encoding.
func validateRenewal(s *messages.CertificateSpec) []error {
	var errs []error
	if d := s.Duration; d != nil && d.Duration < MinDuration {
		errs = append(errs, fmt.Errorf("spec.duration: %s is shorter than %s, the shortest certificate acmeq asks for", d.Duration, MinDuration))
	}
	if rb := s.RenewBefore; rb != nil {
		switch {
		case rb.Duration <= 0:
			errs = append(errs, fmt.Errorf("spec.renewBefore: %s must be positive", rb.Duration))
		case s.Duration != nil && rb.Duration >= s.Duration.Duration:
			errs = append(errs, fmt.Errorf("spec.renewBefore: %s must be shorter than spec.duration (%s)", rb.Duration, s.Duration.Duration))
		}
	}
	if p := s.RenewBeforePercentage; p != nil {
		if *p < 1 || *p > 99 {
			errs = append(errs, fmt.Errorf("spec.renewBeforePercentage: %d must be between 1 and 99", *p))
		}
		if s.RenewBefore != nil {
			errs = append(errs, fmt.Errorf("spec.renewBeforePercentage: set together with spec.renewBefore; set one of them"))
		}
	}
	if l := s.RevisionHistoryLimit; l != nil && (*l < 1 || *l > MaxRevisionHistoryLimit) {
		errs = append(errs, fmt.Errorf("spec.revisionHistoryLimit: %d must be between 1 and %d", *l, MaxRevisionHistoryLimit))
	}
	if pk := s.PrivateKey; pk != nil {
		switch pk.RotationPolicy {
		case "", messages.RotationPolicyAlways, messages.RotationPolicyNever:
		default:
			errs = append(errs, fmt.Errorf("spec.privateKey.rotationPolicy: %s is not supported (want %s or %s)", quote(pk.RotationPolicy), messages.RotationPolicyAlways, messages.RotationPolicyNever))
		}
		switch pk.Encoding {
		case "", messages.KeyEncodingPKCS1, messages.KeyEncodingPKCS8:
		default:
			errs = append(errs, fmt.Errorf("spec.privateKey.encoding: %s is not supported (want %s or %s)", quote(pk.Encoding), messages.KeyEncodingPKCS1, messages.KeyEncodingPKCS8))
		}
	}
	return errs
}
