package worker

import (
	"fmt"
	"strings"

	"github.com/acmeq/acmeq/messages"
)

// selectSolver returns the solver of the issuer for one authorization: the
// first whose selector matches (a wildcard authorization is matched as
// "*.name"), and the challenge type it solves.
func selectSolver(iss *messages.Issuer, name string, wildcard bool, _ map[string]string) (*messages.ACMESolver, string, error) {
	list := iss.Spec.ACME.Solvers
	if len(list) == 0 {
		list = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
	full := name
	if wildcard {
		full = "*." + name
	}
	for i := range list {
		s := &list[i]
		if !selectorMatches(s.Selector, full, name) {
			continue
		}
		if s.DNS01 != nil {
			return s, messages.ChallengeTypeDNS01, nil
		}
		if s.HTTP01 != nil && !wildcard {
			return s, messages.ChallengeTypeHTTP01, nil
		}
	}
	return nil, "", fmt.Errorf("no solver of issuer %q matches %q", iss.Metadata.Name, full)
}

func selectorMatches(sel *messages.SolverSelector, full, name string) bool {
	if sel == nil || (len(sel.DNSNames) == 0 && len(sel.DNSZones) == 0) {
		return true
	}
	for _, n := range sel.DNSNames {
		if strings.EqualFold(n, full) {
			return true
		}
	}
	for _, z := range sel.DNSZones {
		z = strings.ToLower(strings.TrimSuffix(z, "."))
		if name == z || strings.HasSuffix(name, "."+z) {
			return true
		}
	}
	return false
}
