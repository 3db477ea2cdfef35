package delivery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one agent, registered with Config.Registerer.
type metrics struct {
	synced       prometheus.Counter
	held         prometheus.Gauge
	failing      prometheus.Gauge
	writeErrors  prometheus.Counter
	lastSync     prometheus.Gauge
	soonest      prometheus.Gauge
	hookRuns     prometheus.Counter
	hookFailures prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		synced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_sync_certificates_synced_total",
			Help: "Certificate versions written to disk (unchanged certificates are not rewritten, and not counted).",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "acmeq_sync_certificates",
			Help: "Selected certificates whose files on disk match the store.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "acmeq_sync_certificates_failing",
			Help: "Selected certificates that could not be written (their last good files are kept), or not issued yet.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_sync_errors_total",
			Help: "Failed attempts to write a certificate.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "acmeq_sync_last_sync_timestamp_seconds",
			Help: "When every selected certificate was last found written and up to date (Unix time).",
		}),
		soonest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "acmeq_sync_soonest_expiry_timestamp_seconds",
			Help: "The earliest notAfter of the certificates on disk (Unix time); 0 when none.",
		}),
		hookRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_sync_hook_runs_total",
			Help: "Runs of the reload hook (--exec).",
		}),
		hookFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_sync_hook_failures_total",
			Help: "Runs of the reload hook that failed or timed out.",
		}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.synced, m.held, m.failing, m.writeErrors, m.lastSync, m.soonest, m.hookRuns, m.hookFailures} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("delivery: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
