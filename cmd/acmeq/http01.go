package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/solvers/http01"
)

func runHTTP01(ctx context.Context, _ []string) error {
	e, err := parseEnv[http01Env]()
	if err != nil {
		return err
	}
	log, err := newLogger(e.LogFormat, e.LogLevel)
	if err != nil {
		return err
	}
	nc, js, err := connectNATS(e.NATSURL, "acmeq-http01")
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := http01.EnsureBucket(ctx, js)
	if err != nil {
		return err
	}
	resp := http01.NewResponder(kv, log)
	if err := resp.Start(ctx); err != nil {
		return err
	}
	defer resp.Stop()
	ln, err := net.Listen("tcp", e.ListenAddr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "acmeq_http01_served_total", Help: "Challenge responses served."},
			func() float64 { return float64(resp.Stats().Served) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "acmeq_http01_not_found_total", Help: "Requests answered 404 (unknown token or path)."},
			func() float64 { return float64(resp.Stats().NotFound) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "acmeq_http01_tokens", Help: "Tokens currently presented."},
			func() float64 { return float64(resp.Stats().Tokens) }),
	)
	mux := healthMux(nc, nil, reg)
	go func() {
		srv := &http.Server{Addr: e.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", e.MetricsAddr, "err", err)
		}
	}()
	log.Info("serving HTTP-01 challenges", "addr", ln.Addr().String(), "metrics", e.MetricsAddr)
	return serveUntil(ctx, ln, resp)
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
