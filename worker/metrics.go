package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/scheduler"
)

// metrics of one worker. Each worker has its own set; register them with
// Config.Registerer (cmd/acmeq uses the process' registry).
type metrics struct {
	handled      *prometheus.CounterVec
	handleTime   *prometheus.HistogramVec
	acmeRequests *prometheus.CounterVec
	acmeTime     *prometheus.HistogramVec
	grantWait    prometheus.Histogram
	grants       prometheus.Counter
	reaped       prometheus.Counter
	rateLimited  prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acmeq_messages_handled_total",
			Help: "Transition messages handled, by resource kind and outcome (ack, retry, poison, error).",
		}, []string{"kind", "outcome"}),
		handleTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "acmeq_message_handle_seconds",
			Help:    "Time to handle one transition message, by resource kind.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
		acmeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acmeq_acme_requests_total",
			Help: "HTTP requests to ACME servers, by endpoint and status code.",
		}, []string{"endpoint", "status"}),
		acmeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "acmeq_acme_request_seconds",
			Help:    "Latency of HTTP requests to ACME servers, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"endpoint"}),
		grantWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "acmeq_scheduler_grant_wait_seconds",
			Help:    "Time from a challenge's creation to its grant by the scheduler.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 22),
		}),
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_scheduler_grants_total",
			Help: "Challenges granted a slot by this worker's scheduler calls.",
		}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_scheduler_leases_reaped_total",
			Help: "Expired challenge leases freed by this worker's reaper.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acmeq_acme_rate_limited_total",
			Help: "429 (rateLimited) answers this worker got from CAs to new-order requests.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.handled, m.handleTime, m.acmeRequests, m.acmeTime, m.grantWait, m.grants, m.reaped, m.rateLimited}
}

func (m *metrics) observeACME(endpoint string, status int, d time.Duration) {
	m.acmeRequests.WithLabelValues(endpoint, statusLabel(status)).Inc()
	m.acmeTime.WithLabelValues(endpoint).Observe(d.Seconds())
}

func statusLabel(code int) string {
	if code == 0 {
		return "error"
	}
	return strconv.Itoa(code)
}

var _ acmeclient.Observer = (*metrics)(nil).observeACME

// fleetCollector reports the scheduler's fleet-wide gauges and the rate
// limit budgets' counters, read from Redis at scrape time.
type fleetCollector struct {
	sched    *scheduler.Scheduler
	budgets  *scheduler.Budgets
	backlog  *prometheus.Desc
	inflight *prometheus.Desc
	budget   *prometheus.Desc
}

func newFleetCollector(s *scheduler.Scheduler, b *scheduler.Budgets) *fleetCollector {
	return &fleetCollector{
		sched:    s,
		budgets:  b,
		backlog:  prometheus.NewDesc("acmeq_scheduler_backlog", "Challenges queued for a scheduler slot, fleet-wide.", nil, nil),
		inflight: prometheus.NewDesc("acmeq_scheduler_inflight", "Challenges holding a scheduler slot (processing), fleet-wide.", nil, nil),
		budget: prometheus.NewDesc("acmeq_ratelimit_requests_total",
			"Rate limit budget decisions, fleet-wide: granted at once, waited, served after waiting, and 429s from CAs that paused a budget.", []string{"result"}, nil),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.inflight
	ch <- c.budget
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, i, err := c.sched.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(b))
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(i))
	n, err := c.budgets.Counters(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.budget, err)
		return
	}
	for result, v := range map[string]int64{"granted": n.Granted, "waited": n.Waited, "served": n.Served, "rate_limited": n.RateLimited} {
		ch <- prometheus.MustNewConstMetric(c.budget, prometheus.CounterValue, float64(v), result)
	}
}

func outcomeLabel(o Outcome) string {
	switch o.kind {
	case outcomeRetry:
		return "retry"
	case outcomePoison:
		return "poison"
	}
	return "ack"
}
