// Package worker consumes acmeq's transitions and reconciles Issuers,
// Certificates, CertificateRequests, Orders and Challenges. Every worker
// process is identical: one durable pull consumer per kind is shared by the
// whole fleet, and a handler reads the resource, checks the transition still
// applies, does the side effect, commits the status with compare-and-set,
// publishes the next transition (deduplicated by Nats-Msg-Id), records
// events and only then acks. A crash anywhere is healed by redelivery.
//
// The files follow the resources: executor.go maps messages to handlers and
// outcomes to the queue; issuer.go, certificate.go (with renewal.go, the
// renewal policy, and keys.go), request.go, order.go and challenge.go are
// the reconcilers; maintenance.go is the fleet's background service (reap,
// grant, resync).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
	maint   *Maintenance
	panics  *panicCounter
	redis   *healthLog
	// budgets keep the fleet within the CAs' rate limits; budgetsUsed is
	// set once this worker has seen an Issuer that budgets something (it
	// then serves waiting orders on every tick); paused holds the 429
	// pauses of CAs whose Issuers budget nothing.
	budgets     *scheduler.Budgets
	budgetsUsed atomic.Bool
	paused      caPauses

	stopOnce sync.Once
	cancel   context.CancelCauseFunc
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
	budgets, err := scheduler.NewBudgets(rdb, scheduler.BudgetConfig{Prefix: sched.Config().Prefix})
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
		for _, c := range append(m.collectors(), newFleetCollector(sched, budgets)) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("worker: register metrics: %w", err)
			}
		}
	}
	log := cfg.Logger.With("worker", cfg.Name)
	w := &Worker{
		metrics: m,
		cfg:     cfg,
		log:     log,
		js:      js,
		store:   st,
		bus:     bus.New(js, cfg.Name),
		sched:   sched,
		rdb:     rdb,
		acme:    newACMECache(st, m.observeACME, cfg.ClusterResourceNamespace),
		check:   check,
		panics:  newPanicCounter(),
		budgets: budgets,
		redis:   newHealthLog(log, "redis", cfg.TickInterval),
	}
	w.maint = newMaintenance(w)
	return w, nil
}

// Scheduler returns the worker's scheduler (for metrics and tests).
func (w *Worker) Scheduler() *scheduler.Scheduler { return w.sched }

// Maintenance returns the worker's background service: reaper, grant tick
// and resync (tests run its steps directly).
func (w *Worker) Maintenance() *Maintenance { return w.maint }

// Start creates what is missing (streams, buckets, consumers) and starts
// consuming and the maintenance service. It returns once consuming has
// begun.
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
		if err := w.consume(ctx, runCtx, k); err != nil {
			return err
		}
	}
	if err := w.maint.Start(runCtx); err != nil {
		return err
	}
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "cap", w.sched.Config().Cap, "ack_wait", w.cfg.AckWait)
	return nil
}

// consume starts the fleet's shared consumer of kind k, handling at most
// Concurrency messages at once.
func (w *Worker) consume(ctx, runCtx context.Context, k messages.Kind) error {
	cons, err := w.js.CreateOrUpdateConsumer(ctx, messages.WorkStream, ConsumerConfig(k, w.cfg.AckWait))
	if err != nil {
		return fmt.Errorf("worker: create consumer for %s: %w", k, err)
	}
	sem := make(chan struct{}, w.cfg.Concurrency)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		// JetStream's AckWait for the message runs from its delivery, a
		// moment before now (see progressor).
		received := time.Now()
		sem <- struct{}{}
		w.inflight.Add(1)
		go func() {
			defer func() { <-sem; w.inflight.Done() }()
			w.handle(runCtx, k, msg, received)
		}()
	}, jetstream.PullMaxMessages(w.cfg.Concurrency*2), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			w.log.Debug("consume", "kind", k, "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("worker: consume %s: %w", k, err)
	}
	w.consumes = append(w.consumes, cc)
	return nil
}

// Stop drains: no new messages are taken, in-flight handlers finish (or,
// past the deadline of ctx, are cancelled and their messages nak'ed so
// another worker takes them at once). The maintenance service stops too.
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
		w.maint.Stop()
		w.log.Info("worker stopped")
	})
}

// ConsumerName is the durable consumer shared by the fleet for kind k.
func ConsumerName(k messages.Kind) string { return "acmeq-" + k.Token() }

// ConsumerConfig is the configuration of the fleet's shared consumer of
// kind k, as every worker creates it.
func ConsumerConfig(k messages.Kind, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(k),
		Description:   "acmeq " + string(k) + " reconciler, shared by every worker",
		FilterSubject: messages.WorkFilter(k),
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Short, so a dead worker's messages come back within seconds; a
		// busy handler extends it with InProgress at every step.
		AckWait:    ackWait,
		MaxDeliver: -1,
		// Delayed retries (self-checks, polls, waits for an issuer) count
		// as pending acks: no limit, the pull size bounds the work in hand.
		MaxAckPending: -1,
	}
}

func defaultName() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// record publishes an event; a failure is logged, not fatal: the status
// write already happened and is the source of truth.
func (w *Worker) record(ctx context.Context, obj messages.Object, typ messages.EventType, reason, msg string) {
	if err := w.bus.Record(ctx, obj, typ, reason, msg); err != nil {
		logger(ctx).Warn("record event", "reason", reason, "err", err)
	}
}

// publish sends the next transition of a resource. generation makes the
// Nats-Msg-Id unique per cause (see messages.Transition.MsgID).
func (w *Worker) publish(ctx context.Context, k messages.Kind, ns, name string, action messages.Action, cause, generation string) error {
	return w.bus.Publish(ctx, messages.Transition{Kind: k, Namespace: ns, Name: name, Action: action, Cause: cause}, generation)
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
