// Package bench measures bulk issuance honestly: acmeq as it runs in
// production (`acmeq worker` processes, an `acmeq http01` responder,
// nats-server and redis-server, each a process of its own) against a bare
// golang.org/x/crypto/acme client, side by side in the same run, each on
// an equally fresh Pebble that is also a process of its own.
//
// Pebble is built from the module cache with the lock-order fix of its
// in-memory store applied by `go build -overlay`
// (stack.BuildPebble), and serves requests concurrently: the CA's real
// limit, not a serialized one. Its CPU and the DNS server's are the CA's
// side and are reported apart. The client side is measured per process
// from /proc: for acmeq, the workers, the responder, nats-server and
// redis-server; for the baseline, the bench process that runs it.
//
// Every run has a deadline, and a run that stops making progress probes
// Pebble and reports a hang as ErrPebbleHang, distinct from a slow run.
package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/stack"
)

// Defaults.
const (
	// NamesPerCertificate is how many DNS names every benchmark certificate
	// has (the cost budget is stated for two).
	NamesPerCertificate = 2
	// TimeoutBase and TimeoutPerCertificate make the default deadline of a
	// run: TimeoutBase + n*TimeoutPerCertificate.
	TimeoutBase           = 30 * time.Second
	TimeoutPerCertificate = 300 * time.Millisecond
	// probeTimeout bounds the request that tells a hung Pebble from a
	// slow one; a run's watchdog looks at its progress every
	// probeInterval and probes Pebble after stallWindow without any.
	probeTimeout  = 10 * time.Second
	probeInterval = 5 * time.Second
	stallWindow   = 15 * time.Second
	// maxErrors is how many error messages a Result keeps.
	maxErrors = 5
	// Domain is the parent of every benchmark name.
	Domain = "acmeq.test"
)

// Errors.
var (
	// ErrPebbleHang: a run made no progress and Pebble did not answer a
	// new-account request within a few seconds. The measurement is void,
	// not slow. (Pebble v2.10.1 deadlocks under many concurrent orders;
	// the bench's Pebble has the fix, so this should not happen.)
	ErrPebbleHang = errors.New("bench: Pebble hang? Pebble stopped answering")
	// ErrTimeout: a run missed its deadline while Pebble still answered.
	ErrTimeout = errors.New("bench: run missed its deadline (Pebble still answers: slow, not hung)")
)

// Kinds and modes of a Result.
const (
	KindBaseline = "baseline"
	KindAcmeq    = "acmeq"
	// ModeThroughput issues N certificates at once on a clean CA;
	// ModeNonce the same with the CA rejecting NonceRejectPercent of good
	// nonces; ModeLatency one certificate at a time on an idle client
	// (the baseline at concurrency 1), keeping each one's time;
	// ModeBreakdown is an instrumented acmeq throughput run that counts
	// messages by kind and Redis calls by command (its CPU is not
	// reported: the instruments cost some).
	ModeThroughput = "throughput"
	ModeNonce      = "nonce"
	ModeLatency    = "latency"
	ModeBreakdown  = "breakdown"
)

// Result is one measured run.
type Result struct {
	// Kind is KindBaseline or KindAcmeq; Mode is ModeThroughput (or "",
	// read as throughput), ModeNonce, ModeLatency or ModeBreakdown.
	Kind, Mode string
	// NonceRejectPercent is the share of good nonces the CA rejected.
	NonceRejectPercent int
	// N certificates were requested; Issued of them were issued and
	// Failed failed (N-Issued-Failed were still pending at the deadline).
	N, Issued, Failed int
	// Wall is the time from the first request to the last certificate.
	Wall time.Duration
	// CPU is the client side's CPU time, redis-server's apart in RedisCPU:
	// for the baseline, the bench process running it (its HTTP-01 server
	// included); for acmeq, the workers, the responder and nats-server,
	// from the first request until the fleet is quiet after the last
	// Ready (trailing clean-ups included). ByProcess splits it (and
	// redis-server's) by process.
	CPU, RedisCPU time.Duration
	ByProcess     map[string]time.Duration
	// CACPU is the CA side's CPU time over the same window: the Pebble and
	// DNS processes. Not the client's cost.
	CACPU time.Duration
	// BenchCPU is, for acmeq, the bench process's CPU (publishing the
	// requests, watching for Ready): the producer's side, not counted.
	BenchCPU time.Duration
	// Latencies are the times of each certificate of a ModeLatency run,
	// from the request (the publish, for acmeq) to Ready.
	Latencies []time.Duration
	// Load is the host's one-minute load average as the run ended (0
	// where there is no /proc/loadavg): a run on a busy host is slower.
	Load float64
	// ACMERequests are the requests Pebble handled in the run, by method
	// and endpoint ("POST /authZ/"), set-up included.
	ACMERequests map[string]int
	// Errors holds the first few error messages.
	Errors []string
	// Err is set when the run did not complete: ErrPebbleHang, ErrTimeout
	// or a set-up failure.
	Err error
	// Cost is what acmeq spent (nil for the baseline).
	Cost *Cost
	// Profiles are the CPU profiles written for the run, by process.
	Profiles map[string]string
}

// CertsPerSec is the issuance rate of the run.
func (r Result) CertsPerSec() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Issued) / r.Wall.Seconds()
}

// CPUPerCert is the client side's CPU time (redis-server's included) per
// issued certificate.
func (r Result) CPUPerCert() time.Duration {
	if r.Issued == 0 {
		return 0
	}
	return (r.CPU + r.RedisCPU) / time.Duration(r.Issued)
}

// CACPUPerCert is the CA side's CPU time per issued certificate.
func (r Result) CACPUPerCert() time.Duration {
	if r.Issued == 0 {
		return 0
	}
	return r.CACPU / time.Duration(r.Issued)
}

// ACMERequestsPerCert is the number of requests Pebble handled per issued
// certificate.
func (r Result) ACMERequestsPerCert() float64 {
	if r.Issued == 0 {
		return 0
	}
	return float64(total(r.ACMERequests)) / float64(r.Issued)
}

// Percentile returns the p-th percentile (0 < p <= 100, nearest rank) of
// the run's latencies, or 0.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	v := slices.Clone(r.Latencies)
	slices.Sort(v)
	rank := int(p/100*float64(len(v)) + 0.999999)
	return v[min(max(rank, 1), len(v))-1]
}

// OK reports a complete run: every certificate issued before the deadline.
func (r Result) OK() bool { return r.Err == nil && r.Issued == r.N && r.N > 0 }

func (r *Result) addError(msg string) {
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, msg)
	}
}

// name is how the run is shown: "acmeq", "baseline nonce 30%", ...
func (r Result) name() string {
	switch r.Mode {
	case ModeNonce:
		return fmt.Sprintf("%s nonce %d%%", r.Kind, r.NonceRejectPercent)
	case ModeLatency, ModeBreakdown:
		return r.Kind + " " + r.Mode
	}
	return r.Kind
}

// CertName is the name of benchmark certificate i.
func CertName(i int) string { return "bench-" + strconv.Itoa(i) }

// DNSNames are the names of benchmark certificate i: the same for the
// baseline and acmeq.
func DNSNames(i int) []string {
	base := CertName(i) + "." + Domain
	return []string{base, "www." + base}
}

// defaultTimeout is the deadline of a run of n certificates.
func defaultTimeout(n int) time.Duration {
	return TimeoutBase + time.Duration(n)*TimeoutPerCertificate
}

// probePebble tells a hung Pebble from a slow one: a new-account request
// takes the store's write lock.
func probePebble(p *stack.PebbleProcess) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	o := acmeclient.Options{DirectoryURL: p.DirectoryURL, CABundle: p.TLSCertPEM, Timeout: probeTimeout}
	hc, err := acmeclient.NewHTTPClient(o)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	cl := acmeclient.New(o, hc, key, "")
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		if ctx.Err() != nil {
			return ErrPebbleHang
		}
		return fmt.Errorf("bench: probe pebble: %w", err)
	}
	return nil
}

// runContext is the context of the timed part of a run: it ends at the
// deadline, or as soon as a watchdog finds Pebble hung, so a hang costs
// seconds, not the whole deadline. Every probeInterval the watchdog reads
// progress (certificates done so far); after stallWindow without any, it
// probes Pebble, and a Pebble that leaves a new-account request
// unanswered for probeTimeout is hung. A busy but live run never pays for
// a probe.
func runContext(ctx context.Context, p *stack.PebbleProcess, timeout time.Duration, progress func() int) (context.Context, func()) {
	cctx, cancelCause := context.WithCancelCause(ctx)
	rctx, cancel := context.WithTimeout(cctx, timeout)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		last, since := progress(), time.Now()
		for {
			select {
			case <-stop:
				return
			case <-rctx.Done():
				return
			case <-t.C:
			}
			if n := progress(); n != last {
				last, since = n, time.Now()
				continue
			}
			if time.Since(since) < stallWindow {
				continue
			}
			if err := probePebble(p); errors.Is(err, ErrPebbleHang) {
				cancelCause(fmt.Errorf("%w: no certificate done for %s", err, time.Since(since).Round(time.Second)))
				return
			}
			since = time.Now()
		}
	}()
	return rctx, sync.OnceFunc(func() {
		close(stop)
		<-done
		cancel()
		cancelCause(nil)
	})
}

// runError is the Err of a run whose context ended before every
// certificate was done: ErrPebbleHang (found by the watchdog, or by a last
// probe at the deadline) or ErrTimeout.
func runError(ctx context.Context, p *stack.PebbleProcess, timeout time.Duration, elapsed time.Duration) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrPebbleHang) {
		return fmt.Errorf("%w (found by the watchdog after %s)", cause, elapsed.Round(time.Second))
	}
	if err := probePebble(p); errors.Is(err, ErrPebbleHang) {
		return fmt.Errorf("%w (deadline %s)", ErrPebbleHang, timeout)
	}
	return fmt.Errorf("%w (deadline %s)", ErrTimeout, timeout)
}

// newCSR returns a DER CSR for names with a fresh ECDSA P-256 key, the
// key acmeq generates by default.
func newCSR(names []string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
}

// startProfile starts a CPU profile of this process into path ("" does
// nothing) and returns what stops it; a profile is only one run's timed
// part.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}, fmt.Errorf("bench: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}, fmt.Errorf("bench: cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// loadAverage returns the host's one-minute load average, or 0.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// sum adds the durations.
func sum(m map[string]time.Duration) time.Duration {
	var t time.Duration
	for _, d := range m {
		t += d
	}
	return t
}
