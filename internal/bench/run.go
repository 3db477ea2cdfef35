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

	"github.com/acmeq/acmeq/scheduler"
)

// Defaults of Options.
const (
	NDefault = 1000
	// ConcurrencyDefault is the baseline's concurrency: acmeq's cap on
	// concurrent challenges, so that both sides may have as many orders
	// at the CA.
	ConcurrencyDefault = scheduler.CapDefault
	// CapDefault is acmeq's cap on concurrent challenges.
	CapDefault         = scheduler.CapDefault
	WorkersDefault     = 2
	RoundsDefault      = 3
	HangRetriesDefault = 2
	// NonceRejectDefault is the share of good nonces the CA rejects in
	// the nonce runs.
	NonceRejectDefault = 30
	// LatencySamplesDefault is how many certificates a latency run issues,
	// one at a time.
	LatencySamplesDefault = 50
)

// Targets of issue 12: acmeq against the bare client.
const (
	// Goal is the throughput acmeq must reach relative to the baseline.
	Goal = 0.8
	// CPUGoal is the most client-side CPU per certificate acmeq may spend
	// relative to the baseline.
	CPUGoal = 1.5
	// LatencyGoal is the most single-certificate p50 acmeq may take
	// relative to the baseline at concurrency 1.
	LatencyGoal = 2.0
	// NonceGoal is the most time a run with nonce rejects may take
	// relative to a clean run.
	NonceGoal = 1.3
)

// Options configures Run.
type Options struct {
	// N certificates (two names each) per throughput run. Defaults to
	// NDefault.
	N int
	// Concurrency of the baseline client. Defaults to ConcurrencyDefault
	// (acmeq's cap).
	Concurrency int
	// Workers: how many `acmeq worker` processes. Defaults to
	// WorkersDefault.
	Workers int
	// Cap on acmeq's concurrent challenges. Defaults to CapDefault.
	Cap int
	// Rounds of runs; the report gives the median of each figure over
	// the rounds. Defaults to RoundsDefault.
	Rounds int
	// Timeout of each run. Defaults to TimeoutBase + N*TimeoutPerCertificate.
	Timeout time.Duration
	// HangRetries is how many times a run that found Pebble hung is
	// repeated (on a fresh Pebble) before its round is left incomplete.
	// Defaults to HangRetriesDefault; negative means none.
	HangRetries int
	// NonceRejectPercent is the share of good nonces the CA rejects in
	// each round's nonce runs (one baseline, one acmeq). Defaults to
	// NonceRejectDefault; negative skips the nonce runs.
	NonceRejectPercent int
	// LatencySamples is how many certificates each round's latency runs
	// issue one at a time (the baseline at concurrency 1, acmeq on an
	// idle fleet). Defaults to LatencySamplesDefault; negative skips the
	// latency runs.
	LatencySamples int
	// NoBreakdown skips the extra instrumented acmeq run (after the
	// rounds) that counts work messages by kind, events by reason and
	// Redis calls by command.
	NoBreakdown bool
	// PollInterval of the baseline. Defaults to PollIntervalDefault.
	PollInterval time.Duration
	// CPUProfileDir, if set, receives a CPU profile of the timed part of
	// each clean throughput run: baseline-<round>.pprof (the bench
	// process) and acmeq-<round>-<process>.pprof (worker-0, worker-1, ...,
	// http01, and nats-server: its first natsProfileSeconds, through its
	// pprof port). A run repeated after a Pebble hang overwrites its files.
	// acmeq's processes are profiled only when the bench built acmeq
	// (AcmeqBinary empty).
	CPUProfileDir string
	// ModuleDir is acmeq's source tree, where Pebble (patched),
	// nats-server, dnsd and acmeq are built. Defaults to the go.mod found
	// from the working directory upwards.
	ModuleDir string
	// AcmeqBinary, if set, is the acmeq binary the workers and the
	// responder run. Defaults to building cmd/acmeq from ModuleDir (with
	// the profiling hook, see CPUProfileDir).
	AcmeqBinary string
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
	if o.Cap <= 0 {
		o.Cap = CapDefault
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
	if o.NonceRejectPercent == 0 {
		o.NonceRejectPercent = NonceRejectDefault
	}
	if o.LatencySamples == 0 {
		o.LatencySamples = LatencySamplesDefault
	}
	if o.PollInterval <= 0 {
		o.PollInterval = PollIntervalDefault
	}
}

// profile is the CPU profile path of a run's process, or "".
func (o *Options) profile(kind string, round int, process string) string {
	if o.CPUProfileDir == "" {
		return ""
	}
	name := kind + "-" + strconv.Itoa(round)
	if process != "" {
		name += "-" + process
	}
	return filepath.Join(o.CPUProfileDir, name+".pprof")
}

// Round is one of each run: clean throughput, throughput with nonce
// rejects and latency, for the baseline and for acmeq. A run that was
// skipped has an empty Kind.
type Round struct {
	Baseline, Acmeq               Result
	BaselineNonce, AcmeqNonce     Result
	BaselineLatency, AcmeqLatency Result
	// Hangs are the runs of the round that found Pebble hung and were
	// repeated.
	Hangs []Result
}

func (rd Round) runs() []Result {
	out := slices.Clone(rd.Hangs)
	for _, r := range []Result{rd.Baseline, rd.Acmeq, rd.BaselineNonce, rd.AcmeqNonce, rd.BaselineLatency, rd.AcmeqLatency} {
		if r.Kind != "" {
			out = append(out, r)
		}
	}
	return out
}

// Report is the outcome of Run.
type Report struct {
	Options Options
	Rounds  []Round
	// Breakdown is the instrumented acmeq run (nil with NoBreakdown).
	Breakdown *Result
	// CPUs is runtime.NumCPU() of the host.
	CPUs int
}

// Run runs o.Rounds rounds, each of: a baseline and an acmeq throughput
// run, the same with nonce rejects, and a baseline and an acmeq latency
// run, every run on a fresh Pebble (and, for acmeq, a fresh fleet); then
// one instrumented acmeq run for the cost breakdown. It returns an error
// only when the tools cannot be built or ctx ends; failed runs are in the
// report (and left out of the medians).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	rep := &Report{Options: o, CPUs: runtime.NumCPU()}
	if o.CPUProfileDir != "" {
		if err := os.MkdirAll(o.CPUProfileDir, 0o755); err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
	}
	t, err := buildTools(ctx, &o)
	if err != nil {
		return rep, err
	}
	defer t.close()
	r := runner{ctx: ctx, o: o, t: t}
	for i := range o.Rounds {
		round := i + 1
		rd := Round{}
		for _, step := range r.steps(round, &rd) {
			step()
			if err := ctx.Err(); err != nil {
				rep.Rounds = append(rep.Rounds, rd)
				return rep, err
			}
		}
		rep.Rounds = append(rep.Rounds, rd)
	}
	if !o.NoBreakdown {
		var rd Round
		b := r.attempt(0, &rd, r.acq(ModeBreakdown, o.N, 0, nil))
		rep.Breakdown = &b
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runner runs the sides of one Run: its context, options and tools.
type runner struct {
	ctx context.Context
	o   Options
	t   *tools
}

// steps are the runs of round, each storing its result in rd.
func (r runner) steps(round int, rd *Round) []func() {
	o := r.o
	steps := []func(){
		func() {
			rd.Baseline = r.attempt(round, rd, r.base(ModeThroughput, o.N, 0, o.profile(KindBaseline, round, "")))
		},
		func() {
			var prof func(string) string
			if o.CPUProfileDir != "" {
				prof = func(p string) string { return o.profile(KindAcmeq, round, p) }
			}
			rd.Acmeq = r.attempt(round, rd, r.acq(ModeThroughput, o.N, 0, prof))
		},
	}
	if o.NonceRejectPercent > 0 {
		steps = append(steps,
			func() { rd.BaselineNonce = r.attempt(round, rd, r.base(ModeNonce, o.N, o.NonceRejectPercent, "")) },
			func() { rd.AcmeqNonce = r.attempt(round, rd, r.acq(ModeNonce, o.N, o.NonceRejectPercent, nil)) },
		)
	}
	if o.LatencySamples > 0 {
		latTimeout := TimeoutBase + time.Duration(o.LatencySamples)*5*time.Second
		steps = append(steps,
			func() {
				rd.BaselineLatency = r.attempt(round, rd, func() Result {
					return baseline(r.ctx, r.t, baselineConfig{mode: ModeLatency, n: o.LatencySamples, concurrency: 1, poll: o.PollInterval, timeout: latTimeout})
				})
			},
			func() {
				rd.AcmeqLatency = r.attempt(round, rd, func() Result {
					return acmeqRun(r.ctx, r.t, acmeqConfig{mode: ModeLatency, n: o.LatencySamples, workers: o.Workers, cap: o.Cap, timeout: latTimeout})
				})
			},
		)
	}
	return steps
}

// attempt runs one side, again on a fresh Pebble after a hang.
func (r runner) attempt(round int, rd *Round, run func() Result) Result {
	for i := 0; ; i++ {
		// Each run starts from a collected heap so that one run's
		// garbage is not the next one's work.
		runtime.GC()
		res := run()
		if r.o.Progress != nil {
			fmt.Fprintf(r.o.Progress, "round %d %-20s %s\n", round, res.name(), res.summary())
		}
		if !errors.Is(res.Err, ErrPebbleHang) || i >= r.o.HangRetries || r.ctx.Err() != nil {
			return res
		}
		rd.Hangs = append(rd.Hangs, res)
	}
}

// base is a baseline run of mode.
func (r runner) base(mode string, n, nonce int, profile string) func() Result {
	o := r.o
	return func() Result {
		return baseline(r.ctx, r.t, baselineConfig{mode: mode, n: n, concurrency: o.Concurrency, nonceReject: nonce, poll: o.PollInterval, timeout: o.Timeout, profile: profile})
	}
}

// acq is an acmeq run of mode.
func (r runner) acq(mode string, n, nonce int, profile func(string) string) func() Result {
	o := r.o
	return func() Result {
		return acmeqRun(r.ctx, r.t, acmeqConfig{mode: mode, n: n, workers: o.Workers, cap: o.Cap, nonceReject: nonce, timeout: o.Timeout, profile: profile})
	}
}

func (r Result) summary() string {
	var s string
	if r.Mode == ModeLatency {
		s = fmt.Sprintf("%d/%d issued one at a time: p50 %s, p99 %s", r.Issued, r.N, ms(r.Percentile(50)), ms(r.Percentile(99)))
	} else {
		s = fmt.Sprintf("%d/%d issued in %s: %.1f certs/s, client CPU %s/cert, CA+DNS CPU %s/cert", r.Issued, r.N, r.Wall.Round(time.Millisecond), r.CertsPerSec(), ms(r.CPUPerCert()), ms(r.CACPUPerCert()))
	}
	if r.Failed > 0 {
		s += fmt.Sprintf(", %d failed", r.Failed)
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	} else if len(r.Errors) > 0 {
		s += " (" + r.Errors[0] + ")"
	}
	return s
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string {
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

// medianOf returns the median of f over the complete runs picked by pick,
// and how many there were.
func (rep *Report) medianOf(pick func(Round) Result, f func(Result) float64) (float64, int) {
	var v []float64
	for _, rd := range rep.Rounds {
		if r := pick(rd); r.OK() {
			v = append(v, f(r))
		}
	}
	return median(v), len(v)
}

func pickBaseline(rd Round) Result        { return rd.Baseline }
func pickAcmeq(rd Round) Result           { return rd.Acmeq }
func pickBaselineNonce(rd Round) Result   { return rd.BaselineNonce }
func pickAcmeqNonce(rd Round) Result      { return rd.AcmeqNonce }
func pickBaselineLatency(rd Round) Result { return rd.BaselineLatency }
func pickAcmeqLatency(rd Round) Result    { return rd.AcmeqLatency }

// Medians returns the median certs/s of the complete clean baseline and
// acmeq runs and their ratio (acmeq/baseline; 0 if either has no complete
// run).
func (rep *Report) Medians() (baseline, acmeq, ratio float64) {
	baseline, _ = rep.medianOf(pickBaseline, Result.CertsPerSec)
	acmeq, _ = rep.medianOf(pickAcmeq, Result.CertsPerSec)
	return baseline, acmeq, ratio2(acmeq, baseline)
}

// NonceSlowdown returns, for the baseline and acmeq, the median over the
// rounds of the time of the run with nonce rejects over the time of the
// clean run of the same round (0 when no round has both): paired by round,
// so that a host whose load changes between rounds skews it less.
func (rep *Report) NonceSlowdown() (baseline, acmeq float64) {
	wall := func(r Result) float64 { return r.Wall.Seconds() }
	return rep.pairedRatio(pickBaselineNonce, pickBaseline, wall), rep.pairedRatio(pickAcmeqNonce, pickAcmeq, wall)
}

// pairedRatio is the median over the rounds where both runs completed of
// f(a)/f(b).
func (rep *Report) pairedRatio(a, b func(Round) Result, f func(Result) float64) float64 {
	var v []float64
	for _, rd := range rep.Rounds {
		if ra, rb := a(rd), b(rd); ra.OK() && rb.OK() {
			if r := ratio2(f(ra), f(rb)); r > 0 {
				v = append(v, r)
			}
		}
	}
	return median(v)
}

func ratio2(a, b float64) float64 {
	if a > 0 && b > 0 {
		return a / b
	}
	return 0
}

// WriteText writes the report as plain text: each run, the side-by-side
// medians with their ratios and targets, the CPU by process, and acmeq's
// cost per certificate against the budget.
func (rep *Report) WriteText(w io.Writer) error {
	o := rep.Options
	var b strings.Builder
	fmt.Fprintf(&b, "acmeq bench: %d certificates of %d names per throughput run; acmeq: %d `acmeq worker` processes, an `acmeq http01` responder, nats-server and redis-server, cap %d; baseline: bare x/crypto/acme client at concurrency %d polling every %s; every run on a fresh Pebble process (lock-order fix by go build -overlay, unserialized, PEBBLE_VA_NOSLEEP=1, PEBBLE_AUTHZREUSE=0) with its own DNS process; deadline %s; %d rounds; %d CPUs\n",
		o.N, NamesPerCertificate, o.Workers, o.Cap, o.Concurrency, o.PollInterval, o.Timeout, o.Rounds, rep.CPUs)
	fmt.Fprintf(&b, "(CLIENT CPU: acmeq's workers, responder, nats-server and redis-server, or the baseline's process, until the fleet is quiet; CA CPU: Pebble and the DNS server; LOAD: the host's 1-minute load average after the run, other work included)\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUND\tRUN\tISSUED\tWALL\tCERTS/S\tCLIENT CPU/CERT\tCA CPU/CERT\tP50\tP99\tACME REQ/CERT\tLOAD\tNOTE")
	hangs := 0
	for i, rd := range rep.Rounds {
		hangs += len(rd.Hangs)
		for _, r := range rd.runs() {
			rep.writeRun(tw, strconv.Itoa(i+1), r)
		}
	}
	if rep.Breakdown != nil {
		rep.writeRun(tw, "-", *rep.Breakdown)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hangs > 0 {
		fmt.Fprintf(&b, "\n%d run(s) found Pebble hung and were repeated on a fresh Pebble (not counted)\n", hangs)
	}
	rep.writeSideBySide(&b)
	rep.writeRequests(&b)
	rep.writeByProcess(&b)
	rep.writeCost(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (rep *Report) writeRun(tw io.Writer, round string, r Result) {
	note := ""
	if r.Err != nil {
		note = r.Err.Error()
	} else if len(r.Errors) > 0 {
		note = r.Errors[0]
	}
	rate, cpu, cacpu, p50, p99 := fmt.Sprintf("%.1f", r.CertsPerSec()), ms(r.CPUPerCert()), ms(r.CACPUPerCert()), "", ""
	if r.Mode == ModeLatency {
		rate, cpu, cacpu, p50, p99 = "", "", "", ms(r.Percentile(50)), ms(r.Percentile(99))
	}
	if r.Mode == ModeBreakdown {
		cpu, cacpu = "(instrumented)", ""
	}
	fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\n", round, r.name(), r.Issued, r.N, r.Wall.Round(time.Millisecond),
		rate, cpu, cacpu, p50, p99, r.ACMERequestsPerCert(), r.Load, note)
}

// writeSideBySide writes the medians of each figure, their ratio and the
// target.
func (rep *Report) writeSideBySide(b *strings.Builder) {
	fmt.Fprintf(b, "\nside by side: medians of the complete runs; ACMEQ/BASELINE is the ratio of the medians, PER ROUND the median of each round's ratio (N: complete baseline/acmeq runs)\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tBASELINE\tACMEQ\tACMEQ/BASELINE\tPER ROUND\tTARGET\tN")
	row := func(what string, pb, pa func(Round) Result, f func(Result) float64, format func(float64) string, target string, within func(float64) bool) {
		vb, nb := rep.medianOf(pb, f)
		va, na := rep.medianOf(pa, f)
		ratio := ratio2(va, vb)
		r, verdict := "n/a", ""
		if ratio > 0 {
			r = fmt.Sprintf("%.2fx", ratio)
			if within != nil {
				verdict = " (met)"
				if !within(ratio) {
					verdict = " (NOT met)"
				}
			}
		}
		fb, fa := "n/a", "n/a"
		if nb > 0 {
			fb = format(vb)
		}
		if na > 0 {
			fa = format(va)
		}
		t := target
		if t != "" {
			t += verdict
		}
		paired := "n/a"
		if pr := rep.pairedRatio(pa, pb, f); pr > 0 {
			paired = fmt.Sprintf("%.2fx", pr)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", what, fb, fa, r, paired, t, nb, na)
	}
	rate := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	dur := func(v float64) string { return ms(time.Duration(v)) }
	row("certs/s", pickBaseline, pickAcmeq, Result.CertsPerSec, rate, fmt.Sprintf(">= %.1fx", Goal), func(r float64) bool { return r >= Goal })
	row("client CPU per certificate", pickBaseline, pickAcmeq, func(r Result) float64 { return float64(r.CPUPerCert()) }, dur, fmt.Sprintf("<= %.1fx", CPUGoal), func(r float64) bool { return r <= CPUGoal })
	row("CA + DNS CPU per certificate (not ours)", pickBaseline, pickAcmeq, func(r Result) float64 { return float64(r.CACPUPerCert()) }, dur, "", nil)
	row("ACME requests per certificate", pickBaseline, pickAcmeq, Result.ACMERequestsPerCert, rate, "", nil)
	if rep.Options.LatencySamples > 0 {
		row(fmt.Sprintf("one certificate at a time, p50 (%d each)", rep.Options.LatencySamples), pickBaselineLatency, pickAcmeqLatency, func(r Result) float64 { return float64(r.Percentile(50)) }, dur, fmt.Sprintf("<= %.1fx", LatencyGoal), func(r float64) bool { return r <= LatencyGoal })
		row("one certificate at a time, p99", pickBaselineLatency, pickAcmeqLatency, func(r Result) float64 { return float64(r.Percentile(99)) }, dur, "", nil)
	}
	if p := rep.Options.NonceRejectPercent; p > 0 {
		row(fmt.Sprintf("certs/s with %d%% nonce rejects", p), pickBaselineNonce, pickAcmeqNonce, Result.CertsPerSec, rate, "", nil)
		row(fmt.Sprintf("client CPU per certificate, %d%% nonce rejects", p), pickBaselineNonce, pickAcmeqNonce, func(r Result) float64 { return float64(r.CPUPerCert()) }, dur, "", nil)
	}
	_ = tw.Flush()
	if p := rep.Options.NonceRejectPercent; p > 0 {
		bs, as := rep.NonceSlowdown()
		verdict := "n/a"
		if as > 0 {
			verdict = "met"
			if as > NonceGoal {
				verdict = "NOT met"
			}
		}
		fmt.Fprintf(b, "time of a run with %d%% nonce rejects / the clean run of its round (median): baseline %.2fx, acmeq %.2fx (target for acmeq <= %.1fx: %s)\n", p, bs, as, NonceGoal, verdict)
	}
}

// writeRequests splits the median ACME requests per certificate of the
// clean throughput runs by endpoint (Pebble's log; registration and the
// issuer's set-up included).
func (rep *Report) writeRequests(b *strings.Builder) {
	keys := map[string]bool{}
	for _, rd := range rep.Rounds {
		for _, r := range []Result{rd.Baseline, rd.Acmeq} {
			for k := range r.ACMERequests {
				keys[k] = true
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	fmt.Fprintf(b, "\nACME requests per certificate by endpoint (medians of the clean runs):\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tBASELINE\tACMEQ")
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		per := func(r Result) float64 { return float64(r.ACMERequests[k]) / float64(max(r.Issued, 1)) }
		vb, _ := rep.medianOf(pickBaseline, per)
		va, _ := rep.medianOf(pickAcmeq, per)
		if vb < 0.005 && va < 0.005 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\n", k, vb, va)
	}
	_ = tw.Flush()
}

// writeByProcess splits the median client CPU per certificate of the
// clean acmeq runs by process.
func (rep *Report) writeByProcess(b *strings.Builder) {
	var runs []Result
	for _, rd := range rep.Rounds {
		if rd.Acmeq.OK() && len(rd.Acmeq.ByProcess) > 0 {
			runs = append(runs, rd.Acmeq)
		}
	}
	if len(runs) == 0 {
		return
	}
	names := map[string]bool{}
	for _, r := range runs {
		for n := range r.ByProcess {
			names[n] = true
		}
	}
	type row struct {
		name string
		v    float64
	}
	var rows []row
	for n := range names {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = float64(r.ByProcess[n]) / float64(r.Issued)
		}
		rows = append(rows, row{n, median(v)})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.name, b.name)) })
	fmt.Fprintf(b, "\nacmeq client CPU per certificate by process (median of %d clean runs):", len(runs))
	for _, r := range rows {
		fmt.Fprintf(b, " %s %s,", r.name, ms(time.Duration(r.v)))
	}
	bench := make([]float64, len(runs))
	for i, r := range runs {
		bench[i] = float64(r.BenchCPU) / float64(r.Issued)
	}
	fmt.Fprintf(b, " (not counted: the bench's producer and watch %s)\n", ms(time.Duration(median(bench))))
	var profiles []string
	for _, rd := range rep.Rounds {
		for _, r := range []Result{rd.Baseline, rd.Acmeq} {
			for _, p := range slices.Sorted(maps.Keys(r.Profiles)) {
				profiles = append(profiles, r.Profiles[p])
			}
		}
	}
	if len(profiles) > 0 {
		fmt.Fprintf(b, "CPU profiles: %s\n", strings.Join(profiles, " "))
	}
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
		if v := per(func(c *Cost) float64 { return float64(pick(c)[k]) }); v >= 0.005 {
			rows = append(rows, kv{k, v})
		}
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

// costs are the counts of the clean acmeq runs that issued something, or
// the breakdown run's when there are none; bd is the breakdown run's, if
// it issued something.
func (rep *Report) costs() (costs []*Cost, bd *Cost) {
	for _, rd := range rep.Rounds {
		if rd.Acmeq.Cost != nil && rd.Acmeq.Cost.Certificates > 0 {
			costs = append(costs, rd.Acmeq.Cost)
		}
	}
	if rep.Breakdown != nil && rep.Breakdown.Cost != nil && rep.Breakdown.Cost.Certificates > 0 {
		bd = rep.Breakdown.Cost
		if len(costs) == 0 {
			costs = []*Cost{bd}
		}
	}
	return costs, bd
}

// writeCost writes acmeq's median cost per certificate: the passive
// counters of the clean throughput runs, then the breakdown of the
// instrumented run.
func (rep *Report) writeCost(b *strings.Builder) {
	costs, bd := rep.costs()
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
	fmt.Fprintf(b, "\nacmeq cost per certificate of %d names (median of %d clean runs; end to end, events included):\n", NamesPerCertificate, len(costs))
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
	if bd != nil {
		one := func(f func(*Cost) float64) float64 { return bd.Per(f(bd)) }
		breakdown(tw, "    ", []*Cost{bd}, one, func(c *Cost) map[string]uint64 { return c.WorkByKind }, "(breakdown run) published, before deduplication")
	}
	fmt.Fprintf(tw, "  events (ACMEQ_EVENTS)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.Events) }))
	if bd != nil {
		one := func(f func(*Cost) float64) float64 { return bd.Per(f(bd)) }
		breakdown(tw, "    ", []*Cost{bd}, one, func(c *Cost) map[string]uint64 { return c.EventsByReason }, "(breakdown run)")
	}
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
	switch {
	case bd == nil:
		fmt.Fprintf(tw, "Redis calls by clients\tn/a\t%d\t(no breakdown run)\n", BudgetRedisCalls)
	case bd.RedisMonitorErr != nil:
		fmt.Fprintf(tw, "Redis calls by clients\tn/a\t%d\t%v\n", BudgetRedisCalls, bd.RedisMonitorErr)
	default:
		check("Redis calls by clients (breakdown run, MONITOR; a script once)", bd.Per(float64(bd.RedisCalls)), BudgetRedisCalls)
		fmt.Fprintf(tw, "  of which tick loops while idle (est.)\t%.1f\t\t\n", bd.RedisIdleCalls/float64(bd.Certificates))
		one := func(f func(*Cost) float64) float64 { return bd.Per(f(bd)) }
		breakdown(tw, "  ", []*Cost{bd}, one, func(c *Cost) map[string]uint64 { return c.RedisByCommand }, "")
	}
	fmt.Fprintf(tw, "Redis commands (INFO commandstats, incl. inside scripts)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.RedisCommands) }))
	fmt.Fprintf(tw, "NATS messages in (varz: publishes, KV reads, acks, pulls, API)\t%.1f\t\t\n", per(func(c *Cost) float64 { return float64(c.NATSMsgsIn) }))
	_ = tw.Flush()
	for _, c := range append(costs, bd) {
		if c != nil && c.NotQuiet {
			fmt.Fprintf(b, "note: a run was still busy %s after its last Ready; its counts include that work\n", quietMax)
			break
		}
	}
}
