package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/acmeq/acmeq/producer"
)

const (
	// publishers is how many goroutines publish the requests (the
	// producer's side, not what is measured).
	publishers = 8
	// idleStable is how long the fleet must be still before each
	// certificate of a latency run: it starts on an idle fleet.
	idleStable = 200 * time.Millisecond
)

// acmeqConfig is one acmeq run.
type acmeqConfig struct {
	mode            string
	n, workers, cap int
	nonceReject     int
	timeout         time.Duration
	// profile, if set, names the CPU profile of each acmeq process.
	profile func(process string) string
}

// acmeqRun issues the same n certificates as the baseline (two names
// each) through a fresh fleet (see fleet). A throughput run publishes all
// of them at once; the clock runs from the first publish to the last
// Certificate seen Ready, the CPU until the fleet is quiet again. A
// latency run publishes one at a time, each once the fleet is idle, and
// keeps each one's time from publish to Ready. A breakdown run is a
// throughput run with the instrumented meter.
func acmeqRun(ctx context.Context, t *tools, cfg acmeqConfig) (res Result) {
	res = Result{Kind: KindAcmeq, Mode: cfg.mode, N: cfg.n, NonceRejectPercent: cfg.nonceReject}
	var profile func(string) string
	if cfg.profile != nil && cfg.mode == ModeThroughput {
		profile = cfg.profile
	}
	f, err := startFleet(ctx, t, fleetConfig{workers: cfg.workers, cap: cfg.cap, nonceReject: cfg.nonceReject, profile: profile})
	if err != nil {
		res.Err = fmt.Errorf("bench: acmeq: %w", err)
		return res
	}
	defer f.close()
	m, err := startMeter(ctx, f, cfg.mode == ModeBreakdown)
	if err != nil {
		res.Err = err
		return res
	}
	defer m.close()
	watch, err := startReadyWatch(ctx, f.st)
	if err != nil {
		res.Err = err
		return res
	}
	defer watch.stop()

	names := certNames(cfg.n)
	rctx, stop := runContext(ctx, f.ca.pebble, cfg.timeout, watch.count)
	defer stop()
	clientPIDs, caPIDs := f.clientPIDs(), f.ca.pids()
	redis0, err := redisCPU(ctx, f.rdb)
	if err != nil {
		res.Err = err
		return res
	}
	f.startProfiles()
	client0, ca0 := snapshotCPU(clientPIDs), snapshotCPU(caPIDs)
	start, bench0 := time.Now(), processCPU()

	got, err := f.publish(rctx, cfg.mode, watch, names, &res)
	res.tally(start, names, got)
	res.Load = loadAverage()
	switch {
	case ctx.Err() != nil:
		res.Err = ctx.Err()
		return res
	case err != nil && rctx.Err() != nil:
		res.Err = runError(rctx, f.ca.pebble, cfg.timeout, res.Wall)
		if errors.Is(res.Err, ErrPebbleHang) {
			return res
		}
	case err != nil:
		res.Err = fmt.Errorf("bench: acmeq: %w", err)
	}
	stop()
	// The trailing work (clean-ups, events) is part of each certificate's
	// cost: the CPU window ends when the fleet is quiet.
	seqs, notQuiet, qerr := m.quiet(ctx)
	client := snapshotCPU(clientPIDs).since(client0)
	res.CACPU = sum(snapshotCPU(caPIDs).since(ca0))
	res.BenchCPU = processCPU() - bench0
	if perr := f.stopProfiles(); perr != nil {
		res.addError(perr.Error())
	}
	res.Profiles = maps.Clone(f.profiles)
	res.CPU = sum(client)
	res.ByProcess = client
	if r1, err := redisCPU(ctx, f.rdb); err == nil {
		res.RedisCPU = r1 - redis0
		res.ByProcess["redis-server"] = res.RedisCPU
	}
	res.ACMERequests = f.ca.requests()
	if qerr != nil {
		if res.Err == nil {
			res.Err = qerr
		}
		return res
	}
	if res.Cost, err = m.finish(ctx, seqs, notQuiet, res.Issued); err != nil && res.Err == nil {
		res.Err = err
	}
	return res
}

// certNames are the names of the first n certificates.
func certNames(n int) []string {
	names := make([]string, n)
	for i := range n {
		names[i] = CertName(i)
	}
	return names
}

// publish requests names as a run of mode does: one at a time for a
// latency run (oneByOne), else all at once (allAtOnce).
func (f *fleet) publish(ctx context.Context, mode string, watch *readyWatch, names []string, res *Result) (map[string]outcome, error) {
	if mode == ModeLatency {
		return f.oneByOne(ctx, watch, names, res)
	}
	return f.allAtOnce(ctx, watch, names, res)
}

// tally counts the outcomes got of names, and the wall time from start to
// the last Ready (to now when outcomes are missing).
func (r *Result) tally(start time.Time, names []string, got map[string]outcome) {
	for _, o := range got {
		if d := o.at.Sub(start); d > r.Wall {
			r.Wall = d
		}
	}
	if len(got) < len(names) {
		r.Wall = time.Since(start)
	}
	for _, n := range names {
		o, ok := got[n]
		switch {
		case !ok:
		case o.ready:
			r.Issued++
		default:
			r.Failed++
			r.addError(n + ": " + o.message)
		}
	}
}

// allAtOnce publishes every request (publishers at a time) and waits for
// every outcome.
func (f *fleet) allAtOnce(ctx context.Context, watch *readyWatch, names []string, res *Result) (map[string]outcome, error) {
	jobs := make(chan int)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for range min(publishers, max(len(names), 1)) {
		wg.Go(func() {
			for i := range jobs {
				if err := f.request(ctx, i); err != nil {
					mu.Lock()
					res.addError(err.Error())
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range names {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return watch.waitAll(ctx, names)
}

// oneByOne publishes one request at a time, each once the fleet is idle,
// and keeps each one's time from publish to Ready in res.Latencies.
func (f *fleet) oneByOne(ctx context.Context, watch *readyWatch, names []string, res *Result) (map[string]outcome, error) {
	got := map[string]outcome{}
	for i, name := range names {
		if _, _, err := waitQuiet(ctx, f.js, idleStable); err != nil {
			return got, err
		}
		t0 := time.Now()
		if err := f.request(ctx, i); err != nil {
			return got, err
		}
		o, err := watch.wait(ctx, name)
		if err != nil {
			return got, err
		}
		got[name] = o
		if o.ready {
			res.Latencies = append(res.Latencies, o.at.Sub(t0))
		}
	}
	return got, nil
}

// request publishes certificate i.
func (f *fleet) request(ctx context.Context, i int) error {
	_, err := f.prod.Request(ctx, producer.RequestOptions{
		Namespace: Namespace, Name: CertName(i), Issuer: IssuerName, DNSNames: DNSNames(i),
	})
	if err != nil {
		return fmt.Errorf("request %s: %w", CertName(i), err)
	}
	return nil
}
