package dev

import (
	"context"
	"fmt"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// ClusterIssuerFor returns a ClusterIssuer name for the local Pebble with
// the given solvers (one HTTP-01 solver when none is given), for tests to
// adjust before applying (an External Account Binding, ...). Its Secrets
// are in the workers' cluster resource namespace (worker.Config's
// ClusterResourceNamespace, "acmeq" unless Options.Configure changes it).
func (env *Env) ClusterIssuerFor(name string, solvers ...messages.ACMESolver) *messages.Issuer {
	if len(solvers) == 0 {
		solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
	iss := messages.NewIssuer(messages.KindClusterIssuer)
	iss.Metadata.Name = name
	iss.Spec.ACME = &messages.ACMEIssuer{
		Server:              env.Stack.Pebble.DirectoryURL,
		Email:               "dev@acmeq.test",
		PrivateKeySecretRef: messages.SecretRef{Name: name + "-account-key"},
		CABundle:            string(env.Stack.Pebble.TLSCertPEM),
		Solvers:             solvers,
	}
	return iss
}

// CreateClusterIssuer applies ClusterIssuerFor(name, solvers...) and waits
// until a worker has registered its account: Certificates of every
// namespace may then name it (issuerRef kind ClusterIssuer).
func (env *Env) CreateClusterIssuer(ctx context.Context, name string, solvers ...messages.ACMESolver) error {
	if _, err := env.Producer.Apply(ctx, env.ClusterIssuerFor(name, solvers...)); err != nil {
		return fmt.Errorf("dev: create clusterissuer %s: %w", name, err)
	}
	return env.WaitClusterIssuerReady(ctx, name)
}

// WaitClusterIssuerReady waits until the ClusterIssuer name is Ready, fails
// (its Ready condition is False) or IssuerReadyTimeout passes.
func (env *Env) WaitClusterIssuerReady(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, IssuerReadyTimeout)
	defer cancel()
	for {
		got := messages.NewIssuer(messages.KindClusterIssuer)
		if err := env.Store.Get(ctx, "", name, got); err == nil {
			if messages.IsReady(got.Status.Conditions) {
				return nil
			}
			if c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady); c != nil && c.Status == messages.ConditionFalse {
				return fmt.Errorf("dev: clusterissuer %s is not ready: %s: %s", name, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev: clusterissuer %s did not become ready within %s", name, IssuerReadyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
