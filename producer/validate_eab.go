package producer

import (
	"fmt"
	"strings"

	"github.com/acmeq/acmeq/messages"
)

// validateEAB checks an issuer's spec.acme.externalAccountBinding: keyID
// and keySecretRef are required together (a binding is a key ID and its
// HMAC key), keySecretRef names a Secret key, and keyAlgorithm, if given,
// is HS256: golang.org/x/crypto/acme signs bindings with HS256 only (as in
// cert-manager, where the field is deprecated and ignored); acmeq refuses
// another value rather than ignore it.
func validateEAB(field string, e *messages.ExternalAccountBinding) []error {
	var errs []error
	ref := e.KeySecretRef
	switch {
	case e.KeyID == "" && ref.Name == "" && ref.Key == "":
		errs = append(errs, fmt.Errorf("%s: keyID and keySecretRef are required (the key ID and the HMAC key the CA gave you)", field))
	case e.KeyID == "":
		errs = append(errs, fmt.Errorf("%s.keyID: required with keySecretRef (the key ID the CA gave with the HMAC key)", field))
	case ref.Name == "" && ref.Key == "":
		errs = append(errs, fmt.Errorf("%s.keySecretRef: required with keyID (the Secret key holding the HMAC key the CA gave, base64url)", field))
	}
	if e.KeyID != "" {
		if strings.TrimSpace(e.KeyID) != e.KeyID || strings.ContainsFunc(e.KeyID, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s.keyID: %s must not contain white space or control characters", field, quote(e.KeyID)))
		} else if len(e.KeyID) > maxEABKeyIDLength {
			errs = append(errs, fmt.Errorf("%s.keyID: %d characters long, at most %d are allowed", field, len(e.KeyID), maxEABKeyIDLength))
		}
	}
	if ref.Name != "" || ref.Key != "" {
		errs = append(errs, validateSecretKeySelector(field+".keySecretRef", &ref)...)
	}
	if a := e.KeyAlgorithm; a != "" && a != messages.EABKeyAlgorithmHS256 {
		errs = append(errs, fmt.Errorf("%s.keyAlgorithm: %s is not supported (want %s: bindings are signed with HS256, as cert-manager signs them)", field, quote(a), messages.EABKeyAlgorithmHS256))
	}
	return errs
}

// maxEABKeyIDLength bounds an External Account Binding key ID (CAs hand out
// short ones: ZeroSSL's and Google's are under 100 characters).
const maxEABKeyIDLength = 1024
