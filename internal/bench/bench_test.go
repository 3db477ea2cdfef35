package bench

import (
	"crypto/sha1"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole benchmark on a handful of certificates, with CPU
// profiles: every run completes on both sides (with 30% of nonces rejected
// too), every process of acmeq's side was profiled, the cost is counted,
// nothing is dead-lettered, and the report has every figure. The figures themselves are for `acmeq bench`, not for a test.
func TestSmoke(t *testing.T) {
	const n = 4
	var progress strings.Builder
	profDir := t.TempDir()
	rep, err := Run(t.Context(), Options{N: n, Rounds: 1, LatencySamples: 3, Timeout: 2 * time.Minute, Progress: &progress, CPUProfileDir: profDir})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 {
		t.Fatalf("%d rounds, want 1", len(rep.Rounds))
	}
	rd := rep.Rounds[0]
	for _, r := range []Result{rd.Baseline, rd.Acmeq, rd.BaselineNonce, rd.AcmeqNonce, rd.BaselineLatency, rd.AcmeqLatency, *rep.Breakdown} {
		if !r.OK() {
			t.Errorf("%s: %s (errors %q)", r.name(), r.summary(), r.Errors)
		}
		if r.Mode == ModeLatency && len(r.Latencies) != r.N {
			t.Errorf("%s: %d latencies, want %d", r.name(), len(r.Latencies), r.N)
		}
		if r.Mode != ModeLatency && r.Mode != ModeBreakdown && (r.CPU <= 0 || r.CACPU <= 0) {
			t.Errorf("%s: client CPU %s, CA CPU %s: not measured", r.name(), r.CPU, r.CACPU)
		}
	}
	for _, proc := range []string{"nats-server", "worker-0", "http01"} {
		path := rd.Acmeq.Profiles[proc]
		if st, err := os.Stat(path); path == "" || err != nil || st.Size() == 0 {
			t.Errorf("no CPU profile of %s (profiles %v): %v", proc, rd.Acmeq.Profiles, err)
		}
	}
	if rd.Acmeq.RedisCPU <= 0 || len(rd.Acmeq.ByProcess) != 5 {
		t.Errorf("acmeq CPU by process = %v, redis %s: want worker-0, worker-1, http01, nats-server, redis-server", rd.Acmeq.ByProcess, rd.Acmeq.RedisCPU)
	}
	// The nonce runs met rejections: Pebble's log shows more requests
	// than the clean run's.
	if total(rd.AcmeqNonce.ACMERequests) <= total(rd.Acmeq.ACMERequests) {
		t.Errorf("acmeq with %d%% nonce rejects made %d ACME requests, the clean run %d: were nonces rejected?",
			NonceRejectDefault, total(rd.AcmeqNonce.ACMERequests), total(rd.Acmeq.ACMERequests))
	}
	for _, r := range []Result{rd.Acmeq, rd.AcmeqNonce, *rep.Breakdown} {
		c := r.Cost
		if c == nil || c.Certificates != n {
			t.Fatalf("%s: cost = %+v, want %d certificates", r.name(), c, n)
		}
		if c.DeadLetters != 0 {
			t.Errorf("%s: %d dead letters", r.name(), c.DeadLetters)
		}
		// Every certificate takes at least its Certificate,
		// CertificateRequest, Order and two Challenge transitions.
		if c.WorkMessages < 5*n || c.Events == 0 || c.KVWrites < 5*n || c.RedisCommands == 0 || c.NATSMsgsIn == 0 {
			t.Errorf("%s: cost too small to be real: %+v", r.name(), c)
		}
	}
	bd := rep.Breakdown.Cost
	if bd.RedisMonitorErr != nil {
		t.Errorf("redis monitor: %v", bd.RedisMonitorErr)
	} else if bd.RedisCalls == 0 || bd.RedisCommands < bd.RedisCalls/2 {
		t.Errorf("redis counts: calls %d, commands %d", bd.RedisCalls, bd.RedisCommands)
	}
	for k := range bd.EventsByReason {
		if strings.HasSuffix(k, "/PoisonMessage") {
			t.Errorf("event %s in the breakdown run", k)
		}
	}
	var out strings.Builder
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"certs/s", "client CPU per certificate", "one certificate at a time, p50", "nonce rejects / the clean run", "KV writes", "Redis calls by clients", "by process"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	t.Logf("\n%s", out.String())
}

func TestPercentile(t *testing.T) {
	r := Result{}
	for i := 100; i >= 1; i-- {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond} {
		if got := r.Percentile(p); got != want {
			t.Errorf("Percentile(%v) = %s, want %s", p, got, want)
		}
	}
	if got := (Result{Latencies: []time.Duration{7}}).Percentile(99); got != 7 {
		t.Errorf("Percentile of one = %s", got)
	}
}

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=1\r\n")
	if got["evalsha"] != 12 || got["client|setinfo"] != 2 || len(got) != 2 {
		t.Errorf("parseCommandStats = %v", got)
	}
}

func TestMonitorLine(t *testing.T) {
	sum := sha1.Sum([]byte("-- Renew a lease.\nreturn 1"))
	renewSHA := hex.EncodeToString(sum[:])
	m := &monitor{nonce: "n1", phase: -1, byCmd: map[string]uint64{}, scripts: map[string]string{}, seen: make(chan int, 3)}
	m.line(`+1.0 [0 127.0.0.1:1] "get" "before"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "echo" "acmeq-bench-n1-0"` + "\r\n")
	// The EVAL (after a NOSCRIPT) teaches the name of the script.
	m.line(`+1.0 [0 127.0.0.1:1] "evalsha" "` + renewSHA + `" "1" "k"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "eval" "-- Renew a lease.\nreturn 1" "0"` + "\r\n")
	m.line(`+1.0 [0 lua] "zadd" "k" "1" "m"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "EVALSHA" "` + renewSHA + `" "0"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "info" "commandstats"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "echo" "acmeq-bench-n1-1"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "setnx" "x" "y"` + "\r\n")
	busy, idle, by := m.counts()
	if busy != 3 || idle != 1 || by["evalsha renew"] != 2 || by["eval renew"] != 1 || len(by) != 2 {
		t.Errorf("busy %d idle %d by %v", busy, idle, by)
	}
}

func TestMonitorArgs(t *testing.T) {
	got := monitorArgs(` "eval" "-- a \"b\"\nc\\d\x41" "0"` + "\r\n")
	want := []string{"eval", "-- a \"b\"\nc\\dA", "0"}
	if !slices.Equal(got, want) {
		t.Errorf("monitorArgs = %q, want %q", got, want)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 2, 3}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// BenchmarkIssuance runs one round of the side-by-side benchmark per
// iteration (200 certificates; no nonce, latency or breakdown runs) and
// reports both sides' rates and client CPU. `acmeq bench` is the full
// version. Run with: go test -run '^$' -bench Issuance ./internal/bench/
func BenchmarkIssuance(b *testing.B) {
	var rounds []Round
	for b.Loop() {
		rep, err := Run(b.Context(), Options{N: 200, Rounds: 1, NonceRejectPercent: -1, LatencySamples: -1, NoBreakdown: true})
		if err != nil {
			b.Fatal(err)
		}
		rd := rep.Rounds[0]
		if !rd.Baseline.OK() || !rd.Acmeq.OK() {
			b.Fatalf("baseline: %s; acmeq: %s", rd.Baseline.summary(), rd.Acmeq.summary())
		}
		rounds = append(rounds, rd)
	}
	rep := &Report{Rounds: rounds}
	base, acq, ratio := rep.Medians()
	bcpu, _ := rep.medianOf(pickBaseline, func(r Result) float64 { return float64(r.CPUPerCert()) })
	acpu, _ := rep.medianOf(pickAcmeq, func(r Result) float64 { return float64(r.CPUPerCert()) })
	b.ReportMetric(base, "baseline-certs/s")
	b.ReportMetric(acq, "acmeq-certs/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(bcpu/1e6, "baseline-cpu-ms/cert")
	b.ReportMetric(acpu/1e6, "acmeq-cpu-ms/cert")
}

// BenchmarkWorkerRSS queues 100,000 certificates onto a worker (and starts
// a second one into the full queue) and reports the workers' largest RSS;
// the target is under 100 MiB and flat. It takes minutes. Run with:
// go test -run '^$' -bench WorkerRSS -benchtime 1x -timeout 30m ./internal/bench/
func BenchmarkWorkerRSS(b *testing.B) {
	for b.Loop() {
		res, err := Memory(b.Context(), MemoryOptions{})
		var out strings.Builder
		_ = res.WriteText(&out)
		b.Logf("\n%s", out.String())
		if err != nil {
			b.Fatal(err)
		}
		w0, w1 := res.Max("worker-0"), res.Max("worker-1")
		b.ReportMetric(float64(res.Idle)/(1<<20), "idle-MiB")
		b.ReportMetric(float64(w0)/(1<<20), "worker0-max-MiB")
		b.ReportMetric(float64(w1)/(1<<20), "worker1-max-MiB")
		if max(w0, w1) > MemoryGoal {
			b.Errorf("a worker reached %s with %d certificates queued, over the target of %s", mib(max(w0, w1)), res.Options.N, mib(MemoryGoal))
		}
	}
}
