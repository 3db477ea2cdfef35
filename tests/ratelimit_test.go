package tests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/caproxy"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/worker"
)

// bulkRun is one bulk issuance through the ClusterIssuer "limited",
// whose new-order budget is burst per period, behind a proxy enforcing the
// same limit on the wire (a little more generously: see limitedStack).
type bulkRun struct {
	env *dev.Env
	ctx context.Context
	px  *caproxy.Proxy
}

// limitedStack starts the stack, the rate-limiting proxy in front of
// Pebble and the ClusterIssuer "limited" (one ACME account shared by every
// namespace, so one new-order budget that the tenants share).
func limitedStack(t testing.TB, workers, burst int, period time.Duration) *bulkRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: workers})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
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
	iss := env.ClusterIssuerFor("limited")
	iss.Spec.ACME.Server, iss.Spec.ACME.CABundle = px.DirectoryURL, string(px.TLSCertPEM)
	iss.Spec.ACME.RateLimits = &messages.RateLimits{
		Preset:                          messages.RateLimitPresetLetsEncrypt,
		NewOrdersPerAccount:             &messages.RateLimit{Count: burst, Period: period.String()},
		CertificatesPerRegisteredDomain: zero, DuplicateCertificates: zero, FailedValidations: zero, NewAccountsPerIPAddress: zero,
	}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitClusterIssuerReady(ctx, "limited"); err != nil {
		t.Fatal(err)
	}
	return &bulkRun{env: env, ctx: ctx, px: px}
}

// request applies a Certificate of one name in ns through "limited".
func (b *bulkRun) request(t testing.TB, ns, name string) {
	t.Helper()
	c := producer.CertificateFromOptions(producer.RequestOptions{Namespace: ns, Name: name, DNSNames: []string{name + "." + ns + ".limited.acmeq.test"}})
	c.Spec.IssuerRef = messages.IssuerRef{Name: "limited", Kind: string(messages.KindClusterIssuer)}
	if _, err := b.env.Producer.Apply(b.ctx, c); err != nil {
		t.Fatal(err)
	}
}

// tenants requests count certificates in each namespace (all of them
// before any is issued, the biggest tenant first) and returns their keys.
func (b *bulkRun) tenants(t testing.TB, counts []tenant) [][2]string {
	t.Helper()
	var keys [][2]string
	for _, tn := range counts {
		for i := range tn.certs {
			name := fmt.Sprintf("c%04d", i)
			b.request(t, tn.ns, name)
			keys = append(keys, [2]string{tn.ns, name})
		}
	}
	return keys
}

type tenant struct {
	ns    string
	certs int
}

// wait waits for every key and returns when each was seen Ready, from
// start.
func (b *bulkRun) wait(t testing.TB, keys [][2]string, start time.Time, timeout time.Duration) map[[2]string]time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	done := map[[2]string]time.Duration{}
	res, err := producer.WaitCertificates(ctx, b.env.Store, keys, func(_, _ int, o producer.Outcome) {
		mu.Lock()
		done[[2]string{o.Namespace, o.Name}] = time.Since(start)
		mu.Unlock()
	})
	if err != nil {
		dumpUnfinished(t, b.ctx, b.env)
		t.Fatal(err)
	}
	for k, o := range res {
		if !o.Ready {
			t.Errorf("certificate %s/%s: %s", k[0], k[1], o.Reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return done
}

// doneBefore counts the certificates of namespace ns done before at.
func doneBefore(done map[[2]string]time.Duration, ns string, at time.Duration) int {
	n := 0
	for k, d := range done {
		if k[0] == ns && d < at {
			n++
		}
	}
	return n
}

// lastOf is when the last certificate of namespace ns was Ready.
func lastOf(done map[[2]string]time.Duration, ns string) time.Duration {
	var last time.Duration
	for k, d := range done {
		if k[0] == ns && d > last {
			last = d
		}
	}
	return last
}

// Bulk issuance within the CA's rate limits, against a proxy in front of
// Pebble that enforces Let's Encrypt's new-orders limit (scaled down) on
// the wire as Boulder does, with three tenants sharing one account through
// a ClusterIssuer:
//   - with the limit known to acmeq (spec.acme.rateLimits), a backlog is
//     paced by the budget's refill rate and gets no 429;
//   - the small tenants' certificates are served in turn with the big
//     one's, not after them;
//   - an ARI renewal ("replaces") passes while new orders wait;
//   - when the CA's limit is lowered behind acmeq's back, its first 429s
//     pause the fleet: only the orders already on their way get one,
//     each once.
func TestRateLimitsPaceBulkIssuance(t *testing.T) {
	const (
		workers = 3
		burst   = 10
		period  = 4 * time.Second // refills one every 400 ms
	)
	b := limitedStack(t, workers, burst, period)
	env, ctx := b.env, b.ctx
	tenants := []tenant{{"tenant-big", 24}, {"tenant-mid", 4}, {"tenant-small", 2}}
	certs := 0
	for _, tn := range tenants {
		certs += tn.certs
	}

	// 1. A backlog three times the burst, the big tenant's first.
	start := time.Now()
	keys := b.tenants(t, tenants)
	// An ARI renewal passes while the new orders wait: renew the first
	// certificate as soon as it is issued.
	first := waitIssuedIn(t, ctx, env, "tenant-big", "c0000", 1, time.Minute)
	if first.Status.RenewalInfo == nil {
		t.Fatal("the first certificate has no ARI status: Pebble offers ARI")
	}
	if err := env.Producer.Renew(ctx, "tenant-big", "c0000"); err != nil {
		t.Fatal(err)
	}
	renewAsked := time.Now()
	renewed := waitIssuedIn(t, ctx, env, "tenant-big", "c0000", 2, 30*time.Second)
	renewTook := time.Since(renewAsked)
	done := b.wait(t, keys, start, 2*time.Minute)
	took := time.Since(start)
	if st := b.px.Stats(); st.RateLimited != 0 {
		t.Errorf("the CA answered %d 429s while acmeq knew the limit", st.RateLimited)
	}
	// The first burst go at once, the rest one refill each: the time is
	// the refill's within 10% (the renewal, exempt, does not count), plus
	// the ~1 s the first burst takes to be issued at all.
	refill := period / burst
	want := time.Duration(certs-burst) * refill
	if took < want*9/10 || took > want*11/10+2*time.Second {
		t.Errorf("%d certificates with a budget of %d per %s took %s; the refill rate allows %s", certs, burst, period, took.Round(10*time.Millisecond), want)
	}
	// Round robin across namespaces: the burst went to the big tenant
	// (requested first); then each refill goes to the namespace served
	// least recently, so the small tenants are done within their share of
	// refills, long before the big tenant's last. Counted in certificates,
	// not seconds, so a slow machine cannot blur it: round robin finishes
	// tenant-small after ~12 of tenant-big's 24 and tenant-mid after ~13–14
	// (a refill or two either way as issuance times vary); first come
	// first served would finish both after all 24.
	big, mid, small := lastOf(done, "tenant-big"), lastOf(done, "tenant-mid"), lastOf(done, "tenant-small")
	bs, bm := doneBefore(done, "tenant-big", small), doneBefore(done, "tenant-big", mid)
	if bs > burst+6 || bm > burst+8 {
		t.Errorf("tenant-small's last certificate came after %d of tenant-big's (want at most %d), tenant-mid's after %d (want at most %d): the small tenants waited behind the big one",
			bs, burst+6, bm, burst+8)
	}
	cr := &messages.CertificateRequest{}
	if err := env.Store.Get(ctx, "tenant-big", worker.RequestName("c0000", 2), cr); err != nil {
		t.Fatal(err)
	}
	if cr.Spec.Replaces == "" || renewTook > 3*time.Second {
		t.Errorf("renewal: replaces %q, took %s while new orders waited; want an ARI renewal that passes at once", cr.Spec.Replaces, renewTook)
	}
	if waits := countOrderEvents(t, ctx, env, "tenant-big", worker.ReasonWaitingForRateLimit); waits == 0 {
		t.Error("no order recorded that it waited for the rate limit")
	}
	t.Logf("%d certificates over %d tenants, budget %d per %s: %s (refill allows %s); last of tenant-small %s (after %d of tenant-big's), tenant-mid %s (after %d), tenant-big %s; ARI renewal in %s (serial %s)",
		certs, len(tenants), burst, period, took.Round(10*time.Millisecond), want, small.Round(time.Millisecond), bs, mid.Round(time.Millisecond), bm, big.Round(time.Millisecond),
		renewTook.Round(time.Millisecond), renewed.Status.SerialNumber)

	// 2. The CA lowers its limit behind acmeq's back: the first 429s pause
	// the fleet and teach it the CA's limit, and the rest wait. Only the
	// orders already on their way when the first 429 came back can get one
	// too (acmeq's budget let up to its burst go at once): at most the
	// late orders beyond the CA's new limit, each once. An order retried
	// into a second 429, or a fleet that did not pause, would exceed it.
	lowered := caproxy.Limit{Count: 2, Period: 2 * time.Second}
	b.px.SetLimits(caproxy.Limits{NewOrdersPerAccount: lowered})
	const lateCerts = 8
	late := b.tenants(t, []tenant{{"tenant-late", lateCerts}})
	b.wait(t, late, time.Now(), 2*time.Minute)
	st := b.px.Stats()
	if maxLimited := int64(lateCerts - lowered.Count); st.RateLimited == 0 || st.RateLimited > maxLimited {
		t.Errorf("the CA answered %d 429s after lowering its limit; want at least 1 and at most %d (the late orders beyond its limit, once each)", st.RateLimited, maxLimited)
	}
	stacktest.Eventually(t, 5*time.Second, func() error {
		if countOrderEvents(t, ctx, env, "tenant-late", worker.ReasonRateLimited) == 0 {
			return fmt.Errorf("no RateLimited event")
		}
		return nil
	})
	t.Logf("after the CA lowered its limit: %d 429s for %d workers", st.RateLimited, workers)
}

// countOrderEvents counts the events of reason about the Orders of ns.
func countOrderEvents(t testing.TB, ctx context.Context, env *dev.Env, ns, reason string) int {
	t.Helper()
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindOrder, ns, "")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Reason == reason {
			n++
		}
	}
	return n
}

// waitIssuedIn is waitIssued in namespace ns.
func waitIssuedIn(t *testing.T, ctx context.Context, env *dev.Env, ns, name string, rev int, timeout time.Duration) *messages.Certificate {
	t.Helper()
	var c *messages.Certificate
	stacktest.Eventually(t, timeout, func() error {
		c = &messages.Certificate{}
		if err := env.Store.Get(ctx, ns, name, c); err != nil {
			return err
		}
		if c.Status.Revision < rev || !messages.IsReady(c.Status.Conditions) {
			return fmt.Errorf("certificate %s/%s: revision %d (want %d)", ns, name, c.Status.Revision, rev)
		}
		return nil
	})
	return c
}

// BenchmarkRateLimitedBulk: 2,000 new certificates over three tenants
// (1,800, 150 and 50) through one account whose new-order budget is 100
// per 10 s (Let's Encrypt's 300 per 3 h, scaled down), against the
// optimum the refill rate allows: the burst at once, then one order per
// refill. It reports the time, its ratio to the optimum, the 429s and when
// each tenant's last certificate was issued. Run it alone:
//
//	go test ./tests -run '^$' -bench RateLimitedBulk -benchtime 1x -timeout 30m
func BenchmarkRateLimitedBulk(b *testing.B) {
	const (
		workers = 3
		burst   = 100
		period  = 10 * time.Second
	)
	tenants := []tenant{{"tenant-big", 1800}, {"tenant-mid", 150}, {"tenant-small", 50}}
	for range b.N {
		run := limitedStack(b, workers, burst, period)
		certs := 0
		for _, tn := range tenants {
			certs += tn.certs
		}
		start := time.Now()
		keys := run.tenants(b, tenants)
		done := run.wait(b, keys, start, 25*time.Minute)
		took := time.Since(start)
		optimum := time.Duration(certs-burst) * (period / burst)
		b.ReportMetric(took.Seconds(), "s/run")
		b.ReportMetric(took.Seconds()/optimum.Seconds(), "x-optimum")
		b.ReportMetric(float64(run.px.Stats().RateLimited), "429s")
		b.Logf("%d certificates, budget %d per %s: %s against the refill optimum %s (%.2fx); 429s %d; last of tenant-small %s, tenant-mid %s, tenant-big %s",
			certs, burst, period, took.Round(time.Second), optimum, took.Seconds()/optimum.Seconds(), run.px.Stats().RateLimited,
			lastOf(done, "tenant-small").Round(time.Second), lastOf(done, "tenant-mid").Round(time.Second), lastOf(done, "tenant-big").Round(time.Second))
	}
}
