package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSchedule measures the grant path with a standing backlog of
// 1,000, 10,000 and 100,000 queued challenges (10 namespaces, every lock
// free) and 1, 4 and 8 workers, each a goroutine with its own client, on a
// private redis-server on loopback.
//
// One op is Grant(1) followed by Release of what was granted. To keep the
// backlog at its size, each worker enqueues replacements (younger, at the
// tail) in batches of refillBatch after as many grants; that refill is
// inside the measured time, so grants/s is conservative.
//
// Metrics: grants/s (wall clock, all workers together) and p99-grant-µs,
// the 99th percentile latency of one Grant call as the client sees it.
// -short skips the 100,000 backlog.
func BenchmarkSchedule(b *testing.B) {
	_, srv := setup(b)
	ctx := context.Background()
	sizes := []int{1_000, 10_000}
	if !testing.Short() {
		sizes = append(sizes, 100_000)
	}
	const namespaces = 10
	prefix := "{acmeqbench}:"
	mk := func(i int) Item {
		return item(fmt.Sprintf("ns%d", i%namespaces), fmt.Sprintf("c%07d", i), "HTTP-01", fmt.Sprintf("h%07d.example.com", i), int64(i))
	}
	admin := newClient(b, srv)
	for _, size := range sizes {
		for _, workers := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("backlog=%d/workers=%d", size, workers), func(b *testing.B) {
				if err := admin.FlushDB(ctx).Err(); err != nil {
					b.Fatalf("flush: %v", err)
				}
				s := newSched(b, admin, Config{Cap: CapDefault, Prefix: prefix})
				batch := make([]Item, 0, 1000)
				for i := range size {
					batch = append(batch, mk(i))
					if len(batch) == cap(batch) || i == size-1 {
						if n := mustEnqueue(b, ctx, s, batch...); n != len(batch) {
							b.Fatalf("Enqueue added %d of %d", n, len(batch))
						}
						batch = batch[:0]
					}
				}
				// Replacements are batched so the backlog stays within
				// about 1% of its size.
				refillBatch := max(1, min(32, size/(100*workers)))

				scheds := make([]*Scheduler, workers)
				for w := range scheds {
					scheds[w] = newSched(b, newClient(b, srv), Config{Cap: CapDefault, Prefix: prefix})
					// Warm the connection and the script cache.
					if _, _, err := scheds[w].Counts(ctx); err != nil {
						b.Fatalf("counts: %v", err)
					}
				}
				var (
					ops   atomic.Int64
					next  atomic.Int64
					wg    sync.WaitGroup
					lats  = make([][]time.Duration, workers)
					errMu sync.Mutex
					fail  error
				)
				next.Store(int64(size))
				setErr := func(err error) {
					errMu.Lock()
					if fail == nil {
						fail = err
					}
					errMu.Unlock()
				}
				b.ResetTimer()
				for w := range workers {
					s := scheds[w]
					wg.Go(func() {
						lat := make([]time.Duration, 0, b.N/workers+1)
						pending := 0
						refill := func() error {
							if pending == 0 {
								return nil
							}
							start := int(next.Add(int64(pending))) - pending
							items := make([]Item, pending)
							for i := range items {
								items[i] = mk(start + i)
							}
							n, err := s.Enqueue(ctx, items...)
							if err == nil && n != pending {
								err = fmt.Errorf("refill added %d of %d", n, pending)
							}
							pending = 0
							return err
						}
						for ops.Add(1) <= int64(b.N) {
							t0 := time.Now()
							gs, err := s.Grant(ctx, 1)
							lat = append(lat, time.Since(t0))
							if err != nil || len(gs) != 1 {
								setErr(fmt.Errorf("Grant(1) = %v, %v", gs, err))
								return
							}
							if ok, err := s.Release(ctx, gs[0].ID); err != nil || !ok {
								setErr(fmt.Errorf("Release(%s) = %v, %v", gs[0].ID, ok, err))
								return
							}
							if pending++; pending == refillBatch {
								if err := refill(); err != nil {
									setErr(err)
									return
								}
							}
						}
						if err := refill(); err != nil {
							setErr(err)
						}
						lats[w] = lat
					})
				}
				wg.Wait()
				b.StopTimer()
				if fail != nil {
					b.Fatal(fail)
				}
				all := slices.Concat(lats...)
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
				b.ReportMetric(float64(percentile(all, 0.99).Nanoseconds())/1e3, "p99-grant-µs")
				if backlog, inflight, err := s.Counts(ctx); err != nil || backlog != int64(size) || inflight != 0 {
					b.Fatalf("Counts after run = %d, %d, %v; want %d, 0", backlog, inflight, err, size)
				}
			})
		}
	}
}

// percentile returns the p-quantile (0 < p <= 1) of sorted durations, by
// the nearest-rank method; zero for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
