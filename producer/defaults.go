package producer

import (
	"strings"

	"github.com/acmeq/acmeq/messages"
)

// DefaultNamespace is the namespace of resources that name none.
const DefaultNamespace = "default"

// Default key sizes, as cert-manager's.
const (
	DefaultECDSASize = 256
	DefaultRSASize   = 2048
)

// AccountKeySuffix is appended to an Issuer's name to default
// spec.acme.privateKeySecretRef.name.
const AccountKeySuffix = "-account-key"

// SetDefaults fills in what a user may leave out of an Issuer or a
// Certificate, in place; other kinds are left alone. Apply calls it on a
// copy before validating.
//
// Both kinds: metadata.namespace defaults to "default".
//
// Certificate: spec.dnsNames and spec.commonName are lower-cased;
// spec.secretName defaults to the Certificate's name; spec.issuerRef.kind
// to "Issuer" and spec.issuerRef.group to "cert-manager.io";
// spec.privateKey to ECDSA, with size 256 for ECDSA and 2048 for RSA when no
// size is given (the algorithm's spelling is normalised: "rsa" is RSA).
//
// Issuer: spec.acme.privateKeySecretRef.name defaults to
// "<issuer name>-account-key".
func SetDefaults(obj messages.Object) {
	switch o := obj.(type) {
	case *messages.Certificate:
		if o != nil {
			defaultCertificate(o)
		}
	case *messages.Issuer:
		if o != nil {
			defaultIssuer(o)
		}
	}
}

func defaultCertificate(c *messages.Certificate) {
	if c.Metadata.Namespace == "" {
		c.Metadata.Namespace = DefaultNamespace
	}
	s := &c.Spec
	for i, n := range s.DNSNames {
		s.DNSNames[i] = strings.ToLower(n)
	}
	s.CommonName = strings.ToLower(s.CommonName)
	if s.SecretName == "" {
		s.SecretName = c.Metadata.Name
	}
	if s.IssuerRef.Kind == "" {
		s.IssuerRef.Kind = string(messages.KindIssuer)
	}
	if s.IssuerRef.Group == "" {
		s.IssuerRef.Group = IssuerGroup
	}
	if s.PrivateKey == nil {
		s.PrivateKey = &messages.PrivateKeySpec{}
	}
	pk := s.PrivateKey
	switch {
	case pk.Algorithm == "", strings.EqualFold(pk.Algorithm, messages.KeyAlgorithmECDSA):
		pk.Algorithm = messages.KeyAlgorithmECDSA
		if pk.Size == 0 {
			pk.Size = DefaultECDSASize
		}
	case strings.EqualFold(pk.Algorithm, messages.KeyAlgorithmRSA):
		pk.Algorithm = messages.KeyAlgorithmRSA
		if pk.Size == 0 {
			pk.Size = DefaultRSASize
		}
	}
}

func defaultIssuer(i *messages.Issuer) {
	if i.Metadata.Namespace == "" {
		i.Metadata.Namespace = DefaultNamespace
	}
	if a := i.Spec.ACME; a != nil && a.PrivateKeySecretRef.Name == "" && i.Metadata.Name != "" {
		a.PrivateKeySecretRef.Name = i.Metadata.Name + AccountKeySuffix
	}
}
