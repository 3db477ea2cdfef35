package producer

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/messages"
)

// Limits enforced by ValidateCertificate.
const (
	// MaxDNSNames is the most names a Certificate may list: the number of
	// identifiers Let's Encrypt accepts in one order.
	MaxDNSNames = 100
	// MaxDNSNameLength is the longest DNS name (RFC 1035), in bytes, without
	// a trailing dot.
	MaxDNSNameLength = 253
	// MaxLabelLength is the longest DNS label (RFC 1035).
	MaxLabelLength = 63
	// MaxCommonNameLength is the longest subject common name a CA accepts
	// (RFC 5280 ub-common-name), in bytes.
	MaxCommonNameLength = 64
)

// IssuerGroup is the only spec.issuerRef.group accepted (and the default).
const IssuerGroup = "cert-manager.io"

// Supported key algorithms and sizes, and the TSIG algorithms of RFC 2136
// solvers.
var (
	ecdsaSizes     = []int{256, 384}
	rsaSizes       = []int{2048, 3072, 4096}
	tsigAlgorithms = []string{"hmac-sha256", "hmac-sha512", "hmac-sha1"}
)

// ValidateCertificate checks a Certificate (after defaulting, see
// SetDefaults) against issuer, the Issuer its spec.issuerRef names, or nil
// when that Issuer does not exist. It returns nil or every problem found,
// joined with errors.Join; each names the field and the rule, e.g.
//
//	spec.dnsNames[2]: "foo..example.com" is not a valid DNS name: empty label
//
// DNS names are compared case-insensitively; Apply stores them lower-cased.
func ValidateCertificate(c *messages.Certificate, issuer *messages.Issuer) error {
	if c == nil {
		return errors.New("producer: nil Certificate")
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(messages.ValidateObjectName("metadata.name", c.Metadata.Name))
	add(messages.ValidateObjectName("metadata.namespace", c.Metadata.Namespace))

	s := &c.Spec
	errs = append(errs, validateDNSNames(s.DNSNames, issuer)...)

	if s.CommonName != "" {
		if n := len(s.CommonName); n > MaxCommonNameLength {
			add(fmt.Errorf("spec.commonName: %q is %d bytes long, at most %d are allowed", s.CommonName, n, MaxCommonNameLength))
		}
		found := false
		for _, n := range s.DNSNames {
			if strings.EqualFold(n, s.CommonName) {
				found = true
				break
			}
		}
		if !found {
			add(fmt.Errorf("spec.commonName: %q must be one of spec.dnsNames", s.CommonName))
		}
	}

	add(messages.ValidateObjectName("spec.secretName", s.SecretName))

	ref := s.IssuerRef
	if err := messages.ValidateObjectName("spec.issuerRef.name", ref.Name); err != nil {
		add(err)
	} else if issuer == nil {
		add(fmt.Errorf("spec.issuerRef.name: issuer %q not found in namespace %q", ref.Name, c.Metadata.Namespace))
	}
	if ref.Kind != "" && ref.Kind != string(messages.KindIssuer) {
		add(fmt.Errorf("spec.issuerRef.kind: %q is not supported (want %s)", ref.Kind, messages.KindIssuer))
	}
	if ref.Group != "" && ref.Group != IssuerGroup {
		add(fmt.Errorf("spec.issuerRef.group: %q is not supported (want %s)", ref.Group, IssuerGroup))
	}

	if pk := s.PrivateKey; pk != nil {
		switch pk.Algorithm {
		case messages.KeyAlgorithmECDSA:
			add(checkSize(pk.Size, "ECDSA", ecdsaSizes))
		case messages.KeyAlgorithmRSA:
			add(checkSize(pk.Size, "RSA", rsaSizes))
		default:
			add(fmt.Errorf("spec.privateKey.algorithm: %q is not supported (want %s or %s)", pk.Algorithm, messages.KeyAlgorithmECDSA, messages.KeyAlgorithmRSA))
		}
	}
	return errors.Join(errs...)
}

func checkSize(size int, alg string, allowed []int) error {
	for _, a := range allowed {
		if size == a {
			return nil
		}
	}
	want := make([]string, len(allowed))
	for i, a := range allowed {
		want[i] = strconv.Itoa(a)
	}
	return fmt.Errorf("spec.privateKey.size: %d is not a valid %s key size (want %s)", size, alg, orList(want))
}

// orList renders "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func validateDNSNames(names []string, issuer *messages.Issuer) []error {
	var errs []error
	if len(names) == 0 {
		return []error{errors.New("spec.dnsNames: at least one DNS name is required")}
	}
	if len(names) > MaxDNSNames {
		errs = append(errs, fmt.Errorf("spec.dnsNames: %d names, at most %d are allowed (the ACME limit of Let's Encrypt)", len(names), MaxDNSNames))
	}
	seen := make(map[string]int, len(names))
	for i, n := range names {
		field := fmt.Sprintf("spec.dnsNames[%d]", i)
		lower := strings.ToLower(n)
		if first, dup := seen[lower]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate of spec.dnsNames[%d] %q", field, first, names[first]))
			continue
		}
		seen[lower] = i
		if n == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", field))
			continue
		}
		if _, err := netip.ParseAddr(n); err == nil {
			errs = append(errs, fmt.Errorf("%s: %q is an IP address, not a DNS name (acmeq issues for DNS names only)", field, n))
			continue
		}
		wildcard, reason := checkDNSName(lower)
		if reason != "" {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid DNS name: %s", field, n, reason))
			continue
		}
		if wildcard && issuer != nil {
			if why := noDNS01For(lower, issuer); why != "" {
				errs = append(errs, fmt.Errorf("%s: %q is a wildcard, which HTTP-01 cannot validate: %s", field, n, why))
			}
		}
	}
	return errs
}

// checkDNSName checks a lower-cased name per RFC 1123, allowing a leading
// "*." wildcard label. It returns whether the name is a wildcard and, if it
// is invalid, why.
func checkDNSName(name string) (wildcard bool, reason string) {
	if len(name) > MaxDNSNameLength {
		return false, fmt.Sprintf("%d characters long, at most %d are allowed", len(name), MaxDNSNameLength)
	}
	if strings.HasSuffix(name, ".") {
		return false, "a trailing dot is not allowed"
	}
	rest := name
	if strings.HasPrefix(rest, "*.") {
		wildcard, rest = true, rest[2:]
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return wildcard, "empty label"
		case strings.Contains(l, "*"):
			return wildcard, `a wildcard is only allowed as the whole first label ("*.")`
		case len(l) > MaxLabelLength:
			return wildcard, fmt.Sprintf("label %q is %d characters long, at most %d are allowed", l, len(l), MaxLabelLength)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return wildcard, fmt.Sprintf("label %q contains %q (allowed: a-z, 0-9 and '-')", l, r)
			}
		}
		if l[0] == '-' {
			return wildcard, fmt.Sprintf("label %q starts with '-'", l)
		}
		if l[len(l)-1] == '-' {
			return wildcard, fmt.Sprintf("label %q ends with '-'", l)
		}
	}
	if len(labels) < 2 {
		return wildcard, "at least two labels are required"
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return wildcard, fmt.Sprintf("the last label %q is all numeric", tld)
	}
	return wildcard, ""
}

// noDNS01For says why issuer cannot solve the wildcard name (lower case),
// or "" if one of its dns01 solvers selects it.
func noDNS01For(name string, issuer *messages.Issuer) string {
	var solvers []messages.ACMESolver
	if issuer.Spec.ACME != nil {
		solvers = issuer.Spec.ACME.Solvers
	}
	hasDNS01 := false
	for _, s := range solvers {
		if s.DNS01 == nil {
			continue
		}
		hasDNS01 = true
		if selects(s.Selector, name) {
			return ""
		}
	}
	if !hasDNS01 {
		return fmt.Sprintf("the issuer %q has no dns01 solver", issuer.Metadata.Name)
	}
	return fmt.Sprintf("no dns01 solver of the issuer %q selects it", issuer.Metadata.Name)
}

// selects reports whether a solver selector matches name, as cert-manager
// matches them: no selector matches everything, dnsNames match exactly
// ("*.example.com" for a wildcard) and dnsZones match the zone and its
// subdomains.
func selects(sel *messages.SolverSelector, name string) bool {
	if sel == nil || len(sel.DNSNames) == 0 && len(sel.DNSZones) == 0 {
		return true
	}
	for _, n := range sel.DNSNames {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	for _, z := range sel.DNSZones {
		z = strings.TrimSuffix(strings.ToLower(z), ".")
		if name == z || strings.HasSuffix(name, "."+z) {
			return true
		}
	}
	return false
}

// ValidateIssuer checks an Issuer (after defaulting, see SetDefaults). It
// returns nil or every problem found, joined with errors.Join; each names
// the field and the rule.
func ValidateIssuer(i *messages.Issuer) error {
	if i == nil {
		return errors.New("producer: nil Issuer")
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(messages.ValidateObjectName("metadata.name", i.Metadata.Name))
	add(messages.ValidateObjectName("metadata.namespace", i.Metadata.Namespace))

	a := i.Spec.ACME
	if a == nil {
		add(errors.New("spec.acme: required (acmeq supports ACME issuers only)"))
		return errors.Join(errs...)
	}
	add(validateServer(a.Server))
	if a.Email != "" {
		if why := emailProblem(a.Email); why != "" {
			add(fmt.Errorf("spec.acme.email: %q is not a valid email address: %s", a.Email, why))
		}
	}
	add(messages.ValidateObjectName("spec.acme.privateKeySecretRef.name", a.PrivateKeySecretRef.Name))
	if a.CABundle != "" {
		add(validateCABundle(a.CABundle))
	}
	for n, s := range a.Solvers {
		field := fmt.Sprintf("spec.acme.solvers[%d]", n)
		if (s.HTTP01 == nil) == (s.DNS01 == nil) {
			add(fmt.Errorf("%s: exactly one of http01 or dns01 must be set", field))
			continue
		}
		errs = append(errs, validateSolver(field, s)...) // validate_solvers.go
	}
	return errors.Join(errs...)
}

func validateServer(server string) error {
	if server == "" {
		return errors.New("spec.acme.server: an ACME directory URL is required")
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("spec.acme.server: %q must be an absolute https URL", server)
	}
	return nil
}

// emailProblem says why s is not a plausible email address, or "".
func emailProblem(s string) string {
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return "it contains white space"
	}
	if strings.Count(s, "@") != 1 {
		return "it must contain exactly one '@'"
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" {
		return "the part before '@' is empty"
	}
	if domain == "" {
		return "the part after '@' is empty"
	}
	return ""
}

func validateCABundle(bundle string) error {
	rest := []byte(bundle)
	certs := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		certs++
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("spec.acme.caBundle: certificate %d: %v", certs, err)
		}
	}
	if certs == 0 {
		return errors.New("spec.acme.caBundle: no PEM CERTIFICATE block found")
	}
	return nil
}

func validateDNS01(field string, d *messages.DNS01Solver) []error {
	if d.RFC2136 == nil {
		return []error{fmt.Errorf("%s: a provider is required (rfc2136)", field)}
	}
	var errs []error
	p, field := d.RFC2136, field+".rfc2136"
	if p.Nameserver == "" {
		errs = append(errs, fmt.Errorf("%s.nameserver: required (host:port)", field))
	} else if host, port, err := net.SplitHostPort(p.Nameserver); err != nil || host == "" || !validPort(port) {
		errs = append(errs, fmt.Errorf("%s.nameserver: %q must be host:port, e.g. 10.0.0.53:53", field, p.Nameserver))
	}
	if p.TSIGAlgorithm != "" {
		ok := false
		alg := strings.TrimSuffix(p.TSIGAlgorithm, ".")
		for _, a := range tsigAlgorithms {
			// cert-manager spells them HMACSHA256, ...: accepted too.
			if strings.EqualFold(alg, a) || strings.EqualFold(alg, strings.ReplaceAll(a, "-", "")) {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s.tsigAlgorithm: %q is not supported (want %s)", field, p.TSIGAlgorithm, orList(tsigAlgorithms)))
		}
	}
	if (p.TSIGKeyName == "") != (p.TSIGSecretSecretRef == nil) {
		errs = append(errs, fmt.Errorf("%s: tsigKeyName and tsigSecretSecretRef must be set together", field))
	}
	if p.TSIGKeyName != "" {
		if _, ok := dns.IsDomainName(p.TSIGKeyName); !ok || strings.Trim(p.TSIGKeyName, ".") == "" || strings.Contains(p.TSIGKeyName, "..") {
			errs = append(errs, fmt.Errorf("%s.tsigKeyName: %q is not a valid DNS name", field, p.TSIGKeyName))
		}
	}
	if ref := p.TSIGSecretSecretRef; ref != nil {
		errs = append(errs, validateSecretKeySelector(field+".tsigSecretSecretRef", ref)...)
	}
	return errs
}

// validateSecretKeySelector checks a reference to one key of a Secret: the
// name is an object name and the key a Kubernetes Secret data key.
func validateSecretKeySelector(field string, ref *messages.SecretKeySelector) []error {
	var errs []error
	if err := messages.ValidateObjectName(field+".name", ref.Name); err != nil {
		errs = append(errs, err)
	}
	switch {
	case ref.Key == "":
		errs = append(errs, fmt.Errorf("%s.key: must not be empty", field))
	case len(ref.Key) > maxSecretKeyLength:
		errs = append(errs, fmt.Errorf("%s.key: %q is longer than %d characters", field, ref.Key, maxSecretKeyLength))
	case !secretKeyRE.MatchString(ref.Key) || ref.Key == "." || ref.Key == "..":
		errs = append(errs, fmt.Errorf("%s.key: %q must consist of alphanumeric characters, '-', '_' or '.'", field, ref.Key))
	}
	return errs
}

// secretKeyRE and maxSecretKeyLength are Kubernetes' rules for the keys of
// a Secret's data (which also forbid "." and "..").
var secretKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

const maxSecretKeyLength = 253

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}
