package producer

import (
	"fmt"
	"hash/fnv"
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
// Both kinds: metadata.namespace defaults to "default", except for a
// ClusterIssuer, which has none: a namespace given is cleared, as
// Kubernetes clears it on a cluster-scoped resource (so cert-manager
// manifests that carry one apply unchanged).
//
// Certificate: spec.dnsNames and spec.commonName are lower-cased;
// spec.secretName defaults to the Certificate's name; spec.issuerRef.kind
// to "Issuer" and spec.issuerRef.group to "cert-manager.io";
// spec.privateKey to ECDSA, with size 256 for ECDSA and 2048 for RSA when no
// size is given (the algorithm's spelling is normalised: "rsa" is RSA).
//
// Issuer: spec.acme.privateKeySecretRef.name defaults to
// "<issuer name>-account-key" (for a name too long for that to fit in
// messages.MaxObjectNameLength, the name is cut and a hash of it added, as
// cert-manager shortens the names it derives); spec.acme.solvers defaults
// to one HTTP-01 solver, `solvers: [{http01: {}}]`, when it is left out or
// empty (`solvers: []`), so the stored Issuer shows the solver the workers
// use.
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
	switch {
	case i.GetKind() == messages.KindClusterIssuer:
		i.Metadata.Namespace = ""
	case i.Metadata.Namespace == "":
		i.Metadata.Namespace = DefaultNamespace
	}
	a := i.Spec.ACME
	if a == nil {
		return
	}
	if a.PrivateKeySecretRef.Name == "" && i.Metadata.Name != "" {
		a.PrivateKeySecretRef.Name = withSuffix(i.Metadata.Name, AccountKeySuffix)
	}
	if len(a.Solvers) == 0 {
		a.Solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
}

// withSuffix appends suffix to name, first shortening name with a hash
// when the result would be longer than messages.MaxObjectNameLength:
// "<start of name>-<8 hex digits of FNV-1a of name><suffix>".
func withSuffix(name, suffix string) string {
	if len(name)+len(suffix) <= messages.MaxObjectNameLength {
		return name + suffix
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	hash := fmt.Sprintf("%08x", h.Sum32())
	keep := max(messages.MaxObjectNameLength-len(suffix)-len(hash)-1, 0)
	return strings.TrimRight(name[:min(keep, len(name))], "-") + "-" + hash + suffix
}
