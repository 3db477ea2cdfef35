package scheduler

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestProbeLookupRace(t *testing.T) {
	_, srv := setup(t)
	ctx := testCtx(t)
	prefix := "{p}:"
	s := newSched(t, newClient(t, srv), Config{Cap: 5, Prefix: prefix})
	fast := &Scheduler{rdb: newClient(t, srv), cfg: Config{Cap: 5, LeaseTTL: time.Millisecond, ScanLimit: 10, Prefix: prefix}}
	x := item("ns", "x", "HTTP-01", "h", 1)
	mustEnqueue(t, ctx, s, x)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			fast.Grant(ctx, 1)
			fast.Reap(ctx, 0)
		}
	})
	bad, n := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		st, err := s.Lookup(ctx, x.ID)
		n++
		if err != nil { t.Fatal(err) }
		if st == StateUnknown { bad++ }
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d unknown of %d; grants %d reaped %d", bad, n, fast.Stats.Grants.Load(), fast.Stats.Reaped.Load())
}
