//go:build linux

package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
)

// buildAcmeq builds the acmeq binary once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// TestMain removes the binary built for the run (36 MB a run otherwise
// left in the temporary directory).
func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

func acmeqBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "acmeq-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "acmeq")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "../cmd/acmeq")
		buildOnce.out, buildOnce.err = cmd.CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("go build ./cmd/acmeq: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.path
}

// workerProc is an `acmeq worker` child process.
type workerProc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startWorker runs `acmeq worker` against env in its own process group; it
// dies with the test (Pdeathsig) and is killed at cleanup.
func startWorker(t testing.TB, env *dev.Env, name string, extra ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(acmeqBinary(t), "worker")
	cmd.Env = append(os.Environ(),
		"ACMEQ_NATS_URL="+env.Stack.NATS.URL,
		"ACMEQ_REDIS_URL="+env.Stack.Redis.URL(),
		"ACMEQ_SECRET_KEY="+env.SecretKey,
		"ACMEQ_WORKER_NAME="+name,
		"ACMEQ_HTTP01_SELF_CHECK_PORT="+strconv.Itoa(env.HTTPPort()),
		"ACMEQ_HTTP01_SELF_CHECK_ADDRESS=127.0.0.1",
		"ACMEQ_LISTEN=127.0.0.1:0",
		"ACMEQ_LOG_FORMAT=text",
	)
	if env.DNS01 != nil {
		// The DNS-01 self-check asks the dev stack's DNS front, as the
		// in-process workers do: nothing beyond loopback.
		cmd.Env = append(cmd.Env, "ACMEQ_DNS01_RECURSIVE_NAMESERVERS="+env.DNS01.Addr, "ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY=true")
	}
	cmd.Env = append(cmd.Env, extra...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", name, err)
	}
	p := &workerProc{cmd: cmd, out: out}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("worker %s output:\n%s", name, out.String())
		}
	})
	return p
}

// Certificates are issued by `acmeq worker` processes, and a worker killed
// with SIGKILL in the middle loses nothing: its messages are redelivered
// after ACMEQ_ACK_WAIT, its leases are reaped after ACMEQ_LEASE_TTL, every
// certificate is issued once, and no scheduler slot is left taken.
func TestWorkerProcessesSurviveSIGKILL(t *testing.T) {
	env, ctx := setup(t, -1)
	fast := []string{"ACMEQ_ACK_WAIT=3s", "ACMEQ_LEASE_TTL=3s", "ACMEQ_SELF_CHECK_INTERVAL=1s", "ACMEQ_TICK_INTERVAL=500ms"}
	var procs []*workerProc
	for i := range 3 {
		procs = append(procs, startWorker(t, env, fmt.Sprintf("proc-%d", i), fast...))
	}
	if err := env.CreateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := dev.DemoRequests(30)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatal(err)
		}
		names[i] = r.Name
	}
	// Kill one worker as soon as some challenge is in flight, so it dies
	// holding work.
	eventually(t, 30*time.Second, func() bool {
		_, inflight, err := env.Scheduler().Counts(ctx)
		return err == nil && inflight > 0
	})
	victim := procs[0]
	if err := syscall.Kill(-victim.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatal(err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s: %s", n, res[n].Message)
		}
	}
	// Issued once: one request and one order per certificate.
	crs, _ := env.Store.List(ctx, messages.KindCertificateRequest, dev.Namespace)
	orders, _ := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	if len(crs) != len(names) || len(orders) != len(names) {
		t.Errorf("%d requests, %d orders for %d certificates", len(crs), len(orders), len(names))
	}
	// No slot or lock leaks: once the work is done the scheduler is empty.
	eventually(t, 15*time.Second, func() bool {
		b, i, err := env.Scheduler().Counts(ctx)
		return err == nil && b == 0 && i == 0
	})
}
