package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/caproxy"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/worker"
)

// Bulk issuance within the CA's rate limits, against a proxy in front of
// Pebble that enforces Let's Encrypt's new-orders limit (scaled down) on
// the wire as Boulder does:
//   - with the limit known to acmeq (spec.acme.rateLimits), a backlog is
//     paced by the budget's refill rate and gets no 429;
//   - an ARI renewal ("replaces") passes while new orders wait;
//   - when the CA's limit is lowered behind acmeq's back, its first 429s
//     pause the fleet: at most one per worker.
func TestRateLimitsPaceBulkIssuance(t *testing.T) {
	const (
		workers = 3
		burst   = 10
		period  = 4 * time.Second // refills one every 400 ms
		certs   = 30
	)
	env, ctx := setupRenewal(t, workers, time.Hour, stack.PebbleConfig{}, nil)
	px, err := caproxy.Start(caproxy.Config{
		Upstream: env.Stack.Pebble.DirectoryURL,
		Client:   env.Stack.Pebble.HTTPClient(),
		// The CA's clock is not ours: orders granted one refill apart may
		// reach it a few ms closer together. Like Let's Encrypt's published
		// limits against its real ones, the CA allows a little more.
		Limits: caproxy.Limits{NewOrdersPerAccount: caproxy.Limit{Count: burst, Period: period * 9 / 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	zero := &messages.RateLimit{Count: 0}
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: "limited", Namespace: dev.Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:   px.DirectoryURL,
			CABundle: string(px.TLSCertPEM),
			Solvers:  []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}},
			RateLimits: &messages.RateLimits{
				Preset:                          messages.RateLimitPresetLetsEncrypt,
				NewOrdersPerAccount:             &messages.RateLimit{Count: burst, Period: period.String()},
				CertificatesPerRegisteredDomain: zero, DuplicateCertificates: zero, FailedValidations: zero, NewAccountsPerIPAddress: zero,
			},
		}},
	}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitIssuerReady(ctx, dev.Namespace, "limited"); err != nil {
		t.Fatal(err)
	}
	request := func(name string) {
		t.Helper()
		if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: name, Issuer: "limited", DNSNames: []string{name + ".limited.acmeq.test"}}); err != nil {
			t.Fatal(err)
		}
	}

	// 1. A backlog three times the burst: paced by the refill, no 429.
	start := time.Now()
	names := make([]string, certs)
	for i := range names {
		names[i] = fmt.Sprintf("bulk-%02d", i)
		request(names[i])
	}
	// An ARI renewal passes while the new orders wait: renew the first
	// certificate as soon as it is issued.
	first := waitIssued(t, ctx, env, names[0], 1, time.Minute)
	if first.Status.RenewalInfo == nil {
		t.Fatal("the first certificate has no ARI status: Pebble offers ARI")
	}
	if err := env.Producer.Renew(ctx, dev.Namespace, names[0]); err != nil {
		t.Fatal(err)
	}
	renewAsked := time.Now()
	renewed := waitIssued(t, ctx, env, names[0], 2, 30*time.Second)
	renewTook := time.Since(renewAsked)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatal(err)
	}
	took := time.Since(start)
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s: %s", n, res[n].Message)
		}
	}
	if st := px.Stats(); st.RateLimited != 0 {
		t.Errorf("the CA answered %d 429s while acmeq knew the limit", st.RateLimited)
	}
	// The first burst go at once, the rest one refill each: the time is
	// the refill's within 10% (the renewal, exempt, does not count).
	refill := period / burst
	want := time.Duration(certs-burst) * refill
	if took < want*9/10 || took > want*13/10+3*time.Second {
		t.Errorf("%d certificates with a budget of %d per %s took %s; the refill rate allows %s", certs, burst, period, took.Round(10*time.Millisecond), want)
	}
	cr := &messages.CertificateRequest{}
	if err := env.Store.Get(ctx, dev.Namespace, worker.RequestName(names[0], 2), cr); err != nil {
		t.Fatal(err)
	}
	if cr.Spec.Replaces == "" || renewTook > 3*time.Second {
		t.Errorf("renewal: replaces %q, took %s while new orders waited; want an ARI renewal that passes at once", cr.Spec.Replaces, renewTook)
	}
	waits := 0
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindOrder, dev.Namespace, "")})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Reason == worker.ReasonWaitingForRateLimit {
			waits++
		}
	}
	if waits == 0 {
		t.Error("no order recorded that it waited for the rate limit")
	}
	t.Logf("%d certificates, budget %d per %s: %s (refill allows %s); ARI renewal of %s in %s (serial %s); %d orders waited", certs, burst, period,
		took.Round(10*time.Millisecond), want, names[0], renewTook.Round(time.Millisecond), renewed.Status.SerialNumber, waits)

	// 2. The CA lowers its limit behind acmeq's back: the first 429s pause
	// the fleet, at most one per worker, and the rest wait.
	px.SetLimits(caproxy.Limits{NewOrdersPerAccount: caproxy.Limit{Count: 2, Period: 2 * time.Second}})
	more := make([]string, 8)
	for i := range more {
		more[i] = fmt.Sprintf("late-%02d", i)
		request(more[i])
	}
	wctx2, cancel2 := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel2()
	if _, err := env.WaitCertificates(wctx2, dev.Namespace, more); err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatal(err)
	}
	st := px.Stats()
	if st.RateLimited == 0 || st.RateLimited > workers {
		t.Errorf("the CA answered %d 429s after lowering its limit; want at least 1 and at most one per worker (%d)", st.RateLimited, workers)
	}
	stacktest.Eventually(t, 5*time.Second, func() error {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindOrder, dev.Namespace, "")})
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Reason == worker.ReasonRateLimited && e.Type == messages.EventWarning {
				return nil
			}
		}
		return fmt.Errorf("no RateLimited event")
	})
	t.Logf("after the CA lowered its limit: %d 429s for %d workers", st.RateLimited, workers)
}
