package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

// TestChallengeDeadline: a challenge stuck past ACMEQ_CHALLENGE_TIMEOUT is
// failed (state errored, a clear reason, a TimedOut Warning event), its
// order, request and certificate fail, and its slot and lock are freed: a
// second challenge for the same name, queued behind the lock while the
// first was stuck, is granted once the first times out.
//
// dev.Options has no ChallengeTimeout, so dev runs the stack, responder
// and producer without workers and the test runs its own worker: timeout
// 3 s, self-check every 500 ms against a port where every connection is
// closed at once, so the self-check can never pass and no challenge ever
// reaches the CA. The scheduler's audit stream (Redis server time, one
// entry per script run, in execution order) shows the lock handover.
func TestChallengeDeadline(t *testing.T) {
	const timeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: -1})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)

	// Self-checks dial this port: a listener that closes every connection,
	// held for the whole test so nothing else can answer there.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()

	// One worker wired as dev wires its own, with the short deadline.
	key, err := store.ParseSecretKey(env.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(env.Stack.NATS.URL, nats.Name("deadline-worker"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	wst, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr})
	w, err := worker.New(js, wst, rdb, worker.Config{
		Name:              "deadline-worker",
		ChallengeTimeout:  timeout,
		SelfCheckInterval: 500 * time.Millisecond,
		HTTP01Port:        dead.Addr().(*net.TCPAddr).Port,
		Resolve:           worker.ResolveTo("127.0.0.1"),
		Scheduler:         scheduler.Config{Audit: true},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Stop(sctx)
		_ = rdb.Close()
		nc.Close()
	})
	if err := env.CreateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	sched := w.Scheduler()

	const dnsName = "stuck.acmeq.test"
	request := func(name string) {
		t.Helper()
		if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: name, Issuer: dev.IssuerName, DNSNames: []string{dnsName}}); err != nil {
			t.Fatalf("request %s: %v", name, err)
		}
	}
	// challengeOf finds the challenge of a certificate's first request.
	challengeOf := func(cert string) *messages.Challenge {
		t.Helper()
		cr := worker.RequestName(cert, 1)
		objs, err := env.Store.List(ctx, messages.KindChallenge, dev.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			ch := o.(*messages.Challenge)
			order := &messages.Order{}
			if ch.Metadata.OwnerReference == nil {
				continue
			}
			if err := env.Store.Get(ctx, dev.Namespace, ch.Metadata.OwnerReference.Name, order); err != nil {
				t.Fatal(err)
			}
			if order.Metadata.OwnerReference != nil && order.Metadata.OwnerReference.Name == cr {
				return ch
			}
		}
		return nil
	}

	// Two certificates for the same name, requested together: the
	// challenge granted first holds the (HTTP-01, name) lock and gets stuck
	// in its self-check; the other queues behind the lock.
	request("stuck-1")
	request("stuck-2")
	var first, second string // certificates, by the order their challenges hold the lock
	var id1, id2 string
	var ch1, ch2 *messages.Challenge
	eventually(t, 60*time.Second, func() bool {
		states := map[string]scheduler.State{}
		ids := map[string]string{}
		for _, cert := range []string{"stuck-1", "stuck-2"} {
			ch := challengeOf(cert)
			if ch == nil {
				return false
			}
			ids[cert] = scheduler.ChallengeID(dev.Namespace, ch.Metadata.Name)
			st, err := sched.Lookup(ctx, ids[cert])
			if err != nil {
				t.Fatal(err)
			}
			if st == scheduler.StateInflight && !ch.Status.Presented {
				return false // not stuck yet
			}
			states[cert] = st
		}
		switch {
		case states["stuck-1"] == scheduler.StateInflight && states["stuck-2"] == scheduler.StateQueued:
			first, second = "stuck-1", "stuck-2"
		case states["stuck-2"] == scheduler.StateInflight && states["stuck-1"] == scheduler.StateQueued:
			first, second = "stuck-2", "stuck-1"
		default:
			return false
		}
		id1, id2 = ids[first], ids[second]
		ch1, ch2 = challengeOf(first), challengeOf(second)
		return ch1 != nil && ch2 != nil
	})
	t.Logf("%s (%s) holds the lock; %s (%s) is queued behind it", id1, first, id2, second)

	// Both time out in turn: every certificate fails.
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	defer wcancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, []string{"stuck-1", "stuck-2"})
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("waiting for the certificates to fail: %v", err)
	}
	for _, cert := range []string{"stuck-1", "stuck-2"} {
		r := res[cert]
		if r.Ready || !strings.Contains(r.Message, "ACMEQ_CHALLENGE_TIMEOUT") {
			t.Errorf("certificate %s: ready %v, message %q; want failed by ACMEQ_CHALLENGE_TIMEOUT", cert, r.Ready, r.Message)
		}
	}

	for _, c := range []struct {
		cert, id string
		ch       *messages.Challenge
	}{{first, id1, ch1}, {second, id2, ch2}} {
		ch := c.ch
		name := ch.Metadata.Name
		// The failed challenge is removed once its order is final; what it
		// went through stays in its events.
		stacktest.Eventually(t, 10*time.Second, func() error {
			ok, err := env.Store.Exists(ctx, messages.KindChallenge, dev.Namespace, name)
			if err != nil {
				return fmt.Errorf("challenge %s: %w", name, err)
			}
			if ok {
				return fmt.Errorf("challenge %s still stored after its order failed", name)
			}
			return nil
		})
		evs := assertReasons(t, ctx, env, messages.KindChallenge, name, []string{"Started", "Presented", "TimedOut"})
		started, to := evs[0], evs[2]
		if to.Type != messages.EventWarning || !strings.Contains(to.Message, "ACMEQ_CHALLENGE_TIMEOUT") || !strings.Contains(to.Message, timeout.String()) {
			t.Errorf("challenge %s TimedOut event = %+v; want a Warning naming ACMEQ_CHALLENGE_TIMEOUT (%s)", name, to, timeout)
		}
		if stuck := to.LastTimestamp.Sub(started.LastTimestamp); stuck < timeout || stuck > timeout+10*time.Second {
			t.Errorf("challenge %s timed out %s after it was scheduled; want just over %s", name, stuck, timeout)
		} else {
			t.Logf("challenge %s: scheduled %s, timed out %s later: %s", name, started.LastTimestamp.Format(time.StampMilli), stuck.Round(time.Millisecond), to.Message)
		}

		order := &messages.Order{}
		if err := env.Store.Get(ctx, dev.Namespace, ch.Metadata.OwnerReference.Name, order); err != nil {
			t.Fatal(err)
		}
		if order.Status.State == messages.StateValid || !order.Status.State.Failed() || !strings.Contains(order.Status.Reason, "ACMEQ_CHALLENGE_TIMEOUT") {
			t.Errorf("order %s: state %q reason %q; want failed because of the challenge's deadline", order.Metadata.Name, order.Status.State, order.Status.Reason)
		}
		cr := &messages.CertificateRequest{}
		if err := env.Store.Get(ctx, dev.Namespace, worker.RequestName(c.cert, 1), cr); err != nil {
			t.Fatal(err)
		}
		if cr.Status.FailureTime == nil || messages.IsReady(cr.Status.Conditions) {
			t.Errorf("request %s: failureTime %v, ready %v; want failed", cr.Metadata.Name, cr.Status.FailureTime, messages.IsReady(cr.Status.Conditions))
		}
		cert := &messages.Certificate{}
		if err := env.Store.Get(ctx, dev.Namespace, c.cert, cert); err != nil {
			t.Fatal(err)
		}
		if cert.Status.LastFailureTime == nil || messages.IsReady(cert.Status.Conditions) {
			t.Errorf("certificate %s: lastFailureTime %v, ready %v; want failed", c.cert, cert.Status.LastFailureTime, messages.IsReady(cert.Status.Conditions))
		}
		if st, err := sched.Lookup(ctx, c.id); err != nil || st != scheduler.StateUnknown {
			t.Errorf("Lookup(%s) = %q, %v; want unknown (released)", c.id, st, err)
		}
	}

	// The slots and the lock are free.
	backlog, inflight, err := sched.Counts(ctx)
	if err != nil || backlog != 0 || inflight != 0 {
		t.Errorf("scheduler Counts = backlog %d, in flight %d, %v; want 0, 0", backlog, inflight, err)
	}
	prefix := sched.Config().Prefix
	if n, err := rdb.HLen(ctx, prefix+"locks").Result(); err != nil || n != 0 {
		t.Errorf("%d locks held (%v), want none", n, err)
	}

	// The handover, in the order the scripts ran: the second challenge was
	// enqueued while the first held the lock, and granted only after the
	// first was released (not reaped).
	entries, err := rdb.XRange(ctx, sched.AuditKey(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	lock := scheduler.LockKey("HTTP-01", dnsName)
	at := map[string]int{} // "<ev> <1|2>" -> position of its first entry
	var seen []string
	for i, e := range entries {
		id, _ := e.Values["id"].(string)
		if id != id1 && id != id2 {
			continue
		}
		if l, _ := e.Values["lock"].(string); l != lock {
			t.Errorf("audit %v: lock %q, want %q", e.Values, l, lock)
		}
		ev := e.Values["ev"].(string) + " " + map[string]string{id1: "1", id2: "2"}[id]
		seen = append(seen, ev)
		if _, ok := at[ev]; !ok {
			at[ev] = i
		}
	}
	t.Logf("scheduler audit of the two challenges: %v", seen)
	for _, w := range [][2]string{
		{"enqueue 1", "grant 1"}, {"grant 1", "release 1"},
		{"enqueue 2", "release 1"}, // 2 waited for the lock ...
		{"release 1", "grant 2"},   // ... and got it once 1 was released
		{"grant 2", "release 2"},
	} {
		a, aok := at[w[0]]
		b, bok := at[w[1]]
		if !aok || !bok || a >= b {
			t.Errorf("scheduler audit: want %q before %q; got %v", w[0], w[1], seen)
		}
	}
	if len(seen) != 6 {
		t.Errorf("scheduler audit: %d entries for the two challenges, want 6 (no reap, no second grant): %v", len(seen), seen)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test context expired")
	}

	// The events of the fleet name the deadline once per challenge.
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	timedOut := 0
	for _, e := range evs {
		if e.Reason == messages.ReasonTimedOut {
			timedOut++
		}
	}
	if timedOut != 2 {
		t.Errorf("%d TimedOut events, want 2", timedOut)
	}
}
