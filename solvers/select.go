package solvers

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/messages"
)

// ErrNoSolver is wrapped by the error of [Select] when no solver of an
// issuer can be used for a name. The error is a [*NoSolverError] that says,
// for each solver, why it was not used.
var ErrNoSolver = errors.New("solvers: no solver matches")

// NoSolverError is returned by [Select] when no solver can be used for
// Name. It wraps [ErrNoSolver].
type NoSolverError struct {
	// Name is the name looked for, "*.example.com" for a wildcard.
	Name string
	// Reasons says, for each solver in list order, why it was not used,
	// e.g. `solver 1 (dns01): dnsZones ["example.org"] do not contain
	// "www.example.com"`.
	Reasons []string
}

// Error reads like
//
//	no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name; solver 1 (dns01): ...
func (e *NoSolverError) Error() string {
	if len(e.Reasons) == 0 {
		return fmt.Sprintf("no solver matches %q: the issuer has no solvers", e.Name)
	}
	return fmt.Sprintf("no solver matches %q: %s", e.Name, strings.Join(e.Reasons, "; "))
}

// Unwrap returns ErrNoSolver.
func (e *NoSolverError) Unwrap() error { return ErrNoSolver }

// defaultSolvers is what an issuer without solvers uses: one HTTP-01
// solver, as messages.ACMEIssuer.Solvers documents.
var defaultSolvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}

// Select picks the solver of an issuer for one authorization, exactly as
// cert-manager picks one (pkg/util/solverpicker), and returns it with its
// challenge type, messages.ChallengeTypeHTTP01 or
// messages.ChallengeTypeDNS01.
//
// name is the authorization's identifier without "*." and wildcard says
// whether it is for "*." + name; certLabels are the labels of the
// Certificate being issued. An empty solvers list means one HTTP-01 solver.
//
// A solver is a candidate when it can validate the name (HTTP-01 cannot
// validate a wildcard) and every condition of its selector matches:
//
//   - dnsNames: the name equals one of them, a wildcard as "*.name"
//     (compared case-insensitively, without a trailing dot);
//   - dnsZones: the name is one of the zones or below it ("*.name" is below
//     name's zone); the longest such zone counts;
//   - matchLabels: the Certificate has each label with that value.
//
// Among candidates the most specific wins: one whose dnsNames match beats
// one whose dnsNames do not; then the longest matching dnsZones suffix (in
// labels); then the most matchLabels; a solver without a selector is the
// least specific and only used when nothing else matches. Ties keep list
// order: the first of equally specific solvers is used.
//
// When nothing matches, the error is a [*NoSolverError] (wrapping
// [ErrNoSolver]) that says why each solver was not used.
func Select(solvers []messages.ACMESolver, name string, wildcard bool, certLabels map[string]string) (*messages.ACMESolver, string, error) {
	offered := []string{messages.ChallengeTypeHTTP01, messages.ChallengeTypeDNS01}
	if wildcard {
		offered = offered[1:]
	}
	return SelectOffered(solvers, name, wildcard, certLabels, offered)
}

// SelectOffered is [Select] for a CA that offers only the challenge types
// in offered (messages.ChallengeTypeHTTP01, messages.ChallengeTypeDNS01,
// case-insensitive, "http-01" as ACME spells it is accepted): solvers of
// another type are not candidates, as in cert-manager, which picks among
// the solvers whose type the authorization offers.
func SelectOffered(solvers []messages.ACMESolver, name string, wildcard bool, certLabels map[string]string, offered []string) (*messages.ACMESolver, string, error) {
	if len(solvers) == 0 {
		solvers = defaultSolvers
	}
	find := strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(name, "*.")), ".")
	if wildcard {
		find = "*." + find
	}
	offers := func(typ string) bool {
		return slices.ContainsFunc(offered, func(o string) bool { return strings.EqualFold(o, typ) })
	}

	var (
		best    = -1
		bestTyp string
		bestM   match
		reasons = make([]string, 0, len(solvers))
	)
	for i := range solvers {
		s := &solvers[i]
		typ, why := solverType(s)
		switch {
		case why != "":
		case typ == messages.ChallengeTypeHTTP01 && wildcard:
			why = "HTTP-01 cannot validate a wildcard name"
		case !offers(typ):
			why = fmt.Sprintf("the CA does not offer %s for this name", strings.ToLower(typ))
		}
		if why != "" {
			reasons = append(reasons, fmt.Sprintf("solver %d (%s): %s", i, kindOf(s), why))
			continue
		}
		m, why := matchSelector(s.Selector, find, certLabels)
		if why != "" {
			reasons = append(reasons, fmt.Sprintf("solver %d (%s): %s", i, kindOf(s), why))
			continue
		}
		if best < 0 || m.moreSpecific(bestM) {
			best, bestTyp, bestM = i, typ, m
		}
	}
	if best < 0 {
		return nil, "", &NoSolverError{Name: find, Reasons: reasons}
	}
	return &solvers[best], bestTyp, nil
}

// match is how specifically a solver's selector matched a name.
type match struct {
	// selector is false for a solver without a selector, which is
	// cert-manager's "match all": any matching selector, even an empty
	// one, is used before it only if it is more specific, and a solver
	// without a selector is never preferred over an earlier match.
	selector bool
	dnsName  bool // a dnsNames entry equals the name
	zone     int  // labels of the longest matching dnsZones entry, 0 for none
	labels   int  // matchLabels that matched
}

// moreSpecific reports whether m beats the earlier match o; equal matches
// keep o (list order). This is cert-manager's comparison: dnsNames, then
// dnsZones, then labels.
func (m match) moreSpecific(o match) bool {
	if !m.selector {
		return false
	}
	if m.dnsName != o.dnsName {
		return m.dnsName
	}
	if m.zone != o.zone {
		return m.zone > o.zone
	}
	return m.labels > o.labels
}

// matchSelector matches sel against name (lower case, "*." for a
// wildcard) and labels; why says why it does not match, or is "".
func matchSelector(sel *messages.SolverSelector, name string, labels map[string]string) (m match, why string) {
	if sel == nil {
		return match{}, ""
	}
	m.selector = true
	var problems []string
	if len(sel.DNSNames) > 0 {
		for _, n := range sel.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(n, "."), name) {
				m.dnsName = true
				break
			}
		}
		if !m.dnsName {
			problems = append(problems, fmt.Sprintf("dnsNames %s do not contain %q", quoteList(sel.DNSNames), name))
		}
	}
	if len(sel.DNSZones) > 0 {
		for _, z := range sel.DNSZones {
			// As cert-manager: every label of the zone matches the end of
			// the name (case-insensitively).
			z = dns.Fqdn(z)
			n := dns.CountLabel(z)
			if n > 0 && dns.CompareDomainName(z, dns.Fqdn(name)) == n && n > m.zone {
				m.zone = n
			}
		}
		if m.zone == 0 {
			problems = append(problems, fmt.Sprintf("dnsZones %s do not contain %q", quoteList(sel.DNSZones), name))
		}
	}
	if len(sel.MatchLabels) > 0 {
		var missing []string
		for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
			want := sel.MatchLabels[k]
			got, ok := labels[k]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s=%s (the Certificate has no label %q)", k, want, k))
			case got != want:
				missing = append(missing, fmt.Sprintf("%s=%s (the Certificate has %s=%s)", k, want, k, got))
			default:
				m.labels++
			}
		}
		if len(missing) > 0 {
			problems = append(problems, "matchLabels "+strings.Join(missing, ", "))
		}
	}
	if len(problems) > 0 {
		return match{}, strings.Join(problems, " and ")
	}
	return m, ""
}

// solverType returns the challenge type of s, or why it has none.
func solverType(s *messages.ACMESolver) (typ, why string) {
	switch {
	case s.HTTP01 != nil && s.DNS01 != nil:
		return "", "both http01 and dns01 are set"
	case s.HTTP01 != nil:
		return messages.ChallengeTypeHTTP01, ""
	case s.DNS01 != nil:
		return messages.ChallengeTypeDNS01, ""
	}
	return "", "neither http01 nor dns01 is set"
}

// kindOf names the type of s for error messages.
func kindOf(s *messages.ACMESolver) string {
	switch {
	case s.HTTP01 != nil && s.DNS01 == nil:
		return "http01"
	case s.DNS01 != nil && s.HTTP01 == nil:
		return "dns01"
	}
	return "invalid"
}

// quoteList formats names as ["a", "b"].
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
