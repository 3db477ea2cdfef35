package ui

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

// The fleet metrics served on /metrics, once for the whole fleet (not per
// worker). The certificate metrics are cert-manager's
// (certmanager_certificate_*) under acmeq's prefix, with the labels
// namespace, name, issuer_name and issuer_kind.
const (
	// MetricExpiration is a certificate's notAfter (Unix seconds); absent
	// until one is issued.
	MetricExpiration = "acmeq_certificate_expiration_timestamp_seconds"
	// MetricRenewal is when a certificate will be renewed (Unix seconds);
	// absent until one is issued.
	MetricRenewal = "acmeq_certificate_renewal_timestamp_seconds"
	// MetricReady is 1 for the status of the Ready condition (label
	// condition: True, False or Unknown) and 0 for the other two.
	MetricReady = "acmeq_certificate_ready_status"
	// MetricFailedAttempts is status.failedIssuanceAttempts.
	MetricFailedAttempts = "acmeq_certificate_failed_issuance_attempts"
	// MetricCertificates counts certificates by fleet-view state (label
	// state: ready, issuing, renewing, failing, notready).
	MetricCertificates = "acmeq_certificates"
	// MetricQueuePending is a work consumer's lag: messages not yet
	// delivered plus delivered and not yet acknowledged (label consumer:
	// acmeq-<kind>).
	MetricQueuePending = "acmeq_queue_pending_messages"
	// MetricSchedulerBacklog, MetricSchedulerInflight: as the workers'
	// gauges of the same names.
	MetricSchedulerBacklog  = "acmeq_scheduler_backlog"
	MetricSchedulerInflight = "acmeq_scheduler_inflight"
	// MetricSchedulerCap is the cap on challenges processing at once.
	MetricSchedulerCap = "acmeq_scheduler_cap"
	// MetricSchedulerNamespaceBacklog is the backlog of one namespace
	// (label namespace).
	MetricSchedulerNamespaceBacklog = "acmeq_scheduler_namespace_backlog"
	// MetricSchedulerOldestWait is how long the oldest queued challenge
	// has waited (0 when none waits).
	MetricSchedulerOldestWait = "acmeq_scheduler_oldest_waiting_seconds"
	// MetricSchedulerLocks counts the held (dns name, solver type) locks.
	MetricSchedulerLocks = "acmeq_scheduler_locks_held"
	// MetricIndexSynced is 1 once the certificate index has read the
	// whole bucket.
	MetricIndexSynced = "acmeq_ui_index_synced"
)

// MetricNames lists the acmeq_ metrics the fleet view exports (the
// dashboard and alert tests check their queries against it).
func MetricNames() []string {
	return []string{MetricExpiration, MetricRenewal, MetricReady, MetricFailedAttempts, MetricCertificates,
		MetricQueuePending, MetricSchedulerBacklog, MetricSchedulerInflight, MetricSchedulerCap,
		MetricSchedulerNamespaceBacklog, MetricSchedulerOldestWait, MetricSchedulerLocks, MetricIndexSynced}
}

// scrapeTimeout bounds the reads of one scrape (consumer infos, Redis).
const scrapeTimeout = 5 * time.Second

// fleetCollector reads the queue lag and the scheduler at scrape time, and
// counts certificates by state from the index.
type fleetCollector struct {
	s                                                     *Server
	pending, certs, synced                                *prometheus.Desc
	backlog, inflight, capacity, nsBacklog, oldest, locks *prometheus.Desc
}

func newFleetCollector(s *Server) *fleetCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &fleetCollector{
		s:         s,
		pending:   d(MetricQueuePending, "Messages of a work consumer not yet handled: pending delivery plus delivered and not acknowledged.", "consumer"),
		certs:     d(MetricCertificates, "Certificates by state in the fleet view (ready, issuing, renewing, failing, notready).", "state"),
		synced:    d(MetricIndexSynced, "1 once the fleet view's certificate index has read the whole Certificate bucket.", nil...),
		backlog:   d(MetricSchedulerBacklog, "Challenges queued for a scheduler slot, fleet-wide.", nil...),
		inflight:  d(MetricSchedulerInflight, "Challenges holding a scheduler slot (processing), fleet-wide.", nil...),
		capacity:  d(MetricSchedulerCap, "Cap on challenges processing at once (ACMEQ_MAX_CONCURRENT_CHALLENGES as the fleet view is configured).", nil...),
		nsBacklog: d(MetricSchedulerNamespaceBacklog, "Challenges queued for a scheduler slot, by namespace.", "namespace"),
		oldest:    d(MetricSchedulerOldestWait, "Time the oldest queued challenge has waited for a slot.", nil...),
		locks:     d(MetricSchedulerLocks, "Held (dns name, solver type) locks.", nil...),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.certs, c.synced, c.backlog, c.inflight, c.capacity, c.nsBacklog, c.oldest, c.locks} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, q := range c.s.queues(ctx) {
		if q.err != nil {
			ch <- prometheus.NewInvalidMetric(c.pending, q.err)
			continue
		}
		gauge(c.pending, float64(q.pending)+float64(q.ackPending), q.consumer)
	}
	_, synced, _, _ := c.s.index.status()
	gauge(c.synced, b2f(synced))
	if synced {
		counts := map[State]int{}
		for _, e := range c.s.index.all() {
			counts[e.state]++
		}
		for _, st := range States {
			gauge(c.certs, float64(counts[st]), string(st))
		}
	}
	if c.s.sched == nil {
		return
	}
	snap, err := c.s.sched.Snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	gauge(c.backlog, float64(snap.Backlog))
	gauge(c.inflight, float64(len(snap.Inflight)))
	gauge(c.capacity, float64(snap.Cap))
	gauge(c.locks, float64(len(snap.Locks)))
	var wait time.Duration
	if snap.Oldest != nil {
		wait = snap.Oldest.Wait
	}
	gauge(c.oldest, wait.Seconds())
	for _, nb := range snap.Namespaces {
		gauge(c.nsBacklog, float64(nb.Queued), nb.Namespace)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// queueInfo is the lag of one work consumer.
type queueInfo struct {
	consumer    string
	pending     uint64
	ackPending  int
	redelivered int
	waiting     int
	err         error
}

// queues reads the info of each kind's work consumer; one that does not
// exist yet (no worker has started) is left out.
func (s *Server) queues(ctx context.Context) []queueInfo {
	var out []queueInfo
	for _, k := range messages.ReconciledKinds {
		name := worker.ConsumerName(k)
		cons, err := s.js.Consumer(ctx, messages.WorkStream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		q := queueInfo{consumer: name}
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(ctx); err == nil {
				q.pending, q.ackPending, q.redelivered, q.waiting = info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting
			}
		}
		q.err = err
		out = append(out, q)
	}
	return out
}

// serveMetrics writes the registry's families, then the per-certificate
// families straight from the index in Prometheus' text format: with
// 100,000 certificates that is 600,000 samples, which the client
// library's const metrics would allocate one by one.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	mfs, err := s.registry.Gather()
	if err != nil && len(mfs) == 0 {
		s.fail(w, r, http.StatusInternalServerError, "Metrics unavailable", err.Error())
		return
	}
	if err != nil {
		s.cfg.Logger.Warn("ui: metrics: partial gather", "err", err)
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	var out io.Writer = w
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		defer gz.Close()
		out = gz
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	defer bw.Flush()
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
			return
		}
	}
	_ = writeCertificateMetrics(bw, s.index)
}

// writeCertificateMetrics writes the per-certificate families of every
// certificate in the index, once it has read the whole bucket (a partial
// index would make certificates seem to vanish and come back).
func writeCertificateMetrics(w *bufio.Writer, ix *index) error {
	_, synced, _, _ := ix.status()
	if !synced {
		return nil
	}
	entries := ix.all()
	var buf []byte
	family := func(name, help string, each func(e *entry) bool) error {
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, name...)
		buf = append(buf, ' ')
		buf = append(buf, help...)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, name...)
		buf = append(buf, " gauge\n"...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		for _, e := range entries {
			if !each(e) {
				return errWriteFailed
			}
		}
		return nil
	}
	sample := func(name string, e *entry, extra string, v int64) bool {
		buf = append(buf[:0], name...)
		buf = append(buf, `{namespace="`...)
		buf = appendLabelValue(buf, e.namespace)
		buf = append(buf, `",name="`...)
		buf = appendLabelValue(buf, e.name)
		buf = append(buf, `",issuer_name="`...)
		buf = appendLabelValue(buf, e.issuerName)
		buf = append(buf, `",issuer_kind="`...)
		buf = appendLabelValue(buf, e.issuerKind)
		buf = append(buf, '"')
		buf = append(buf, extra...)
		buf = append(buf, "} "...)
		buf = strconv.AppendInt(buf, v, 10)
		buf = append(buf, '\n')
		_, err := w.Write(buf)
		return err == nil
	}
	if err := family(MetricExpiration, "The date after which the certificate expires, as a Unix timestamp.", func(e *entry) bool {
		return e.notAfter == 0 || sample(MetricExpiration, e, "", e.notAfter)
	}); err != nil {
		return err
	}
	if err := family(MetricRenewal, "The time at which the certificate will be renewed, as a Unix timestamp.", func(e *entry) bool {
		return e.renewal == 0 || sample(MetricRenewal, e, "", e.renewal)
	}); err != nil {
		return err
	}
	conds := [...]messages.ConditionStatus{messages.ConditionTrue, messages.ConditionFalse, messages.ConditionUnknown}
	extras := [...]string{`,condition="True"`, `,condition="False"`, `,condition="Unknown"`}
	if err := family(MetricReady, "The ready status of the certificate (1 for its Ready condition's status).", func(e *entry) bool {
		status := e.ready
		if status == "" {
			status = messages.ConditionUnknown
		}
		for i, c := range conds {
			if !sample(MetricReady, e, extras[i], int64(btoi(status == c))) {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	return family(MetricFailedAttempts, "Consecutive failed issuance attempts of the certificate (status.failedIssuanceAttempts).", func(e *entry) bool {
		return sample(MetricFailedAttempts, e, "", int64(e.failed))
	})
}

var errWriteFailed = errors.New("ui: metrics: write failed")

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendLabelValue escapes a label value as the text format requires.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// newRegistry is the fleet view's registry: the fleet collector, and the
// process' own Go and process metrics (the index's memory shows there).
func newRegistry(s *Server) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newFleetCollector(s), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
