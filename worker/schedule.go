package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// grant runs the grant script and publishes a "scheduled" transition for
// each challenge granted. A grant whose message is lost (crash between the
// two) comes back by lease expiry. Errors are logged: the tick loop retries.
func (w *Worker) grant(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for {
		grants, err := w.sched.Grant(ctx, 0)
		if err != nil {
			logger(ctx).Warn("grant challenges", "err", err)
			return
		}
		w.metrics.grants.Add(float64(len(grants)))
		for _, g := range grants {
			if g.Score > 0 {
				w.metrics.grantWait.Observe(g.At.Sub(time.UnixMilli(g.Score)).Seconds())
			}
			ns, name, _ := strings.Cut(g.ID, "/")
			t := messages.Transition{Kind: messages.KindChallenge, Namespace: ns, Name: name, Action: messages.ActionScheduled}
			// Seq restarts when Redis loses its data; the grant time keeps
			// the message ID unique across that.
			if err := w.bus.Publish(ctx, t, strconv.FormatInt(g.Seq, 10)+"-"+strconv.FormatInt(g.At.UnixMilli(), 10)); err != nil {
				logger(ctx).Warn("publish scheduled challenge; its lease will expire and be reaped", "challenge", g.ID, "err", err)
			}
		}
		if len(grants) < w.sched.Config().Cap {
			return
		}
	}
}

// tickLoop reaps expired leases and grants, every TickInterval, and runs
// the fleet-wide resync when this worker wins its turn.
func (w *Worker) tickLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.TickInterval)
	defer t.Stop()
	for {
		w.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) tick(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	reaped, err := w.sched.Reap(ctx, 0)
	if err != nil {
		w.log.Warn("reap leases", "err", err)
		return
	}
	w.metrics.reaped.Add(float64(len(reaped)))
	if len(reaped) > 0 {
		w.log.Info("reaped expired challenge leases", "count", len(reaped), "ids", reaped)
	}
	w.grant(ctx)
	if w.takeResyncTurn(ctx) {
		if err := w.Resync(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("resync", "err", err)
		}
	}
}

// takeResyncTurn lets one worker of the fleet resync per interval. The key
// lives in Redis: when Redis restarts empty the key is gone too, so the
// next tick resyncs at once, which is exactly when it is needed.
func (w *Worker) takeResyncTurn(ctx context.Context) bool {
	ok, err := w.rdb.SetNX(ctx, w.sched.Config().Prefix+"resync", w.cfg.Name, w.cfg.ResyncInterval).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false
	}
	return ok
}

// Resync compares the resources with the scheduler and the queue: every
// unfinished challenge missing from Redis is enqueued again, and every
// unfinished order, request and certificate gets a transition, so nothing
// the scheduler or the queue lost stays stuck.
func (w *Worker) Resync(ctx context.Context) error {
	start := time.Now()
	chs, err := w.store.List(ctx, messages.KindChallenge, "")
	if err != nil {
		return err
	}
	var items []scheduler.Item
	for _, o := range chs {
		ch := o.(*messages.Challenge)
		if ChallengePhase(ch.Status) == PhaseDone {
			continue
		}
		id := scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name)
		st, err := w.sched.Lookup(ctx, id)
		if err != nil {
			return err
		}
		if st == scheduler.StateUnknown {
			items = append(items, schedItem(ch))
		}
	}
	if _, err := w.sched.Enqueue(ctx, items...); err != nil {
		return err
	}
	epoch := strconv.FormatInt(start.Unix()/int64(max(w.cfg.ResyncInterval/time.Second, 1)), 10)
	published := 0
	for _, k := range []messages.Kind{messages.KindOrder, messages.KindCertificateRequest, messages.KindCertificate, messages.KindIssuer} {
		objs, err := w.store.List(ctx, k, "")
		if err != nil {
			return err
		}
		for _, o := range objs {
			if w.finished(o) {
				continue
			}
			m := o.GetMeta()
			if err := w.bus.Publish(ctx, messages.Transition{Kind: k, Namespace: m.Namespace, Name: m.Name, Action: messages.ActionResync}, epoch); err != nil {
				return err
			}
			published++
		}
	}
	w.grant(ctx)
	w.log.Info("resync done", "challenges_requeued", len(items), "transitions", published, "took", time.Since(start))
	return nil
}

// finished reports whether a resource needs no transition from the resync:
// it is done, or failed with its retry not yet due.
func (w *Worker) finished(o messages.Object) bool {
	switch r := o.(type) {
	case *messages.Order:
		return r.Status.State.Final()
	case *messages.CertificateRequest:
		return messages.IsReady(r.Status.Conditions) || r.Status.FailureTime != nil
	case *messages.Certificate:
		if f := r.Status.LastFailureTime; f != nil {
			return w.cfg.Now().Sub(*f) < w.cfg.FailedRetry
		}
		return messages.IsReady(r.Status.Conditions)
	case *messages.Issuer:
		return messages.IsReady(r.Status.Conditions)
	}
	return true
}
