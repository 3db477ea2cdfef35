package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

// opConcurrency is the number of goroutines doing an operation at once:
// the fleet's challenge cap, as in `acmeq bench`.
const opConcurrency = 60

// BenchmarkOperationCost measures what one persisted step of acmeq's
// design costs in CPU, on the stack `acmeq bench` runs (nats-server and
// redis-server as child processes, the streams and buckets acmeq
// creates), with opConcurrency callers at once so the server batches as
// it does under load. Each sub-benchmark is one kind of operation:
//
//	kv-read       store.Get of a Challenge (a direct get)
//	kv-write      store.Update of a Challenge (a compare-and-set write)
//	work-publish  bus.Publish of a transition (stored, deduplicated, acked)
//	deliver-ack   a work message delivered to the workers' durable
//	              consumer and acked (the messages are published first,
//	              outside the measurement)
//	event         bus.Record (a core publish the events stream stores;
//	              measured until the stream holds them all)
//	redis-renew   scheduler.Renew of a held lease (one EVALSHA)
//	design-budget one op is DESIGN.md's whole budget for a certificate of
//	              two names, mixed as a fleet mixes it: 25 KV writes, 5
//	              transitions each delivered, read and acked, 15 events,
//	              10 Redis calls — the design's persistence floor per
//	              certificate, measured rather than added up
//
// Metrics per operation: client-µs (this process: nats.go, go-redis,
// JSON), nats-µs (nats-server), redis-µs (redis-server) and total-µs.
// Multiplying by the counts per certificate that `acmeq bench` prints
// gives the floor of a design that persists that many steps, whatever
// its code does around them. Run:
//
//	go test ./internal/bench -run '^$' -bench OperationCost -benchtime 20000x
func BenchmarkOperationCost(b *testing.B) {
	ctx := context.Background()
	natsBin, err := stack.BuildNATSServer(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ns, err := stack.StartNATSProcess(natsBin, filepath.Join(dir, "nats"), filepath.Join(dir, "nats-server.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ns.Close() })
	rs, err := stack.StartRedis(filepath.Join(dir, "redis"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rs.Stop() })
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 32)
	sealer, err := store.NewSealer(key)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	bs := bus.New(js, "opcost")
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, PoolSize: opConcurrency})
	b.Cleanup(func() { _ = rdb.Close() })
	sched, err := scheduler.New(rdb, scheduler.Config{})
	if err != nil {
		b.Fatal(err)
	}
	m := opMeter{natsPID: ns.PID(), redis: rdb}

	// One Challenge per caller, as a worker handles one at a time each.
	chs := make([]*messages.Challenge, opConcurrency)
	for i := range chs {
		chs[i] = benchChallenge(i)
		if err := st.Create(ctx, chs[i]); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("kv-read", func(b *testing.B) {
		m.run(b, func(i, _ int) error {
			ch := &messages.Challenge{}
			return st.Get(ctx, "opcost", chs[i].Metadata.Name, ch)
		})
	})
	b.Run("kv-write", func(b *testing.B) {
		m.run(b, func(i, n int) error {
			chs[i].Status.Reason = "step " + strconv.Itoa(n)
			return st.Update(ctx, chs[i])
		})
	})
	publish := func(i, n int) error {
		t := messages.Transition{Kind: messages.KindChallenge, Namespace: "opcost", Name: chs[i].Metadata.Name, Action: messages.ActionScheduled}
		return bs.Publish(ctx, t, strconv.Itoa(n)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	}
	b.Run("work-publish", func(b *testing.B) { m.run(b, publish) })
	b.Run("deliver-ack", func(b *testing.B) {
		// Queue b.N messages outside the measurement, then consume them.
		q := newWorkQueue(b, js)
		b.StopTimer()
		if err := parallel(b.N, publish); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := m.snapshot(b)
		q.consume(b, b.N, func(jetstream.Msg) error { return nil })
		m.report(b, before)
	})
	record := func(i, _ int) error {
		return bs.Record(ctx, chs[i], messages.EventNormal, messages.ReasonPresented, "Presented challenge using http-01 challenge mechanism")
	}
	b.Run("event", func(b *testing.B) {
		m.run(b, record, eventsStored(b, js, b.N))
	})
	items := make([]scheduler.Item, opConcurrency)
	for i := range items {
		items[i] = scheduler.Item{ID: scheduler.ChallengeID("opcost", chs[i].Metadata.Name),
			Lock: scheduler.LockKey(messages.ChallengeTypeHTTP01, chs[i].Spec.DNSName), Score: int64(i)}
	}
	if _, err := sched.Enqueue(ctx, items...); err != nil {
		b.Fatal(err)
	}
	if g, err := sched.Grant(ctx, opConcurrency); err != nil || len(g) != opConcurrency {
		b.Fatalf("granted %d of %d: %v", len(g), opConcurrency, err)
	}
	b.Run("redis-renew", func(b *testing.B) {
		m.run(b, func(i, _ int) error { return sched.Renew(ctx, items[i].ID) })
	})
	// One op is the design's whole budget for a certificate of two names
	// (DESIGN.md, "Cost budget"): 25 KV writes; 20 JetStream messages, of
	// which cert-manager's 15 events, leaving 5 transitions, each
	// delivered, its resource read, and acked; 10 Redis calls. Mixed as a
	// fleet mixes them, so this is the floor of the design's persistence
	// per certificate, measured rather than added up.
	b.Run("design-budget", func(b *testing.B) {
		q := newWorkQueue(b, js)
		cert := func(i, n int) error {
			for k := range 25 {
				chs[i].Status.Reason = "step " + strconv.Itoa(k)
				if err := st.Update(ctx, chs[i]); err != nil {
					return err
				}
				if k%5 == 0 {
					if err := publish(i, n*5+k/5); err != nil {
						return err
					}
				}
				if k < 15 {
					if err := record(i, n); err != nil {
						return err
					}
				}
				if k < 10 {
					if err := sched.Renew(ctx, items[i].ID); err != nil {
						return err
					}
				}
			}
			return nil
		}
		delivered := func() error {
			q.consume(b, 5*b.N, func(msg jetstream.Msg) error {
				var t messages.Transition
				if err := json.Unmarshal(msg.Data(), &t); err != nil {
					return err
				}
				return st.Get(ctx, t.Namespace, t.Name, &messages.Challenge{})
			})
			return nil
		}
		m.run(b, cert, delivered, eventsStored(b, js, 15*b.N))
	})
}

// eventsStored returns a function that waits until the events stream has
// stored n more events than it holds now: events are core publishes, so
// sent is not stored.
func eventsStored(b *testing.B, js jetstream.JetStream, n int) func() error {
	b.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, messages.EventStream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	want := info.State.Msgs + uint64(n)
	return func() error {
		stacktest.Eventually(b, time.Minute, func() error {
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			if info.State.Msgs < want {
				return fmt.Errorf("events stream holds %d messages, want %d", info.State.Msgs, want)
			}
			return nil
		})
		return nil
	}
}

// workQueue is the workers' Challenge consumer on an emptied work stream.
type workQueue struct {
	cons jetstream.Consumer
}

// newWorkQueue empties the work stream and creates the consumer as the
// workers do.
func newWorkQueue(b *testing.B, js jetstream.JetStream) workQueue {
	b.Helper()
	ctx := context.Background()
	if err := js.DeleteConsumer(ctx, messages.WorkStream, worker.ConsumerName(messages.KindChallenge)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		b.Fatal(err)
	}
	s, err := js.Stream(ctx, messages.WorkStream)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, messages.WorkStream, worker.ConsumerConfig(messages.KindChallenge, worker.AckWaitDefault))
	if err != nil {
		b.Fatal(err)
	}
	return workQueue{cons: cons}
}

// consume handles n messages with handle, acking each, and returns once
// the server has seen every ack (they are sent without waiting), so their
// cost is counted.
func (q workQueue) consume(b *testing.B, n int, handle func(jetstream.Msg) error) {
	b.Helper()
	done := make(chan struct{})
	var acked atomic.Int64
	cc, err := q.cons.Consume(func(msg jetstream.Msg) {
		if err := handle(msg); err != nil {
			b.Error(err)
		}
		if err := msg.Ack(); err != nil {
			b.Error(err)
		}
		if acked.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(opConcurrency*2))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d messages delivered in 5 minutes", acked.Load(), n)
	}
	stacktest.Eventually(b, time.Minute, func() error {
		info, err := q.cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("acks not all seen by the server: %d pending, %d not delivered", info.NumAckPending, info.NumPending)
		}
		return nil
	})
}

// opMeter measures the CPU of this process, nats-server and
// redis-server around a batch of operations.
type opMeter struct {
	natsPID int
	redis   *redis.Client
}

type opSnapshot struct{ self, nats, redis time.Duration }

func (m opMeter) snapshot(b *testing.B) opSnapshot {
	b.Helper()
	n, err := pidCPU(m.natsPID)
	if err != nil {
		b.Fatal(err)
	}
	r, err := redisCPU(context.Background(), m.redis)
	if err != nil {
		b.Fatal(err)
	}
	return opSnapshot{self: processCPU(), nats: n, redis: r}
}

// run does b.N operations (see parallel), then each of settle, and
// reports the CPU per operation.
func (m opMeter) run(b *testing.B, op func(i, n int) error, settle ...func() error) {
	before := m.snapshot(b)
	b.ResetTimer()
	if err := parallel(b.N, op); err != nil {
		b.Fatal(err)
	}
	for _, s := range settle {
		if err := s(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.report(b, before)
}

// parallel does n operations, opConcurrency at a time: op gets the
// caller's index and the operation's number. It returns the first error.
func parallel(n int, op func(i, n int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, opConcurrency)
	for g := range opConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := g; k < n; k += opConcurrency {
				if err := op(g, k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// report reports the CPU used since before, per operation.
func (m opMeter) report(b *testing.B, before opSnapshot) {
	after := m.snapshot(b)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	self, nats, rds := per(after.self-before.self), per(after.nats-before.nats), per(after.redis-before.redis)
	b.ReportMetric(self, "client-µs/op")
	b.ReportMetric(nats, "nats-µs/op")
	b.ReportMetric(rds, "redis-µs/op")
	b.ReportMetric(self+nats+rds, "total-µs/op")
}

// benchChallenge is a Challenge of the size a worker writes.
func benchChallenge(i int) *messages.Challenge {
	name := fmt.Sprintf("www-example-%04d-com-2745722290-439160286-%d", i, i%2)
	return &messages.Challenge{
		Metadata: messages.ObjectMeta{Namespace: "opcost", Name: name},
		Spec: messages.ChallengeSpec{
			URL:              "https://127.0.0.1:14000/chalZ/Yl5Wz2pkhU7pJ6Z0K2aDbiuvFuQ0HHKlfs7dJ9NqYpM",
			AuthorizationURL: "https://127.0.0.1:14000/authZ/Ui7-N3G9W5zTNl4tQhxJc8XoYbc9VH3q4Vbr5Smu2Fw",
			DNSName:          fmt.Sprintf("www.example-%04d.com", i),
			Type:             messages.ChallengeTypeHTTP01,
			Token:            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
			Key:              "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ",
			Solver:           messages.ACMESolver{HTTP01: &messages.HTTP01Solver{}},
			IssuerRef:        messages.IssuerRef{Name: "le", Kind: "Issuer"},
		},
		Status: messages.ChallengeStatus{Processing: true, Presented: true, State: messages.StatePending,
			Reason: "Waiting for HTTP-01 challenge propagation"},
	}
}
