package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// reconciler handles one transition of its kind.
type reconciler func(w *Worker, ctx context.Context, t messages.Transition) (Outcome, error)

var reconcilers = map[messages.Kind]reconciler{
	messages.KindIssuer:             (*Worker).reconcileIssuer,
	messages.KindClusterIssuer:      (*Worker).reconcileIssuer,
	messages.KindCertificate:        (*Worker).reconcileCertificate,
	messages.KindCertificateRequest: (*Worker).reconcileRequest,
	messages.KindOrder:              (*Worker).reconcileOrder,
	messages.KindChallenge:          (*Worker).reconcileChallenge,
}

// handle runs one message through its reconciler and reports the outcome.
// The handler's context is cancelled when it makes no progress for
// StepTimeout (below AckWait): a CA or nameserver that hangs cannot keep a
// message past AckWait, so two workers never run the same step at once.
// Each finished step calls progress, which extends that deadline and tells
// JetStream the message is still in hand (InProgress).
func (w *Worker) handle(ctx context.Context, kind messages.Kind, msg jetstream.Msg, received time.Time) {
	var delivered uint64 = 1
	var seq uint64
	var published time.Time
	if md, err := msg.Metadata(); err == nil {
		delivered, seq, published = md.NumDelivered, md.Sequence.Stream, md.Timestamp
	}
	t, err := decodeMessage(kind, msg)
	if err != nil {
		w.poison(ctx, kind, msg, err.Error())
		return
	}
	start := time.Now()
	defer func() { w.metrics.handleTime.WithLabelValues(kind.Token()).Observe(time.Since(start).Seconds()) }()
	log := w.log.With("kind", string(t.Kind), "namespace", t.Namespace, "name", t.Name, "action", string(t.Action))
	mctx := context.WithValue(context.WithValue(ctx, deliveredKey{}, delivered), publishedKey{}, published)
	hctx, stop := w.handlerContext(withLogger(mctx, log), msg, received)
	defer stop()

	out, err := w.run(hctx, kind, t, msg, seq)
	if err != nil {
		if isShutdown(ctx, err) {
			// Not an attempt: the message goes back at once.
			_ = msg.Nak()
			return
		}
		out = w.errorOutcome(kind, err, delivered, log)
	}
	w.report(ctx, kind, msg, out, log)
}

// run calls the reconciler, turning a panic into an outcome: retried with
// back-off, and after MaxPanics panics on the same message, poison.
func (w *Worker) run(ctx context.Context, kind messages.Kind, t messages.Transition, msg jetstream.Msg, seq uint64) (out Outcome, err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		n := w.panics.add(kind, seq)
		w.metrics.handled.WithLabelValues(kind.Token(), "panic").Inc()
		logger(ctx).Error("handler panicked", "panic", fmt.Sprint(r), "panics", n, "subject", msg.Subject(),
			"payload", truncate(string(msg.Data()), 512), "stack", string(debug.Stack()))
		if n >= w.cfg.MaxPanics {
			w.panics.forget(kind, seq)
			out, err = Poison(fmt.Sprintf("the handler panicked %d times on this message: %v", n, r)), nil
			return
		}
		out, err = RetryAfter(backoff(uint64(n))), nil
	}()
	out, err = reconcilers[kind](w, ctx, t)
	if err == nil {
		w.panics.forget(kind, seq)
	}
	return out, err
}

// errorOutcome maps a handler error to an outcome: a resource that is gone
// needs nothing more; a lost CAS race is retried at once; anything else
// with back-off by delivery count (a transient failure of NATS, Redis or
// the CA that the reconciler did not handle as a step failure).
func (w *Worker) errorOutcome(kind messages.Kind, err error, delivered uint64, log *slog.Logger) Outcome {
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Debug("resource gone, dropping transition", "err", err)
		return Done()
	case errors.Is(err, store.ErrConflict):
		return RetryAfter(0)
	}
	w.metrics.handled.WithLabelValues(kind.Token(), "error").Inc()
	out := RetryAfter(backoff(delivered))
	if errors.Is(err, scheduler.ErrUnavailable) {
		// One line per back-off for the whole worker, not one per message.
		w.redis.failed(err)
		return out
	}
	log.Warn("reconcile failed, will retry", "err", err, "delivered", delivered, "retry_in", out.delay)
	return out
}

// decodeMessage reads a transition and checks it names the resource of the
// subject it came on; errors wrap messages.ErrMalformed.
func decodeMessage(kind messages.Kind, msg jetstream.Msg) (messages.Transition, error) {
	t, err := messages.DecodeTransition(msg.Data())
	if err != nil {
		return t, err
	}
	if t.Kind != kind {
		return t, fmt.Errorf("%w: kind %q on the %s consumer", messages.ErrMalformed, t.Kind, kind)
	}
	if t.Subject() != msg.Subject() {
		return t, fmt.Errorf("%w: the payload names %s %s/%s but was published on %q", messages.ErrMalformed,
			t.Kind, t.Namespace, t.Name, truncate(msg.Subject(), 256))
	}
	return t, nil
}

// handlerContext returns the handler's context, cancelled after StepTimeout
// without progress, and the function that releases it. received is when
// the message arrived: its AckWait has run since about then.
func (w *Worker) handlerContext(ctx context.Context, msg jetstream.Msg, received time.Time) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(w.cfg.StepTimeout, func() {
		cancel(fmt.Errorf("%w: no progress for %s", context.DeadlineExceeded, w.cfg.StepTimeout))
	})
	// The message was just delivered: its AckWait started then, so the
	// first InProgress is due StepTimeout/4 after that, not at the first
	// step (most handlers finish well within it, and an InProgress sent
	// at their first step extends nothing).
	p := &progressor{msg: msg, timer: timer, d: w.cfg.StepTimeout, last: received}
	return context.WithValue(ctx, progressKey{}, p), func() { timer.Stop(); cancel(nil) }
}

type progressKey struct{}

type deliveredKey struct{}

// publishedKey holds when JetStream stored the message being handled (its
// server's clock).
type publishedKey struct{}

// publishedWithin reports whether the message being handled was stored
// less than d ago, by this host's clock. Unknown, or in the future (clocks
// apart), is not within.
func publishedWithin(ctx context.Context, d time.Duration) bool {
	t, ok := ctx.Value(publishedKey{}).(time.Time)
	if !ok || t.IsZero() {
		return false
	}
	age := time.Since(t)
	return age >= 0 && age < d
}

// firstDelivery reports whether the message being handled is delivered for
// the first time (not a redelivery after a nak, a delay or a dead worker).
func firstDelivery(ctx context.Context) bool {
	n, ok := ctx.Value(deliveredKey{}).(uint64)
	return !ok || n <= 1
}

type progressor struct {
	msg   jetstream.Msg
	timer *time.Timer
	d     time.Duration
	mu    sync.Mutex
	last  time.Time
}

// progress tells the handler's deadline and JetStream that a step
// finished: the handler gets another StepTimeout, and the message's
// AckWait starts again (InProgress, sent at most every StepTimeout/4,
// counted from the message's arrival).
func progress(ctx context.Context) {
	p, ok := ctx.Value(progressKey{}).(*progressor)
	if !ok {
		return
	}
	p.timer.Reset(p.d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.last) >= p.d/4 {
		p.last = now
		_ = p.msg.InProgress()
	}
}

func (w *Worker) report(ctx context.Context, kind messages.Kind, msg jetstream.Msg, out Outcome, log *slog.Logger) {
	w.metrics.handled.WithLabelValues(kind.Token(), outcomeLabel(out)).Inc()
	var err error
	switch out.kind {
	case outcomeDone:
		err = msg.Ack()
	case outcomeRetry:
		err = nak(msg, out.delay)
	case outcomePoison:
		w.poison(ctx, kind, msg, out.reason)
		return
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("report outcome", "err", err)
	}
}

// poison terminates a message that can never be processed, recording a
// Warning event on the resource its subject names (never one named by the
// bad payload) and keeping it in the dead-letter stream.
func (w *Worker) poison(ctx context.Context, kind messages.Kind, msg jetstream.Msg, reason string) {
	ctx = context.WithoutCancel(ctx)
	reason = truncate(reason, 1024)
	w.log.Error("poison message", "subject", truncate(msg.Subject(), 256), "reason", reason)
	if err := w.bus.DeadLetter(ctx, kind, msg.Subject(), msg.Data(), reason); err != nil {
		// Not recorded: leave it to be redelivered rather than lose it.
		w.log.Error("dead letter failed", "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	ref := subjectObject(kind, msg.Subject())
	_ = w.bus.Record(ctx, ref, messages.EventWarning, messages.ReasonPoisonMessage,
		fmt.Sprintf("Message on %q could not be processed and was moved to %s: %s", truncate(msg.Subject(), 256), messages.DeadLetterStream, reason))
	_ = msg.TermWithReason(truncate(reason, 256))
}

// subjectObject is the resource a work subject names
// (acmeq.work.<kind>.<namespace>.<name>); the consumer filters admit only
// that shape, so the tokens are there, and they are valid subject tokens.
func subjectObject(kind messages.Kind, subject string) messages.Object {
	ref := &eventRef{kind: kind}
	ref.meta.Namespace, ref.meta.Name = "unknown", "unknown"
	if parts := strings.Split(subject, "."); len(parts) == 5 {
		ref.meta.Namespace, ref.meta.Name = parts[3], parts[4]
	}
	return ref
}

// eventRef is an Object standing for a resource that could not be read
// (the target of a poison message).
type eventRef struct {
	kind messages.Kind
	meta messages.ObjectMeta
}

func (e *eventRef) GetMeta() *messages.ObjectMeta { return &e.meta }
func (e *eventRef) GetKind() messages.Kind        { return e.kind }

// truncate bounds a value echoed into logs, reasons and events.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// panicCounter counts the panics of each message (by stream sequence) in
// this process. A message that panics everywhere is poisoned after at most
// MaxPanics panics per worker.
type panicCounter struct {
	mu sync.Mutex
	m  map[panicKey]int
}

type panicKey struct {
	kind messages.Kind
	seq  uint64
}

// maxPanicEntries bounds the counter: past it, it starts over.
const maxPanicEntries = 4096

func newPanicCounter() *panicCounter { return &panicCounter{m: map[panicKey]int{}} }

func (p *panicCounter) add(kind messages.Kind, seq uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) >= maxPanicEntries {
		clear(p.m)
	}
	p.m[panicKey{kind, seq}]++
	return p.m[panicKey{kind, seq}]
}

func (p *panicCounter) forget(kind messages.Kind, seq uint64) {
	p.mu.Lock()
	delete(p.m, panicKey{kind, seq})
	p.mu.Unlock()
}

// healthLog reports a dependency that keeps failing in one log line per
// back-off (doubling from the first interval up to a minute), and one line
// when it is back, instead of a line for every failed call.
type healthLog struct {
	log   *slog.Logger
	name  string
	first time.Duration

	mu       sync.Mutex
	down     bool
	failures int
	next     time.Time
	backoff  time.Duration
}

func newHealthLog(log *slog.Logger, name string, first time.Duration) *healthLog {
	return &healthLog{log: log, name: name, first: max(first, time.Second)}
}

// failed notes a failure; it logs when the back-off since the last line
// has passed.
func (h *healthLog) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.failures++
	if !h.down {
		h.down, h.backoff, h.failures = true, h.first, 1
		h.next = now
	}
	if now.Before(h.next) {
		return
	}
	h.log.Warn(h.name+" unreachable, retrying", "err", err, "failures", h.failures, "next_report_in", h.backoff)
	h.next = now.Add(h.backoff)
	h.backoff = min(2*h.backoff, time.Minute)
}

// ok notes a success; after failures it logs that the dependency is back.
func (h *healthLog) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		h.log.Info(h.name+" reachable again", "failures", h.failures)
		h.down, h.failures = false, 0
	}
}
