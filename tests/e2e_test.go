package tests

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

// setup starts the whole stack with n workers; Pebble gets a deadline
// through ctx (a Pebble hang is reported as such, not as a pass).
func setup(t *testing.T, workers int) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: workers})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	return env, ctx
}

func issue(t *testing.T, ctx context.Context, env *dev.Env, n int) []string {
	t.Helper()
	reqs := dev.DemoRequests(n)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatalf("request %s: %v", r.Name, err)
		}
		names[i] = r.Name
	}
	wctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("waiting for certificates (if Pebble stopped answering, this is a Pebble hang): %v", err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s not issued: %s", n, res[n].Message)
		}
	}
	return names
}

func TestEndToEndIssuance(t *testing.T) {
	env, ctx := setup(t, 3)
	names := issue(t, ctx, env, 24)

	root, err := env.Stack.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		cert := &messages.Certificate{}
		if err := env.Store.Get(ctx, dev.Namespace, name, cert); err != nil {
			t.Fatal(err)
		}
		data, err := env.Store.GetSecret(ctx, dev.Namespace, name)
		if err != nil {
			t.Fatalf("secret of %s: %v", name, err)
		}
		leaf, err := dev.VerifyChain(data[messages.SecretTLSCert], root, cert.Spec.DNSNames)
		if err != nil {
			t.Errorf("certificate %s: %v", name, err)
			continue
		}
		got, want := slices.Sorted(slices.Values(leaf.DNSNames)), slices.Sorted(slices.Values(cert.Spec.DNSNames))
		if !slices.Equal(got, want) {
			t.Errorf("certificate %s names = %v, want %v", name, got, want)
		}
		if cert.Status.NotAfter == nil || !cert.Status.NotAfter.Equal(leaf.NotAfter.UTC()) {
			t.Errorf("certificate %s status.notAfter = %v, want %v", name, cert.Status.NotAfter, leaf.NotAfter)
		}
		if len(data[messages.SecretTLSKey]) == 0 {
			t.Errorf("certificate %s: no tls.key", name)
		}
	}

	// Every worker took part: the work is shared, not done by one.
	// (Checked through the events' reportingInstance.)
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reporters := map[string]bool{}
	for _, e := range evs {
		reporters[e.Reporter] = true
	}
	if len(reporters) < 3 {
		t.Errorf("events came from %d workers (%v), want all 3", len(reporters), reporters)
	}

	// The events of one certificate's chain carry the reference's reasons.
	name := names[2] // three names
	cr := worker.RequestName(name, 1)
	wantReasons := map[messages.Kind][]string{
		messages.KindCertificate:        {"Issuing", "Generated", "Requested", "Issued"},
		messages.KindCertificateRequest: {"OrderCreated", "CertificateIssued"},
	}
	for kind, want := range wantReasons {
		obj := name
		if kind == messages.KindCertificateRequest {
			obj = cr
		}
		assertReasons(t, ctx, env, kind, obj, want)
	}
	orders, err := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	var order *messages.Order
	for _, o := range orders {
		if ow := o.GetMeta().OwnerReference; ow != nil && ow.Name == cr {
			order = o.(*messages.Order)
		}
	}
	if order == nil {
		t.Fatalf("no order owned by %s", cr)
	}
	if order.Status.State != messages.StateValid || order.Status.URL == "" || len(order.Status.Authorizations) != 3 {
		t.Errorf("order %s: state %q url %q %d authorizations", order.Metadata.Name, order.Status.State, order.Status.URL, len(order.Status.Authorizations))
	}
	oevs := assertReasons(t, ctx, env, messages.KindOrder, order.Metadata.Name, []string{"Created", "Created", "Created", "OrderValid"})
	for i, e := range oevs[:3] {
		want := fmt.Sprintf("Created Challenge resource %q for domain %q", worker.ChallengeName(order.Metadata.Name, i), order.Status.Authorizations[i].Identifier)
		if !slices.ContainsFunc(oevs, func(e messages.Event) bool { return e.Message == want }) {
			t.Errorf("order events lack %q (got %q)", want, e.Message)
		}
	}
	if last := oevs[len(oevs)-1]; last.Message != "Order completed successfully" || last.Type != messages.EventNormal {
		t.Errorf("last order event = %+v", last)
	}
	chName := worker.ChallengeName(order.Metadata.Name, 0)
	cevs := assertReasons(t, ctx, env, messages.KindChallenge, chName, []string{"Started", "Presented", "DomainVerified"})
	if cevs[0].Message != "Challenge scheduled for processing" || cevs[1].Message != "Presented challenge using http-01 challenge mechanism" {
		t.Errorf("challenge events = %q, %q", cevs[0].Message, cevs[1].Message)
	}
	// Finished challenges are removed once their order is final (bounded
	// history); their events stay.
	stacktest.Eventually(t, 10*time.Second, func() error {
		left, err := env.Store.List(ctx, messages.KindChallenge, "")
		if err != nil {
			return err
		}
		if len(left) != 0 {
			return fmt.Errorf("%d challenges left after every order is final, e.g. %s", len(left), left[0].GetMeta().Name)
		}
		return nil
	})

	// Nothing is left holding a scheduler slot.
	backlog, inflight, err := env.Workers[0].Scheduler().Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if backlog != 0 || inflight != 0 {
		t.Errorf("scheduler after the run: backlog %d, in flight %d; want 0, 0", backlog, inflight)
	}
}

// assertReasons checks the reasons of an object's events, in order. Events
// are published after the status write that makes them true, so the last
// may come a moment after the state the caller waited for.
func assertReasons(t *testing.T, ctx context.Context, env *dev.Env, kind messages.Kind, name string, want []string) []messages.Event {
	t.Helper()
	var evs []messages.Event
	stacktest.Eventually(t, 10*time.Second, func() error {
		var err error
		evs, err = bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(kind, dev.Namespace, name)})
		if err != nil {
			return err
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Reason)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s %s events = %v, want %v", kind, name, got, want)
		}
		return nil
	})
	return evs
}

// Transitions delivered more than once do no side effect twice: flood
// duplicates of every kind while certificates are being issued, then check
// that each certificate has one request, one order, one challenge per
// name, one OrderValid, and that finished resources did not move.
func TestDuplicateTransitionsAreIdempotent(t *testing.T) {
	env, ctx := setup(t, 3)
	reqs := dev.DemoRequests(6)
	for _, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	b := bus.New(env.JS, "test")
	dup := func(kind messages.Kind, name string, i int) {
		tr := messages.Transition{Kind: kind, Namespace: dev.Namespace, Name: name, Action: messages.ActionResync}
		if err := b.Publish(ctx, tr, fmt.Sprintf("dup-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Duplicates while the work is in flight.
	for i := range 3 {
		for _, r := range reqs {
			dup(messages.KindCertificate, r.Name, i)
			dup(messages.KindCertificateRequest, worker.RequestName(r.Name, 1), i)
		}
	}
	names := make([]string, len(reqs))
	for i, r := range reqs {
		names[i] = r.Name
	}
	wctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	if _, err := env.WaitCertificates(wctx, dev.Namespace, names); err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatal(err)
	}
	// And duplicates of everything once it is all done.
	orders, _ := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	var chs []string // removed by now with their final orders
	for _, o := range orders {
		for i := range o.(*messages.Order).Status.Authorizations {
			chs = append(chs, worker.ChallengeName(o.GetMeta().Name, i))
		}
	}
	for i := 10; i < 12; i++ {
		for _, r := range reqs {
			dup(messages.KindCertificate, r.Name, i)
		}
		for _, o := range orders {
			dup(messages.KindOrder, o.GetMeta().Name, i)
		}
		for _, c := range chs {
			dup(messages.KindChallenge, c, i)
		}
	}
	waitQueueDrained(t, ctx, env)

	crs, _ := env.Store.List(ctx, messages.KindCertificateRequest, dev.Namespace)
	if len(crs) != len(reqs) || len(orders) != len(reqs) {
		t.Errorf("%d requests and %d orders for %d certificates", len(crs), len(orders), len(reqs))
	}
	wantChallenges := 0
	for _, r := range reqs {
		wantChallenges += len(r.DNSNames)
	}
	if len(chs) != wantChallenges {
		t.Errorf("the orders name %d challenges, want %d", len(chs), wantChallenges)
	}
	if left, _ := env.Store.List(ctx, messages.KindChallenge, dev.Namespace); len(left) != 0 {
		t.Errorf("%d challenges still stored after every order is final", len(left))
	}
	for _, r := range reqs {
		c := &messages.Certificate{}
		if err := env.Store.Get(ctx, dev.Namespace, r.Name, c); err != nil {
			t.Fatal(err)
		}
		if c.Status.Revision != 1 || !messages.IsReady(c.Status.Conditions) {
			t.Errorf("certificate %s: revision %d, conditions %+v", r.Name, c.Status.Revision, c.Status.Conditions)
		}
	}
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range evs {
		count[string(e.InvolvedObject.Kind)+"/"+e.Reason]++
	}
	checks := map[string]int{
		"Order/OrderValid":                     len(reqs),
		"Order/Created":                        wantChallenges,
		"Challenge/Started":                    wantChallenges,
		"Challenge/Presented":                  wantChallenges,
		"Certificate/Issued":                   len(reqs),
		"Certificate/Requested":                len(reqs),
		"CertificateRequest/OrderCreated":      len(reqs),
		"CertificateRequest/CertificateIssued": len(reqs),
	}
	keys := make([]string, 0, len(checks))
	for k := range checks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if count[k] != checks[k] {
			t.Errorf("%d %s events, want %d", count[k], k, checks[k])
		}
	}
}

// waitQueueDrained waits until the work stream holds no message but the
// pending schedules (a Certificate's next renewal or check).
func waitQueueDrained(t *testing.T, ctx context.Context, env *dev.Env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := env.JS.Stream(ctx, messages.WorkStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(messages.WorkSubjectPrefix+".*.*.*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.State.Subjects) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var subj []string
			for k, n := range info.State.Subjects {
				subj = append(subj, fmt.Sprintf("%s:%d", k, n))
			}
			t.Fatalf("work stream still holds messages: %s", strings.Join(subj, " "))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
