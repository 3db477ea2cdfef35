//go:build linux

package tests

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/scheduler"
)

// The fault tests run `acmeq worker` processes with short timings, so that
// what heals a fault (lease expiry, redelivery, the reaper's tick) happens
// within seconds.
const (
	faultLeaseTTL = 3 * time.Second
	faultTick     = 500 * time.Millisecond
	// faultAckWait is longer than a lease plus a tick: the messages a
	// killed worker held come back only after its leases were reaped, so
	// the reaper, not a redelivery renewing an expired lease before the
	// reaper saw it, is what frees them (and the test can see it do so).
	faultAckWait = 6 * time.Second
	// faultCap keeps a backlog: the certificates' challenges run in waves,
	// and a fault lands in the middle of the run.
	faultCap   = 10
	faultCerts = 30
)

func faultEnv() []string {
	return []string{
		"ACMEQ_SCHEDULER_AUDIT=1",
		"ACMEQ_LEASE_TTL=" + faultLeaseTTL.String(),
		"ACMEQ_ACK_WAIT=" + faultAckWait.String(),
		"ACMEQ_TICK_INTERVAL=" + faultTick.String(),
		"ACMEQ_SELF_CHECK_INTERVAL=1s",
		"ACMEQ_MAX_CONCURRENT_CHALLENGES=" + strconv.Itoa(faultCap),
	}
}

// faultRequests are the certificates of a fault test (1 to 3 names each)
// in dev's namespace.
func faultRequests() []producer.RequestOptions { return dev.DemoRequests(faultCerts) }

// waitMidRun waits until the audit shows some challenges released and some
// in flight: the middle of the run.
func waitMidRun(t *testing.T, ctx context.Context, env *dev.Env, rdb *redis.Client, procs []*workerProc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		evs, err := readAudit(ctx, rdb)
		released := 0
		for _, e := range evs {
			if e.Ev == "release" {
				released++
			}
		}
		_, inflight, cerr := env.Scheduler().Counts(ctx)
		if err == nil && cerr == nil && released >= 5 && inflight > 0 {
			t.Logf("mid-run: %d challenges released, %d in flight", released, inflight)
			return
		}
		if time.Now().After(deadline) {
			failDump(t, ctx, env, procs)
			t.Fatalf("the run did not get going within 60s (%d released, %d in flight, errors %v %v)", released, inflight, err, cerr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finishRun waits for every certificate, then checks that each was issued
// once and that the scheduler is empty: no backlog, no lease, no lock.
func finishRun(t *testing.T, ctx context.Context, env *dev.Env, rdb *redis.Client, procs []*workerProc, reqs []producer.RequestOptions, timeout time.Duration) {
	t.Helper()
	if !waitAll(t, ctx, env, reqs, timeout) {
		failDump(t, ctx, env, procs)
		t.FailNow()
	}
	assertIssuedOnce(t, ctx, env, reqs)
	assertSchedulerEmpty(t, ctx, env, rdb, procs)
}

func assertSchedulerEmpty(t *testing.T, ctx context.Context, env *dev.Env, rdb *redis.Client, procs []*workerProc) {
	t.Helper()
	locks := scheduler.PrefixDefault + "locks"
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, i, err := env.Scheduler().Counts(ctx)
		l, lerr := rdb.HLen(ctx, locks).Result()
		if err == nil && lerr == nil && b == 0 && i == 0 && l == 0 {
			return
		}
		if time.Now().After(deadline) {
			held, _ := rdb.HGetAll(ctx, locks).Result()
			failDump(t, ctx, env, procs)
			t.Fatalf("scheduler not empty after the run: backlog %d, in flight %d, locks %v (errors %v %v)", b, i, held, err, lerr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkAudit replays the audit record and reports its violations.
func checkAudit(t *testing.T, ctx context.Context, env *dev.Env, rdb *redis.Client, limit int) *auditReport {
	t.Helper()
	evs, err := readAudit(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	chs, err := env.Store.List(ctx, messages.KindChallenge, "")
	if err != nil {
		t.Fatal(err)
	}
	rep := replayAudit(evs, limit, doneChallenges(evs, chs))
	for _, v := range rep.violations {
		t.Error(v)
	}
	return rep
}

// A worker process killed with SIGKILL while challenges are in flight: the
// leases it held expire and the reaper frees their slots and locks within a
// lease TTL plus a tick; the other workers finish every certificate, each
// issued once.
func TestFaultWorkerKilledHoldingLeases(t *testing.T) {
	began := time.Now()
	env, ctx := startStack(t, 2*time.Minute, false)
	rdb := redisClient(t, env)
	// The victim runs alone until it is killed: every lease in flight at
	// that moment is one it was working on.
	victim := startWorker(t, env, "victim", faultEnv()...)
	waitStarted(t, victim)
	procs := []*workerProc{victim}
	if err := env.CreateIssuerIn(ctx, dev.Namespace, dev.IssuerName); err != nil {
		t.Fatal(err)
	}
	reqs := faultRequests()
	requestAll(t, ctx, env, reqs)
	waitMidRun(t, ctx, env, rdb, procs)

	if err := syscall.Kill(-victim.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	held, err := rdb.ZRange(ctx, scheduler.PrefixDefault+"inflight", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 {
		t.Fatal("no lease in flight when the victim was killed")
	}
	procs = append(procs, startFleet(t, env, 3, "survivor", faultEnv()...)...)
	finishRun(t, ctx, env, rdb, procs, reqs, 90*time.Second)

	// The reaper freed the victim's leases, each within a lease TTL plus
	// a tick of the kill (the lease was renewed at the latest when the
	// victim died; some survivor's tick comes at most a tick after expiry).
	evs, err := readAudit(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	killUS := killedAt.UnixMicro()
	wasHeld := map[string]bool{}
	for _, id := range held {
		wasHeld[id] = true
	}
	reapedAfter := map[string]time.Duration{}
	for _, e := range evs {
		if e.Ev == "reap" && e.US >= killUS && wasHeld[e.ID] {
			if _, seen := reapedAfter[e.ID]; !seen {
				reapedAfter[e.ID] = time.Duration(e.US-killUS) * time.Microsecond
			}
		}
	}
	if len(reapedAfter) == 0 {
		t.Errorf("none of the %d leases in flight at the kill was reaped (the audit has no reap for %v)", len(held), held)
	}
	var delays []time.Duration
	for _, d := range reapedAfter {
		delays = append(delays, d)
	}
	slices.Sort(delays)
	// Bound: TTL + tick. The slack covers the survivors' processes
	// starting, and one Redis call, on a loaded 2-core machine.
	const slack = 250 * time.Millisecond
	if n := len(delays); n > 0 && delays[n-1] > faultLeaseTTL+faultTick+slack {
		t.Errorf("a lease of the killed worker was reaped %s after the kill, want at most lease TTL %s + tick %s (+%s)", delays[n-1], faultLeaseTTL, faultTick, slack)
	}
	rep := checkAudit(t, ctx, env, rdb, faultCap)
	if t.Failed() {
		failDump(t, ctx, env, procs)
	}
	t.Logf("killed holding %d leases; %d reaped after the kill, kill->reap min %s, max %s (bound %s); %d certificates issued once; audit: %s; took %s",
		len(held), len(delays), firstDuration(delays), lastDuration(delays), faultLeaseTTL+faultTick, len(reqs), rep.summary(), time.Since(began).Round(time.Millisecond))
}

func firstDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[0]
}

func lastDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

// Redis restarts empty in the middle of a run: the challenge messages find
// no lease and re-enqueue their challenges, the resync (whose turn was in
// Redis too) re-enqueues the rest, every certificate is issued once, and the
// scheduler ends empty.
func TestFaultRedisRestartsEmpty(t *testing.T) {
	began := time.Now()
	env, ctx := startStack(t, 2*time.Minute, false)
	rdb := redisClient(t, env)
	procs := startFleet(t, env, 3, "restart", faultEnv()...)
	if err := env.CreateIssuerIn(ctx, dev.Namespace, dev.IssuerName); err != nil {
		t.Fatal(err)
	}
	reqs := faultRequests()
	requestAll(t, ctx, env, reqs)
	waitMidRun(t, ctx, env, rdb, procs)
	_, inflight, _ := env.Scheduler().Counts(ctx)
	if err := env.Stack.Redis.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	finishRun(t, ctx, env, rdb, procs, reqs, 90*time.Second)
	recovered := time.Since(restarted)
	for _, p := range procs {
		if !alive(p) {
			t.Errorf("worker pid %d exited", p.cmd.Process.Pid)
		}
	}
	// The record after the restart starts from an empty Redis, as the
	// scheduler did: it replays as a whole.
	rep := checkAudit(t, ctx, env, rdb, faultCap)
	if t.Failed() {
		failDump(t, ctx, env, procs)
	}
	t.Logf("Redis restarted empty with %d challenges in flight; all %d certificates issued once %s later; audit after the restart: %s; re-granted: %s; took %s",
		inflight, len(reqs), recovered.Round(time.Millisecond), rep.summary(), rep.regrants(), time.Since(began).Round(time.Millisecond))
}

// Redis unreachable for 5 s in the middle of a run (the server frozen with
// SIGSTOP, keeping its data): no worker exits, they carry on once it
// answers again, and every certificate is issued once.
func TestFaultRedisUnreachable(t *testing.T) {
	began := time.Now()
	env, ctx := startStack(t, 2*time.Minute, false)
	rdb := redisClient(t, env)
	procs := startFleet(t, env, 3, "pause", faultEnv()...)
	if err := env.CreateIssuerIn(ctx, dev.Namespace, dev.IssuerName); err != nil {
		t.Fatal(err)
	}
	reqs := faultRequests()
	requestAll(t, ctx, env, reqs)
	waitMidRun(t, ctx, env, rdb, procs)
	// Resume before the stack stops: a frozen server would hold Stop for
	// its grace period.
	t.Cleanup(func() { _ = env.Stack.Redis.Resume() })
	if err := env.Stack.Redis.Pause(); err != nil {
		t.Fatal(err)
	}
	const unreachable = 5 * time.Second
	time.Sleep(unreachable)
	exited := 0
	for _, p := range procs {
		if !alive(p) {
			exited++
		}
	}
	if err := env.Stack.Redis.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	finishRun(t, ctx, env, rdb, procs, reqs, 90*time.Second)
	recovered := time.Since(resumed)
	for _, p := range procs {
		if !alive(p) {
			exited++
			t.Errorf("worker pid %d exited", p.cmd.Process.Pid)
		}
	}
	if exited != 0 {
		t.Errorf("%d worker exits (restarts a supervisor would have to make), want 0", exited)
	}
	rep := checkAudit(t, ctx, env, rdb, faultCap)
	if t.Failed() {
		failDump(t, ctx, env, procs)
	}
	t.Logf("Redis unreachable for %s: 0 worker exits; all %d certificates issued once %s after it came back; audit: %s; took %s",
		unreachable, len(reqs), recovered.Round(time.Millisecond), rep.summary(), time.Since(began).Round(time.Millisecond))
}

// An idle fleet does not hammer Redis: 8 workers with nothing to do, at
// the default tick (2 s), each reap, grant and try the resync turn once a
// tick.
func TestFaultIdleFleetRedisLoad(t *testing.T) {
	env, ctx := startStack(t, time.Minute, false)
	rdb := redisClient(t, env)
	procs := startFleet(t, env, 8, "idle")
	time.Sleep(time.Second) // past every worker's first tick
	const window = 5 * time.Second
	before, err := commandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(window)
	after, err := commandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()
	var total int64
	var parts []string
	for cmd, n := range after {
		d := n - before[cmd]
		if cmd == "info" {
			d -= 1 // ours
		}
		if d > 0 {
			total += d
			parts = append(parts, fmt.Sprintf("%s %d", cmd, d))
		}
	}
	sort.Strings(parts)
	rate := float64(total) / elapsed
	t.Logf("8 idle workers: %.1f Redis calls/s over %.1fs (commandstats, commands run by scripts included): %s", rate, elapsed, strings.Join(parts, ", "))
	if rate >= 50 {
		failDump(t, ctx, env, procs)
		t.Errorf("idle fleet makes %.1f Redis calls/s, want < 50", rate)
	}
}

// commandStats returns the calls per command from INFO commandstats.
func commandStats(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_get:calls=1,usec=2,usec_per_call=2.00,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("commandstats %q: %w", line, err)
				}
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out, nil
}
