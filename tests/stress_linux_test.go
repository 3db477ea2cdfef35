//go:build linux

package tests

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

// Stress: the fleet-wide scheduler holds its rules under load, as recorded
// by the scheduler's own audit stream ({acmeq}:audit, every enqueue, grant,
// release and reap in Redis' order with Redis' clock):
//
//	(a) at no instant are more challenges granted than the cap;
//	(b) never two leases at once on the same (name, solver type) lock;
//	(c) every challenge finishes: its last event is a release (see
//	    replayAudit for one that finished while it held no lease), its
//	    Challenge resource is valid with processing=false, and the
//	    scheduler ends empty (no backlog, lease or lock);
//	(d) oldest eligible first within a namespace: when c is granted, no
//	    challenge of its namespace that was waiting, older than c, had its
//	    lock free.
//
// 8 `acmeq worker` processes (each with its own NATS and Redis
// connections), 300 certificates of 2 names over 150 names (each name in 4
// certificates, so locks collide), in 3 namespaces, at cap 60 and at cap 5,
// each on a fresh stack.
func TestStressScheduler(t *testing.T) {
	for _, c := range []int{60, 5} {
		t.Run("cap"+strconv.Itoa(c), func(t *testing.T) { stressRun(t, c) })
	}
}

const (
	stressWorkers = 8
	stressCerts   = 300
	stressNames   = 150
)

var stressNamespaces = []string{"stress-a", "stress-b", "stress-c"}

// stressIssuers are the issuers of each namespace: 6 ACME accounts.
var stressIssuers = []string{dev.IssuerName, dev.IssuerName + "2"}

// stressRequests returns the certificates of the stress run. Certificate i
// has names n[i%150] and n[(31i+17)%150] (never the same: 30i ≢ 133 mod
// 150), so each name is the first name of 2 certificates and the second of
// 2 others. Certificate i is in namespace (i + i/150) % 3 with issuer dev
// (i < 150) or dev2: the 4 certificates of a name then belong to 4
// different ACME accounts (for name k: (k, dev), (k+1, dev2), (k+1, dev),
// (k+2, dev2), namespaces mod 3, since 31j+17 ≡ k gives j ≡ k+1 mod 3), so
// Pebble never reuses a valid authorization (it would at PEBBLE_AUTHZREUSE=0
// too, 1% of the time, for the same account) and every name of every
// certificate gets its own challenge: exactly 600. One name in three is in
// the dev BIND's zone and solved with DNS-01 (200 challenges), the others
// with HTTP-01 (400).
func stressRequests() []producer.RequestOptions {
	out := make([]producer.RequestOptions, stressCerts)
	name := func(k int) string {
		if k%3 == 0 {
			return "n" + strconv.Itoa(k) + ".stress." + dev.DNS01Zone
		}
		return "n" + strconv.Itoa(k) + ".stress.acmeq.test"
	}
	for i := range stressCerts {
		out[i] = producer.RequestOptions{
			Namespace: stressNamespaces[(i+i/stressNames)%len(stressNamespaces)],
			Name:      "c" + strconv.Itoa(i),
			Issuer:    stressIssuers[i/stressNames],
			DNSNames:  []string{name(i % stressNames), name((31*i + 17) % stressNames)},
		}
	}
	return out
}

func stressRun(t *testing.T, limit int) {
	began := time.Now()
	env, ctx := startStack(t, 4*time.Minute, true)
	procs := startFleet(t, env, stressWorkers, "stress",
		"ACMEQ_SCHEDULER_AUDIT=1",
		"ACMEQ_MAX_CONCURRENT_CHALLENGES="+strconv.Itoa(limit),
		"ACMEQ_SELF_CHECK_INTERVAL=1s",
	)
	for _, ns := range stressNamespaces {
		dns01, err := env.DNS01SolverIn(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, iss := range stressIssuers {
			// DNS-01 for the names in the dev BIND's zone, HTTP-01 for
			// the others.
			if err := env.CreateIssuerIn(ctx, ns, iss, dns01, messages.ACMESolver{HTTP01: &messages.HTTP01Solver{}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	reqs := stressRequests()
	start := time.Now()
	requestAll(t, ctx, env, reqs)
	if !waitAll(t, ctx, env, reqs, 150*time.Second) {
		failDump(t, ctx, env, procs)
		t.FailNow()
	}
	issued := time.Since(start)

	assertIssuedOnce(t, ctx, env, reqs)
	rdb := redisClient(t, env)
	assertSchedulerEmpty(t, ctx, env, rdb, procs)

	// (c) every challenge finished, in the record and in its resource.
	rep := checkAudit(t, ctx, env, rdb, limit)
	// Finished challenges are removed with their (final) orders.
	stacktest.Eventually(t, 10*time.Second, func() error {
		chs, err := env.Store.List(ctx, messages.KindChallenge, "")
		if err != nil {
			return err
		}
		if len(chs) != 0 {
			return fmt.Errorf("%d challenges still stored, e.g. %s", len(chs), chs[0].GetMeta().Name)
		}
		return nil
	})
	want := 0
	for _, r := range reqs {
		want += len(r.DNSNames)
	}
	byType := map[string]int{}
	for id := range rep.enqueued {
		typ, _, _ := strings.Cut(rep.locks[id], "|")
		byType[typ]++
	}
	if byType[messages.ChallengeTypeDNS01] != want/3 || byType[messages.ChallengeTypeHTTP01] != want-want/3 {
		t.Errorf("challenges by type (from the audit's locks) %v, want %d DNS-01 and %d HTTP-01", byType, want/3, want-want/3)
	}
	if len(rep.enqueued) != want {
		t.Errorf("the audit record enqueued %d challenges, want %d", len(rep.enqueued), want)
	}
	if rep.maxInflight < min(limit, 2) {
		t.Errorf("at most %d challenges ran at once under cap %d: the run did not load the scheduler", rep.maxInflight, limit)
	}
	if t.Failed() {
		failDump(t, ctx, env, procs)
	}
	t.Logf("cap %d, %d workers, %d certificates, %d challenges %v: issued in %s (run %s with stack and fleet start); audit: %s",
		limit, stressWorkers, len(reqs), want, byType, issued.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), rep.summary())
}

// startStack starts the dependencies without in-process workers (and with
// the dev BIND for DNS-01 if dns01), bounded by timeout.
func startStack(t *testing.T, timeout time.Duration, dns01 bool) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: -1, DNS01: dns01})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	return env, ctx
}

// startFleet starts n `acmeq worker` processes named <prefix>-<i>, one
// after the other: each has created or updated the streams and consumers
// before the next starts. (Started at once, their stream updates and
// consumer creations race inside the embedded nats-server v2.15.2, a data
// race of fileStore.UpdateConfig against fileStore.ConsumerStore that
// fails a -race run.)
func startFleet(t *testing.T, env *dev.Env, n int, prefix string, extra ...string) []*workerProc {
	t.Helper()
	procs := make([]*workerProc, n)
	for i := range n {
		procs[i] = startWorker(t, env, fmt.Sprintf("%s-%d", prefix, i), extra...)
		waitStarted(t, procs[i])
	}
	return procs
}

// waitStarted waits until the worker logs that it consumes.
func waitStarted(t testing.TB, p *workerProc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.out.String(), "worker started") {
		if !alive(p) || time.Now().After(deadline) {
			t.Fatalf("worker pid %d did not start (%s):\n%s", p.cmd.Process.Pid, procState(p), tailLines(p.out.String(), 25))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requestAll applies the certificates, a few at a time.
func requestAll(t *testing.T, ctx context.Context, env *dev.Env, reqs []producer.RequestOptions) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(reqs))
	next := make(chan producer.RequestOptions)
	for range 4 {
		wg.Go(func() {
			for r := range next {
				if _, err := env.Producer.Request(ctx, r); err != nil {
					errs <- fmt.Errorf("request %s/%s: %w", r.Namespace, r.Name, err)
				}
			}
		})
	}
	for _, r := range reqs {
		next <- r
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitAll waits for every certificate of reqs (in any namespace) to be
// Ready or failed, and reports each that is not Ready. It returns false if
// the wait timed out or some certificate failed.
func waitAll(t *testing.T, ctx context.Context, env *dev.Env, reqs []producer.RequestOptions, timeout time.Duration) bool {
	t.Helper()
	byNS := map[string][]string{}
	for _, r := range reqs {
		byNS[r.Namespace] = append(byNS[r.Namespace], r.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	ok := true
	var wg sync.WaitGroup
	for ns, names := range byNS {
		wg.Go(func() {
			res, err := env.WaitCertificates(wctx, ns, names)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("namespace %s: %v", ns, err)
				ok = false
			}
			for _, n := range names {
				if r, done := res[n]; done && !r.Ready {
					t.Errorf("certificate %s/%s failed: %s", ns, n, r.Message)
					ok = false
				}
			}
		})
	}
	wg.Wait()
	return ok
}

// assertIssuedOnce checks one CertificateRequest and one Order per
// certificate: nothing was issued twice.
func assertIssuedOnce(t *testing.T, ctx context.Context, env *dev.Env, reqs []producer.RequestOptions) {
	t.Helper()
	crs, err := env.Store.List(ctx, messages.KindCertificateRequest, "")
	if err != nil {
		t.Fatal(err)
	}
	orders, err := env.Store.List(ctx, messages.KindOrder, "")
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, o := range orders {
		if ow := o.GetMeta().OwnerReference; ow != nil {
			per[ow.Namespace+"/"+ow.Name]++
		}
	}
	if len(crs) != len(reqs) || len(orders) != len(reqs) {
		t.Errorf("%d requests and %d orders for %d certificates", len(crs), len(orders), len(reqs))
	}
	for k, n := range per {
		if n != 1 {
			t.Errorf("request %s has %d orders", k, n)
		}
	}
}

// redisClient is a client of the stack's Redis, closed with the test.
func redisClient(t *testing.T, env *dev.Env) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: env.Stack.Redis.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// failDump explains a failure: unfinished resources, the scheduler's
// counts and the tail of each worker's output.
func failDump(t *testing.T, ctx context.Context, env *dev.Env, procs []*workerProc) {
	t.Helper()
	dumpUnfinished(t, ctx, env)
	b, i, err := env.Scheduler().Counts(context.WithoutCancel(ctx))
	t.Logf("scheduler: backlog %d, in flight %d, err %v", b, i, err)
	for _, p := range procs {
		t.Logf("worker pid %d (%s), last lines:\n%s", p.cmd.Process.Pid, procState(p), tailLines(p.out.String(), 25))
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procState is the state letter of /proc/<pid>/stat ("R", "S", "Z"...), or
// "gone".
func procState(p *workerProc) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return "gone"
	}
	// pid (comm) state ...; comm may hold spaces: cut after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+3 <= len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// alive reports whether the worker process is still running (not exited,
// not a zombie waiting to be reaped).
func alive(p *workerProc) bool {
	if err := syscall.Kill(p.cmd.Process.Pid, 0); err != nil {
		return false
	}
	st := procState(p)
	return st != "Z" && st != "X" && st != "gone"
}

// doneChallenges returns the IDs of the finished challenges among those
// the audit names: a challenge is removed once its order is final, so one
// that is no longer stored is finished, and a stored one is finished when
// its phase is Done.
func doneChallenges(evs []auditEvent, objs []messages.Object) map[string]bool {
	stored := map[string]*messages.Challenge{}
	for _, o := range objs {
		ch := o.(*messages.Challenge)
		stored[scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name)] = ch
	}
	done := map[string]bool{}
	for _, e := range evs {
		ch, ok := stored[e.ID]
		done[e.ID] = !ok || worker.ChallengePhase(ch.Status) == worker.PhaseDone
	}
	return done
}

// auditEvent is one entry of the scheduler's audit stream.
type auditEvent struct {
	StreamID string
	Ev       string // enqueue, grant, release, reap
	ID       string // <namespace>/<challenge>
	Lock     string
	Score    int64 // enqueue, grant, reap
	US       int64 // Redis server time, µs
}

// readAudit reads the whole audit stream, in pages.
func readAudit(ctx context.Context, rdb *redis.Client) ([]auditEvent, error) {
	key := scheduler.PrefixDefault + "audit"
	var out []auditEvent
	start := "-"
	for {
		msgs, err := rdb.XRangeN(ctx, key, start, "+", 5000).Result()
		if err != nil {
			return nil, fmt.Errorf("xrange %s: %w", key, err)
		}
		for _, m := range msgs {
			e := auditEvent{StreamID: m.ID}
			e.Ev, _ = m.Values["ev"].(string)
			e.ID, _ = m.Values["id"].(string)
			e.Lock, _ = m.Values["lock"].(string)
			if s, ok := m.Values["score"].(string); ok {
				e.Score, _ = strconv.ParseInt(s, 10, 64)
			}
			us, _ := m.Values["us"].(string)
			var err error
			if e.US, err = strconv.ParseInt(us, 10, 64); err != nil || e.Ev == "" || e.ID == "" {
				return nil, fmt.Errorf("audit entry %s malformed: %v", m.ID, m.Values)
			}
			out = append(out, e)
		}
		if len(msgs) < 5000 {
			return out, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// auditReport is what replayAudit found.
type auditReport struct {
	violations  []string
	enqueued    map[string]bool
	locks       map[string]string // id -> lock key (type|name)
	counts      map[string]int
	maxInflight int
	regranted   int // grants of a challenge granted before
	history     map[string][]string
	silent      []string // done, but left the backlog with no event
	wake        []int64  // µs from a release that left an eligible challenge waiting to the next grant
	firstUS     int64
	lastUS      int64
}

// replayAudit replays the record in stream order (the stream IDs order the
// events totally, as the scripts ran) against a model of the scheduler's
// state, and checks the invariants at each event.
//
// done holds the challenges whose resource is finished (nil: unknown). A
// challenge can leave the backlog without an event: release.lua removes a
// challenge that is queued but holds no lease (reaped, or re-enqueued,
// while its last step was finishing it) and records nothing, since it
// freed no lease. Such a challenge ends the record waiting (its last event
// is a reap or an enqueue) although it is done and the scheduler is empty;
// the replay takes it out of the backlog right after its last event and
// counts it in silent. A "dequeue" event, should release.lua record the
// removal, is taken as it comes.
func replayAudit(evs []auditEvent, limit int, done map[string]bool) *auditReport {
	r := &auditReport{enqueued: map[string]bool{}, locks: map[string]string{}, counts: map[string]int{}, history: map[string][]string{}}
	lastAt := map[string]int{}
	for i, e := range evs {
		lastAt[e.ID] = i
	}
	const maxViolations = 30
	fail := func(e auditEvent, format string, args ...any) {
		if len(r.violations) < maxViolations {
			r.violations = append(r.violations, fmt.Sprintf("audit %s %s %s: ", e.StreamID, e.Ev, e.ID)+fmt.Sprintf(format, args...))
		}
	}
	queued := map[string]map[string]bool{} // namespace -> waiting challenges
	held := map[string]bool{}
	holder := map[string]string{} // lock -> challenge holding it
	lockOf := map[string]string{}
	scoreOf := map[string]int64{}
	granted := map[string]bool{}
	last := map[string]string{}
	inflight := 0
	var waking []int64 // release times waiting for the next grant
	ns := func(id string) string { n, _, _ := strings.Cut(id, "/"); return n }
	enq := func(id string) {
		q := queued[ns(id)]
		if q == nil {
			q = map[string]bool{}
			queued[ns(id)] = q
		}
		q[id] = true
	}
	eligibleWaiting := func() bool {
		if inflight >= limit {
			return false
		}
		for _, q := range queued {
			for d := range q {
				if holder[lockOf[d]] == "" {
					return true
				}
			}
		}
		return false
	}
	for i, e := range evs {
		if i == 0 {
			r.firstUS = e.US
		}
		silent := done[e.ID] && lastAt[e.ID] == i && (e.Ev == "reap" || e.Ev == "enqueue")
		r.lastUS = e.US
		r.counts[e.Ev]++
		last[e.ID] = e.Ev
		r.history[e.ID] = append(r.history[e.ID], e.Ev)
		if e.Lock != "" {
			lockOf[e.ID] = e.Lock
			r.locks[e.ID] = e.Lock
		}
		switch e.Ev {
		case "enqueue":
			r.enqueued[e.ID] = true
			scoreOf[e.ID] = e.Score
			if held[e.ID] {
				fail(e, "enqueued while holding a lease")
			}
			enq(e.ID)
		case "grant":
			if granted[e.ID] {
				r.regranted++
			}
			granted[e.ID] = true
			if held[e.ID] {
				fail(e, "granted while already holding a lease")
			}
			if !queued[ns(e.ID)][e.ID] {
				fail(e, "granted without waiting in the backlog")
			}
			// (b) one lease per lock.
			if h := holder[e.Lock]; h != "" {
				fail(e, "lock %q granted while %s holds it", e.Lock, h)
			}
			// (d) no older waiting challenge of the namespace had its lock free.
			for d := range queued[ns(e.ID)] {
				if d != e.ID && scoreOf[d] < e.Score && holder[lockOf[d]] == "" {
					fail(e, "granted (score %d) while %s (score %d, lock %q free) was waiting", e.Score, d, scoreOf[d], lockOf[d])
				}
			}
			delete(queued[ns(e.ID)], e.ID)
			scoreOf[e.ID] = e.Score
			held[e.ID] = true
			holder[e.Lock] = e.ID
			inflight++
			// (a) the cap.
			if inflight > limit {
				fail(e, "%d challenges in flight, cap %d", inflight, limit)
			}
			r.maxInflight = max(r.maxInflight, inflight)
			for _, us := range waking {
				r.wake = append(r.wake, e.US-us)
			}
			waking = waking[:0]
		case "release", "reap":
			if !held[e.ID] {
				fail(e, "without a lease")
			} else {
				inflight--
			}
			held[e.ID] = false
			if l := lockOf[e.ID]; holder[l] == e.ID {
				delete(holder, l)
			}
			if e.Ev == "reap" {
				enq(e.ID) // back at its old place
			} else {
				delete(queued[ns(e.ID)], e.ID)
			}
			if e.Ev == "release" && eligibleWaiting() {
				waking = append(waking, e.US)
			}
		case "dequeue":
			if held[e.ID] {
				fail(e, "dequeued while holding a lease")
			}
			delete(queued[ns(e.ID)], e.ID)
		default:
			fail(e, "unknown event")
		}
		if silent {
			delete(queued[ns(e.ID)], e.ID)
			r.silent = append(r.silent, e.ID)
		}
	}
	sort.Strings(r.silent)
	// (c) every challenge ends released, nothing left held or waiting.
	var unfinished []string
	for id := range r.enqueued {
		if last[id] != "release" && last[id] != "dequeue" && !slices.Contains(r.silent, id) {
			unfinished = append(unfinished, id+" ("+last[id]+")")
		}
	}
	sort.Strings(unfinished)
	if len(unfinished) > 0 {
		r.violations = append(r.violations, fmt.Sprintf("%d challenges do not end with a release: %s", len(unfinished), strings.Join(unfinished[:min(len(unfinished), 20)], ", ")))
	}
	if inflight != 0 {
		r.violations = append(r.violations, fmt.Sprintf("%d leases left at the end of the record", inflight))
	}
	return r
}

// regrants lists (up to 5) challenges granted more than once, with their
// events.
func (r *auditReport) regrants() string {
	var out []string
	for id, h := range r.history {
		grants := 0
		for _, e := range h {
			if e == "grant" {
				grants++
			}
		}
		if grants > 1 {
			out = append(out, id+": "+strings.Join(h, " "))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out[:min(len(out), 5)], "; ")
}

func (r *auditReport) summary() string {
	w := slices.Clone(r.wake)
	slices.Sort(w)
	pct := func(p float64) time.Duration {
		if len(w) == 0 {
			return 0
		}
		return time.Duration(w[min(len(w)-1, int(p*float64(len(w))))]) * time.Microsecond
	}
	silent := ""
	if len(r.silent) > 0 {
		silent = fmt.Sprintf(" (%d done and taken out of the backlog by a release that recorded nothing: %s)", len(r.silent), strings.Join(r.silent[:min(len(r.silent), 5)], ", "))
	}
	return fmt.Sprintf("%d enqueue, %d grant (%d re-grants), %d release, %d reap, %d dequeue%s; max %d in flight; scheduled span %s; release->next grant with an eligible challenge waiting (n=%d): median %s, p99 %s, max %s",
		r.counts["enqueue"], r.counts["grant"], r.regranted, r.counts["release"], r.counts["reap"], r.counts["dequeue"], silent, r.maxInflight,
		(time.Duration(r.lastUS-r.firstUS) * time.Microsecond).Round(time.Millisecond),
		len(w), pct(0.5), pct(0.99), pct(1))
}

// The replay that judges the stress and fault runs does catch each broken
// rule (and passes a record that keeps them).
func TestStressAuditReplayCatchesViolations(t *testing.T) {
	var seq int
	ev := func(kind, id, lock string, score int64) auditEvent {
		seq++
		return auditEvent{StreamID: fmt.Sprintf("1-%d", seq), Ev: kind, ID: id, Lock: lock, Score: score, US: int64(seq) * 1000}
	}
	ok := []auditEvent{
		ev("enqueue", "a/x", "HTTP-01|x", 5), ev("grant", "a/x", "HTTP-01|x", 5),
		// y is older than z, but its lock is held by x: z may go first.
		ev("enqueue", "a/y", "HTTP-01|x", 1), ev("enqueue", "a/z", "HTTP-01|z", 2),
		ev("grant", "a/z", "HTTP-01|z", 2),
		ev("release", "a/x", "HTTP-01|x", 0), ev("grant", "a/y", "HTTP-01|x", 1),
		// Reaped, back in the backlog, granted again.
		ev("reap", "a/y", "HTTP-01|x", 1), ev("grant", "a/y", "HTTP-01|x", 1),
		ev("release", "a/y", "HTTP-01|x", 0), ev("release", "a/z", "HTTP-01|z", 0),
	}
	if r := replayAudit(ok, 2, nil); len(r.violations) != 0 || r.maxInflight != 2 || r.regranted != 1 || len(r.wake) != 1 {
		t.Errorf("a correct record: violations %q, max in flight %d, re-grants %d, wakes %v", r.violations, r.maxInflight, r.regranted, r.wake)
	}
	// A challenge reaped, then finished by a release that recorded
	// nothing (it held no lease): with its resource known to be done, it
	// leaves the backlog after its last event; unknown, it is a violation.
	// A "dequeue" event says so explicitly.
	seq = 0
	silent := []auditEvent{
		ev("enqueue", "a/x", "L1", 1), ev("grant", "a/x", "L1", 1), ev("reap", "a/x", "L1", 1),
		ev("enqueue", "a/y", "L2", 2), ev("grant", "a/y", "L2", 2), ev("release", "a/y", "L2", 0),
	}
	if r := replayAudit(silent, 5, map[string]bool{"a/x": true, "a/y": true}); len(r.violations) != 0 || !slices.Equal(r.silent, []string{"a/x"}) {
		t.Errorf("silent release of a done challenge: violations %q, silent %v", r.violations, r.silent)
	}
	if r := replayAudit(silent, 5, map[string]bool{"a/y": true}); len(r.violations) != 2 {
		t.Errorf("a challenge left waiting, not done: violations %q, want the grant of a/y and the unfinished a/x", r.violations)
	}
	dequeued := slices.Insert(slices.Clone(silent), 3, ev("dequeue", "a/x", "L1", 0))
	if r := replayAudit(dequeued, 5, nil); len(r.violations) != 0 || len(r.silent) != 0 {
		t.Errorf("dequeue event: violations %q, silent %v", r.violations, r.silent)
	}
	seq = 0
	bad := map[string]struct {
		evs   []auditEvent
		limit int
		want  string
	}{
		"cap": {[]auditEvent{
			ev("enqueue", "a/x", "L1", 1), ev("enqueue", "a/y", "L2", 2),
			ev("grant", "a/x", "L1", 1), ev("grant", "a/y", "L2", 2),
			ev("release", "a/x", "L1", 0), ev("release", "a/y", "L2", 0),
		}, 1, "2 challenges in flight, cap 1"},
		"lock": {[]auditEvent{
			ev("enqueue", "a/x", "L1", 1), ev("enqueue", "b/y", "L1", 2),
			ev("grant", "a/x", "L1", 1), ev("grant", "b/y", "L1", 2),
			ev("release", "a/x", "L1", 0), ev("release", "b/y", "L1", 0),
		}, 5, `lock "L1" granted while a/x holds it`},
		"order": {[]auditEvent{
			ev("enqueue", "a/x", "L1", 1), ev("enqueue", "a/y", "L2", 2),
			ev("grant", "a/y", "L2", 2), ev("grant", "a/x", "L1", 1),
			ev("release", "a/x", "L1", 0), ev("release", "a/y", "L2", 0),
		}, 5, "while a/x (score 1, lock \"L1\" free) was waiting"},
		"unfinished": {[]auditEvent{
			ev("enqueue", "a/x", "L1", 1), ev("grant", "a/x", "L1", 1), ev("reap", "a/x", "L1", 1),
		}, 5, "1 challenges do not end with a release: a/x (reap)"},
		"release without lease": {[]auditEvent{
			ev("enqueue", "a/x", "L1", 1), ev("release", "a/x", "L1", 0),
		}, 5, "release a/x: without a lease"},
	}
	for name, c := range bad {
		r := replayAudit(c.evs, c.limit, nil)
		if !slices.ContainsFunc(r.violations, func(v string) bool { return strings.Contains(v, c.want) }) {
			t.Errorf("%s: violations %q, want one containing %q", name, r.violations, c.want)
		}
	}
}
