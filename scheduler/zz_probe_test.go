package scheduler

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"fmt"
)

func TestProbeCountsRace(t *testing.T) {
	_, srv := setup(t)
	ctx := testCtx(t)
	prefix := "{p}:"
	s := newSched(t, newClient(t, srv), Config{Cap: 5, Prefix: prefix})
	var items []Item
	for i := range 5 {
		items = append(items, item("ns", fmt.Sprintf("c%d", i), "HTTP-01", fmt.Sprintf("h%d", i), int64(i)))
	}
	mustEnqueue(t, ctx, s, items...)
	mustGrant(t, ctx, s, 0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 5 {
		s2 := newSched(t, newClient(t, srv), Config{Cap: 5, Prefix: prefix})
		wg.Go(func() {
			for !stop.Load() {
				s2.Release(ctx, items[w].ID)
				s2.Enqueue(ctx, items[w])
				s2.Grant(ctx, 1)
			}
		})
	}
	bad := 0
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		b, i, err := s.Counts(ctx)
		n++
		if err != nil { t.Fatal(err) }
		if b < 0 || b+i > 5 {
			bad++
			if bad < 5 { t.Logf("Counts = %d, %d", b, i) }
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d bad of %d", bad, n)
}
