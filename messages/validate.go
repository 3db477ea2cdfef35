package messages

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
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

// DerivedName is the name of a resource acmeq derives from another's:
// base+suffix (e.g. "shop" + "-1" for a CertificateRequest). When that is
// longer than MaxObjectNameLength, base is cut and a hash of the whole of
// it is put in its place, as cert-manager's ComputeName does, so the name
// stays within the limit, stays unique for distinct bases, and is the same
// every time it is computed:
//
//	<base cut to fit>-<8 hex digits of FNV-1a(base)><suffix>
//
// suffix must itself be a short valid name tail ("-1", "-key", ...).
func DerivedName(base, suffix string) string {
	if len(base)+len(suffix) <= MaxObjectNameLength {
		return base + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(base))
	tag := fmt.Sprintf("-%08x", h.Sum32())
	keep := MaxObjectNameLength - len(suffix) - len(tag)
	cut := strings.TrimRight(base[:max(keep, 1)], "-")
	return cut + tag + suffix
}
