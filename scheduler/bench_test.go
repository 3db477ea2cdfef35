package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	s := newSched(b, admin, Config{Cap: CapDefault, Prefix: prefix})
	// The backlog of a size is built when a run of that size first needs
	// it and kept at its size by the runs (each checks it at the end), so
	// the rounds and worker counts of one size share it.
	var (
		built int          // size of the backlog in Redis
		next  atomic.Int64 // number of the next replacement
	)
	build := func(b *testing.B, size int) {
		if built == size {
			return
		}
		if err := admin.FlushDB(ctx).Err(); err != nil {
			b.Fatalf("flush: %v", err)
		}
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
		built = size
		next.Store(int64(size))
	}
	for _, size := range sizes {
		for _, workers := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("backlog=%d/workers=%d", size, workers), func(b *testing.B) {
				build(b, size)
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
					wg    sync.WaitGroup
					lats  = make([][]time.Duration, workers)
					errMu sync.Mutex
					fail  error
				)
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
							if err != nil {
								setErr(fmt.Errorf("Grant(1): %w", err))
								return
							}
							if len(gs) != 1 {
								setErr(fmt.Errorf("Grant(1) = %v, want 1 grant", gs))
								return
							}
							ok, err := s.Release(ctx, gs[0].ID)
							if err != nil {
								setErr(fmt.Errorf("Release(%s): %w", gs[0].ID, err))
								return
							}
							if !ok {
								setErr(fmt.Errorf("Release(%s) = false, want true", gs[0].ID))
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

// grantReferenceSrc is the grant script before the performance work: it
// reads the whole rr ring and the first <scan limit> ids of a backlog for
// every grant. TestGrantMatchesReference checks the current script decides
// exactly as this one.
const grantReferenceSrc = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local audit = ARGV[1] == '1'
local cap, ttl, max, scan = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local qp = ARGV[6]
local out = { now }
local inflight = redis.call('ZCARD', KEYS[4])
local done = {}
local grants = 0
while inflight < cap and grants < max do
  local nss = redis.call('ZRANGE', KEYS[1], 0, -1)
  local granted = false
  for _, ns in ipairs(nss) do
    if not done[ns] then
      local q = qp .. ns
      local ids = redis.call('ZRANGE', q, 0, scan - 1)
      if #ids == 0 then
        redis.call('ZREM', KEYS[1], ns)
        done[ns] = true
      else
        for _, id in ipairs(ids) do
          local meta = redis.call('HGET', KEYS[2], id)
          local score, lock = nil, nil
          if meta then
            score, lock = string.match(meta, '^([^|]*)|(.*)$')
          end
          if lock == nil then
            redis.call('ZREM', q, id)
          elseif redis.call('HSETNX', KEYS[3], lock, id) == 1 then
            redis.call('ZREM', q, id)
            redis.call('ZADD', KEYS[4], now + ttl, id)
            local seq = redis.call('INCR', KEYS[5])
            redis.call('ZADD', KEYS[1], seq, ns)
            if redis.call('ZCARD', q) == 0 then
              redis.call('ZREM', KEYS[1], ns)
            end
            if audit then
              redis.call('XADD', KEYS[6], 'MAXLEN', '~', 2000000, '*', 'ev', 'grant', 'id', id, 'lock', lock, 'score', score, 'us', now_us)
            end
            out[#out + 1] = id
            out[#out + 1] = seq
            out[#out + 1] = tonumber(score)
            inflight = inflight + 1
            grants = grants + 1
            granted = true
            break
          end
        end
        if not granted then
          done[ns] = true
        end
      end
    end
    if granted then
      break
    end
  end
  if not granted then
    break
  end
end
return out
`

// TestGrantMatchesReference drives two schedulers on one Redis (separate
// prefixes) through the same random operations, one granting with the
// current script and one with the reference, and requires the same
// grants (ids, sequence numbers, scores) and the same state (ring with its
// scores, backlogs, metadata, locks, leases, sequence) throughout: many
// namespaces (more than a ring page), shared locks, stale backlog entries,
// small and large scan limits (across the chunk sizes), caps and maxima.
func TestGrantMatchesReference(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	ref := redis.NewScript(grantReferenceSrc)
	for seed := range uint64(24) {
		rng := rand.New(rand.NewPCG(seed, 99))
		cfg := Config{Cap: 1 + rng.IntN(10), ScanLimit: []int{1, 2, 3, 5, 6, 17, 30, 256}[rng.IntN(8)]}
		nsCount := []int{1, 3, 12, 25}[rng.IntN(4)]
		locks := 3 + rng.IntN(12)
		cfg.Prefix = fmt.Sprintf("{acmeqtest-ref-%d}:", seed)
		a := newSched(t, rdb, cfg)
		cfg.Prefix = fmt.Sprintf("{acmeqtest-opt-%d}:", seed)
		b := newSched(t, rdb, cfg)
		both := []*Scheduler{a, b}

		refGrant := func(max int) []Grant {
			t.Helper()
			if max <= 0 {
				max = a.cfg.Cap // as Grant does
			}
			res, err := ref.Run(ctx, rdb, a.keys(), a.auditFlag(), a.cfg.Cap, a.cfg.LeaseTTL.Milliseconds(), max, a.cfg.ScanLimit, a.cfg.Prefix+"q:").Slice()
			if err != nil {
				t.Fatalf("reference grant: %v", err)
			}
			var gs []Grant
			for i := 1; i+2 < len(res); i += 3 {
				gs = append(gs, Grant{ID: res[i].(string), Seq: res[i+1].(int64), Score: res[i+2].(int64)})
			}
			return gs
		}
		var known []Item
		inflight := map[string]bool{}
		next := 0
		for step := range 250 {
			op := rng.IntN(100)
			switch {
			case op < 35:
				var items []Item
				for range 1 + rng.IntN(4) {
					if len(known) > 0 && rng.IntN(5) == 0 {
						items = append(items, known[rng.IntN(len(known))]) // again
						continue
					}
					l := rng.IntN(locks)
					it := item(fmt.Sprintf("ns%02d", rng.IntN(nsCount)), fmt.Sprintf("c%04d", next), []string{"HTTP-01", "DNS-01"}[l%2], fmt.Sprintf("h%d.example.com", l/2), int64(rng.IntN(1000)))
					next++
					known = append(known, it)
					items = append(items, it)
				}
				for _, s := range both {
					mustEnqueue(t, ctx, s, items...)
				}
			case op < 70:
				max := rng.IntN(5)
				want := refGrant(max)
				got := mustGrant(t, ctx, b, max)
				for i := range got {
					got[i].At = time.Time{}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: Grant(%d) = %+v, reference %+v", seed, step, max, got, want)
				}
				for _, g := range got {
					inflight[g.ID] = true
				}
			case op < 95:
				if len(known) == 0 {
					continue
				}
				id := known[rng.IntN(len(known))].ID
				if rng.IntN(3) > 0 { // mostly a lease
					for l := range inflight {
						id = l
						break
					}
				}
				for _, s := range both {
					mustRelease(t, ctx, s, id)
				}
				delete(inflight, id)
			default:
				// Stale backlog entries: metadata gone, id still queued;
				// one id, or a whole namespace's backlog.
				if len(known) == 0 {
					continue
				}
				stale := []string{known[rng.IntN(len(known))].ID}
				if rng.IntN(2) == 0 {
					q, err := rdb.ZRange(ctx, a.cfg.Prefix+"q:"+known[rng.IntN(len(known))].Namespace(), 0, -1).Result()
					if err != nil {
						t.Fatal(err)
					}
					stale = q
				}
				for _, id := range stale {
					if inflight[id] {
						continue
					}
					for _, s := range both {
						if err := rdb.HDel(ctx, s.key("meta"), id).Err(); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if op < 70 || step == 249 { // after every grant, and at the end
				if sa, sb := schedState(t, ctx, rdb, a), schedState(t, ctx, rdb, b); sa != sb {
					t.Fatalf("seed %d step %d: state differs\nreference: %s\ncurrent:   %s", seed, step, sa, sb)
				}
			}
		}
	}
}

// schedState renders a scheduler's Redis state, lease expiries aside
// (they are Redis time plus the TTL).
func schedState(t *testing.T, ctx context.Context, rdb *redis.Client, s *Scheduler) string {
	t.Helper()
	keys, err := rdb.Keys(ctx, s.cfg.Prefix+"q:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	pipe := rdb.Pipeline()
	rr := pipe.ZRangeWithScores(ctx, s.key("rr"), 0, -1)
	qs := make([]*redis.ZSliceCmd, len(keys))
	for i, k := range keys {
		qs[i] = pipe.ZRangeWithScores(ctx, k, 0, -1)
	}
	meta := pipe.HGetAll(ctx, s.key("meta"))
	locks := pipe.HGetAll(ctx, s.key("locks"))
	inf := pipe.ZRange(ctx, s.key("inflight"), 0, -1)
	seq := pipe.Get(ctx, s.key("seq"))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rr=%v", rr.Val())
	for i, k := range keys {
		fmt.Fprintf(&b, " %s=%v", strings.TrimPrefix(k, s.cfg.Prefix), qs[i].Val())
	}
	leases := inf.Val()
	slices.Sort(leases)
	fmt.Fprintf(&b, " meta=%v locks=%v inflight=%v seq=%s", meta.Val(), locks.Val(), leases, seq.Val())
	return b.String()
}
