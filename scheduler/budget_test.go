package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/messages"
)

const (
	testCA      = "https://ca.test/directory"
	testAccount = "https://ca.test/acct/1"
)

// newBudgets returns Budgets on rdb with a per-test hash-tagged prefix.
func newBudgets(t testing.TB, rdb redis.UniversalClient, cfg BudgetConfig) *Budgets {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "{acmeqtest-" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "}:"
	}
	b, err := NewBudgets(rdb, cfg)
	if err != nil {
		t.Fatalf("NewBudgets(%+v): %v", cfg, err)
	}
	return b
}

func lim(count int, period time.Duration) Limit { return Limit{Count: count, Period: period} }

// onlyOrders limits new orders per account and nothing else.
func onlyOrders(count int, period time.Duration) Limits {
	return Limits{Preset: "test", NewOrdersPerAccount: Limit{Count: count, Period: period}}
}

func orderReq(ns, name string, score int64, l Limits, names ...string) Request {
	if len(names) == 0 {
		names = []string{name + "." + ns + ".example"}
	}
	return NewOrderRequest(ns+"/"+name, score, testCA, testAccount, names, false, l)
}

func mustTake(t testing.TB, ctx context.Context, b *Budgets, req Request) Decision {
	t.Helper()
	d, err := b.Take(ctx, req)
	if err != nil {
		t.Fatalf("Take(%s): %v", req.ID, err)
	}
	return d
}

func mustServe(t testing.TB, ctx context.Context, b *Budgets) ServeResult {
	t.Helper()
	r, err := b.Serve(ctx)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return r
}

func mustStatus(t testing.TB, ctx context.Context, b *Budgets) BudgetOverview {
	t.Helper()
	o, err := b.Status(ctx, testCA, 100)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return o
}

// statusOf finds the budget of kind k (and label, if not empty).
func statusOf(t testing.TB, o BudgetOverview, k Kind, label string) BudgetStatus {
	t.Helper()
	for _, s := range o.Budgets {
		if s.Budget.Kind == k && (label == "" || s.Budget.Label == label) {
			return s
		}
	}
	t.Fatalf("no %s budget %q in status %+v", k, label, o.Budgets)
	return BudgetStatus{}
}

func TestBudgetConfig(t *testing.T) {
	b, err := NewBudgets(nil, BudgetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := BudgetConfig{Prefix: PrefixDefault, MaxWait: BudgetMaxWaitDefault, GrantTTL: BudgetGrantTTLDefault, ServeMax: BudgetServeMaxDefault}
	if b.Config() != want {
		t.Fatalf("Config() = %+v, want %+v", b.Config(), want)
	}
	for _, c := range []struct {
		cfg  BudgetConfig
		want string
	}{
		{BudgetConfig{MaxWait: time.Millisecond}, "MaxWait must be at least 1s"},
		{BudgetConfig{MaxWait: time.Hour, GrantTTL: time.Hour}, "GrantTTL (1h0m0s) must exceed MaxWait"},
	} {
		if _, err := NewBudgets(nil, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewBudgets(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestNewOrderRequest(t *testing.T) {
	l := messages.LetsEncryptRateLimits
	req := NewOrderRequest("team-a/shop-1-123", 42, "https://CA.test:14000/dir", testAccount,
		[]string{"www.shop.example.co.uk", "*.shop.example.co.uk", "SHOP.example.co.uk.", "other.org", "shop.example.co.uk"}, false, l)
	var got []string
	for _, n := range req.Needs {
		got = append(got, fmt.Sprintf("%s %s cost=%d %s", string(n.Ref.Kind), n.Ref.label(), n.Cost, n.Ref.Limit))
	}
	want := []string{
		"newOrdersPerAccount " + testAccount + " cost=1 300 per 3h",
		"certificatesPerRegisteredDomain example.co.uk cost=1 50 per 168h",
		"certificatesPerRegisteredDomain other.org cost=1 50 per 168h",
		"duplicateCertificates *.shop.example.co.uk,other.org,shop.example.co.uk,www.shop.example.co.uk cost=1 5 per 168h",
		"failedValidations shop.example.co.uk cost=0 5 per 1h",
		"failedValidations other.org cost=0 5 per 1h",
		"failedValidations www.shop.example.co.uk cost=0 5 per 1h",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("needs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if req.Needs[1].Ref.CA != "ca.test:14000" || req.Needs[0].Ref.Account != testAccount || req.Needs[1].Ref.Account != "" {
		t.Errorf("scopes: %+v", req.Needs[:2])
	}
	// The same set of names in another order and case is the same duplicate budget.
	again := NewOrderRequest("team-b/x", 1, "https://ca.test:14000/dir", testAccount,
		[]string{"other.org", "www.shop.example.co.uk", "shop.example.co.uk", "*.shop.example.co.uk"}, false, l)
	if req.Needs[3].Ref.ID() != again.Needs[3].Ref.ID() {
		t.Errorf("duplicate budgets differ: %s vs %s", req.Needs[3].Ref.ID(), again.Needs[3].Ref.ID())
	}
	if !NewOrderRequest("a/b", 1, testCA, testAccount, []string{"a.example"}, true, l).Exempt {
		t.Errorf("an ARI renewal is not exempt")
	}
	// Duplicate budgets in one request are refused.
	bad := req
	bad.Needs = append(slices.Clone(req.Needs), req.Needs[0])
	if err := bad.check(); !errors.Is(err, ErrBadRequest) {
		t.Errorf("check(duplicate need) = %v", err)
	}
	if err := (Request{ID: "no-namespace"}).check(); !errors.Is(err, ErrBadRequest) {
		t.Errorf("check(no namespace) = %v", err)
	}
}

func TestRegisteredDomain(t *testing.T) {
	for in, want := range map[string]string{
		"www.example.com":          "example.com",
		"example.com":              "example.com",
		"*.shop.example.co.uk":     "example.co.uk",
		"A.B.Example.COM.":         "example.com",
		"foo.bar.github.io":        "bar.github.io",
		"shop.example.test":        "example.test",
		"localhost":                "localhost",
		"co.uk":                    "co.uk",
		"xn--bcher-kva.example.de": "example.de",
	} {
		if got := RegisteredDomain(in); got != want {
			t.Errorf("RegisteredDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRateLimited(t *testing.T) {
	tests := []struct {
		detail string
		kind   Kind
		key    string
		limit  Limit
	}{
		{
			"too many new orders (300) from this account in the last 3h0m0s, retry after 2026-11-25 13:14:28 UTC: see https://letsencrypt.org/docs/rate-limits/#new-orders-per-account",
			KindNewOrders, "", lim(300, 3*time.Hour),
		},
		{
			`too many certificates (50) already issued for "example.com" in the last 168h0m0s, retry after 2026-11-25 13:14:28 UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-registered-domain`,
			KindCertificatesPerDomain, "example.com", lim(50, 168*time.Hour),
		},
		{
			"too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2025-09-18 09:13:16 UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers",
			KindDuplicates, "", lim(5, 168*time.Hour),
		},
		{
			`too many failed authorizations (5) for "www.Example.com" in the last 1h0m0s, retry after 2026-11-25 13:14:28 UTC`,
			KindFailedValidations, "www.example.com", lim(5, time.Hour),
		},
		{
			"too many new registrations (10) from this IP address in the last 3h0m0s, retry after 2026-11-25 13:14:28 UTC",
			KindNewAccounts, "", lim(10, 3*time.Hour),
		},
		{"Error creating new order :: too many certificates already issued for exact set of domains: a.example", KindDuplicates, "", Limit{}},
		{"Error creating new order :: too many new orders recently", KindNewOrders, "", Limit{}},
		{"too many currently pending authorizations", "", "", Limit{}},
	}
	for _, tt := range tests {
		kind, key, l, ok := ParseRateLimited(tt.detail)
		if kind != tt.kind || key != tt.key || l != tt.limit || ok != (tt.kind != "") {
			t.Errorf("ParseRateLimited(%q) = %q, %q, %v, %v; want %q, %q, %v", tt.detail, kind, key, l, ok, tt.kind, tt.key, tt.limit)
		}
	}

	req := orderReq("ns", "o", 1, messages.LetsEncryptRateLimits, "a.example.net", "b.other.org")
	for _, c := range []struct {
		detail string
		kind   Kind
		label  string
		limit  Limit
	}{
		{tests[1].detail, KindNewOrders, testAccount, Limit{}}, // example.com is not among its domains
		{`too many certificates (40) already issued for "other.org" in the last 168h0m0s`, KindCertificatesPerDomain, "other.org", lim(40, 168*time.Hour)},
		{tests[2].detail, KindDuplicates, "a.example.net,b.other.org", lim(5, 168*time.Hour)},
		{"something else entirely", KindNewOrders, testAccount, Limit{}},
	} {
		ref, l, ok := req.RateLimitedBudget(c.detail)
		if !ok || ref.Kind != c.kind || ref.label() != c.label || l != c.limit {
			t.Errorf("RateLimitedBudget(%q) = %s %q %v %v; want %s %q %v", c.detail, ref.Kind, ref.label(), l, ok, c.kind, c.label, c.limit)
		}
	}
}

func TestBudgetLevel(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := Limit{Count: 300, Period: 3 * time.Hour} // one per 36 s
	for _, c := range []struct {
		tat        time.Time
		level      int
		next, full time.Time
	}{
		{now.Add(-time.Hour), 300, time.Time{}, time.Time{}},
		{now, 300, time.Time{}, time.Time{}},
		{now.Add(36 * time.Second), 299, now.Add(36 * time.Second), now.Add(36 * time.Second)},
		{now.Add(30 * time.Second), 299, now.Add(30 * time.Second), now.Add(30 * time.Second)},
		{now.Add(3 * time.Hour), 0, now.Add(36 * time.Second), now.Add(3 * time.Hour)},
		{now.Add(3*time.Hour - 10*time.Second), 0, now.Add(26 * time.Second), now.Add(3*time.Hour - 10*time.Second)},
		{now.Add(3*time.Hour + 36*time.Second), 0, now.Add(72 * time.Second), now.Add(3*time.Hour + 36*time.Second)},
	} {
		level, next, full := level(l, c.tat, now)
		if level != c.level || !next.Equal(c.next) || !full.Equal(c.full) {
			t.Errorf("level(tat now%+v) = %d, next now%+v, full now%+v; want %d, now%+v, now%+v",
				c.tat.Sub(now), level, next.Sub(now), full.Sub(now), c.level, c.next.Sub(now), c.full.Sub(now))
		}
	}
	if lv, _, _ := level(Limit{}, now, now); lv != -1 {
		t.Errorf("unlimited level = %d", lv)
	}
}

// A budget grants until it is spent, then requests wait with a reason
// that names the limit and when it refills; describe sees its level.
func TestBudgetTakeUntilSpent(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(3, time.Hour)

	for i := range 3 {
		d := mustTake(t, ctx, b, orderReq("ns", fmt.Sprintf("o%d", i), int64(i), l))
		if !d.Granted || len(d.Taken) != 3 || d.Taken[0].Ref.Kind != KindNewOrders {
			t.Fatalf("take %d = %+v, want granted, taking the new order, its domain and its set of names", i, d)
		}
		if time.Since(d.Now).Abs() > time.Minute {
			t.Fatalf("Now = %v is not Redis' time", d.Now)
		}
	}
	d := mustTake(t, ctx, b, orderReq("ns", "o3", 3, l))
	if d.Granted || d.Wait == nil {
		t.Fatalf("4th take = %+v, want a wait", d)
	}
	w := d.Wait
	if w.Budget.Kind != KindNewOrders || w.Budget.Limit != lim(3, time.Hour) || w.Waiting != 1 {
		t.Fatalf("wait = %+v", w)
	}
	// The first unit refills 20 min after the first take.
	if got := w.At.Sub(d.Now); got < 19*time.Minute || got > 20*time.Minute {
		t.Fatalf("next refill in %s, want about 20m", got)
	}
	if !w.RetryAt.Equal(w.At) {
		t.Fatalf("RetryAt %v, want At %v for the head of the queue", w.RetryAt, w.At)
	}
	wantReason := "Waiting for rate limit: new orders per account " + testAccount + ", 3 per 1h, next at " + w.At.UTC().Format(time.RFC3339)
	if w.Reason() != wantReason {
		t.Fatalf("Reason = %q\nwant     %q", w.Reason(), wantReason)
	}

	// Asking again keeps its place and is not counted twice.
	d2 := mustTake(t, ctx, b, orderReq("ns", "o3", 3, l))
	if d2.Granted || d2.Wait.Waiting != 1 {
		t.Fatalf("second take of a waiting request = %+v", d2)
	}
	// A newcomer queues behind it, further back.
	d3 := mustTake(t, ctx, b, orderReq("ns", "o4", 4, l))
	if d3.Granted || d3.Wait.Waiting != 2 || !d3.Wait.RetryAt.After(d3.Wait.At) {
		t.Fatalf("newcomer = %+v", d3.Wait)
	}

	st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, testAccount)
	if st.Level != 0 || st.Waiting != 2 || st.Budget.Limit != lim(3, time.Hour) || st.Configured != st.Budget.Limit ||
		st.Budget.Account != testAccount || st.Budget.CA != "" || st.ID != orderReq("ns", "x", 0, l).Needs[0].Ref.ID() {
		t.Fatalf("status = %+v", st)
	}
	if !st.NextRefill.Equal(w.At.Truncate(time.Microsecond)) && st.NextRefill.Sub(w.At).Abs() > time.Millisecond {
		t.Fatalf("NextRefill %v, want %v", st.NextRefill, w.At)
	}
	if got := st.FullAt.Sub(d.Now); got < 59*time.Minute || got > time.Hour {
		t.Fatalf("FullAt in %s, want about 1h", got)
	}
	c, err := b.Counters(ctx)
	if err != nil || c.Granted != 3 || c.Waited != 2 {
		t.Fatalf("Counters = %+v, %v; want 3 granted, 2 waited", c, err)
	}
}

// An order takes all its budgets or none; the one holding it back is the
// one it waits on, and the reason names it.
func TestBudgetAllOrNothing(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := Limits{
		NewOrdersPerAccount:             lim(10, 3*time.Hour),
		CertificatesPerRegisteredDomain: lim(1, 168*time.Hour),
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "a", 1, l, "www.example.com")); !d.Granted {
		t.Fatalf("first order waits: %+v", d.Wait)
	}
	d := mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "shop.example.com", "example.com"))
	if d.Granted {
		t.Fatal("second order for example.com granted past a limit of 1")
	}
	if d.Wait.Budget.Kind != KindCertificatesPerDomain || d.Wait.Budget.Label != "example.com" {
		t.Fatalf("waits on %+v", d.Wait.Budget)
	}
	want := "Waiting for rate limit: certificates per registered domain example.com, 1 per 168h, next at "
	if !strings.HasPrefix(d.Wait.Reason(), want) {
		t.Fatalf("Reason = %q, want prefix %q", d.Wait.Reason(), want)
	}
	o := mustStatus(t, ctx, b)
	if st := statusOf(t, o, KindNewOrders, ""); st.Level != 9 {
		t.Fatalf("new-order budget level %d, want 9: the waiting order took nothing", st.Level)
	}
	if st := statusOf(t, o, KindCertificatesPerDomain, "example.com"); st.Level != 0 || st.Waiting != 1 || st.Budget.CA != "ca.test" || st.Budget.Key != "example.com" {
		t.Fatalf("domain budget = %+v", st)
	}
	// Another registered domain is not held back.
	if d := mustTake(t, ctx, b, orderReq("ns", "c", 3, l, "example.org")); !d.Granted {
		t.Fatalf("order for example.org waits: %+v", d.Wait)
	}
}

// A waiting order moves, keeping its score, into the queue of its next
// binding budget, and is granted in turn there. Refunds make it
// deterministic: no clock is waited for.
func TestBudgetMovesToBindingBudget(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := Limits{
		NewOrdersPerAccount:             lim(1, time.Hour),
		CertificatesPerRegisteredDomain: lim(1, 2*time.Hour),
	}
	a := mustTake(t, ctx, b, orderReq("ns", "a", 1, l, "a.example.com"))
	if !a.Granted {
		t.Fatal("a waits")
	}
	// b needs both spent budgets; the domain refills last, so it waits there.
	bd := mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "b.example.com"))
	if bd.Granted || bd.Wait.Budget.Kind != KindCertificatesPerDomain {
		t.Fatalf("b = %+v", bd)
	}
	// c needs only the new-order budget.
	cd := mustTake(t, ctx, b, orderReq("ns", "c", 3, l, "c.other.org"))
	if cd.Granted || cd.Wait.Budget.Kind != KindNewOrders {
		t.Fatalf("c = %+v", cd)
	}
	// The domain gets its unit back (a's order never issued): b may have
	// the domain, but the new-order budget is spent and has a queue, so b
	// moves there, ahead of c (it is older).
	if err := b.Refund(ctx, a.Taken[1:2]); err != nil {
		t.Fatal(err)
	}
	if r := mustServe(t, ctx, b); len(r.Granted) != 0 {
		t.Fatalf("Serve granted %v; the new-order budget is spent", r.Granted)
	}
	bd = mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "b.example.com"))
	if bd.Granted || bd.Wait.Budget.Kind != KindNewOrders || bd.Wait.Waiting != 2 {
		t.Fatalf("b after the move = %+v", bd.Wait)
	}
	// A new order unit: b (score 2) goes before c (score 3).
	if err := b.Refund(ctx, a.Taken[:1]); err != nil {
		t.Fatal(err)
	}
	r := mustServe(t, ctx, b)
	if !slices.Equal(r.Granted, []string{"ns/b"}) {
		t.Fatalf("Serve granted %v, want [ns/b]", r.Granted)
	}
	if r.Next.IsZero() || !r.Next.After(r.Now) {
		t.Fatalf("Next = %v, want the next refill after %v", r.Next, r.Now)
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "b.example.com")); !d.Granted || len(d.Taken) != 3 {
		t.Fatalf("b claims its grant: %+v", d)
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "b.example.com")); d.Granted {
		t.Fatal("a grant was claimed twice")
	}
	o := mustStatus(t, ctx, b)
	if st := statusOf(t, o, KindCertificatesPerDomain, "example.com"); st.Level != 0 {
		t.Fatalf("domain level %d after b's grant, want 0", st.Level)
	}
	if st := statusOf(t, o, KindNewOrders, ""); st.Waiting != 2 {
		t.Fatalf("new-order waiters = %d, want c and b's retake", st.Waiting)
	}
}

// Cancel takes a waiting order out of its queue and drops a grant nobody
// claimed.
func TestBudgetCancel(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(1, time.Hour)
	first := mustTake(t, ctx, b, orderReq("ns", "a", 1, l))
	mustTake(t, ctx, b, orderReq("ns", "b", 2, l))
	mustTake(t, ctx, b, orderReq("ns", "c", 3, l))
	if ok, err := b.Cancel(ctx, "ns/b"); err != nil || !ok {
		t.Fatalf("Cancel(waiting) = %v, %v", ok, err)
	}
	if ok, err := b.Cancel(ctx, "ns/b"); err != nil || ok {
		t.Fatalf("Cancel twice = %v, %v", ok, err)
	}
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.Waiting != 1 {
		t.Fatalf("waiting = %d after cancel, want 1", st.Waiting)
	}
	if err := b.Refund(ctx, first.Taken); err != nil {
		t.Fatal(err)
	}
	if r := mustServe(t, ctx, b); !slices.Equal(r.Granted, []string{"ns/c"}) || !r.Next.IsZero() {
		t.Fatalf("Serve = %+v, want ns/c granted and nothing left waiting", r)
	}
	if ok, err := b.Cancel(ctx, "ns/c"); err != nil || !ok {
		t.Fatalf("Cancel(granted) = %v, %v", ok, err)
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "c", 3, l)); d.Granted {
		t.Fatal("a cancelled grant was claimed")
	}
}

// Many workers taking at once never get more than the budget holds.
func TestBudgetConcurrentTakes(t *testing.T) {
	rdb, srv := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(20, time.Hour)
	var granted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		bw := newBudgets(t, newClient(t, srv), b.Config())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				d, err := bw.Take(ctx, orderReq(fmt.Sprintf("ns%d", w), fmt.Sprintf("o%d", i), int64(i), l))
				if err != nil {
					errs <- err
					return
				}
				if d.Granted {
					granted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if granted.Load() != 20 {
		t.Fatalf("granted %d of a budget of 20", granted.Load())
	}
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.Waiting != 380 || st.Level != 0 {
		t.Fatalf("status = %+v, want 380 waiting, level 0", st)
	}
}

// ARI renewals take nothing and pass even a paused budget.
func TestBudgetExempt(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(1, time.Hour)
	req := orderReq("ns", "new", 1, l)
	mustTake(t, ctx, b, req)
	if _, err := b.Pause(ctx, req.Needs[0].Ref, time.Hour, Limit{}); err != nil {
		t.Fatal(err)
	}
	renewal := NewOrderRequest("ns/renewal", 2, testCA, testAccount, []string{"new.ns.example"}, true, l)
	for range 3 {
		if d := mustTake(t, ctx, b, renewal); !d.Granted || len(d.Taken) != 0 {
			t.Fatalf("ARI renewal = %+v", d)
		}
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "other", 3, l)); d.Granted {
		t.Fatal("a new order passed a paused budget")
	}
	if b.Stats.Exempt.Load() != 3 {
		t.Fatalf("Exempt = %d", b.Stats.Exempt.Load())
	}
}

// A 429 pauses the budget for the whole fleet until Retry-After, then the
// fleet resumes at the CA's own rate (learned from its problem document),
// not with a burst.
func TestBudgetPause(t *testing.T) {
	rdb, srv := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(100, 3*time.Second) // ours: 100 per 3s
	ref := orderReq("ns", "x", 0, l).Needs[0].Ref
	if d := mustTake(t, ctx, b, orderReq("ns", "first", 0, l)); !d.Granted {
		t.Fatal("first order waits")
	}
	// The CA says 429: its limit is 10 per 3s (one per 300 ms); retry in 1s.
	until, err := b.Pause(ctx, ref, time.Second, lim(10, 3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Every worker (own clients) now waits, whatever its order.
	var waits []*Wait
	for i := range 5 {
		bw := newBudgets(t, newClient(t, srv), b.Config())
		d := mustTake(t, ctx, bw, orderReq(fmt.Sprintf("w%d", i), "o", int64(i), l))
		if d.Granted {
			t.Fatalf("worker %d passed a paused budget", i)
		}
		waits = append(waits, d.Wait)
	}
	w := waits[0]
	if !w.PausedUntil.Equal(until) || w.Budget.Limit != lim(10, 3*time.Second) {
		t.Fatalf("wait = %+v, want paused until %v at the CA's 10 per 3s", w, until)
	}
	if got := until.Sub(waits[0].At); got.Abs() > time.Millisecond {
		t.Fatalf("At %v, want the end of the pause %v", w.At, until)
	}
	if !strings.Contains(w.Reason(), "new orders per account "+testAccount+", 10 per 3s, paused by the CA's 429 until ") {
		t.Fatalf("Reason = %q", w.Reason())
	}
	if c, err := b.Counters(ctx); err != nil || c.RateLimited != 1 {
		t.Fatalf("Counters = %+v, %v; want 1 429", c, err)
	}
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.RateLimited != 1 || st.PausedUntil.IsZero() || st.Level != 0 {
		t.Fatalf("status = %+v", st)
	}
	if r := mustServe(t, ctx, b); len(r.Granted) != 0 || r.Next.Before(until.Truncate(time.Millisecond)) {
		t.Fatalf("Serve during the pause = %+v", r)
	}
	// After the pause: one order, then one per 300 ms, in turn.
	var grants []time.Time
	deadline := time.Now().Add(10 * time.Second)
	for len(grants) < 5 && time.Now().Before(deadline) {
		r := mustServe(t, ctx, b)
		for range r.Granted {
			grants = append(grants, r.Now)
		}
		time.Sleep(5 * time.Millisecond) // polling interval of the simulated worker tick
	}
	if len(grants) != 5 {
		t.Fatalf("granted %d of 5 within 10s", len(grants))
	}
	if grants[0].Before(until) {
		t.Fatalf("first grant at %v, before the end of the pause %v", grants[0], until)
	}
	// Grant i needs i refills of the CA's 300 ms after the pause (a late
	// poll may catch up, never get ahead).
	for i, g := range grants {
		if earliest := until.Add(time.Duration(i) * 300 * time.Millisecond); g.Before(earliest.Add(-time.Millisecond)) {
			t.Fatalf("grant %d at %s after the pause, before its refill at %s", i, g.Sub(until), earliest.Sub(until))
		}
	}
}

// With no budgets (preset none) nothing is stored until a 429; the 429
// pauses the account's new orders, and they all resume after it.
func TestBudgetPresetNone(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := Limits{Preset: messages.RateLimitPresetNone}
	for i := range 10 {
		if d := mustTake(t, ctx, b, orderReq("ns", fmt.Sprintf("o%d", i), int64(i), l)); !d.Granted {
			t.Fatalf("unlimited order %d waits: %+v", i, d.Wait)
		}
	}
	keys, err := rdb.Keys(ctx, b.cfg.Prefix+"b[:qri]*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("unlimited budgets stored keys %v (%v)", keys, err)
	}
	req := orderReq("ns", "x", 0, l)
	ref, observed, _ := req.RateLimitedBudget("urn:ietf:params:acme:error:rateLimited: too many new orders recently")
	if ref.Kind != KindNewOrders || !observed.Unlimited() {
		t.Fatalf("RateLimitedBudget = %+v %v", ref, observed)
	}
	until, err := b.Pause(ctx, ref, 300*time.Millisecond, observed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d := mustTake(t, ctx, b, orderReq("ns", fmt.Sprintf("p%d", i), int64(i), l))
		if d.Granted || !d.Wait.PausedUntil.Equal(until) || !d.Wait.Budget.Limit.Unlimited() {
			t.Fatalf("order during the pause = %+v", d)
		}
	}
	var granted []string
	deadline := time.Now().Add(10 * time.Second)
	for len(granted) < 3 && time.Now().Before(deadline) {
		granted = append(granted, mustServe(t, ctx, b).Granted...)
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(granted, []string{"ns/p0", "ns/p1", "ns/p2"}) {
		t.Fatalf("granted after the pause: %v", granted)
	}
}

// Failed validations are counted while the budget has units, as Boulder
// counts them; an order for a hostname whose budget is spent waits
// rather than fail once more.
func TestBudgetFailedValidations(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := Limits{FailedValidations: lim(2, time.Hour)}
	need := FailedValidation(testCA, testAccount, "*.Bad.example.com.", l)
	for i, want := range []bool{true, true, false} {
		if ok, err := b.Spend(ctx, need); err != nil || ok != want {
			t.Fatalf("Spend %d = %v, %v; want %v", i, ok, err, want)
		}
	}
	d := mustTake(t, ctx, b, orderReq("ns", "o", 1, l, "bad.example.com", "good.example.com"))
	if d.Granted || d.Wait.Budget.Kind != KindFailedValidations || d.Wait.Budget.Label != "bad.example.com" {
		t.Fatalf("order for a failing hostname = %+v", d)
	}
	if !strings.HasPrefix(d.Wait.Reason(), "Waiting for rate limit: failed validations per account and hostname bad.example.com, 2 per 1h, next at ") {
		t.Fatalf("Reason = %q", d.Wait.Reason())
	}
	if d := mustTake(t, ctx, b, orderReq("ns", "p", 2, l, "good.example.com")); !d.Granted {
		t.Fatalf("order for another hostname waits: %+v", d.Wait)
	}
}

// Status lists the budgets in use, most constrained first, and forgets
// budgets once they are full again.
func TestBudgetStatus(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := Limits{NewOrdersPerAccount: lim(5, 1500*time.Millisecond), CertificatesPerRegisteredDomain: lim(1, time.Hour)}
	mustTake(t, ctx, b, orderReq("ns", "a", 1, l, "a.example.com"))
	mustTake(t, ctx, b, orderReq("ns", "b", 2, l, "b.example.com")) // waits on example.com
	mustTake(t, ctx, b, orderReq("ns", "c", 3, l, "c.example.org"))
	o := mustStatus(t, ctx, b)
	// Sets of names are unlimited here, so they are not kept.
	if o.Total != 3 || len(o.Budgets) != 3 {
		t.Fatalf("status = %+v, want 3 budgets: new orders, example.com, example.org", o)
	}
	if first := o.Budgets[0]; first.Budget.Kind != KindCertificatesPerDomain || first.Waiting != 1 {
		t.Fatalf("most constrained first: got %+v", first)
	}
	if st := statusOf(t, o, KindNewOrders, ""); st.Level != 3 || st.NextRefill.IsZero() {
		t.Fatalf("new orders = %+v, want level 3", st)
	}
	// The new-order budget is full 600 ms later and then expires from
	// Redis (with a margin); the index keeps only what exists.
	if err := rdb.PExpire(ctx, b.cfg.Prefix+"b:"+orderReq("ns", "x", 0, l).Needs[0].Ref.ID(), time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		o := mustStatus(t, ctx, b)
		for _, s := range o.Budgets {
			if s.Budget.Kind == KindNewOrders {
				return false
			}
		}
		return len(o.Budgets) == 2 && o.Total == 2
	})
	if o, err := b.Status(ctx, "https://other.test/dir", 10); err != nil || o.Total != 0 {
		t.Fatalf("another CA's status = %+v, %v", o, err)
	}
}

// The fairness rule: namespaces take turns on a budget. With 10,000
// orders of one namespace waiting and 10 of another arriving after them,
// the 10 are served every other grant, not after the 10,000.
func TestBudgetFairness(t *testing.T) {
	rdb, srv := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(100, 3*time.Second)

	// The budget is spent, then 10,000 orders of "big" arrive (8 workers
	// at once; the first few may find a refill), then 10 of "small".
	for i := range 100 {
		if d := mustTake(t, ctx, b, orderReq("warmup", fmt.Sprintf("w%03d", i), int64(i), l)); !d.Granted {
			t.Fatalf("warm-up %d waits", i)
		}
	}
	const bigN, smallN = 10_000, 10
	var wg sync.WaitGroup
	var bigGranted atomic.Int64
	errs := make(chan error, 8)
	for w := range 8 {
		bw := newBudgets(t, newClient(t, srv), b.Config())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < bigN; i += 8 {
				d, err := bw.Take(ctx, orderReq("big", fmt.Sprintf("b%05d", i), int64(1000+i), l))
				if err != nil {
					errs <- fmt.Errorf("big %d: %w", i, err)
					return
				}
				if d.Granted {
					bigGranted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range smallN {
		d := mustTake(t, ctx, b, orderReq("small", fmt.Sprintf("s%02d", i), int64(100_000+i), l))
		if d.Granted {
			t.Fatal("small order jumped the queue")
		}
		// Its estimated turn is about every other refill, not after the 10,000.
		if ahead := d.Wait.RetryAt.Sub(d.Wait.At); ahead > time.Duration(2*i+2)*30*time.Millisecond {
			t.Fatalf("small %d estimated %s after the next refill, want about %s", i, ahead, time.Duration(2*i+1)*30*time.Millisecond)
		}
	}
	if bigGranted.Load() > 50 {
		t.Fatalf("%d big orders granted while the budget refills one per 30 ms", bigGranted.Load())
	}
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.Waiting != bigN-bigGranted.Load()+smallN {
		t.Fatalf("waiting = %d, want %d", st.Waiting, bigN-bigGranted.Load()+smallN)
	}

	var order []string
	deadline := time.Now().Add(time.Minute)
	for smallDone := 0; smallDone < smallN; {
		if time.Now().After(deadline) {
			t.Fatalf("small orders not all granted within a minute: %v", order)
		}
		for _, id := range mustServe(t, ctx, b).Granted {
			order = append(order, id)
			if strings.HasPrefix(id, "small/") {
				smallDone++
			}
		}
		time.Sleep(10 * time.Millisecond) // the simulated workers' tick
	}
	// Turns alternate: the 10 small ones are within the first 20 grants
	// (21 if big had the first turn), each namespace oldest first. (The
	// last Serve may have gone on granting big ones: cut there.)
	for !strings.HasPrefix(order[len(order)-1], "small/") {
		order = order[:len(order)-1]
	}
	if len(order) > 2*smallN+1 {
		t.Fatalf("the 10 small orders took %d grants: %v", len(order), order)
	}
	var big, small []string
	for _, id := range order {
		if strings.HasPrefix(id, "small/") {
			small = append(small, id)
		} else {
			big = append(big, id)
		}
	}
	if !slices.IsSorted(small) || !slices.IsSorted(big) {
		t.Fatalf("not oldest first within a namespace: %v", order)
	}
	for i := 1; i < len(order); i++ {
		if strings.HasPrefix(order[i], "small/") && strings.HasPrefix(order[i-1], "small/") {
			t.Fatalf("small served twice in a row while big waits: %v", order)
		}
	}
}

// Three namespaces with backlogs of very different sizes get equal
// shares while all of them wait.
func TestBudgetFairShares(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(1, time.Hour)
	first := mustTake(t, ctx, b, orderReq("warmup", "w", 0, l))
	sizes := map[string]int{"a": 300, "b": 30, "c": 3}
	for ns, n := range sizes {
		for i := range n {
			mustTake(t, ctx, b, orderReq(ns, fmt.Sprintf("o%03d", i), int64(i), l))
		}
	}
	// Each refund is one refill, made at once.
	got := map[string]int{}
	for range 9 {
		if err := b.Refund(ctx, first.Taken[:1]); err != nil {
			t.Fatal(err)
		}
		r := mustServe(t, ctx, b)
		if len(r.Granted) != 1 {
			t.Fatalf("one refill granted %v", r.Granted)
		}
		got[strings.SplitN(r.Granted[0], "/", 2)[0]]++
	}
	if got["a"] != 3 || got["b"] != 3 || got["c"] != 3 {
		t.Fatalf("shares of 9 grants = %v, want 3 each", got)
	}
}

// The budget serves at its refill rate: 100 per 3 s is one per 30 ms once
// the burst is spent, with four workers serving at once.
func TestBudgetRefillRate(t *testing.T) {
	rdb, srv := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBudgets(t, rdb, BudgetConfig{})
	const (
		count  = 100
		period = 3 * time.Second
		total  = 300
	)
	l := onlyOrders(count, period)
	var grants []time.Time // Redis time of every grant
	for i := range total {
		d := mustTake(t, ctx, b, orderReq(fmt.Sprintf("ns%d", i%3), fmt.Sprintf("o%03d", i), int64(i), l))
		if d.Granted {
			grants = append(grants, d.Now)
		}
	}
	// The burst, and what refilled while the others queued.
	if len(grants) < count || len(grants) > count+30 {
		t.Fatalf("granted %d at once, want the burst of %d (and the few refills while taking)", len(grants), count)
	}
	atOnce := len(grants)
	var firstServe time.Time
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var once sync.Once
	errs := make(chan error, 4)
	for range 4 {
		bw := newBudgets(t, newClient(t, srv), b.Config())
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(7 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				case <-tick.C:
				}
				r, err := bw.Serve(ctx)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if firstServe.IsZero() {
					firstServe = r.Now
				}
				for range r.Granted {
					grants = append(grants, r.Now)
				}
				if len(grants) >= total {
					once.Do(func() { close(stop) })
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	if len(grants) != total {
		t.Fatalf("granted %d, want %d", len(grants), total)
	}
	// Never ahead of the bucket: grant k after the burst needs k+1 refills
	// since the first grant.
	t0 := grants[0]
	interval := period / count
	for i, g := range grants[count:] {
		if earliest := t0.Add(time.Duration(i+1) * interval); g.Before(earliest.Add(-time.Millisecond)) {
			t.Fatalf("grant %d at +%s, before its refill at +%s", count+i, g.Sub(t0), earliest.Sub(t0))
		}
	}
	// Served at the refill rate while orders wait: one per 30 ms from the
	// first Serve on.
	var served int
	for _, g := range grants[atOnce:] {
		if g.After(firstServe) {
			served++
		}
	}
	span := grants[total-1].Sub(firstServe)
	rate := float64(served) / span.Seconds()
	want := float64(count) / period.Seconds()
	t.Logf("%d granted at once; then %d served in %s: %.1f/s (refill rate %.1f/s)", atOnce, served, span, rate, want)
	if rate < 0.9*want || rate > 1.1*want {
		t.Fatalf("served %.1f/s, want the refill rate %.1f/s within 10%%", rate, want)
	}
}

// Raising a limit (the Issuer's override changed) lets a waiting order
// through in its place as soon as the new limit allows. As in Boulder, the
// bucket keeps its time, not its units: the hour the old limit's one unit
// stood for is 3,000 units of the new one, so the next refill is 1.2 s
// away, not an hour.
func TestBudgetRaisedLimit(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	mustTake(t, ctx, b, orderReq("ns", "a", 1, onlyOrders(1, time.Hour)))
	d := mustTake(t, ctx, b, orderReq("ns", "b", 2, onlyOrders(1, time.Hour)))
	if d.Granted || d.Wait.At.Sub(d.Now) < 59*time.Minute {
		t.Fatalf("b = %+v, want a wait of an hour", d)
	}
	if r := mustServe(t, ctx, b); len(r.Granted) != 0 {
		t.Fatalf("Serve granted %v", r.Granted)
	}
	raised := onlyOrders(3000, time.Hour)
	d = mustTake(t, ctx, b, orderReq("ns", "b", 2, raised))
	if d.Granted || d.Wait.Budget.Limit != raised.NewOrdersPerAccount || d.Wait.At.Sub(d.Now) > 1200*time.Millisecond {
		t.Fatalf("b after the raise = %+v, want it still queued, servable within 1.2s", d.Wait)
	}
	eventually(t, 5*time.Second, func() bool {
		r := mustServe(t, ctx, b)
		if len(r.Granted) > 0 && !slices.Equal(r.Granted, []string{"ns/b"}) {
			t.Fatalf("Serve after the raise granted %v", r.Granted)
		}
		return len(r.Granted) == 1
	})
	if d := mustTake(t, ctx, b, orderReq("ns", "b", 2, raised)); !d.Granted {
		t.Fatal("b's grant was not there to claim")
	}
}

// BenchmarkBudget measures the budget scripts on a private redis-server:
// a Take that is granted (a 2-name order: 5 budgets), a Take that joins a
// queue of 10,000, and Serve per grant with a queue of b.N (one call
// grants up to ServeMax).
func BenchmarkBudget(b *testing.B) {
	rdb, _ := setup(b)
	ctx := context.Background()
	big := messages.LetsEncryptRateLimits
	big.NewOrdersPerAccount = lim(100_000_000, time.Hour)
	big.CertificatesPerRegisteredDomain = lim(100_000_000, time.Hour)
	big.DuplicateCertificates = lim(100_000_000, time.Hour)
	b.Run("take-granted", func(b *testing.B) {
		bu := newBudgets(b, rdb, BudgetConfig{Prefix: "{acmeqbench-take}:"})
		for i := 0; b.Loop(); i++ {
			name := fmt.Sprintf("o%08d", i)
			d, err := bu.Take(ctx, orderReq("ns", name, int64(i), big, name+".example.com", "www."+name+".example.com"))
			if err != nil || !d.Granted {
				b.Fatalf("take: %v %+v", err, d.Wait)
			}
		}
	})
	b.Run("take-wait-queue-10k", func(b *testing.B) {
		bu := newBudgets(b, rdb, BudgetConfig{Prefix: "{acmeqbench-wait}:"})
		l := onlyOrders(1, time.Hour)
		for i := range 10_000 {
			mustTake(b, ctx, bu, orderReq(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("q%05d", i), int64(i), l))
		}
		for i := 0; b.Loop(); i++ {
			d, err := bu.Take(ctx, orderReq(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("w%08d", i), int64(20_000+i), l))
			if err != nil || d.Granted {
				b.Fatalf("take: %v granted=%v", err, d.Granted)
			}
		}
	})
	run := 0
	b.Run("serve-per-grant", func(b *testing.B) {
		run++ // IDs differ between runs: a grant of the last run is still unclaimed
		bu := newBudgets(b, rdb, BudgetConfig{Prefix: "{acmeqbench-serve}:"})
		l := Limits{Preset: messages.RateLimitPresetNone}
		ref := orderReq("ns", "x", 0, l).Needs[0].Ref
		if _, err := bu.Pause(ctx, ref, time.Hour, Limit{}); err != nil {
			b.Fatal(err)
		}
		n := b.N
		for i := range n {
			if d := mustTake(b, ctx, bu, orderReq(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("s%d-%08d", run, i), int64(i), l)); d.Granted {
				b.Fatal("granted during the pause")
			}
		}
		// End the pause by hand: the unlimited budget then lets all through.
		if err := rdb.HSet(ctx, bu.cfg.Prefix+"b:"+ref.ID(), "pause", 0).Err(); err != nil {
			b.Fatal(err)
		}
		if err := rdb.ZAdd(ctx, bu.cfg.Prefix+"bwait", redis.Z{Score: 0, Member: ref.ID()}).Err(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		granted := 0
		for granted < n {
			r := mustServe(b, ctx, bu)
			granted += len(r.Granted)
		}
	})
}

// The limit a 429 names outlasts the CA's period (a CA that refused once
// at that rate will again), until the Issuer's own limit is changed.
func TestBudgetLearnedLimitLasts(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	b := newBudgets(t, rdb, BudgetConfig{})
	l := onlyOrders(100, time.Second)
	ref := orderReq("ns", "x", 0, l).Needs[0].Ref
	if _, err := b.Pause(ctx, ref, 10*time.Millisecond, lim(2, 100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // three of the CA's periods
	mustTake(t, ctx, b, orderReq("ns", "a", 0, l))
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.Budget.Limit != lim(2, 100*time.Millisecond) || st.Configured != lim(100, time.Second) {
		t.Fatalf("three CA periods after the 429: limit %v (configured %v), want the CA's 2 per 100ms", st.Budget.Limit, st.Configured)
	}
	changed := onlyOrders(50, time.Second)
	mustTake(t, ctx, b, orderReq("ns", "b", 1, changed))
	if st := statusOf(t, mustStatus(t, ctx, b), KindNewOrders, ""); st.Budget.Limit != lim(50, time.Second) {
		t.Fatalf("after the Issuer's limit changed: limit %v, want the new 50 per 1s", st.Budget.Limit)
	}
}
