package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

const (
	// Namespace and IssuerName are where the bench's certificates live.
	Namespace  = "default"
	IssuerName = "bench"
	// readyTimeout bounds the wait for a process of the fleet, and for
	// the issuer, to be ready.
	readyTimeout = 30 * time.Second
	// tlsALPNPort is what Pebble is told; nothing serves it.
	tlsALPNPort = 5001
)

// caSide is what every run has on the CA's side, each a process of its
// own whose CPU time is the CA's, not the client's: a DNS server answering
// 127.0.0.1 for every name (no AAAA), and a fresh Pebble (patched,
// unserialized) that resolves with it.
type caSide struct {
	dir       string
	dns       *stack.DNSProcess
	pebble    *stack.PebbleProcess
	pebbleLog string
}

// startCA starts dnsd and Pebble in dir; Pebble validates HTTP-01 on
// httpPort and rejects nonceReject% of good nonces.
func startCA(t *tools, dir string, httpPort, nonceReject int) (ca *caSide, err error) {
	ca = &caSide{dir: dir, pebbleLog: filepath.Join(dir, "pebble.log")}
	defer func() {
		if err != nil {
			ca.close()
		}
	}()
	if ca.dns, err = stack.StartDNSProcess(t.dnsd, dir); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ca.pebble, err = stack.StartPebbleProcess(t.pebble, dir, stack.PebbleConfig{
		HTTPPort:           httpPort,
		TLSPort:            tlsALPNPort,
		DNSAddr:            ca.dns.Addr,
		NonceRejectPercent: nonceReject,
	}, ca.pebbleLog)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return ca, nil
}

// pids are the CA's processes, for CPU accounting.
func (ca *caSide) pids() map[string]int {
	return map[string]int{"pebble": ca.pebble.PID(), "dnsd": ca.dns.PID()}
}

// requests counts the requests Pebble handled, from its log.
func (ca *caSide) requests() map[string]int {
	f, err := os.Open(ca.pebbleLog)
	if err != nil {
		return nil
	}
	defer f.Close()
	c := newRequestCounter()
	_, _ = io.Copy(c, f)
	return c.snapshot()
}

func (ca *caSide) close() {
	if ca == nil {
		return
	}
	if ca.pebble != nil {
		_ = ca.pebble.Close()
	}
	if ca.dns != nil {
		_ = ca.dns.Close()
	}
}

// fleetConfig configures startFleet.
type fleetConfig struct {
	workers, cap, nonceReject int
	// profile, if set, makes each acmeq process ready to write a CPU
	// profile to profile(name) (see fleet.startProfiles).
	profile func(name string) string
	// extraEnv is added to every acmeq process's environment.
	extraEnv []string
}

// fleet is acmeq as it runs in production, every part a process of its
// own: nats-server (JetStream), redis-server, `acmeq http01` and
// `acmeq worker` processes; and on the CA's side dnsd and Pebble. The
// bench process only publishes requests and watches for Ready.
type fleet struct {
	dir       string
	ca        *caSide
	nats      *stack.NATSProcess
	redis     *stack.Redis
	responder *stack.Process
	workers   []*stack.Process
	profiles  map[string]string
	// natsProf is nats-server's profiling port (0: not profiled) and
	// natsProfDone is closed once its CPU profile is written.
	natsProf     int
	natsProfDone chan error

	t         *tools
	cfg       fleetConfig
	secretKey string
	httpPort  int

	nc   *nats.Conn
	js   jetstream.JetStream
	st   *store.Store
	prod *producer.Client
	rdb  *redis.Client
}

// startFleet starts a fresh fleet in a temporary directory and creates a
// Ready issuer at its Pebble.
func startFleet(ctx context.Context, t *tools, cfg fleetConfig) (f *fleet, err error) {
	f = &fleet{profiles: map[string]string{}}
	if f.dir, err = os.MkdirTemp("", "acmeq-bench-"); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	// Pebble needs the responder's port before it starts.
	httpPort, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	if f.ca, err = startCA(t, f.dir, httpPort, cfg.nonceReject); err != nil {
		return nil, err
	}
	var natsArgs []string
	if cfg.profile != nil && t.profiling {
		if f.natsProf, err = stack.FreePort(); err != nil {
			return nil, err
		}
		natsArgs = []string{"--profile", strconv.Itoa(f.natsProf)}
	}
	if f.nats, err = stack.StartNATSProcess(t.nats, filepath.Join(f.dir, "nats"), filepath.Join(f.dir, "nats-server.log"), natsArgs...); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if f.redis, err = stack.StartRedis(filepath.Join(f.dir, "redis")); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	f.rdb = redis.NewClient(&redis.Options{Addr: f.redis.Addr})

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secretKey := base64.StdEncoding.EncodeToString(key)
	sealer, err := store.NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if f.nc, err = nats.Connect(f.nats.URL, nats.Name("acmeq-bench")); err != nil {
		return nil, fmt.Errorf("bench: connect to nats-server: %w", err)
	}
	if f.js, err = jetstream.New(f.nc); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := bus.EnsureStreams(ctx, f.js, bus.Config{}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if f.st, err = store.Open(ctx, f.js, sealer, store.Config{}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	f.prod = producer.New(f.st, bus.New(f.js, "acmeq-bench"))

	f.t, f.cfg, f.secretKey, f.httpPort = t, cfg, secretKey, httpPort
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	f.responder, err = f.start("http01", []string{
		"ACMEQ_HTTP01_LISTEN=" + httpAddr,
		"ACMEQ_HTTP01_METRICS_LISTEN=127.0.0.1:0",
	}, "http01")
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, f.responder, "http://"+httpAddr+"/.well-known/acme-challenge/bench-probe", false); err != nil {
		return nil, err
	}
	for range cfg.workers {
		if _, err := f.addWorker(ctx); err != nil {
			return nil, err
		}
	}
	if err := f.createIssuer(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// start starts an acmeq process.
func (f *fleet) start(name string, env []string, args ...string) (*stack.Process, error) {
	env = append(append([]string{
		"ACMEQ_NATS_URL=" + f.nats.URL,
		"ACMEQ_LOG_FORMAT=json",
		"ACMEQ_LOG_LEVEL=info",
	}, env...), f.cfg.extraEnv...)
	if f.cfg.profile != nil && f.t.profiling {
		f.profiles[name] = f.cfg.profile(name)
		env = append(env, profileEnv+"="+f.profiles[name])
	}
	p, err := stack.StartProcess(stack.ProcessConfig{
		Name: name, Bin: f.t.acmeq, Args: args, Env: env, Dir: f.dir,
		LogFile: filepath.Join(f.dir, name+".log"),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}

// addWorker starts one more `acmeq worker` and waits until it is ready.
func (f *fleet) addWorker(ctx context.Context) (*stack.Process, error) {
	i := len(f.workers)
	port, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	w, err := f.start("worker-"+strconv.Itoa(i), []string{
		"ACMEQ_REDIS_URL=" + f.redis.URL(),
		"ACMEQ_SECRET_KEY=" + f.secretKey,
		"ACMEQ_WORKER_NAME=bench-worker-" + strconv.Itoa(i),
		"ACMEQ_MAX_CONCURRENT_CHALLENGES=" + strconv.Itoa(f.cfg.cap),
		"ACMEQ_HTTP01_SELF_CHECK_PORT=" + strconv.Itoa(f.httpPort),
		"ACMEQ_HTTP01_SELF_CHECK_ADDRESS=127.0.0.1",
		"ACMEQ_LISTEN=" + listen,
	}, "worker")
	if err != nil {
		return nil, err
	}
	f.workers = append(f.workers, w)
	if err := waitHTTP(ctx, w, "http://"+listen+"/readyz", true); err != nil {
		return nil, err
	}
	return w, nil
}

// errExitStatus0 stands for a clean exit where a process that exited too
// early is reported: wrapping Wait's nil error with %w would print
// "%!w(<nil>)".
var errExitStatus0 = errors.New("exit status 0")

// waitHTTP polls url until it answers (200 if want200), p exits or
// readyTimeout passes.
func waitHTTP(ctx context.Context, p *stack.Process, url string, want200 bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	var lastErr error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		res, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if !want200 || res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, res.Status)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: not ready within %s: %w\n--- output ---\n%s", readyTimeout, lastErr, p.Output())
		case <-p.Done():
			exit := p.Err()
			if exit == nil {
				exit = errExitStatus0
			}
			return fmt.Errorf("bench: exited before it was ready (%w)\n--- output ---\n%s", exit, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// createIssuer applies the Issuer IssuerName for the fleet's Pebble and
// waits until a worker has registered its account.
func (f *fleet) createIssuer(ctx context.Context) error {
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: IssuerName, Namespace: Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:              f.ca.pebble.DirectoryURL,
			Email:               "bench@" + Domain,
			PrivateKeySecretRef: messages.SecretRef{Name: IssuerName + "-account-key"},
			CABundle:            string(f.ca.pebble.TLSCertPEM),
			Solvers:             []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}},
		}},
	}
	if _, err := f.prod.Apply(ctx, iss); err != nil {
		return fmt.Errorf("bench: create issuer: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		got := &messages.Issuer{}
		if err := f.st.Get(ctx, Namespace, IssuerName, got); err == nil {
			if messages.IsReady(got.Status.Conditions) {
				return nil
			}
			if c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady); c != nil && c.Status == messages.ConditionFalse {
				return fmt.Errorf("bench: issuer is not ready: %s: %s", c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: issuer not ready within %s", readyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// clientPIDs are acmeq's processes: the client side whose CPU is
// measured (redis-server's comes from INFO).
func (f *fleet) clientPIDs() map[string]int {
	m := map[string]int{"nats-server": f.nats.PID(), "http01": f.responder.PID()}
	for i, w := range f.workers {
		m["worker-"+strconv.Itoa(i)] = w.PID()
	}
	return m
}

// acmeqProcesses are the acmeq processes by name.
func (f *fleet) acmeqProcesses() map[string]*stack.Process {
	m := map[string]*stack.Process{"http01": f.responder}
	for i, w := range f.workers {
		m["worker-"+strconv.Itoa(i)] = w
	}
	return m
}

// startProfiles starts the CPU profile of every acmeq process set up for
// one; stopProfiles writes them (and waits until they are written).
func (f *fleet) startProfiles() {
	for name, p := range f.acmeqProcesses() {
		if f.profiles[name] != "" {
			_ = p.Signal(syscall.SIGUSR1)
		}
	}
	if f.natsProf != 0 {
		path := f.cfg.profile("nats-server")
		f.profiles["nats-server"] = path
		f.natsProfDone = make(chan error, 1)
		go func() { f.natsProfDone <- f.natsProfile(path) }()
	}
}

// natsProfileSeconds is how long nats-server's CPU profile runs from the
// start of a run: its pprof endpoint profiles for a fixed time, so the
// profile covers the first seconds of the run, not exactly the run.
const natsProfileSeconds = 3

// natsProfile writes nats-server's CPU profile (pprof over HTTP, the
// server's --profile port) to path.
func (f *fleet) natsProfile(path string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", f.natsProf, natsProfileSeconds)
	hc := &http.Client{Timeout: natsProfileSeconds*time.Second + 10*time.Second}
	res, err := hc.Get(url)
	if err != nil {
		return fmt.Errorf("bench: nats-server CPU profile: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: nats-server CPU profile: %s", res.Status)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("bench: nats-server CPU profile: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("bench: nats-server CPU profile: %w", err)
	}
	return nil
}

func (f *fleet) stopProfiles() error {
	var errs []error
	if f.natsProfDone != nil {
		errs = append(errs, <-f.natsProfDone)
		f.natsProfDone = nil
	}
	for name, p := range f.acmeqProcesses() {
		path := f.profiles[name]
		if path == "" {
			continue
		}
		_ = p.Signal(syscall.SIGUSR2)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("bench: %s wrote no CPU profile to %s", name, path))
				break
			}
			<-time.After(20 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// close kills every process (a graceful stop would only add seconds to
// the benchmark) and removes the directory.
func (f *fleet) close() {
	if f == nil {
		return
	}
	if f.nc != nil {
		f.nc.Close()
	}
	for _, w := range f.workers {
		_ = w.Kill()
	}
	if f.responder != nil {
		_ = f.responder.Kill()
	}
	if f.rdb != nil {
		_ = f.rdb.Close()
	}
	if f.redis != nil {
		_ = f.redis.Kill()
	}
	if f.nats != nil {
		_ = f.nats.Close()
	}
	f.ca.close()
	if f.dir != "" {
		_ = os.RemoveAll(f.dir)
	}
}
