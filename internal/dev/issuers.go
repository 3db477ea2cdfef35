package dev

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// IssuerReadyTimeout bounds how long CreateIssuerIn waits for a worker to
// register the issuer's account.
const IssuerReadyTimeout = 30 * time.Second

// CreateIssuerIn applies an ACME Issuer name in namespace ns for the local
// Pebble, with the given solvers (one HTTP-01 solver when none is given),
// and waits until a worker has registered its account. Issuers are
// namespaced: a Certificate names an issuer of its own namespace, and each
// issuer has its own ACME account.
func (env *Env) CreateIssuerIn(ctx context.Context, ns, name string, solvers ...messages.ACMESolver) error {
	if len(solvers) == 0 {
		solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: name, Namespace: ns},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:              env.Stack.Pebble.DirectoryURL,
			Email:               "dev@acmeq.test",
			PrivateKeySecretRef: messages.SecretRef{Name: name + "-account-key"},
			CABundle:            string(env.Stack.Pebble.TLSCertPEM),
			Solvers:             solvers,
		}},
	}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		return fmt.Errorf("dev: create issuer %s/%s: %w", ns, name, err)
	}
	return env.WaitIssuerReady(ctx, ns, name)
}

// DNS01SolverIn returns the rfc2136 DNS-01 solver of the dev BIND for an
// issuer of namespace ns, restricted to DNS01Zone (so that an issuer can
// list it first and an HTTP-01 solver after it for every other name), and
// stores the TSIG secret it references in ns: a solver's Secret is read in
// its issuer's namespace. The stack must have been started with
// Options.DNS01.
func (env *Env) DNS01SolverIn(ctx context.Context, ns string) (messages.ACMESolver, error) {
	if env.DNS01 == nil {
		return messages.ACMESolver{}, errors.New("dev: the stack was started without Options.DNS01")
	}
	b := env.DNS01.BIND
	if err := env.Store.PutSecret(ctx, ns, DNS01SecretName, map[string][]byte{DNS01SecretKey: []byte(b.TSIGSecret)}, nil); err != nil {
		return messages.ACMESolver{}, fmt.Errorf("dev: create the TSIG secret in %s: %w", ns, err)
	}
	return messages.ACMESolver{
		Selector: &messages.SolverSelector{DNSZones: []string{DNS01Zone}},
		DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{
			Nameserver:          b.Addr,
			TSIGKeyName:         b.TSIGKeyName,
			TSIGAlgorithm:       b.TSIGAlgorithm,
			TSIGSecretSecretRef: &messages.SecretKeySelector{Name: DNS01SecretName, Key: DNS01SecretKey},
		}},
	}, nil
}

// WaitIssuerReady waits until the Issuer ns/name is Ready, fails (its
// Ready condition is False) or IssuerReadyTimeout passes.
func (env *Env) WaitIssuerReady(ctx context.Context, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, IssuerReadyTimeout)
	defer cancel()
	for {
		got := &messages.Issuer{}
		if err := env.Store.Get(ctx, ns, name, got); err == nil {
			if messages.IsReady(got.Status.Conditions) {
				return nil
			}
			if c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady); c != nil && c.Status == messages.ConditionFalse {
				return fmt.Errorf("dev: issuer %s/%s is not ready: %s: %s", ns, name, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev: issuer %s/%s did not become ready within %s", ns, name, IssuerReadyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
