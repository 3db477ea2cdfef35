package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers/dns01"
	"github.com/acmeq/acmeq/worker"
)

// config is the worker.Config of a validated workerEnv.
func (e workerEnv) config() worker.Config {
	cfg := worker.Config{
		Name:              e.Name,
		Concurrency:       e.Concurrency,
		AckWait:           e.AckWait,
		TickInterval:      e.TickInterval,
		SelfCheckInterval: e.SelfCheckInterval,
		ChallengeTimeout:  e.ChallengeTimeout,
		ResyncInterval:    e.ResyncInterval,
		FailureBackoff:    e.FailureBackoff,
		FailureBackoffMax: e.FailureBackoffMax,
		PollInitial:       e.PollInitial,
		PollMax:           e.PollMax,
		ARICheckMax:       e.ARICheckMax,
		MaxPanics:         e.MaxPanics,
		HTTP01Port:        e.HTTP01Port,
		Scheduler:         scheduler.Config{Cap: e.MaxConcurrent, LeaseTTL: e.LeaseTTL, Audit: e.SchedulerAudit},
		DNS01SelfCheck:    dns01.SelfCheckConfig{RecursiveNameservers: e.DNS01Recursive, RecursiveNameserversOnly: e.DNS01RecursiveOnly},
	}
	// Set apart from the literal above, whose alignment it would change.
	cfg.ClusterResourceNamespace = e.ClusterResourceNS
	if e.HTTP01ResolveTo != "" {
		cfg.Resolve = worker.ResolveTo(e.HTTP01ResolveTo)
	}
	return cfg
}

func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a worker (configured by ACMEQ_* environment variables)",
		Long: `Run a worker: it consumes the work queue and reconciles Issuers,
Certificates, CertificateRequests, Orders and Challenges until SIGTERM or
Ctrl-C, then drains. It serves /metrics, /healthz and /readyz on
ACMEQ_LISTEN. It is configured only by ACMEQ_* environment variables
(README.md, "Configuration"); a missing or invalid one, or an ACMEQ_LISTEN
that cannot be bound, stops it before it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWorker(cmd.Context()) },
	}
}

func runWorker(ctx context.Context) error {
	e := defaultWorkerEnv()
	if err := readEnv(&e, environ()); err != nil {
		return err
	}
	cfg := e.config()
	log := newLogger(e.LogFormat, e.LogLevel)
	cfg.Logger = log
	// Bind before anything starts: a taken port is a start-up error, not
	// a worker without health checks.
	ln, err := net.Listen("tcp", e.ListenAddr)
	if err != nil {
		return fmt.Errorf("configuration: ACMEQ_LISTEN %q: %w", e.ListenAddr, err)
	}
	defer ln.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg
	nc, js, st, err := openStore(ctx, e.Conn, "acmeq-worker")
	if err != nil {
		return err
	}
	defer nc.Close()
	rdb, err := e.Redis.Client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	w, err := worker.New(js, st, rdb, cfg)
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	srv := &http.Server{Handler: healthMux(nc, rdb, reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health and metrics server", "addr", e.ListenAddr, "err", err)
		}
	}()
	log.Info("worker started", "metrics", ln.Addr().String())
	<-ctx.Done()
	log.Info("draining: finishing in-flight messages, nak'ing the rest")
	stopCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	w.Stop(stopCtx)
	_ = srv.Shutdown(stopCtx)
	return nil
}

// healthMux serves /metrics, /healthz (the process runs) and /readyz
// (NATS and Redis answer).
func healthMux(nc *nats.Conn, rdb redis.UniversalClient, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		var errs []error
		if !nc.IsConnected() {
			errs = append(errs, fmt.Errorf("nats: %s", nc.Status()))
		}
		if rdb != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := rdb.Ping(ctx).Err(); err != nil {
				errs = append(errs, fmt.Errorf("redis: %w", err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
