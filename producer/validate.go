package producer

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acmeq/acmeq/messages"
	solverpick "github.com/acmeq/acmeq/solvers"
)

// Limits enforced by ValidateCertificate and ValidateIssuer.
const (
	// MaxDNSNames is the most names a Certificate may list: the number of
	// identifiers Let's Encrypt accepts in one order (and so in one
	// certificate).
	MaxDNSNames = 100
	// MaxDNSNameLength is the longest DNS name (RFC 1035), in bytes, without
	// a trailing dot.
	MaxDNSNameLength = 253
	// MaxLabelLength is the longest DNS label (RFC 1035).
	MaxLabelLength = 63
	// MaxCommonNameLength is the longest subject common name a CA accepts
	// (RFC 5280 ub-common-name), in bytes.
	MaxCommonNameLength = 64

	// NATSMaxPayload is NATS's default max_payload, 1 MiB: the largest
	// message a server accepts, and so the largest value of a KV bucket.
	NATSMaxPayload = 1 << 20
	// ResourceSizeMargin is kept free below NATSMaxPayload for what is
	// added to a resource after it is applied: message headers (a dead
	// letter copies a message and adds its own) and the status workers
	// record.
	ResourceSizeMargin = 64 << 10
	// MaxResourceSize is the largest Issuer or Certificate, encoded as JSON
	// as the store keeps it, that Apply accepts: 960 KiB.
	MaxResourceSize = NATSMaxPayload - ResourceSizeMargin
)

// maxFieldErrors bounds how many problems the validation of one resource
// reports; the rest are counted.
const maxFieldErrors = 20

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
	add(validateName("metadata.name", c.Metadata.Name))
	add(validateName("metadata.namespace", c.Metadata.Namespace))
	errs = append(errs, validateLabels(c.Metadata.Labels)...)

	s := &c.Spec
	errs = append(errs, validateDNSNames(s.DNSNames, issuer, c.Metadata.Labels)...)

	if s.CommonName != "" {
		if n := len(s.CommonName); n > MaxCommonNameLength {
			add(fmt.Errorf("spec.commonName: %s is %d bytes long, at most %d are allowed", quote(s.CommonName), n, MaxCommonNameLength))
		}
		found := false
		for _, n := range s.DNSNames {
			if strings.EqualFold(n, s.CommonName) {
				found = true
				break
			}
		}
		if !found {
			add(fmt.Errorf("spec.commonName: %s must be one of spec.dnsNames", quote(s.CommonName)))
		}
	}

	add(validateName("spec.secretName", s.SecretName))

	ref := s.IssuerRef
	kindOK := ref.Kind == "" || ref.Kind == string(messages.KindIssuer) || ref.Kind == string(messages.KindClusterIssuer)
	if err := validateName("spec.issuerRef.name", ref.Name); err != nil {
		add(err)
	} else if issuer == nil && kindOK {
		if ref.IssuerKind() == messages.KindClusterIssuer {
			add(fmt.Errorf("spec.issuerRef.name: clusterissuer %s not found", quote(ref.Name)))
		} else {
			add(fmt.Errorf("spec.issuerRef.name: issuer %s not found in namespace %s", quote(ref.Name), quote(c.Metadata.Namespace)))
		}
	}
	if !kindOK {
		add(fmt.Errorf("spec.issuerRef.kind: %s is not supported (want %s or %s)", quote(ref.Kind), messages.KindIssuer, messages.KindClusterIssuer))
	}
	if ref.Group != "" && ref.Group != IssuerGroup {
		add(fmt.Errorf("spec.issuerRef.group: %s is not supported (want %s)", quote(ref.Group), IssuerGroup))
	}

	if pk := s.PrivateKey; pk != nil {
		switch pk.Algorithm {
		case messages.KeyAlgorithmECDSA:
			add(checkSize(pk.Size, "ECDSA", ecdsaSizes))
		case messages.KeyAlgorithmRSA:
			add(checkSize(pk.Size, "RSA", rsaSizes))
		default:
			add(fmt.Errorf("spec.privateKey.algorithm: %s is not supported (want %s or %s)", quote(pk.Algorithm), messages.KeyAlgorithmECDSA, messages.KeyAlgorithmRSA))
		}
	}
	errs = append(errs, validateRenewal(s)...)
	add(checkResourceSize(c))
	return joinErrors(errs)
}

// joinErrors joins the problems of one resource, at most maxFieldErrors of
// them, and says how many more there were.
func joinErrors(errs []error) error {
	if len(errs) > maxFieldErrors {
		more := len(errs) - maxFieldErrors
		errs = append(errs[:maxFieldErrors:maxFieldErrors], fmt.Errorf("... and %d more problems", more))
	}
	return errors.Join(errs...)
}

// validateName checks a resource, namespace or Secret name with
// messages.ValidateObjectName's rule (lower-case alphanumerics and '-', at
// most messages.MaxObjectNameLength characters), wording the error with the
// value cut short.
func validateName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: must not be empty", field)
	}
	if n := len(s); n > messages.MaxObjectNameLength {
		return fmt.Errorf("%s: %s is %d characters long, at most %d are allowed", field, quote(s), n, messages.MaxObjectNameLength)
	}
	if messages.ValidateObjectName(field, s) != nil {
		return fmt.Errorf("%s: %s must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character", field, quote(s))
	}
	return nil
}

// validateLabels checks metadata.labels with Kubernetes' rules for label
// keys (an optional DNS subdomain prefix and '/', then a name of at most 63
// characters) and values (at most 63 characters), from
// k8s.io/apimachinery/pkg/util/validation.
func validateLabels(labels map[string]string) []error {
	var errs []error
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("metadata.labels: key %s is not valid: %s", quote(k), strings.Join(msgs, "; ")))
			continue
		}
		if msgs := validation.IsValidLabelValue(labels[k]); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s: value %s is not valid: %s", joinPath("metadata.labels", k), quote(labels[k]), strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// checkResourceSize refuses a resource whose JSON is over MaxResourceSize,
// naming the field that makes it large.
func checkResourceSize(obj messages.Object) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("producer: encode %s: %w", obj.GetKind(), err)
	}
	if len(b) <= MaxResourceSize {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("producer: decode %s: %w", obj.GetKind(), err)
	}
	field, what := largestField(v)
	return fmt.Errorf("%s: %s, the resource is %s, over the %s limit", field, what, sizeString(len(b)), sizeString(MaxResourceSize))
}

// largestField follows, from the root of a JSON value, the child that
// makes up at least half of its parent, and describes where it stops:
// ("spec.dnsNames", "40000 names").
func largestField(v any) (path, what string) {
	size := func(v any) int {
		b, _ := json.Marshal(v)
		return len(b)
	}
	for root := true; ; root = false {
		total := size(v)
		next, nextPath, best := any(nil), "", -1
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if n := size(x[k]); n > best {
					next, nextPath, best = x[k], joinPath(path, k), n
				}
			}
		case []any:
			for i, e := range x {
				if n := size(e); n > best {
					next, nextPath, best = e, fmt.Sprintf("%s[%d]", path, i), n
				}
			}
		}
		if best < 0 || !root && 2*best < total {
			break
		}
		v, path = next, nextPath
	}
	switch x := v.(type) {
	case []any:
		switch {
		case strings.HasSuffix(path, "dnsNames"):
			return path, fmt.Sprintf("%d names", len(x))
		case strings.HasSuffix(path, "dnsZones"):
			return path, fmt.Sprintf("%d zones", len(x))
		}
		return path, fmt.Sprintf("%d entries", len(x))
	case map[string]any:
		if strings.HasSuffix(path, "labels") {
			return path, fmt.Sprintf("%d labels", len(x))
		}
		return path, fmt.Sprintf("%d keys", len(x))
	case string:
		return path, fmt.Sprintf("a string of %s", sizeString(len(x)))
	}
	return path, "a large value"
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

// validateDNSNames checks a Certificate's names and, when its issuer is
// known, that a solver of the issuer would be selected for each, exactly as
// the workers select them (solvers.Select, with the Certificate's labels).
func validateDNSNames(names []string, issuer *messages.Issuer, labels map[string]string) []error {
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
			errs = append(errs, fmt.Errorf("%s: duplicate of spec.dnsNames[%d] %s", field, first, quote(names[first])))
			continue
		}
		seen[lower] = i
		if n == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", field))
			continue
		}
		if _, err := netip.ParseAddr(n); err == nil {
			errs = append(errs, fmt.Errorf("%s: %s is an IP address, not a DNS name (acmeq issues for DNS names only)", field, quote(n)))
			continue
		}
		wildcard, reason := checkDNSName(lower)
		if reason != "" {
			errs = append(errs, fmt.Errorf("%s: %s is not a valid DNS name: %s", field, quote(n), reason))
			continue
		}
		if issuer == nil {
			continue
		}
		var solvers []messages.ACMESolver
		if issuer.Spec.ACME != nil {
			solvers = issuer.Spec.ACME.Solvers
		}
		if _, _, err := solverpick.Select(solvers, strings.TrimPrefix(lower, "*."), wildcard, labels); err != nil {
			what := "cannot be validated"
			if wildcard {
				what = "is a wildcard, which only DNS-01 can validate"
			}
			errs = append(errs, fmt.Errorf("%s: %s %s: issuer %q: %w", field, quote(n), what, issuer.Metadata.Name, err))
		}
	}
	return errs
}

// checkDNSName checks a lower-cased name per RFC 1123, allowing a leading
// "*." wildcard label. It returns whether the name is a wildcard and, if it
// is invalid, why.
//
// Names are ASCII: a Unicode name is refused with its ASCII form as a hint
// (acmeq stores and requests exactly what was applied, so it does not
// convert names behind the user's back). A label starting "xn--" must be
// the canonical ASCII form of a valid Unicode label under IDNA's lookup
// rules (golang.org/x/net/idna, idna.Lookup), and any other label with
// "--" in its third and fourth characters is refused, as ACME CAs do.
func checkDNSName(name string) (wildcard bool, reason string) {
	return checkName(name, 2)
}

// checkName is checkDNSName requiring at least minLabels labels.
func checkName(name string, minLabels int) (wildcard bool, reason string) {
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
	if i := strings.IndexFunc(rest, func(r rune) bool { return r >= 0x80 }); i >= 0 {
		ascii, err := idna.Lookup.ToASCII(rest)
		if err != nil {
			return wildcard, fmt.Sprintf("it contains non-ASCII characters and has no valid IDNA form (%v)", err)
		}
		if wildcard {
			ascii = "*." + ascii
		}
		return wildcard, fmt.Sprintf("it contains non-ASCII characters: write it in its ASCII (punycode) form %s", quote(ascii))
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if why := labelProblem(l); why != "" {
			return wildcard, why
		}
	}
	if len(labels) < minLabels {
		return wildcard, "at least two labels are required"
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return wildcard, fmt.Sprintf("the last label %s is all numeric", quote(tld))
	}
	return wildcard, ""
}

// labelProblem says what is wrong with label l of a DNS name (after its
// wildcard), or "".
func labelProblem(l string) string {
	switch {
	case l == "":
		return "empty label"
	case strings.Contains(l, "*"):
		return `a wildcard is only allowed as the whole first label ("*.")`
	case len(l) > MaxLabelLength:
		return fmt.Sprintf("label %s is %d characters long, at most %d are allowed", quote(l), len(l), MaxLabelLength)
	}
	for _, r := range l {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return fmt.Sprintf("label %s contains %q (allowed: a-z, 0-9 and '-')", quote(l), r)
		}
	}
	if l[0] == '-' {
		return fmt.Sprintf("label %s starts with '-'", quote(l))
	}
	if l[len(l)-1] == '-' {
		return fmt.Sprintf("label %s ends with '-'", quote(l))
	}
	return idnaProblem(l)
}

// idnaProblem checks a lower-case LDH label against IDNA: "xn--" labels
// must decode to a valid Unicode label and be its canonical encoding; other
// labels must not have "--" in their third and fourth characters, which
// IDNA reserves (RFC 5891 section 4.2.3.1).
func idnaProblem(l string) string {
	if len(l) < 4 || l[2:4] != "--" {
		return ""
	}
	if !strings.HasPrefix(l, "xn--") {
		return fmt.Sprintf(`label %s has "--" in its third and fourth characters, which only IDNA labels ("xn--") may have`, quote(l))
	}
	u, err := idna.Lookup.ToUnicode(l)
	if err != nil {
		return fmt.Sprintf("label %s is not a valid IDNA label: %v", quote(l), err)
	}
	if u == "" {
		return fmt.Sprintf("label %s is not a valid IDNA label: it decodes to nothing", quote(l))
	}
	if back, err := idna.Lookup.ToASCII(u); err != nil || back != l {
		return fmt.Sprintf("label %s is not a valid IDNA label: it is not the canonical form of %s", quote(l), quote(u))
	}
	return ""
}

// ValidateIssuer checks an Issuer or a ClusterIssuer (after defaulting,
// see SetDefaults). It returns nil or every problem found, joined with
// errors.Join; each names the field and the rule. A ClusterIssuer has no
// namespace (SetDefaults clears one given, as Kubernetes does for a
// cluster-scoped resource).
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
	add(validateName("metadata.name", i.Metadata.Name))
	if i.GetKind() == messages.KindClusterIssuer {
		if i.Metadata.Namespace != "" {
			add(fmt.Errorf("metadata.namespace: a ClusterIssuer has no namespace, got %s", quote(i.Metadata.Namespace)))
		}
	} else {
		add(validateName("metadata.namespace", i.Metadata.Namespace))
	}
	errs = append(errs, validateLabels(i.Metadata.Labels)...)

	a := i.Spec.ACME
	if a == nil {
		add(errors.New("spec.acme: required (acmeq supports ACME issuers only)"))
		return joinErrors(errs)
	}
	add(validateServer(a.Server))
	if a.Email != "" {
		if why := emailProblem(a.Email); why != "" {
			add(fmt.Errorf("spec.acme.email: %s is not a valid email address: %s", quote(a.Email), why))
		}
	}
	add(validateName("spec.acme.privateKeySecretRef.name", a.PrivateKeySecretRef.Name))
	if a.CABundle != "" {
		add(validateCABundle(a.CABundle))
	}
	if len(a.Solvers) == 0 {
		add(errors.New("spec.acme.solvers: at least one solver is required (SetDefaults gives an Issuer without solvers one http01 solver)"))
	}
	errs = append(errs, validateRateLimits("spec.acme.rateLimits", a.RateLimits)...)
	if e := a.ExternalAccountBinding; e != nil {
		errs = append(errs, validateEAB("spec.acme.externalAccountBinding", e)...) // validate_eab.go
	}
	for n, s := range a.Solvers {
		field := fmt.Sprintf("spec.acme.solvers[%d]", n)
		if (s.HTTP01 == nil) == (s.DNS01 == nil) {
			add(fmt.Errorf("%s: exactly one of http01 or dns01 must be set", field))
			continue
		}
		errs = append(errs, validateSolver(field, s)...) // validate_solvers.go
	}
	add(checkResourceSize(i))
	return joinErrors(errs)
}

// validateSelector checks a solver's selector: dnsNames are DNS names (a
// "*." wildcard allowed, as in a Certificate, and a trailing dot), dnsZones are DNS names
// without a wildcard, with an optional trailing dot, and may be a single
// label.
func validateSelector(field string, sel *messages.SolverSelector) []error {
	var errs []error
	for j, n := range sel.DNSNames {
		f := fmt.Sprintf("%s.dnsNames[%d]", field, j)
		if n == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", f))
			continue
		}
		// A trailing dot is accepted, as solver selection ignores it.
		if _, reason := checkDNSName(strings.ToLower(strings.TrimSuffix(n, "."))); reason != "" {
			errs = append(errs, fmt.Errorf("%s: %s is not a valid DNS name: %s", f, quote(n), reason))
		}
	}
	for j, z := range sel.DNSZones {
		f := fmt.Sprintf("%s.dnsZones[%d]", field, j)
		zone := strings.TrimSuffix(strings.ToLower(z), ".")
		switch wildcard, reason := checkName(zone, 1); {
		case zone == "":
			errs = append(errs, fmt.Errorf("%s: must not be empty", f))
		case wildcard:
			errs = append(errs, fmt.Errorf("%s: %s is not a valid DNS zone: a zone cannot be a wildcard (a zone selects its subdomains: write %s)", f, quote(z), quote(strings.TrimPrefix(zone, "*."))))
		case reason != "":
			errs = append(errs, fmt.Errorf("%s: %s is not a valid DNS zone: %s", f, quote(z), reason))
		}
	}
	return errs
}

func validateServer(server string) error {
	if server == "" {
		return errors.New("spec.acme.server: an ACME directory URL is required")
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("spec.acme.server: %s must be an absolute https URL", quote(server))
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
			return fmt.Errorf("spec.acme.caBundle: certificate %d: %w", certs, err)
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
		errs = append(errs, fmt.Errorf("%s.nameserver: %s must be host:port, e.g. 10.0.0.53:53", field, quote(p.Nameserver)))
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
			errs = append(errs, fmt.Errorf("%s.tsigAlgorithm: %s is not supported (want %s)", field, quote(p.TSIGAlgorithm), orList(tsigAlgorithms)))
		}
	}
	if (p.TSIGKeyName == "") != (p.TSIGSecretSecretRef == nil) {
		errs = append(errs, fmt.Errorf("%s: tsigKeyName and tsigSecretSecretRef must be set together", field))
	}
	if p.TSIGKeyName != "" {
		if _, ok := dns.IsDomainName(p.TSIGKeyName); !ok || strings.Trim(p.TSIGKeyName, ".") == "" || strings.Contains(p.TSIGKeyName, "..") {
			errs = append(errs, fmt.Errorf("%s.tsigKeyName: %s is not a valid DNS name", field, quote(p.TSIGKeyName)))
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
	if err := validateName(field+".name", ref.Name); err != nil {
		errs = append(errs, err)
	}
	switch {
	case ref.Key == "":
		errs = append(errs, fmt.Errorf("%s.key: must not be empty", field))
	case len(ref.Key) > maxSecretKeyLength:
		errs = append(errs, fmt.Errorf("%s.key: %s is longer than %d characters", field, quote(ref.Key), maxSecretKeyLength))
	case !secretKeyRE.MatchString(ref.Key) || ref.Key == "." || ref.Key == "..":
		errs = append(errs, fmt.Errorf("%s.key: %s must consist of alphanumeric characters, '-', '_' or '.'", field, quote(ref.Key)))
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
