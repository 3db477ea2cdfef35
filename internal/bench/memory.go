package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// Defaults of MemoryOptions.
const (
	MemoryNDefault        = 100_000
	MemoryHoldDefault     = time.Minute
	MemoryIntervalDefault = time.Second
	// MemoryGoal is the most RSS a worker may reach with MemoryNDefault
	// certificates queued.
	MemoryGoal = 100 << 20
	// memoryPublishers publish the requests.
	memoryPublishers = 16
)

// MemoryOptions configures Memory.
type MemoryOptions struct {
	// N certificates (two names each) are queued. Defaults to
	// MemoryNDefault.
	N int
	// Hold is how long the workers are watched after the last request is
	// published. Defaults to MemoryHoldDefault.
	Hold time.Duration
	// Interval between samples. Defaults to MemoryIntervalDefault.
	Interval time.Duration
	// ModuleDir and AcmeqBinary are as in Options.
	ModuleDir, AcmeqBinary string
	// Progress, if set, receives a line per sample.
	Progress io.Writer
}

func (o *MemoryOptions) defaults() {
	if o.N <= 0 {
		o.N = MemoryNDefault
	}
	if o.Hold <= 0 {
		o.Hold = MemoryHoldDefault
	}
	if o.Interval <= 0 {
		o.Interval = MemoryIntervalDefault
	}
}

// MemorySample is one look at the fleet.
type MemorySample struct {
	// At is the time since the first request was published.
	At time.Duration
	// RSS of each worker by name (worker-0 ran from the start; worker-1
	// started once every request was queued).
	RSS map[string]int64
	// Published requests so far; Queued work messages in ACMEQ_WORK;
	// Ready certificates so far.
	Published, Ready int
	Queued           uint64
}

// MemoryResult is the outcome of Memory.
type MemoryResult struct {
	Options MemoryOptions
	// Idle is worker-0's RSS before the first request.
	Idle int64
	// PublishTime is how long publishing N requests took.
	PublishTime time.Duration
	Samples     []MemorySample
	// Errors holds the first few errors of publishing.
	Errors []string
}

// Max returns the largest RSS of worker name over the samples.
func (r *MemoryResult) Max(name string) int64 {
	var m int64
	for _, s := range r.Samples {
		m = max(m, s.RSS[name])
	}
	return m
}

// Memory queues N certificate requests onto a fresh fleet with one
// `acmeq worker` running (against a fresh Pebble, so that it works
// through them as in production), then starts a second worker into the
// full queue, and samples both workers' RSS (VmRSS) every Interval until
// Hold after the last request. A worker whose memory grew with the queue
// shows it; the target is that RSS stays flat, under MemoryGoal.
func Memory(ctx context.Context, o MemoryOptions) (*MemoryResult, error) {
	o.defaults()
	res := &MemoryResult{Options: o}
	t, err := buildTools(ctx, &Options{ModuleDir: o.ModuleDir, AcmeqBinary: o.AcmeqBinary})
	if err != nil {
		return res, err
	}
	defer t.close()
	f, err := startFleet(ctx, t, fleetConfig{workers: 1, cap: CapDefault})
	if err != nil {
		return res, err
	}
	defer f.close()
	watch, err := startReadyWatch(ctx, f.st)
	if err != nil {
		return res, err
	}
	defer watch.stop()
	if res.Idle, err = pidRSS(f.workers[0].PID()); err != nil {
		return res, err
	}

	var published atomic.Int64
	start := time.Now()
	var mu sync.Mutex // guards pids and res.Errors
	pids := []int{f.workers[0].PID()}
	sample := func() {
		s := MemorySample{At: time.Since(start), RSS: map[string]int64{}, Published: int(published.Load()), Ready: watch.count()}
		mu.Lock()
		cur := slices.Clone(pids)
		mu.Unlock()
		for i, pid := range cur {
			if rss, err := pidRSS(pid); err == nil {
				s.RSS[fmt.Sprintf("worker-%d", i)] = rss
			}
		}
		if info, err := f.js.Stream(ctx, messages.WorkStream); err == nil {
			s.Queued = info.CachedInfo().State.Msgs
		}
		res.Samples = append(res.Samples, s)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%6s published %6d queued %6d ready %6d rss %s\n", s.At.Round(time.Second), s.Published, s.Queued, s.Ready, rssList(s.RSS))
		}
	}
	stopSampling := make(chan struct{})
	sampled := every(ctx, o.Interval, stopSampling, sample)

	forEach(ctx, memoryPublishers, o.N, func(i int) {
		if err := f.request(ctx, i); err != nil {
			mu.Lock()
			if len(res.Errors) < maxErrors {
				res.Errors = append(res.Errors, err.Error())
			}
			mu.Unlock()
			return
		}
		published.Add(1)
	})
	res.PublishTime = time.Since(start)
	// A second worker starts into the full queue.
	w, err := f.addWorker(ctx)
	if err != nil {
		close(stopSampling)
		<-sampled
		return res, err
	}
	mu.Lock()
	pids = append(pids, w.PID())
	mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(o.Hold):
	}
	close(stopSampling)
	<-sampled
	return res, ctx.Err()
}

// every calls f every interval, in a goroutine, until stop is closed or ctx
// ends; the channel it returns is closed once it has stopped.
func every(ctx context.Context, interval time.Duration, stop <-chan struct{}, f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tk.C:
				f()
			}
		}
	}()
	return done
}

func rssList(m map[string]int64) string {
	var b strings.Builder
	for i := range len(m) {
		name := fmt.Sprintf("worker-%d", i)
		if v, ok := m[name]; ok {
			fmt.Fprintf(&b, " %s %.1f MiB", name, float64(v)/(1<<20))
		}
	}
	return strings.TrimSpace(b.String())
}

// WriteText writes the result: the samples (at most about 30 rows) and
// each worker's idle, maximum and final RSS against MemoryGoal.
func (r *MemoryResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "acmeq bench memory: %d certificates of %d names queued onto 1 `acmeq worker` (a second one started once all were queued), against a fresh Pebble; published in %s; watched %s more\n\n",
		r.Options.N, NamesPerCertificate, r.PublishTime.Round(time.Second), r.Options.Hold)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tPUBLISHED\tQUEUED\tREADY\tWORKER-0 RSS\tWORKER-1 RSS")
	step := max(len(r.Samples)/30, 1)
	for i, s := range r.Samples {
		if i%step != 0 && i != len(r.Samples)-1 {
			continue
		}
		w1 := ""
		if v, ok := s.RSS["worker-1"]; ok {
			w1 = mib(v)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.At.Round(time.Second), s.Published, s.Queued, s.Ready, mib(s.RSS["worker-0"]), w1)
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nworker-0: idle %s, max %s", mib(r.Idle), mib(r.Max("worker-0")))
	if len(r.Samples) > 0 {
		last := r.Samples[len(r.Samples)-1]
		fmt.Fprintf(&b, ", last %s", mib(last.RSS["worker-0"]))
		if v, ok := last.RSS["worker-1"]; ok {
			fmt.Fprintf(&b, "; worker-1 (started into the full queue): max %s, last %s", mib(r.Max("worker-1")), mib(v))
		}
	}
	m := max(r.Max("worker-0"), r.Max("worker-1"))
	verdict := "met"
	if m > MemoryGoal {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\ntarget: every worker under %s: %s\n", mib(MemoryGoal), verdict)
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
