package worker

import (
	"context"
	"fmt"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers"
)

// solverFor returns the solver of a challenge's spec.
func (w *Worker) solverFor(ch *messages.Challenge) (solvers.Solver, error) {
	switch ch.Spec.Type {
	case messages.ChallengeTypeHTTP01:
		return &checkedHTTP01{w.http01, w.check}, nil
	case messages.ChallengeTypeDNS01:
		return nil, fmt.Errorf("DNS-01 solver for %q: no DNS-01 provider is available in this worker yet", ch.Spec.DNSName)
	}
	return nil, fmt.Errorf("unknown challenge type %q", ch.Spec.Type)
}

// checkedHTTP01 is the HTTP-01 presenter with its self-check.
type checkedHTTP01 struct {
	solvers.Solver
	check solvers.SelfChecker
}

func (c *checkedHTTP01) Check(ctx context.Context, ch solvers.Challenge) error {
	return c.check.Check(ctx, ch)
}
