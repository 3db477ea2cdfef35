package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/solvers/http01"
)

func newHTTP01Cmd() *cobra.Command {
	return &cobra.Command{
		Use:   "http01",
		Short: "Run the HTTP-01 responder",
		Long: `Run the HTTP-01 responder: it serves /.well-known/acme-challenge/<token>
on ACMEQ_HTTP01_LISTEN (:80) from a watched copy of the token bucket, and
/metrics, /healthz and /readyz on ACMEQ_HTTP01_METRICS_LISTEN (:9403). Any
number may run. Configured by ACMEQ_NATS_URL, ACMEQ_HTTP01_LISTEN,
ACMEQ_HTTP01_METRICS_LISTEN, ACMEQ_LOG_FORMAT and ACMEQ_LOG_LEVEL; an
address that cannot be bound stops it before it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runHTTP01(cmd.Context()) },
	}
}

func runHTTP01(ctx context.Context) error {
	e := defaultHTTP01Env()
	if err := readEnv(&e, environ()); err != nil {
		return err
	}
	log := newLogger(e.LogFormat, e.LogLevel)
	// Both addresses are bound before anything starts.
	ln, err := net.Listen("tcp", e.ListenAddr)
	if err != nil {
		return fmt.Errorf("configuration: ACMEQ_HTTP01_LISTEN %q: %w", e.ListenAddr, err)
	}
	defer ln.Close()
	mln, err := net.Listen("tcp", e.MetricsAddr)
	if err != nil {
		return fmt.Errorf("configuration: ACMEQ_HTTP01_METRICS_LISTEN %q: %w", e.MetricsAddr, err)
	}
	defer mln.Close()
	nc, js, err := connectNATS(e.NATS, "acmeq-http01")
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := http01.EnsureBucketReplicas(ctx, js, e.Replicas)
	if err != nil {
		return err
	}
	resp := http01.NewResponder(kv, log)
	if err := resp.Start(ctx); err != nil {
		return err
	}
	defer resp.Stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "acmeq_http01_served_total", Help: "Challenge responses served."},
			func() float64 { return float64(resp.Stats().Served) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "acmeq_http01_not_found_total", Help: "Requests answered 404 (unknown token or path)."},
			func() float64 { return float64(resp.Stats().NotFound) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "acmeq_http01_tokens", Help: "Tokens currently presented."},
			func() float64 { return float64(resp.Stats().Tokens) }),
	)
	// One server failing stops the other.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics := make(chan error, 1)
	go func() { metrics <- serveUntil(sctx, mln, healthMux(nc, nil, reg)); cancel() }()
	log.Info("serving HTTP-01 challenges", "addr", ln.Addr().String(), "metrics", mln.Addr().String())
	err = serveUntil(sctx, ln, resp)
	cancel()
	return errors.Join(err, <-metrics)
}

// serveUntil serves h on ln until ctx ends, then shuts down gracefully.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
