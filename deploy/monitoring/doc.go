// Package monitoring holds acmeq's Grafana dashboard
// (grafana-dashboard.json) and Prometheus alert rules (alerts.yaml); its
// test checks that every query names a metric acmeq exports (from acmeq
// ui's /metrics, internal/ui, or a worker's, worker/metrics.go) and that
// the rules are well formed. There is no Go code to import here.
package monitoring
