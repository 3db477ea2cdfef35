package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// outcome is how one certificate ended, and when the bench saw it.
type outcome struct {
	ready   bool
	message string
	at      time.Time
}

// readyWatch follows every Certificate of the bench's namespace with one
// KV watch (no polling) and records when each becomes Ready or fails.
type readyWatch struct {
	w jetstream.KeyWatcher

	mu      sync.Mutex
	done    map[string]outcome
	waiters map[string]chan struct{}
	changed chan struct{} // closed and replaced on every outcome
	stopped chan struct{}
}

func startReadyWatch(ctx context.Context, st *store.Store) (*readyWatch, error) {
	w, err := st.KV(messages.KindCertificate).WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("bench: watch certificates: %w", err)
	}
	rw := &readyWatch{w: w, done: map[string]outcome{}, waiters: map[string]chan struct{}{}, changed: make(chan struct{}), stopped: make(chan struct{})}
	go rw.run()
	return rw, nil
}

func (rw *readyWatch) run() {
	defer close(rw.stopped)
	for e := range rw.w.Updates() {
		if e == nil {
			continue // the end of what was there before the watch
		}
		c := &messages.Certificate{}
		if err := json.Unmarshal(e.Value(), c); err != nil || c.Metadata.Namespace != Namespace {
			continue
		}
		o, ok := certificateOutcome(c)
		if !ok {
			continue
		}
		o.at = time.Now()
		rw.mu.Lock()
		if _, seen := rw.done[c.Metadata.Name]; !seen {
			rw.done[c.Metadata.Name] = o
			if ch, ok := rw.waiters[c.Metadata.Name]; ok {
				close(ch)
				delete(rw.waiters, c.Metadata.Name)
			}
			close(rw.changed)
			rw.changed = make(chan struct{})
		}
		rw.mu.Unlock()
	}
}

// certificateOutcome is the end of a Certificate: Ready, or failed (a
// failure time and a Ready condition saying why); ok is false while it is
// still in progress.
func certificateOutcome(c *messages.Certificate) (outcome, bool) {
	cond := messages.GetCondition(c.Status.Conditions, messages.ConditionReady)
	switch {
	case cond != nil && cond.Status == messages.ConditionTrue:
		return outcome{ready: true}, true
	case c.Status.LastFailureTime != nil && cond != nil:
		return outcome{message: cond.Reason + ": " + cond.Message}, true
	}
	return outcome{}, false
}

// wait returns the outcome of certificate name once it has one, or ctx's
// error.
func (rw *readyWatch) wait(ctx context.Context, name string) (outcome, error) {
	rw.mu.Lock()
	if o, ok := rw.done[name]; ok {
		rw.mu.Unlock()
		return o, nil
	}
	ch, ok := rw.waiters[name]
	if !ok {
		ch = make(chan struct{})
		rw.waiters[name] = ch
	}
	rw.mu.Unlock()
	select {
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	case <-rw.stopped:
		return outcome{}, fmt.Errorf("bench: certificate watch stopped")
	case <-ch:
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.done[name], nil
}

// waitAll waits until every name has an outcome, or ctx ends; it returns
// the outcomes seen.
func (rw *readyWatch) waitAll(ctx context.Context, names []string) (map[string]outcome, error) {
	for {
		rw.mu.Lock()
		out := make(map[string]outcome, len(names))
		for _, n := range names {
			if o, ok := rw.done[n]; ok {
				out[n] = o
			}
		}
		changed := rw.changed
		rw.mu.Unlock()
		if len(out) == len(names) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("bench: %d of %d certificates still pending: %w", len(names)-len(out), len(names), ctx.Err())
		case <-rw.stopped:
			return out, fmt.Errorf("bench: certificate watch stopped")
		case <-changed:
		}
	}
}

// count is how many certificates have an outcome.
func (rw *readyWatch) count() int {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return len(rw.done)
}

func (rw *readyWatch) stop() {
	_ = rw.w.Stop()
	<-rw.stopped
}
