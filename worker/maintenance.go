package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// Maintenance is a worker's background service: every TickInterval it
// reaps expired challenge leases and runs the grant script, and once per
// ResyncInterval one worker of the fleet (whoever takes the turn in Redis)
// re-enqueues the unfinished challenges the scheduler lost. Its cost is
// O(challenges in flight): finished challenges are deleted with their
// order, and everything else that waits does so as a queued or scheduled
// message, which Redis cannot lose.
//
// While Redis fails, the ticks back off (doubling up to a minute) and the
// worker logs one line per back-off.
type Maintenance struct {
	w *Worker

	mu      sync.Mutex
	ticks   uint64
	tickSig chan struct{} // closed and replaced after every tick
	stop    context.CancelFunc
	done    chan struct{}
}

func newMaintenance(w *Worker) *Maintenance {
	return &Maintenance{w: w, tickSig: make(chan struct{})}
}

// Start runs the loop until Stop or ctx ends.
func (m *Maintenance) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	m.stop, m.done = cancel, make(chan struct{})
	go m.loop(ctx)
	return nil
}

// Stop ends the loop and waits for it.
func (m *Maintenance) Stop() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.done
}

func (m *Maintenance) loop(ctx context.Context) {
	defer close(m.done)
	wait := m.w.cfg.TickInterval
	for {
		if err := m.RunOnce(ctx); err != nil && ctx.Err() == nil {
			// Back off while Redis fails; the health log says so once per
			// back-off.
			wait = min(2*wait, time.Minute)
		} else {
			wait = m.w.cfg.TickInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// RunOnce is one tick: reap, grant, and the resync when this worker takes
// the fleet's turn. Tests call it directly.
func (m *Maintenance) RunOnce(ctx context.Context) error {
	defer m.ticked()
	w := m.w
	reaped, err := w.sched.Reap(ctx, 0)
	if err != nil {
		w.redis.failed(err)
		return err
	}
	w.redis.ok()
	w.metrics.reaped.Add(float64(len(reaped)))
	if len(reaped) > 0 {
		w.log.Info("reaped expired challenge leases", "count", len(reaped), "ids", reaped)
	}
	w.grant(ctx)
	if w.budgetsUsed.Load() {
		w.serveBudgets(ctx)
	}
	if m.takeResyncTurn(ctx) {
		if err := w.Resync(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("resync", "err", err)
		}
	}
	return nil
}

// WaitTick returns after the next tick has finished, or when ctx ends.
func (m *Maintenance) WaitTick(ctx context.Context) error {
	m.mu.Lock()
	sig := m.tickSig
	m.mu.Unlock()
	select {
	case <-sig:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Maintenance) ticked() {
	m.mu.Lock()
	m.ticks++
	close(m.tickSig)
	m.tickSig = make(chan struct{})
	m.mu.Unlock()
}

// takeResyncTurn lets one worker of the fleet resync per interval. The key
// lives in Redis: when Redis restarts empty the key is gone too, so the
// next tick resyncs at once, which is exactly when it is needed.
func (m *Maintenance) takeResyncTurn(ctx context.Context) bool {
	w := m.w
	ok, err := w.rdb.SetNX(ctx, w.sched.Config().Prefix+"resync", w.cfg.Name, w.cfg.ResyncInterval).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false
	}
	return ok
}

// grant runs the grant script and publishes a "scheduled" transition for
// each challenge granted. A grant whose message is lost (crash between the
// two) comes back by lease expiry. Errors are logged: the tick retries.
func (w *Worker) grant(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for {
		grants, err := w.sched.Grant(ctx, 0)
		if err != nil {
			w.redis.failed(err)
			return
		}
		w.metrics.grants.Add(float64(len(grants)))
		for _, g := range grants {
			if g.Score > 0 {
				w.metrics.grantWait.Observe(g.At.Sub(time.UnixMilli(g.Score)).Seconds())
			}
			ns, name, _ := strings.Cut(g.ID, "/")
			// Seq restarts when Redis loses its data; the grant time keeps
			// the message ID unique across that.
			gen := strconv.FormatInt(g.Seq, 10) + "-" + strconv.FormatInt(g.At.UnixMilli(), 10)
			if err := w.publish(ctx, messages.KindChallenge, ns, name, messages.ActionScheduled, "", gen); err != nil {
				logger(ctx).Warn("publish scheduled challenge; its lease will expire and be reaped", "challenge", g.ID, "err", err)
			}
		}
		if len(grants) < w.sched.Config().Cap {
			return
		}
	}
}

// Resync re-enqueues every unfinished challenge the scheduler does not
// know (Redis restarted empty, or a crash between create and enqueue). It
// reads the Challenge bucket, which holds only the challenges of orders in
// flight, and asks Redis about all of them in one pipeline.
func (w *Worker) Resync(ctx context.Context) error {
	start := time.Now()
	chs, err := w.store.List(ctx, messages.KindChallenge, "")
	if err != nil {
		return err
	}
	var open []*messages.Challenge
	var ids []string
	for _, o := range chs {
		ch := o.(*messages.Challenge)
		if ChallengePhase(ch.Status) == PhaseDone {
			continue
		}
		open = append(open, ch)
		ids = append(ids, scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name))
	}
	states, err := w.sched.LookupMany(ctx, ids)
	if err != nil {
		return err
	}
	var items []scheduler.Item
	for i, st := range states {
		if st == scheduler.StateUnknown {
			items = append(items, schedItem(open[i]))
		}
	}
	if _, err := w.sched.Enqueue(ctx, items...); err != nil {
		return err
	}
	w.grant(ctx)
	w.log.Info("resync done", "challenges", len(chs), "unfinished", len(open), "requeued", len(items), "took", time.Since(start))
	return nil
}
