package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Defaults of Options.
const (
	NDefault           = 200
	ConcurrencyDefault = 16
	WorkersDefault     = 3
	RoundsDefault      = 3
	HangRetriesDefault = 2
	// Goal is the throughput acmeq must reach relative to the baseline.
	Goal = 0.8
)

// Options configures Run.
type Options struct {
	// N certificates (two names each) per run. Defaults to NDefault.
	N int
	// Concurrency of the baseline client. Defaults to ConcurrencyDefault.
	Concurrency int
	// Workers of acmeq. Defaults to WorkersDefault.
	Workers int
	// Rounds of one baseline run and one acmeq run. Defaults to
	// RoundsDefault.
	Rounds int
	// Timeout of each run. Defaults to TimeoutBase + N*TimeoutPerCertificate.
	Timeout time.Duration
	// HangRetries is how many times a run that found Pebble hung is
	// repeated (on a fresh Pebble) before its round is left incomplete.
	// Defaults to HangRetriesDefault; negative means none.
	HangRetries int
	// CPUProfileDir, if set, receives a CPU profile of the timed part of
	// each run: baseline-<round>.pprof and acmeq-<round>.pprof (a run
	// repeated after a Pebble hang overwrites its file).
	CPUProfileDir string
	// Progress, if set, receives a line as each run ends.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.N <= 0 {
		o.N = NDefault
	}
	if o.Concurrency <= 0 {
		o.Concurrency = ConcurrencyDefault
	}
	if o.Workers <= 0 {
		o.Workers = WorkersDefault
	}
	if o.Rounds <= 0 {
		o.Rounds = RoundsDefault
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout(o.N)
	}
	switch {
	case o.HangRetries == 0:
		o.HangRetries = HangRetriesDefault
	case o.HangRetries < 0:
		o.HangRetries = 0
	}
}

// profile is the CPU profile path of a run, or "".
func (o *Options) profile(kind string, round int) string {
	if o.CPUProfileDir == "" {
		return ""
	}
	return filepath.Join(o.CPUProfileDir, kind+"-"+strconv.Itoa(round)+".pprof")
}

// Round is one baseline run and one acmeq run.
type Round struct {
	Baseline, Acmeq Result
	// Hangs are the runs of the round that found Pebble hung and were
	// repeated.
	Hangs []Result
}

// Report is the outcome of Run.
type Report struct {
	Options Options
	Rounds  []Round
}

// Run alternates a baseline run and an acmeq run, each on a fresh Pebble,
// o.Rounds times. It returns an error only when ctx ends; failed runs are
// in the report (and left out of the medians).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	rep := &Report{Options: o}
	if o.CPUProfileDir != "" {
		if err := os.MkdirAll(o.CPUProfileDir, 0o755); err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
	}
	progress := func(round int, r Result) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "round %d %-8s %s\n", round, r.Kind, r.summary())
		}
	}
	// attempt runs one side, again on a fresh Pebble after a hang.
	attempt := func(round int, rd *Round, run func() Result) Result {
		for i := 0; ; i++ {
			// Each run starts from a collected heap so that one run's
			// garbage is not the next one's work.
			runtime.GC()
			r := run()
			progress(round, r)
			if !errors.Is(r.Err, ErrPebbleHang) || i >= o.HangRetries || ctx.Err() != nil {
				return r
			}
			rd.Hangs = append(rd.Hangs, r)
		}
	}
	for i := range o.Rounds {
		rd := Round{}
		rd.Baseline = attempt(i+1, &rd, func() Result { return baseline(ctx, o.N, o.Concurrency, o.Timeout, o.profile("baseline", i+1)) })
		if err := ctx.Err(); err != nil {
			rep.Rounds = append(rep.Rounds, rd)
			return rep, err
		}
		rd.Acmeq = attempt(i+1, &rd, func() Result { return acmeqRun(ctx, o.N, o.Workers, o.Timeout, o.profile("acmeq", i+1)) })
		rep.Rounds = append(rep.Rounds, rd)
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (r Result) summary() string {
	s := fmt.Sprintf("%d/%d issued in %s: %.1f certs/s, CPU %s/cert", r.Issued, r.N, r.Wall.Round(time.Millisecond), r.CertsPerSec(), cpuMS(r.CPUPerCert()))
	if r.Failed > 0 {
		s += fmt.Sprintf(", %d failed", r.Failed)
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// breakdown writes the median per certificate of each key of the maps
// that pick returns, largest first.
func breakdown(w io.Writer, indent string, costs []*Cost, per func(func(*Cost) float64) float64, pick func(*Cost) map[string]uint64, note string) {
	keys := map[string]bool{}
	for _, c := range costs {
		for k := range pick(c) {
			keys[k] = true
		}
	}
	type kv struct {
		key string
		v   float64
	}
	var rows []kv
	for k := range keys {
		rows = append(rows, kv{k, per(func(c *Cost) float64 { return float64(pick(c)[k]) })})
	}
	slices.SortFunc(rows, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.key, b.key)) })
	for i, r := range rows {
		n := ""
		if i == 0 {
			n = note
		}
		fmt.Fprintf(w, "%s%s\t%.2f\t\t%s\n", indent, r.key, r.v, n)
	}
}

func cpuMS(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// median of the values; 0 if there are none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// medianOf returns the median of f over the complete runs picked by pick.
func (rep *Report) medianOf(pick func(Round) Result, f func(Result) float64) (float64, int) {
	var v []float64
	for _, rd := range rep.Rounds {
		if r := pick(rd); r.OK() {
			v = append(v, f(r))
		}
	}
	return median(v), len(v)
}

func pickBaseline(rd Round) Result { return rd.Baseline }
func pickAcmeq(rd Round) Result    { return rd.Acmeq }

// Medians returns the median certs/s of the complete baseline and acmeq
// runs and their ratio (acmeq/baseline; 0 if either has no complete run).
func (rep *Report) Medians() (baseline, acmeq, ratio float64) {
	baseline, _ = rep.medianOf(pickBaseline, Result.CertsPerSec)
	acmeq, _ = rep.medianOf(pickAcmeq, Result.CertsPerSec)
	if baseline > 0 && acmeq > 0 {
		ratio = acmeq / baseline
	}
	return baseline, acmeq, ratio
}

// WriteText writes the report as plain text: each round, the medians, the
// ratio against the goal, and acmeq's cost per certificate against the
// budget.
func (rep *Report) WriteText(w io.Writer) error {
	o := rep.Options
	var b strings.Builder
	fmt.Fprintf(&b, "acmeq bench: %d certificates of %d names per run, baseline concurrency %d, acmeq workers %d, fresh Pebble per run, deadline %s, %d CPUs\n",
		o.N, NamesPerCertificate, o.Concurrency, o.Workers, o.Timeout, runtime.NumCPU())
	fmt.Fprintf(&b, "(CPU/CERT: this process and redis-server; LOAD: the host's 1-minute load average after the run, other work included)\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUND\tRUN\tISSUED\tFAILED\tWALL\tCERTS/S\tCPU/CERT\tACME REQ/CERT\tLOAD\tNOTE")
	hangs := 0
	for i, rd := range rep.Rounds {
		hangs += len(rd.Hangs)
		for _, r := range append(slices.Clone(rd.Hangs), rd.Baseline, rd.Acmeq) {
			if r.Kind == "" {
				continue
			}
			note := ""
			if r.Err != nil {
				note = r.Err.Error()
			} else if len(r.Errors) > 0 {
				note = r.Errors[0]
			}
			fmt.Fprintf(tw, "%d\t%s\t%d/%d\t%d\t%s\t%.1f\t%s\t%.1f\t%.1f\t%s\n", i+1, r.Kind, r.Issued, r.N, r.Failed, r.Wall.Round(time.Millisecond),
				r.CertsPerSec(), cpuMS(r.CPUPerCert()), r.ACMERequestsPerCert(), r.Load, note)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hangs > 0 {
		fmt.Fprintf(&b, "\n%d run(s) found Pebble hung and were repeated on a fresh Pebble (Pebble v2.10.1's lock-order deadlock; not counted)\n", hangs)
	}
	base, nb := rep.medianOf(pickBaseline, Result.CertsPerSec)
	acq, na := rep.medianOf(pickAcmeq, Result.CertsPerSec)
	fmt.Fprintf(&b, "\nmedian certs/s: baseline %.1f (%d complete runs), acmeq %.1f (%d complete runs)\n", base, nb, acq, na)
	bcpu, _ := rep.medianOf(pickBaseline, func(r Result) float64 { return float64(r.CPUPerCert()) })
	acpu, _ := rep.medianOf(pickAcmeq, func(r Result) float64 { return float64(r.CPUPerCert()) })
	if bcpu > 0 && acpu > 0 {
		fmt.Fprintf(&b, "median CPU per certificate (process + redis-server; the host's other load inflates it): baseline %s, acmeq %s (%.2fx)\n",
			cpuMS(time.Duration(bcpu)), cpuMS(time.Duration(acpu)), acpu/bcpu)
	}
	breq, _ := rep.medianOf(pickBaseline, Result.ACMERequestsPerCert)
	areq, _ := rep.medianOf(pickAcmeq, Result.ACMERequestsPerCert)
	fmt.Fprintf(&b, "median ACME requests per certificate (Pebble's log): baseline %.1f, acmeq %.1f\n", breq, areq)
	if _, _, ratio := rep.Medians(); ratio > 0 {
		verdict := "meets"
		if ratio < Goal {
			verdict = "BELOW"
		}
		fmt.Fprintf(&b, "ratio acmeq/baseline: %.2f (%s the goal of %.1f)\n", ratio, verdict, Goal)
	} else {
		fmt.Fprintf(&b, "ratio acmeq/baseline: n/a (no complete run on one side)\n")
	}
	rep.writeCost(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCost writes the median per-certificate cost of the acmeq runs.
func (rep *Report) writeCost(b *strings.Builder) {
	var costs []*Cost
	for _, rd := range rep.Rounds {
		if rd.Acmeq.Cost != nil && rd.Acmeq.Cost.Certificates > 0 {
			costs = append(costs, rd.Acmeq.Cost)
		}
	}
	if len(costs) == 0 {
		fmt.Fprintf(b, "\ncost: n/a (no acmeq run was counted)\n")
		return
	}
	per := func(f func(*Cost) float64) float64 {
		v := make([]float64, len(costs))
		for i, c := range costs {
			v[i] = c.Per(f(c))
		}
		return median(v)
	}
	fmt.Fprintf(b, "\nacmeq cost per certificate of %d names (median of %d runs; end to end, events included):\n", NamesPerCertificate, len(costs))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHAT\tPER CERT\tBUDGET\t")
	check := func(what string, v float64, budget int) {
		mark := "ok"
		if v > float64(budget) {
			mark = "OVER"
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%s\n", what, v, budget, mark)
	}
	msgs := per(func(c *Cost) float64 { return float64(c.Messages()) })
	check("JetStream messages (work + events + dead)", msgs, BudgetMessages)
	fmt.Fprintf(tw, "  work transitions (ACMEQ_WORK)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.WorkMessages) }))
	breakdown(tw, "    ", costs, per, func(c *Cost) map[string]uint64 { return c.WorkByKind }, "published, before deduplication")
	fmt.Fprintf(tw, "  events (ACMEQ_EVENTS)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.Events) }))
	breakdown(tw, "    ", costs, per, func(c *Cost) map[string]uint64 { return c.EventsByReason }, "")
	if d := per(func(c *Cost) float64 { return float64(c.DeadLetters) }); d > 0 {
		fmt.Fprintf(tw, "  dead letters (ACMEQ_DEAD)\t%.1f\t\t\n", d)
	}
	check("KV writes (all buckets)", per(func(c *Cost) float64 { return float64(c.KVWrites) }), BudgetKVWrites)
	buckets := map[string]bool{}
	for _, c := range costs {
		for k := range c.KVByBucket {
			buckets[k] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(buckets)) {
		fmt.Fprintf(tw, "  %s\t%.1f\t\t\n", k, per(func(c *Cost) float64 { return float64(c.KVByBucket[k]) }))
	}
	monitored := true
	for _, c := range costs {
		if c.RedisMonitorErr != nil {
			monitored = false
			fmt.Fprintf(tw, "Redis calls by clients\tn/a\t%d\t%v\n", BudgetRedisCalls, c.RedisMonitorErr)
			break
		}
	}
	if monitored {
		check("Redis calls by clients (MONITOR; a script once)", per(func(c *Cost) float64 { return float64(c.RedisCalls) }), BudgetRedisCalls)
		fmt.Fprintf(tw, "  of which tick loops while idle (est.)\t%.1f\t\t\n", per(func(c *Cost) float64 { return c.RedisIdleCalls }))
		breakdown(tw, "  ", costs, per, func(c *Cost) map[string]uint64 { return c.RedisByCommand }, "")
	}
	fmt.Fprintf(tw, "Redis commands (INFO commandstats, incl. inside scripts)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.RedisCommands) }))
	fmt.Fprintf(tw, "NATS messages in (varz: publishes, KV reads, acks, pulls, API)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.NATSMsgsIn) }))
	_ = tw.Flush()
	for _, c := range costs {
		if c.NotQuiet {
			fmt.Fprintf(b, "note: a run was still busy %s after its last Ready; its counts include that work\n", quietMax)
			break
		}
	}
}
