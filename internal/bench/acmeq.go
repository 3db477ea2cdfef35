package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/producer"
)

// publishers is how many goroutines publish the requests (the producer's
// side, not what is measured).
const publishers = 8

// Acmeq issues the same n certificates as Baseline (two names each)
// through acmeq: a fresh dev stack (embedded NATS, redis-server, its own
// fresh Pebble, the HTTP-01 responder and workers workers) in a temporary
// directory. The clock runs from the first request published to the last
// Certificate seen Ready (env.WaitCertificates); then the bench waits for
// the stack to be quiet and counts the Cost.
//
// The deadline is TimeoutBase + n*TimeoutPerCertificate. The error is
// Result.Err, as for Baseline.
func Acmeq(ctx context.Context, n, workers int) (Result, error) {
	r := acmeqRun(ctx, n, workers, defaultTimeout(n), "")
	return r, r.Err
}

func acmeqRun(ctx context.Context, n, workers int, timeout time.Duration, profile string) (res Result) {
	res = Result{Kind: "acmeq", N: n}
	dir, err := os.MkdirTemp("", "acmeq-bench-")
	if err != nil {
		res.Err = fmt.Errorf("bench: %w", err)
		return res
	}
	defer os.RemoveAll(dir)
	reqs := newRequestCounter()
	env, err := dev.Start(ctx, dev.Options{Dir: dir, Workers: workers, PebbleLog: reqs})
	if err != nil {
		res.Err = fmt.Errorf("bench: acmeq: %w", err)
		return res
	}
	defer env.Close()
	rdb := redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr})
	defer rdb.Close()
	m, err := startMeter(ctx, env.JS, env.Stack.NATS.Server, rdb, env.Stack.Redis.Addr)
	if err != nil {
		res.Err = err
		return res
	}
	defer m.close()

	names := make([]string, n)
	for i := range n {
		names[i] = CertName(i)
	}
	rctx, stop := runContext(ctx, env.Stack.Pebble, timeout)
	defer stop()
	type waited struct {
		got map[string]dev.Result
		err error
	}
	done := make(chan waited, 1)
	redisCPU0, err := redisCPU(ctx, rdb)
	if err != nil {
		res.Err = err
		return res
	}
	stopProfile, err := startProfile(profile)
	if err != nil {
		res.addError(err.Error())
	}
	reqs0 := reqs.snapshot()
	start, cpu0 := time.Now(), processCPU()
	// The watch delivers what is already there first, so it may start
	// after the first requests.
	go func() {
		got, err := env.WaitCertificates(rctx, dev.Namespace, names)
		done <- waited{got, err}
	}()
	jobs := make(chan int)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for range min(publishers, max(n, 1)) {
		wg.Go(func() {
			for i := range jobs {
				_, err := env.Producer.Request(rctx, producer.RequestOptions{
					Namespace: dev.Namespace, Name: CertName(i), Issuer: dev.IssuerName, DNSNames: DNSNames(i),
				})
				if err != nil {
					mu.Lock()
					res.addError(fmt.Sprintf("request %s: %v", CertName(i), err))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	w := <-done
	res.Wall, res.CPU = time.Since(start), processCPU()-cpu0
	stopProfile()
	res.ACMERequests = reqs.since(reqs0)
	res.Load = loadAverage()
	if c, err := redisCPU(ctx, rdb); err == nil {
		res.RedisCPU = c - redisCPU0
	}
	for _, r := range w.got {
		if r.Ready {
			res.Issued++
		} else {
			res.Failed++
			res.addError(r.Name + ": " + r.Message)
		}
	}
	switch {
	case ctx.Err() != nil:
		res.Err = ctx.Err()
		return res
	case w.err != nil && rctx.Err() != nil:
		res.Err = runError(rctx, env.Stack.Pebble, timeout, res.Wall)
		if errors.Is(res.Err, ErrPebbleHang) {
			// Close the hung Pebble first: it drops the connections the
			// workers' handlers wait on, so they stop at once.
			env.Stack.Pebble.Close()
			return res
		}
	case w.err != nil:
		res.Err = fmt.Errorf("bench: acmeq: %w", w.err)
	}
	stop()
	if res.Cost, err = m.finish(ctx, res.Issued); err != nil && res.Err == nil {
		res.Err = err
	}
	return res
}
