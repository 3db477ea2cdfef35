package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

func (e workerEnv) config() (worker.Config, error) {
	if e.MaxConcurrent <= 0 {
		return worker.Config{}, fmt.Errorf("configuration: ACMEQ_MAX_CONCURRENT_CHALLENGES must be at least 1, got %d", e.MaxConcurrent)
	}
	if e.Concurrency <= 0 {
		return worker.Config{}, fmt.Errorf("configuration: ACMEQ_CONCURRENCY must be at least 1, got %d", e.Concurrency)
	}
	if e.SelfCheckInterval <= 0 {
		return worker.Config{}, fmt.Errorf("configuration: ACMEQ_SELF_CHECK_INTERVAL must be positive, got %s", e.SelfCheckInterval)
	}
	if e.AckWait < time.Second {
		return worker.Config{}, fmt.Errorf("configuration: ACMEQ_ACK_WAIT must be at least 1s, got %s", e.AckWait)
	}
	if e.SelfCheckInterval >= e.LeaseTTL {
		return worker.Config{}, fmt.Errorf("configuration: ACMEQ_LEASE_TTL (%s) must exceed ACMEQ_SELF_CHECK_INTERVAL (%s): a challenge waiting for its next self-check is not renewed", e.LeaseTTL, e.SelfCheckInterval)
	}
	cfg := worker.Config{
		Name:              e.Name,
		Concurrency:       e.Concurrency,
		AckWait:           e.AckWait,
		TickInterval:      e.TickInterval,
		SelfCheckInterval: e.SelfCheckInterval,
		ChallengeTimeout:  e.ChallengeTimeout,
		ResyncInterval:    e.ResyncInterval,
		FailureBackoff:    e.FailureBackoff,
		HTTP01Port:        e.HTTP01Port,
		Scheduler:         scheduler.Config{Cap: e.MaxConcurrent, LeaseTTL: e.LeaseTTL, Audit: e.SchedulerAudit},
	}
	if e.HTTP01ResolveTo != "" {
		cfg.Resolve = worker.ResolveTo(e.HTTP01ResolveTo)
	}
	return cfg, nil
}

func runWorker(ctx context.Context, _ []string) error {
	e, err := parseEnv[workerEnv]()
	if err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	log, err := newLogger(e.LogFormat, e.LogLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg
	nc, js, st, err := openStore(ctx, e.Conn, "acmeq-worker")
	if err != nil {
		return err
	}
	defer nc.Close()
	rdb, err := connectRedis(e.RedisURL)
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
	srv := &http.Server{Addr: e.ListenAddr, Handler: healthMux(nc, rdb, reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health and metrics server", "addr", e.ListenAddr, "err", err)
		}
	}()
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
func healthMux(nc *nats.Conn, rdb *redis.Client, reg *prometheus.Registry) *http.ServeMux {
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
