package worker

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// A "scheduled" message for a challenge that is gone (removed with its
// order after its worker died between finishing it and releasing its slot)
// frees the slot and lock it still holds, and the next challenge waiting
// for them is granted. Before, the lease was reaped, re-granted and
// reaped again forever, and the slot never came back.
func TestScheduledChallengeThatIsGoneFreesItsSlot(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newStepEnv(t)
	r, err := stack.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := e.w.cfg
	cfg.Scheduler = scheduler.Config{Cap: 1, LeaseTTL: time.Minute}
	w, err := New(e.js, e.w.store, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sched := w.Scheduler()

	gone := scheduler.Item{ID: scheduler.ChallengeID("default", "gone"), Lock: scheduler.LockKey("http-01", "a.test"), Score: 1}
	next := scheduler.Item{ID: scheduler.ChallengeID("default", "next"), Lock: scheduler.LockKey("http-01", "a.test"), Score: 2}
	if _, err := sched.Enqueue(ctx, gone, next); err != nil {
		t.Fatal(err)
	}
	if g, err := sched.Grant(ctx, 0); err != nil || len(g) != 1 || g[0].ID != gone.ID {
		t.Fatalf("grant = %+v, %v; want %s alone (cap 1, one lock)", g, err, gone.ID)
	}

	out, err := w.reconcileChallenge(ctx, messages.Transition{Kind: messages.KindChallenge, Namespace: "default", Name: "gone", Action: messages.ActionScheduled})
	if err != nil || out != Done() {
		t.Fatalf("reconcile of a removed challenge: %+v, %v; want done", out, err)
	}
	if st, err := sched.Lookup(ctx, gone.ID); err != nil || st != scheduler.StateUnknown {
		t.Errorf("removed challenge is %q in the scheduler (%v), want forgotten", st, err)
	}
	if st, err := sched.Lookup(ctx, next.ID); err != nil || st != scheduler.StateInflight {
		t.Errorf("the challenge waiting for the slot and lock is %q (%v), want granted", st, err)
	}
}
