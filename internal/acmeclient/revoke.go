package acmeclient

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/acme"
)

// RevocationReasons are the RFC 5280 reason names acmeq accepts, in code
// order (certificateHold is left out: ACME CAs refuse it).
var RevocationReasons = []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
	"cessationOfOperation", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}

var reasonCodes = map[string]acme.CRLReasonCode{
	"unspecified":          acme.CRLReasonUnspecified,
	"keyCompromise":        acme.CRLReasonKeyCompromise,
	"cACompromise":         acme.CRLReasonCACompromise,
	"affiliationChanged":   acme.CRLReasonAffiliationChanged,
	"superseded":           acme.CRLReasonSuperseded,
	"cessationOfOperation": acme.CRLReasonCessationOfOperation,
	"removeFromCRL":        acme.CRLReasonRemoveFromCRL,
	"privilegeWithdrawn":   acme.CRLReasonPrivilegeWithdrawn,
	"aACompromise":         acme.CRLReasonAACompromise,
}

// ParseRevocationReason maps an RFC 5280 reason name to its code; "" is
// unspecified. The error lists the names accepted.
func ParseRevocationReason(name string) (acme.CRLReasonCode, error) {
	if name == "" {
		return acme.CRLReasonUnspecified, nil
	}
	if c, ok := reasonCodes[name]; ok {
		return c, nil
	}
	return 0, fmt.Errorf("acmeclient: unknown revocation reason %q (want one of %s)", name, strings.Join(slices.Clone(RevocationReasons), ", "))
}
