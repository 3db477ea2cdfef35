package messages

import (
	"fmt"
	"regexp"
)

var objectNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// MaxObjectNameLength bounds resource and namespace names (a DNS label is 63;
// generated names add suffixes, so users get 200).
const MaxObjectNameLength = 200

// ValidateObjectName checks a resource or namespace name: lower-case
// alphanumerics and '-', starting and ending alphanumeric. Dots are refused
// because names are NATS subject tokens.
func ValidateObjectName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: must not be empty", field)
	}
	if len(s) > MaxObjectNameLength {
		return fmt.Errorf("%s: %q is longer than %d characters", field, s, MaxObjectNameLength)
	}
	if !objectNameRE.MatchString(s) {
		return fmt.Errorf("%s: %q must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character", field, s)
	}
	return nil
}
