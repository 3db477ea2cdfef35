package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/acmeq/acmeq/internal/dev"
)

// The worker's /metrics carries what operators watch: messages by kind and
// outcome, ACME requests by endpoint and status with latency, the fleet's
// scheduler backlog and in-flight, grant wait and reaped leases.
func TestWorkerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	issue(t, ctx, env, 2)

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	text := string(body)
	for _, want := range []string{
		`acmeq_messages_handled_total{kind="order",outcome="ack"}`,
		`acmeq_messages_handled_total{kind="challenge",outcome="ack"}`,
		`acmeq_message_handle_seconds_bucket{kind="certificate"`,
		`acmeq_acme_requests_total{endpoint="new-order",status="201"}`,
		`acmeq_acme_requests_total{endpoint="finalize",status="200"}`,
		`acmeq_acme_request_seconds_bucket{endpoint="challenge"`,
		`acmeq_scheduler_backlog 0`,
		`acmeq_scheduler_inflight 0`,
		`acmeq_scheduler_grant_wait_seconds_count`,
		`acmeq_scheduler_grants_total`,
		`acmeq_scheduler_leases_reaped_total 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}
