// Package dev runs the whole of acmeq in one process for a first run and
// for the end-to-end tests: the real dependencies from internal/stack, the
// HTTP-01 responder, several workers (each with its own NATS and Redis
// connections, as separate processes would have) and a Ready issuer "dev"
// in namespace "default" at the local Pebble.
package dev

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers/dns01"
	"github.com/acmeq/acmeq/solvers/http01"
	"github.com/acmeq/acmeq/worker"
)

// Defaults of Options.
const (
	// WorkersDefault is how many workers dev runs.
	WorkersDefault = 3
	// IssuerName is the issuer dev creates.
	IssuerName = "dev"
	// Namespace is where dev's resources live.
	Namespace = "default"
)

// Options configures Start.
type Options struct {
	// Dir holds NATS' and Redis' data.
	Dir string
	// Workers to run in-process. Defaults to WorkersDefault; negative runs
	// none (tests that run `acmeq worker` processes), and then Start does
	// not wait for the issuer: call CreateIssuer once workers run. Start
	// creates no issuer either with Pebble.RequireEAB.
	Workers int
	// Cap on concurrent challenges. Defaults to scheduler.CapDefault.
	Cap int
	// SelfCheckInterval of the workers. Defaults to worker's 10s.
	SelfCheckInterval time.Duration
	// Registerer receives the first worker's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger for the workers; nil discards.
	Logger *slog.Logger
	// PebbleLog receives Pebble's log; nil discards.
	PebbleLog io.Writer
	// DNS01 also starts a BIND serving DNS01Zone, which Pebble's VA asks
	// for names in that zone (see DNS01), and creates the issuer
	// DNS01IssuerName with an rfc2136 DNS-01 solver.
	DNS01 bool
	// CertValidity, when set, makes Pebble issue certificates valid this
	// long (one profile, ShortLivedProfile), so renewals can be watched:
	// `acmeq dev --cert-validity 60s`. Pebble's precision is a second.
	CertValidity time.Duration
	// Pebble holds further Pebble settings (EAB, nonce rejects, profiles);
	// its ports, DNS and logger are dev's.
	Pebble stack.PebbleConfig
	// Configure, if set, adjusts each worker's configuration before it
	// starts (tests scale back-offs, set clocks).
	Configure func(*worker.Config)
}

// ShortLivedProfile is the Pebble profile of Options.CertValidity.
const ShortLivedProfile = "shortlived"

// Env is a running dev stack.
type Env struct {
	Stack     *stack.Stack
	SecretKey string
	Store     *store.Store
	Producer  *producer.Client
	JS        jetstream.JetStream
	Workers   []*worker.Worker
	// ResponderAddr is where the HTTP-01 responder listens.
	ResponderAddr string
	// DNS01 is the BIND and DNS front of Options.DNS01; nil without it.
	DNS01 *DNS01

	closers []func()
	sched   *scheduler.Scheduler
}

// Start brings everything up and waits for the issuer to be Ready.
func Start(ctx context.Context, o Options) (env *Env, err error) {
	if o.Workers == 0 {
		o.Workers = WorkersDefault
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	env = &Env{}
	defer func() {
		if err != nil {
			env.Close()
			env = nil
		}
	}()
	// The responder's port must be known before Pebble starts: Pebble's
	// VA dials it for every HTTP-01 validation.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dev: listen for the HTTP-01 responder: %w", err)
	}
	env.ResponderAddr = ln.Addr().String()
	httpPort := ln.Addr().(*net.TCPAddr).Port
	var pebbleLog *log.Logger
	if o.PebbleLog != nil {
		pebbleLog = log.New(o.PebbleLog, "pebble ", log.LstdFlags)
	}
	pc := o.Pebble
	if o.CertValidity > 0 {
		pc.Profiles = map[string]stack.PebbleProfile{ShortLivedProfile: {Description: "acmeq dev --cert-validity", Validity: o.CertValidity}}
	}
	if o.DNS01 {
		env.Stack, env.DNS01, err = startDNS01Stack(o.Dir, httpPort, pebbleLog, pc)
	} else {
		env.Stack, err = stack.StartWithPebble(o.Dir, httpPort, pebbleLog, pc)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("dev: %w", err)
	}
	env.closers = append(env.closers, env.Stack.Close, env.DNS01.Close)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env.SecretKey = base64.StdEncoding.EncodeToString(key)
	sealer, _ := store.NewSealer(key)

	nc, js, err := connect(env.Stack.NATS.URL, "acmeq-dev")
	if err != nil {
		ln.Close()
		return nil, err
	}
	env.closers = append(env.closers, nc.Close)
	env.JS = js
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		ln.Close()
		return nil, err
	}
	if env.Store, err = store.Open(ctx, js, sealer, store.Config{}); err != nil {
		ln.Close()
		return nil, err
	}
	env.Producer = producer.New(env.Store, bus.New(js, "acmeq-dev"))

	if err := env.startResponder(ctx, js, ln, o.Logger); err != nil {
		return nil, err
	}
	for i := range max(o.Workers, 0) {
		if err := env.startWorker(ctx, i, o, sealer, httpPort); err != nil {
			return nil, err
		}
	}

	// With Pebble.RequireEAB the dev Issuer, which has no External
	// Account Binding, could not register: tests create their issuers.
	if o.Workers > 0 && !o.Pebble.RequireEAB {
		if err := env.CreateIssuer(ctx); err != nil {
			return nil, err
		}
		if o.DNS01 {
			if err := env.CreateDNS01Issuer(ctx); err != nil {
				return nil, err
			}
		}
	}
	return env, nil
}

// startResponder serves the HTTP-01 responder on ln, which it closes if it
// fails.
func (env *Env) startResponder(ctx context.Context, js jetstream.JetStream, ln net.Listener, logger *slog.Logger) error {
	kv, err := http01.EnsureBucket(ctx, js)
	if err != nil {
		ln.Close()
		return err
	}
	resp := http01.NewResponder(kv, logger)
	if err := resp.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: resp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	env.closers = append(env.closers, func() { _ = srv.Close(); resp.Stop() })
	return nil
}

// startWorker starts worker i, with its own connections.
func (env *Env) startWorker(ctx context.Context, i int, o Options, sealer *store.Sealer, httpPort int) error {
	name := "dev-worker-" + strconv.Itoa(i)
	wnc, wjs, err := connect(env.Stack.NATS.URL, name)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr})
	wst, err := store.Open(ctx, wjs, sealer, store.Config{})
	if err != nil {
		wnc.Close()
		return err
	}
	cfg := worker.Config{
		Name:              name,
		HTTP01Port:        httpPort,
		Resolve:           worker.ResolveTo("127.0.0.1"),
		DNS01SelfCheck:    env.dns01SelfCheck(),
		SelfCheckInterval: o.SelfCheckInterval,
		Scheduler:         scheduler.Config{Cap: o.Cap},
		Logger:            o.Logger.With("worker", name),
		Registerer:        registererFor(i, o.Registerer),
	}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	w, err := worker.New(wjs, wst, rdb, cfg)
	if err != nil {
		wnc.Close()
		return err
	}
	if err := w.Start(ctx); err != nil {
		wnc.Close()
		return err
	}
	env.Workers = append(env.Workers, w)
	env.closers = append(env.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Stop(sctx)
		_ = rdb.Close()
		wnc.Close()
	})
	return nil
}

func connect(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, nil, fmt.Errorf("dev: connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("dev: %w", err)
	}
	return nc, js, nil
}

// dns01SelfCheck is the workers' DNS-01 self-check configuration: through
// the DNS front with Options.DNS01, else through the stack's DNS server,
// so that a self-check never asks a resolver off this machine.
func (env *Env) dns01SelfCheck() dns01.SelfCheckConfig {
	if env.DNS01 != nil {
		return env.DNS01.SelfCheckConfig()
	}
	return dns01.SelfCheckConfig{RecursiveNameservers: []string{env.Stack.DNS.Addr}, RecursiveNameserversOnly: true}
}

// Scheduler returns a scheduler client on the stack's Redis, for
// inspection (it works with or without in-process workers).
func (env *Env) Scheduler() *scheduler.Scheduler {
	if env.sched == nil {
		env.sched, _ = scheduler.New(redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr}), scheduler.Config{})
	}
	return env.sched
}

// HTTPPort is the port of the HTTP-01 responder, which Pebble validates.
func (env *Env) HTTPPort() int {
	_, p, _ := net.SplitHostPort(env.ResponderAddr)
	n, _ := strconv.Atoi(p)
	return n
}

// CreateIssuer applies the Issuer "dev" for the local Pebble and waits
// until a worker has registered its account.
func (env *Env) CreateIssuer(ctx context.Context) error {
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: IssuerName, Namespace: Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:              env.Stack.Pebble.DirectoryURL,
			Email:               "dev@acmeq.test",
			PrivateKeySecretRef: messages.SecretRef{Name: IssuerName + "-account-key"},
			CABundle:            string(env.Stack.Pebble.TLSCertPEM),
			Solvers:             []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}},
		}},
	}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		return fmt.Errorf("dev: create issuer: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		got := &messages.Issuer{}
		if err := env.Store.Get(ctx, Namespace, IssuerName, got); err == nil {
			if messages.IsReady(got.Status.Conditions) {
				return nil
			}
			if c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady); c != nil && c.Status == messages.ConditionFalse {
				return fmt.Errorf("dev: issuer %q is not ready: %s: %s", IssuerName, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("dev: issuer did not become ready within 30s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops everything, workers first.
func (env *Env) Close() {
	if env == nil {
		return
	}
	for i := len(env.closers) - 1; i >= 0; i-- {
		env.closers[i]()
	}
	env.closers = nil
}

// registererFor gives the metrics registry to worker 0 only: the metrics of
// several workers would collide in one registry.
func registererFor(i int, r prometheus.Registerer) prometheus.Registerer {
	if i == 0 {
		return r
	}
	return nil
}
