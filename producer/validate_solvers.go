package producer

import (
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers/dns01/lego"
)

// validateSolver checks what ValidateIssuer leaves to it of one solver
// (field is "spec.acme.solvers[N]", and the solver has exactly one of
// http01 and dns01): its selector, and its dns01 block with the rfc2136,
// webhook or lego provider and the cnameStrategy.
func validateSolver(field string, s messages.ACMESolver) []error {
	var errs []error
	if sel := s.Selector; sel != nil {
		errs = append(errs, validateSelector(field+".selector", sel)...)
		errs = append(errs, validateMatchLabels(field+".selector", sel)...)
	}
	if s.DNS01 != nil {
		errs = append(errs, validateDNS01Solver(field+".dns01", s.DNS01)...)
	}
	return errs
}

// Kubernetes' label syntax: a key is an optional DNS subdomain prefix and
// "/", then a name of at most 63 characters; a value is at most 63
// characters of the same alphabet (possibly empty).
var (
	labelNameRE  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	labelMaxName = 63
)

// validateMatchLabels checks a selector's matchLabels against Kubernetes'
// label syntax (validateSelector checks its names and zones).
func validateMatchLabels(field string, sel *messages.SolverSelector) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		if why := labelKeyProblem(k); why != "" {
			errs = append(errs, fmt.Errorf("%s.matchLabels: key %q %s", field, k, why))
		}
		if v := sel.MatchLabels[k]; len(v) > labelMaxName || !labelNameRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s.matchLabels[%s]: value %q must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", field, k, v))
		}
	}
	return errs
}

// labelKeyProblem says why k is not a valid label key, or "".
func labelKeyProblem(k string) string {
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		name, prefix = prefix, ""
	}
	switch {
	case found && (prefix == "" || len(prefix) > MaxDNSNameLength):
		return "has an empty or too long prefix before '/'"
	case found:
		if _, ok := dns.IsDomainName(prefix); !ok || strings.Contains(prefix, "..") || strings.ToLower(prefix) != prefix {
			return "has a prefix that is not a lower-case DNS subdomain"
		}
	}
	if name == "" || len(name) > labelMaxName || !labelNameRE.MatchString(name) {
		return "must be an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	}
	return ""
}

func validateDNS01Solver(field string, d *messages.DNS01Solver) []error {
	var errs []error
	var set []string
	if d.RFC2136 != nil {
		set = append(set, "rfc2136")
	}
	if d.Webhook != nil {
		set = append(set, "webhook")
	}
	if d.Lego != nil {
		set = append(set, "lego")
	}
	switch len(set) {
	case 0:
		return []error{fmt.Errorf("%s: a provider is required (rfc2136, webhook or lego)", field)}
	case 1:
	default:
		errs = append(errs, fmt.Errorf("%s: only one provider may be set, got %s", field, strings.Join(set, " and ")))
	}
	switch d.CNAMEStrategy {
	case "", messages.CNAMEStrategyNone, messages.CNAMEStrategyFollow:
	default:
		errs = append(errs, fmt.Errorf("%s.cnameStrategy: %q is not supported (want %s or %s)", field, d.CNAMEStrategy, messages.CNAMEStrategyNone, messages.CNAMEStrategyFollow))
	}
	if d.RFC2136 != nil {
		errs = append(errs, validateDNS01(field, &messages.DNS01Solver{RFC2136: d.RFC2136})...)
	}
	if w := d.Webhook; w != nil {
		errs = append(errs, validateWebhook(field+".webhook", w)...)
	}
	if l := d.Lego; l != nil {
		f := field + ".lego"
		if l.Provider == "" {
			errs = append(errs, fmt.Errorf("%s.provider: required (one of %s)", f, strings.Join(lego.Known(), ", ")))
		} else if err := lego.Validate(l.Provider, l.Config, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
		if ref := l.CredentialsSecretRef; ref != nil {
			if err := messages.ValidateObjectName(f+".credentialsSecretRef.name", ref.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func validateWebhook(field string, w *messages.WebhookProvider) []error {
	var errs []error
	if w.URL == "" {
		errs = append(errs, fmt.Errorf("%s.url: required (the base URL of a service implementing the webhook contract)", field))
	} else if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("%s.url: %q must be an absolute http or https URL without query or fragment", field, w.URL))
	}
	if w.Timeout != "" {
		if d, err := time.ParseDuration(w.Timeout); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s.timeout: %q must be a positive duration, e.g. 30s", field, w.Timeout))
		}
	}
	for name, ref := range map[string]*messages.SecretKeySelector{"bearerTokenSecretRef": w.BearerTokenSecretRef, "hmacSecretRef": w.HMACSecretRef} {
		if ref == nil {
			continue
		}
		errs = append(errs, validateSecretKeySelector(field+"."+name, ref)...)
	}
	if w.CABundle != "" {
		if b, _ := pem.Decode([]byte(w.CABundle)); b == nil || b.Type != "CERTIFICATE" {
			errs = append(errs, errors.New(field+".caBundle: no PEM CERTIFICATE block found"))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
