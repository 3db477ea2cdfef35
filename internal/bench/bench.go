// Package bench measures bulk issuance: acmeq against a bare
// golang.org/x/crypto/acme client, each on an equally fresh in-process
// Pebble, and what a certificate costs acmeq in JetStream messages, KV
// writes and Redis calls.
//
// Every run starts its own Pebble (a Pebble that has accumulated
// authorizations is slower, and Pebble v2.10.1 can deadlock under many
// concurrent orders) and has a deadline; a run that misses it probes Pebble
// and reports a hang as ErrPebbleHang, distinct from a slow run.
package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
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
	// slow one; probeInterval is how often a run's watchdog sends it.
	probeTimeout  = 10 * time.Second
	probeInterval = 5 * time.Second
	// maxErrors is how many error messages a Result keeps.
	maxErrors = 5
	// Domain is the parent of every benchmark name.
	Domain = "acmeq.test"
)

// Errors.
var (
	// ErrPebbleHang: a run missed its deadline and Pebble did not answer a
	// new-account request within a few seconds (its store lock is held:
	// the known lock-order deadlock of Pebble v2.10.1 under many concurrent
	// orders). The measurement is void, not slow.
	ErrPebbleHang = errors.New("bench: Pebble hang? Pebble stopped answering (its store lock is held)")
	// ErrTimeout: a run missed its deadline while Pebble still answered.
	ErrTimeout = errors.New("bench: run missed its deadline (Pebble still answers: slow, not hung)")
)

// Result is one measured run.
type Result struct {
	// Kind is "baseline" or "acmeq".
	Kind string
	// N certificates were requested; Issued of them were issued and
	// Failed failed (N-Issued-Failed were still pending at the deadline).
	N, Issued, Failed int
	// Wall is the time from the first request to the last certificate.
	Wall time.Duration
	// CPU is the CPU time the whole process (client or workers, Pebble,
	// NATS, HTTP-01) used over Wall; RedisCPU is redis-server's (acmeq
	// only). Less sensitive than Wall to other load on the machine.
	CPU, RedisCPU time.Duration
	// Load is the host's one-minute load average as the run ended (0
	// where there is no /proc/loadavg): a run on a busy host is slower.
	Load float64
	// ACMERequests are the requests Pebble handled over Wall, by method
	// and endpoint ("POST /authZ/").
	ACMERequests map[string]int
	// Errors holds the first few error messages.
	Errors []string
	// Err is set when the run did not complete: ErrPebbleHang, ErrTimeout
	// or a set-up failure.
	Err error
	// Cost is what acmeq spent (nil for the baseline).
	Cost *Cost
}

// CertsPerSec is the issuance rate of the run.
func (r Result) CertsPerSec() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Issued) / r.Wall.Seconds()
}

// CPUPerCert is the CPU time (process and redis-server) per issued
// certificate.
func (r Result) CPUPerCert() time.Duration {
	if r.Issued == 0 {
		return 0
	}
	return (r.CPU + r.RedisCPU) / time.Duration(r.Issued)
}

// ACMERequestsPerCert is the number of requests Pebble handled per issued
// certificate.
func (r Result) ACMERequestsPerCert() float64 {
	if r.Issued == 0 {
		return 0
	}
	return float64(total(r.ACMERequests)) / float64(r.Issued)
}

// OK reports a complete run: every certificate issued before the deadline.
func (r Result) OK() bool { return r.Err == nil && r.Issued == r.N }

func (r *Result) addError(msg string) {
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, msg)
	}
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
// takes the store's write lock, which the deadlock holds forever.
func probePebble(p *stack.Pebble) error {
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
// seconds, not the whole deadline. Every probeInterval the watchdog looks
// for goroutines blocked on a lock in Pebble's store; when one is still
// blocked at the next look and Pebble also leaves a new-account request
// unanswered for probeTimeout, Pebble is hung: a busy but live Pebble
// passes either test.
func runContext(ctx context.Context, p *stack.Pebble, timeout time.Duration) (context.Context, func()) {
	cctx, cancelCause := context.WithCancelCause(ctx)
	rctx, cancel := context.WithTimeout(cctx, timeout)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		before := lockWaiters()
		var prev map[string]string
		for {
			select {
			case <-stop:
				return
			case <-rctx.Done():
				return
			case <-t.C:
			}
			cur := lockWaiters()
			fn := stuck(before, prev, cur)
			prev = cur
			if fn == "" {
				continue
			}
			if err := probePebble(p); errors.Is(err, ErrPebbleHang) {
				cancelCause(fmt.Errorf("%w: a goroutine stayed blocked in %s across two looks %s apart", err, fn, probeInterval))
				return
			}
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
func runError(ctx context.Context, p *stack.Pebble, timeout time.Duration, elapsed time.Duration) error {
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

// processCPU returns the CPU time (user + system) this process has used,
// from /proc/self/stat; 0 where there is no /proc.
func processCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// startProfile starts a CPU profile into path ("" does nothing) and
// returns what stops it; a profile is only one run's timed part.
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
