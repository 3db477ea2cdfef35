// Package worker consumes acmeq's transitions and reconciles Issuers,
// Certificates, CertificateRequests, Orders and Challenges. Every worker
// process is identical: one durable pull consumer per kind is shared by the
// whole fleet, and a handler reads the resource, checks the transition still
// applies, does the side effect, commits the status with compare-and-set,
// publishes the next transition (deduplicated by Nats-Msg-Id), records
// events and only then acks. A crash anywhere is healed by redelivery.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/http01"
)

// Worker is one member of the fleet.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	store   *store.Store
	bus     *bus.Bus
	sched   *scheduler.Scheduler
	rdb     redis.UniversalClient
	acme    *acmeCache
	metrics *metrics
	http01  *http01.Presenter
	check   solvers.SelfChecker

	stopOnce sync.Once
	cancel   context.CancelCauseFunc
	wg       sync.WaitGroup
	consumes []jetstream.ConsumeContext
	inflight sync.WaitGroup
}

// ErrShutdown is the cause of a worker's context when it is stopped.
var ErrShutdown = errors.New("worker: shutting down")

// New builds a worker. The streams, buckets and consumers are created by
// Start, idempotently.
func New(js jetstream.JetStream, st *store.Store, rdb redis.UniversalClient, cfg Config) (*Worker, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sched, err := scheduler.New(rdb, cfg.Scheduler)
	if err != nil {
		return nil, err
	}
	resolve := cfg.Resolve
	if resolve == nil {
		resolve = systemResolve
	}
	check, err := http01.NewSelfCheck(http01.SelfCheckConfig{Port: cfg.HTTP01Port, Resolve: resolve})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	m := newMetrics()
	if cfg.Registerer != nil {
		for _, c := range append(m.collectors(), newFleetCollector(sched)) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("worker: register metrics: %w", err)
			}
		}
	}
	w := &Worker{
		metrics: m,
		cfg:     cfg,
		log:     cfg.Logger.With("worker", cfg.Name),
		js:      js,
		store:   st,
		bus:     bus.New(js, cfg.Name),
		sched:   sched,
		rdb:     rdb,
		acme:    newACMECache(st, m.observeACME),
		check:   check,
	}
	return w, nil
}

// Scheduler returns the worker's scheduler (for metrics and tests).
func (w *Worker) Scheduler() *scheduler.Scheduler { return w.sched }

// Start creates what is missing (streams, buckets, consumers) and starts
// consuming. It returns once consuming has begun.
func (w *Worker) Start(ctx context.Context) error {
	if err := bus.EnsureStreams(ctx, w.js, bus.Config{Replicas: w.cfg.Replicas}); err != nil {
		return err
	}
	if err := w.store.CheckReplicas(ctx, w.cfg.Replicas); err != nil {
		return err
	}
	kv, err := http01.EnsureBucketReplicas(ctx, w.js, w.cfg.Replicas)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.http01 = http01.NewPresenter(kv)

	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	w.cancel = cancel
	for _, k := range messages.ReconciledKinds {
		cons, err := w.js.CreateOrUpdateConsumer(ctx, messages.WorkStream, jetstream.ConsumerConfig{
			Durable:       ConsumerName(k),
			Description:   "acmeq " + string(k) + " reconciler, shared by every worker",
			FilterSubject: messages.WorkFilter(k),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.cfg.AckWait,
			MaxDeliver:    -1,
			// Delayed retries (self-checks, polls, waits for an issuer)
			// count as pending acks: no limit, the pull size bounds the
			// work in hand.
			MaxAckPending: -1,
		})
		if err != nil {
			return fmt.Errorf("worker: create consumer for %s: %w", k, err)
		}
		sem := make(chan struct{}, w.cfg.Concurrency)
		kind := k
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			sem <- struct{}{}
			w.inflight.Add(1)
			go func() {
				defer func() { <-sem; w.inflight.Done() }()
				w.handle(runCtx, kind, msg)
			}()
		}, jetstream.PullMaxMessages(w.cfg.Concurrency*2), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Debug("consume", "kind", kind, "err", err)
			}
		}))
		if err != nil {
			return fmt.Errorf("worker: consume %s: %w", k, err)
		}
		w.consumes = append(w.consumes, cc)
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.tickLoop(runCtx) }()
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "cap", w.sched.Config().Cap)
	return nil
}

// Stop drains: no new messages are taken, in-flight handlers finish (or,
// past the deadline of ctx, are cancelled and their messages nak'ed so
// another worker takes them at once).
func (w *Worker) Stop(ctx context.Context) {
	w.stopOnce.Do(func() {
		for _, cc := range w.consumes {
			cc.Stop()
		}
		done := make(chan struct{})
		go func() { w.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		if w.cancel != nil {
			w.cancel(ErrShutdown)
		}
		<-done
		w.wg.Wait()
		w.log.Info("worker stopped")
	})
}

// ConsumerName is the durable consumer shared by the fleet for kind k.
func ConsumerName(k messages.Kind) string { return "acmeq-" + k.Token() }

func defaultName() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// handle runs one message through its reconciler and reports the outcome.
func (w *Worker) handle(ctx context.Context, kind messages.Kind, msg jetstream.Msg) {
	var delivered uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	t, err := messages.DecodeTransition(msg.Data())
	if err == nil && t.Kind != kind {
		err = fmt.Errorf("%w: kind %q on the %s consumer", messages.ErrMalformed, t.Kind, kind)
	}
	if err != nil {
		w.poison(ctx, kind, msg, t, err.Error())
		return
	}
	start := time.Now()
	defer func() { w.metrics.handleTime.WithLabelValues(kind.Token()).Observe(time.Since(start).Seconds()) }()
	log := w.log.With("kind", string(t.Kind), "namespace", t.Namespace, "name", t.Name, "action", string(t.Action))
	hctx := withLogger(ctx, log)
	var out Outcome
	switch kind {
	case messages.KindIssuer:
		out, err = w.reconcileIssuer(hctx, t, delivered)
	case messages.KindCertificate:
		out, err = w.reconcileCertificate(hctx, t, delivered)
	case messages.KindCertificateRequest:
		out, err = w.reconcileRequest(hctx, t, delivered)
	case messages.KindOrder:
		out, err = w.reconcileOrder(hctx, t, delivered)
	case messages.KindChallenge:
		out, err = w.reconcileChallenge(hctx, t, delivered)
	}
	if err != nil {
		if isShutdown(ctx, err) {
			_ = msg.Nak()
			return
		}
		if errors.Is(err, store.ErrNotFound) {
			log.Debug("resource gone, dropping transition", "err", err)
			out = Done()
		} else {
			w.metrics.handled.WithLabelValues(kind.Token(), "error").Inc()
			out = errorOutcome(err, delivered)
			log.Warn("reconcile failed, will retry", "err", err, "delivered", delivered, "retry_in", out.delay)
		}
	}
	w.report(ctx, kind, msg, t, out, log)
}

func (w *Worker) report(ctx context.Context, kind messages.Kind, msg jetstream.Msg, t messages.Transition, out Outcome, log *slog.Logger) {
	w.metrics.handled.WithLabelValues(kind.Token(), outcomeLabel(out)).Inc()
	var err error
	switch out.kind {
	case outcomeDone:
		err = msg.Ack()
	case outcomeRetry:
		err = nak(msg, out.delay)
	case outcomePoison:
		w.poison(ctx, kind, msg, t, out.reason)
		return
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("report outcome", "err", err)
	}
}

// poison terminates a message that can never be processed, recording a
// Warning event and keeping it in the dead-letter stream.
func (w *Worker) poison(ctx context.Context, kind messages.Kind, msg jetstream.Msg, t messages.Transition, reason string) {
	ctx = context.WithoutCancel(ctx)
	w.log.Error("poison message", "subject", msg.Subject(), "reason", reason)
	if err := w.bus.DeadLetter(ctx, kind, msg.Subject(), msg.Data(), reason); err != nil {
		// Not recorded: leave it to be redelivered rather than lose it.
		w.log.Error("dead letter failed", "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	ref := involvedFromSubject(kind, msg.Subject(), t)
	_ = w.bus.Record(ctx, ref, messages.EventWarning, messages.ReasonPoisonMessage,
		fmt.Sprintf("Message on %q could not be processed and was moved to %s: %s", msg.Subject(), messages.DeadLetterStream, reason))
	_ = msg.TermWithReason(reason)
}

type logKey struct{}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, logKey{}, l)
}

func logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// incarnation distinguishes a resource from an earlier one of the same name
// (deleted and created again) in Nats-Msg-Ids: without it, the transitions
// of the new one would be dropped as duplicates within the window.
func incarnation(m *messages.ObjectMeta) string {
	return strconv.FormatInt(m.CreationTimestamp.UnixNano(), 36)
}
