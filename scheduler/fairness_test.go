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

// TestFairnessUnderLoad: one namespace with 10,000 queued challenges must
// not starve another that queues 10 afterwards, with a simulated fleet
// granting and releasing concurrently: cap 60, 8 workers, each with its own
// client, each granting up to 8 challenges at a time (so the fleet wants
// up to 64 and the cap binds), holding each 1-5 ms and releasing it.
//
// Grants are ordered by Grant.Seq, the fleet-wide grant number. Taking
// turns, the small namespace gets about every other grant while it has
// work, so all of its 10 must be granted before the big one has had
// 10×10 + cap grants since the small one enqueued (the cap's worth covers
// grants already decided when it arrived). Waits are measured on Redis'
// clock: Grant.At minus the Redis TIME read just before the enqueue.
func TestFairnessUnderLoad(t *testing.T) {
	const (
		bigN     = 10_000
		smallN   = 10
		capacity = 60
		workers  = 8
		perGrant = 8
	)
	for _, tc := range []struct {
		name string
		// The small namespace enqueues once the big one has had this many
		// grants (0: before the fleet starts).
		after int64
	}{
		{"small_enqueued_before_start", 0},
		{"small_enqueued_mid_way", bigN / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, srv := setup(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			prefix := "{acmeqtest-fair-" + tc.name + "}:"
			s := newSched(t, rdb, Config{Cap: capacity, Prefix: prefix})

			now := func() (time.Time, error) {
				tm, err := rdb.Time(ctx).Result()
				if err != nil {
					return time.Time{}, fmt.Errorf("redis TIME: %w", err)
				}
				return tm, nil
			}
			// Scores are creation times in ms, as the workers use: the big
			// namespace's challenges are all older than the small one's.
			t0, err := now()
			if err != nil {
				t.Fatal(err)
			}
			base := t0.UnixMilli() - bigN
			big := make([]Item, bigN)
			for i := range big {
				big[i] = item("big", fmt.Sprintf("c%05d", i), "HTTP-01", fmt.Sprintf("b%05d.example.com", i), base+int64(i))
			}
			for i := 0; i < bigN; i += 1000 {
				if n := mustEnqueue(t, ctx, s, big[i:i+1000]...); n != 1000 {
					t.Fatalf("Enqueue added %d of 1000", n)
				}
			}

			var (
				smallAt    time.Time // Redis time just before the small enqueue
				smallSeq   int64     // fleet grant number at that point
				smallReady = make(chan struct{})
			)
			enqueueSmall := func() error {
				defer close(smallReady)
				seq, err := rdb.Get(ctx, prefix+"seq").Int64()
				if err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("read grant sequence: %w", err)
				}
				smallSeq = seq
				if smallAt, err = now(); err != nil {
					return err
				}
				small := make([]Item, smallN)
				for i := range small {
					small[i] = item("small", fmt.Sprintf("c%02d", i), "HTTP-01", fmt.Sprintf("s%02d.example.com", i), smallAt.UnixMilli()+int64(i))
				}
				n, err := s.Enqueue(ctx, small...)
				if err != nil {
					return fmt.Errorf("Enqueue(small): %w", err)
				}
				if n != smallN {
					return fmt.Errorf("Enqueue(small) = %d, want %d", n, smallN)
				}
				return nil
			}
			if tc.after == 0 {
				if err := enqueueSmall(); err != nil {
					t.Fatal(err)
				}
			}

			var (
				mu       sync.Mutex
				grants   []Grant
				bigDone  atomic.Int64
				total    atomic.Int64
				inflight atomic.Int64
				peak     atomic.Int64
				wg       sync.WaitGroup
				errs     = make(chan error, workers+1)
				trigger  sync.Once
			)
			deadline := time.Now().Add(2 * time.Minute)
			start, err := now()
			if err != nil {
				t.Fatal(err)
			}
			for w := range workers {
				ws := newSched(t, newClient(t, srv), Config{Cap: capacity, Prefix: prefix})
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for iter := 0; iter < 200_000 && total.Load() < bigN+smallN && time.Now().Before(deadline); iter++ {
						gs, err := ws.Grant(ctx, perGrant)
						if err != nil {
							errs <- err
							return
						}
						if len(gs) == 0 {
							time.Sleep(200 * time.Microsecond) // cap full: ask again
							continue
						}
						// Counted after the grant and uncounted before the
						// release: never more than Redis' true number.
						for n := inflight.Add(int64(len(gs))); ; {
							p := peak.Load()
							if n <= p || peak.CompareAndSwap(p, n) {
								break
							}
						}
						mu.Lock()
						grants = append(grants, gs...)
						mu.Unlock()
						total.Add(int64(len(gs)))
						for _, g := range gs {
							if strings.HasPrefix(g.ID, "big/") && bigDone.Add(1) == tc.after {
								trigger.Do(func() {
									wg.Go(func() {
										if err := enqueueSmall(); err != nil {
											errs <- err
										}
									})
								})
							}
						}
						// Hold each lease 1-5 ms, releasing each when its
						// time is up.
						held := time.Now()
						holds := make([]time.Duration, len(gs))
						for i := range holds {
							holds[i] = time.Millisecond + time.Duration(rng.IntN(4000))*time.Microsecond
						}
						order := make([]int, len(gs))
						for i := range order {
							order[i] = i
						}
						slices.SortFunc(order, func(a, b int) int { return int(holds[a] - holds[b]) })
						for _, i := range order {
							time.Sleep(time.Until(held.Add(holds[i])))
							inflight.Add(-1)
							ok, err := ws.Release(ctx, gs[i].ID)
							if err != nil {
								errs <- fmt.Errorf("Release(%s): %w", gs[i].ID, err)
								return
							}
							if !ok {
								errs <- fmt.Errorf("Release(%s) = false, want true", gs[i].ID)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				t.FailNow()
			}
			select {
			case <-smallReady:
			default:
				t.Fatalf("the small namespace never enqueued (big had %d grants)", bigDone.Load())
			}
			if len(grants) != bigN+smallN {
				t.Fatalf("%d grants within the deadline, want %d", len(grants), bigN+smallN)
			}
			if p := peak.Load(); p > capacity {
				t.Fatalf("%d leases at once, cap %d", p, capacity)
			}

			// In fleet order: each namespace oldest first, each challenge
			// once; count the big grants the small namespace waited for.
			slices.SortFunc(grants, func(a, b Grant) int { return int(a.Seq - b.Seq) })
			var (
				bigSeen, smallSeen int
				bigBefore          int // big grants after the small enqueue, before its last grant
				waits              []time.Duration
				bigFirst, bigLast  time.Time
				smallLastSeq       int64
			)
			for i, g := range grants {
				if i > 0 && g.Seq == grants[i-1].Seq {
					t.Fatalf("grant number %d given twice", g.Seq)
				}
				ns, name, _ := strings.Cut(g.ID, "/")
				switch ns {
				case "big":
					if want := fmt.Sprintf("c%05d", bigSeen); name != want {
						t.Fatalf("big grant %d = %s, want big/%s (oldest first)", bigSeen, g.ID, want)
					}
					if bigSeen == 0 {
						bigFirst = g.At
					}
					bigLast = g.At
					bigSeen++
					if g.Seq > smallSeq && smallSeen < smallN {
						bigBefore++
					}
				case "small":
					if want := fmt.Sprintf("c%02d", smallSeen); name != want {
						t.Fatalf("small grant %d = %s, want small/%s (oldest first)", smallSeen, g.ID, want)
					}
					if g.Seq <= smallSeq {
						t.Fatalf("small grant %s has seq %d, not after the enqueue (seq %d)", g.ID, g.Seq, smallSeq)
					}
					smallSeen++
					smallLastSeq = g.Seq
					// At has ms resolution: compare with the enqueue's ms.
					waits = append(waits, g.At.Sub(smallAt.Truncate(time.Millisecond)))
				default:
					t.Fatalf("grant of unknown challenge %s", g.ID)
				}
			}
			if smallSeen != smallN || bigSeen != bigN {
				t.Fatalf("granted %d small and %d big, want %d and %d", smallSeen, bigSeen, smallN, bigN)
			}
			limit := 10*smallN + capacity
			if bigBefore > limit {
				t.Errorf("the small namespace's last grant (seq %d) came after %d big grants since it enqueued (seq %d); want at most %d",
					smallLastSeq, bigBefore, smallSeq, limit)
			}
			slices.Sort(waits)
			bigTime := bigLast.Sub(bigFirst)
			t.Logf("small namespace (%d, enqueued after %d big grants): median wait %s, max wait %s, granted within %d big grants (limit %d)",
				smallN, smallSeq, waits[len(waits)/2], waits[len(waits)-1], bigBefore, limit)
			t.Logf("big namespace: %d grants in %s (%.0f grants/s, fleet run %s); peak %d leases of cap %d",
				bigN, bigTime, float64(bigN)/bigTime.Seconds(), bigLast.Sub(start.Truncate(time.Millisecond)), peak.Load(), capacity)
			wantCounts(t, ctx, s, 0, 0)
		})
	}
}
