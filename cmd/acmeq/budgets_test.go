package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// TestDescribeIssuerBudgets: describe issuer shows the budgets of the
// Issuer's account in use in Redis (the fleet's own), with the limit a 429
// taught, the orders waiting and the 429s; without Redis it says the
// section is unavailable and shows the rest.
func TestDescribeIssuerBudgets(t *testing.T) {
	env, ctx := startEnv(t, nil)
	iss := &messages.Issuer{}
	if err := env.Store.Get(ctx, dev.Namespace, dev.IssuerName, iss); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	b, err := scheduler.NewBudgets(rdb, scheduler.BudgetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	limits := scheduler.Limits{Preset: messages.RateLimitPresetNone, NewOrdersPerAccount: scheduler.Limit{Count: 3, Period: time.Hour}}
	var last scheduler.Request
	for i := range 5 { // 3 granted, 2 wait
		last = scheduler.NewOrderRequest(fmt.Sprintf("%s/o%d", dev.Namespace, i), int64(i), iss.Spec.ACME.Server, iss.Status.ACME.URI, []string{fmt.Sprintf("n%d.acmeq.test", i)}, false, limits)
		if _, err := b.Take(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Pause(ctx, last.Needs[0].Ref, time.Minute, scheduler.Limit{Count: 2, Period: time.Hour}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("ACMEQ_NATS_URL", env.Stack.NATS.URL)
	t.Setenv("ACMEQ_REDIS_URL", env.Stack.Redis.URL())
	code, out, errOut := runCLI(t, "describe", "issuer", dev.IssuerName, "-n", dev.Namespace)
	if code != 0 {
		t.Fatalf("describe: exit %d: %s", code, errOut)
	}
	var row string
	for _, l := range lines(out) {
		if strings.Contains(l, "new orders per account") {
			row = l
		}
	}
	for _, want := range []string{"Rate Limits:", "Budget", "Next Refill", "Paused Until", "429s"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe issuer lacks %q:\n%s", want, out)
		}
	}
	fields := strings.Fields(row)
	if !strings.Contains(row, "2 per 1h (the CA's; configured 3 per 1h)") || len(fields) < 4 || fields[len(fields)-1] != "1" || !strings.Contains(row, " 2 ") {
		t.Errorf("budget row = %q; want the CA's 2 per 1h, 2 waiting, 1 429\n%s", row, out)
	}
	if strings.Index(out, "Rate Limits:") > strings.Index(out, "Events:") {
		t.Errorf("the budgets come after the events:\n%s", out)
	}

	t.Setenv("ACMEQ_REDIS_URL", "redis://127.0.0.1:1/0")
	code, out, errOut = runCLI(t, "describe", "issuer", dev.IssuerName, "-n", dev.Namespace)
	if code != 0 || !strings.Contains(out, "<unavailable: connect") || !strings.Contains(out, "Name:") {
		t.Errorf("describe without Redis: exit %d, %s\n%s", code, errOut, out)
	}
}
