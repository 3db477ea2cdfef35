package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
)

// setup starts a real, private redis-server for the test and returns a
// client on it. A missing redis-server fails the test: it never skips.
func setup(t testing.TB) (*redis.Client, *stack.Redis) {
	t.Helper()
	srv, err := stack.StartRedis(t.TempDir())
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop redis: %v", err)
		}
	})
	return newClient(t, srv), srv
}

// newClient returns a new go-redis client (with its own pool) on srv.
func newClient(t testing.TB, srv *stack.Redis) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newSched returns a Scheduler on rdb with cfg, whose Prefix defaults to a
// per-test hash-tagged prefix.
func newSched(t testing.TB, rdb redis.UniversalClient, cfg Config) *Scheduler {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "{acmeqtest-" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "}:"
	}
	s, err := New(rdb, cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return s
}

// testCtx is a context bounded by the test's deadline-ish budget.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it returns true, failing the test after
// timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	stacktest.EventuallyTrue(t, timeout, "the condition", cond)
}

func item(ns, name, solverType, dnsName string, score int64) Item {
	return Item{ID: ChallengeID(ns, name), Lock: LockKey(solverType, dnsName), Score: score}
}

func mustEnqueue(t testing.TB, ctx context.Context, s *Scheduler, items ...Item) int {
	t.Helper()
	n, err := s.Enqueue(ctx, items...)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return n
}

func mustGrant(t testing.TB, ctx context.Context, s *Scheduler, max int) []Grant {
	t.Helper()
	g, err := s.Grant(ctx, max)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return g
}

func mustRelease(t testing.TB, ctx context.Context, s *Scheduler, id string) bool {
	t.Helper()
	ok, err := s.Release(ctx, id)
	if err != nil {
		t.Fatalf("release %s: %v", id, err)
	}
	return ok
}

func mustLookup(t testing.TB, ctx context.Context, s *Scheduler, id string) State {
	t.Helper()
	st, err := s.Lookup(ctx, id)
	if err != nil {
		t.Fatalf("lookup %s: %v", id, err)
	}
	return st
}

func wantCounts(t testing.TB, ctx context.Context, s *Scheduler, backlog, inflight int64) {
	t.Helper()
	b, i, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("counts: %v", err)
	}
	if b != backlog || i != inflight {
		t.Fatalf("Counts = (backlog %d, inflight %d), want (%d, %d)", b, i, backlog, inflight)
	}
}

func ids(gs []Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means no error
		want    Config // effective config when no error
	}{
		{
			name: "zero value gets defaults",
			cfg:  Config{},
			want: Config{Cap: CapDefault, LeaseTTL: LeaseTTLDefault, ScanLimit: ScanLimitDefault, Prefix: PrefixDefault},
		},
		{
			name: "explicit values kept",
			cfg:  Config{Cap: 7, LeaseTTL: time.Second, ScanLimit: 3, Prefix: "{x}:"},
			want: Config{Cap: 7, LeaseTTL: time.Second, ScanLimit: 3, Prefix: "{x}:"},
		},
		{
			name: "negative scan limit defaults",
			cfg:  Config{Cap: 1, LeaseTTL: time.Minute, ScanLimit: -5},
			want: Config{Cap: 1, LeaseTTL: time.Minute, ScanLimit: ScanLimitDefault, Prefix: PrefixDefault},
		},
		{name: "negative cap", cfg: Config{Cap: -1}, wantErr: "ACMEQ_MAX_CONCURRENT_CHALLENGES"},
		{name: "lease ttl below 1s", cfg: Config{LeaseTTL: 999 * time.Millisecond}, wantErr: "LeaseTTL"},
		{name: "negative lease ttl", cfg: Config{LeaseTTL: -time.Second}, wantErr: "ACMEQ_LEASE_TTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(nil, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New(%+v) error = %v, want one containing %q", tc.cfg, err, tc.wantErr)
				}
				if s != nil {
					t.Fatalf("New returned a scheduler with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tc.cfg, err)
			}
			if got := s.Config(); got != tc.want {
				t.Fatalf("Config() = %+v, want %+v", got, tc.want)
			}
			if err := s.Config().Validate(); err != nil {
				t.Fatalf("effective config does not validate: %v", err)
			}
		})
	}

	// Validate itself (without New's defaults) refuses a zero cap and TTL.
	validate := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Cap: 0, LeaseTTL: time.Minute}, "ACMEQ_MAX_CONCURRENT_CHALLENGES"},
		{Config{Cap: -3, LeaseTTL: time.Minute}, "got -3"},
		{Config{Cap: 1, LeaseTTL: 0}, "ACMEQ_LEASE_TTL"},
		{Config{Cap: 1, LeaseTTL: time.Second}, ""},
	}
	for _, tc := range validate {
		err := tc.cfg.Validate()
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tc.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.wantErr)
		}
	}
}

func TestHelpers(t *testing.T) {
	if got, want := LockKey("http-01", "WWW.Example.COM"), "HTTP-01|www.example.com"; got != want {
		t.Errorf("LockKey = %q, want %q", got, want)
	}
	if LockKey("HTTP-01", "example.com") == LockKey("DNS-01", "example.com") {
		t.Errorf("HTTP-01 and DNS-01 of one name share a lock key")
	}
	it := Item{ID: ChallengeID("team-a", "order-1-0")}
	if it.ID != "team-a/order-1-0" || it.Namespace() != "team-a" {
		t.Errorf("ChallengeID/Namespace = %q/%q", it.ID, it.Namespace())
	}
}

func TestCap(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 10})

	items := make([]Item, 100)
	for i := range items {
		items[i] = item("ns", fmt.Sprintf("c%03d", i), "HTTP-01", fmt.Sprintf("h%03d.example.com", i), int64(i))
	}
	if n := mustEnqueue(t, ctx, s, items...); n != 100 {
		t.Fatalf("Enqueue added %d, want 100", n)
	}
	wantCounts(t, ctx, s, 100, 0)

	first := mustGrant(t, ctx, s, 100)
	if len(first) != 10 {
		t.Fatalf("Grant(100) with cap 10 = %d grants, want 10", len(first))
	}
	// Oldest first: c000..c009, with increasing sequence numbers.
	for i, g := range first {
		if want := fmt.Sprintf("ns/c%03d", i); g.ID != want {
			t.Fatalf("grant %d = %s, want %s", i, g.ID, want)
		}
		if i > 0 && g.Seq <= first[i-1].Seq {
			t.Fatalf("grant seqs not increasing: %v", first)
		}
		if g.At.IsZero() || time.Since(g.At).Abs() > time.Minute {
			t.Fatalf("grant At = %v, not the Redis server time", g.At)
		}
	}
	wantCounts(t, ctx, s, 90, 10)
	if g := mustGrant(t, ctx, s, 100); len(g) != 0 {
		t.Fatalf("Grant at cap = %v, want none", ids(g))
	}
	if g := mustGrant(t, ctx, s, 0); len(g) != 0 {
		t.Fatalf("Grant(0) at cap = %v, want none", ids(g))
	}

	for _, g := range first[:3] {
		if !mustRelease(t, ctx, s, g.ID) {
			t.Fatalf("Release(%s) = false, want true", g.ID)
		}
		if st := mustLookup(t, ctx, s, g.ID); st != StateUnknown {
			t.Fatalf("Lookup(%s) after release = %q, want unknown", g.ID, st)
		}
	}
	wantCounts(t, ctx, s, 90, 7)

	// max bounds a call below the cap.
	if g := mustGrant(t, ctx, s, 1); len(g) != 1 {
		t.Fatalf("Grant(1) = %d grants, want 1", len(g))
	}
	if g := mustGrant(t, ctx, s, 100); len(g) != 2 {
		t.Fatalf("Grant(100) after 3 releases and 1 grant = %d grants, want 2", len(g))
	}
	wantCounts(t, ctx, s, 87, 10)
	if g := mustGrant(t, ctx, s, 100); len(g) != 0 {
		t.Fatalf("Grant at cap = %v, want none", ids(g))
	}
	if got := s.Stats.Grants.Load(); got != 13 {
		t.Errorf("Stats.Grants = %d, want 13", got)
	}
	if got := s.Stats.Releases.Load(); got != 3 {
		t.Errorf("Stats.Releases = %d, want 3", got)
	}
}

func TestLockExclusion(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 60})

	// Same (type, name) up to case, in two namespaces: one lock key.
	http1 := item("ns1", "http", "HTTP-01", "Example.COM", 1)
	http2 := item("ns2", "http", "http-01", "example.com", 2)
	dns1 := item("ns1", "dns", "DNS-01", "example.com", 3)
	http3 := item("ns1", "http-again", "HTTP-01", "example.com", 4)
	if http1.Lock != http2.Lock || http1.Lock == dns1.Lock {
		t.Fatalf("lock keys: %q %q %q", http1.Lock, http2.Lock, dns1.Lock)
	}
	mustEnqueue(t, ctx, s, http1, http2, dns1, http3)

	held := map[string]string{} // lock -> id
	byID := map[string]Item{http1.ID: http1, http2.ID: http2, dns1.ID: dns1, http3.ID: http3}
	grant := func(want int) []Grant {
		t.Helper()
		gs := mustGrant(t, ctx, s, 0)
		if len(gs) != want {
			t.Fatalf("Grant = %v, want %d grants (held %v)", ids(gs), want, held)
		}
		for _, g := range gs {
			lock := byID[g.ID].Lock
			if other, ok := held[lock]; ok {
				t.Fatalf("%s granted while %s holds lock %s", g.ID, other, lock)
			}
			held[lock] = g.ID
		}
		return gs
	}
	release := func(id string) {
		t.Helper()
		if !mustRelease(t, ctx, s, id) {
			t.Fatalf("Release(%s) = false", id)
		}
		delete(held, byID[id].Lock)
	}

	// HTTP-01 and DNS-01 of the same name run together; only one HTTP-01.
	gs := grant(2)
	if held[dns1.Lock] != dns1.ID {
		t.Fatalf("DNS-01 challenge not granted alongside HTTP-01: %v", ids(gs))
	}
	wantCounts(t, ctx, s, 2, 2)
	grant(0)
	// DNS-01's release does not free the HTTP-01 lock.
	release(dns1.ID)
	grant(0)
	// Each release of the HTTP-01 holder lets exactly one more in.
	for range 2 {
		release(held[http1.Lock])
		grant(1)
	}
	release(held[http1.Lock])
	grant(0)
	wantCounts(t, ctx, s, 0, 0)
}

func TestOldestFirst(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 60})

	// Enqueued in random order, one call each: grants follow the score.
	const n = 50
	perm := rand.Perm(n)
	for _, i := range perm {
		mustEnqueue(t, ctx, s, item("ns", fmt.Sprintf("c%02d", i), "HTTP-01", fmt.Sprintf("h%02d.example.com", i), 1000+int64(i)))
	}
	var order []string
	for range n {
		gs := mustGrant(t, ctx, s, 1)
		if len(gs) != 1 {
			t.Fatalf("Grant(1) = %v, want 1 grant", ids(gs))
		}
		order = append(order, gs[0].ID)
		mustRelease(t, ctx, s, gs[0].ID)
	}
	for i, id := range order {
		if want := fmt.Sprintf("ns/c%02d", i); id != want {
			t.Fatalf("grant order %v: position %d = %s, want %s", order, i, id, want)
		}
	}
	wantCounts(t, ctx, s, 0, 0)
}

func TestBlockedOldestDoesNotBlockYounger(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 60})

	holder := item("other", "holder", "HTTP-01", "busy.example.com", 1)
	mustEnqueue(t, ctx, s, holder)
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 1 || gs[0].ID != holder.ID {
		t.Fatalf("Grant = %v, want [%s]", ids(gs), holder.ID)
	}

	old := item("ns", "old", "HTTP-01", "busy.example.com", 10)
	young1 := item("ns", "young1", "HTTP-01", "free1.example.com", 20)
	young2 := item("ns", "young2", "HTTP-01", "free2.example.com", 30)
	mustEnqueue(t, ctx, s, young2, old, young1)

	gs := mustGrant(t, ctx, s, 0)
	if got, want := ids(gs), []string{young1.ID, young2.ID}; !slices.Equal(got, want) {
		t.Fatalf("Grant with the oldest blocked = %v, want %v", got, want)
	}
	if st := mustLookup(t, ctx, s, old.ID); st != StateQueued {
		t.Fatalf("Lookup(old) = %q, want queued", st)
	}
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 0 {
		t.Fatalf("Grant = %v, want none while the lock is held", ids(gs))
	}
	mustRelease(t, ctx, s, holder.ID)
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 1 || gs[0].ID != old.ID {
		t.Fatalf("Grant after the lock is freed = %v, want [%s]", ids(gs), old.ID)
	}
	wantCounts(t, ctx, s, 0, 3)
}

func TestFairness(t *testing.T) {
	// "small" arrives after "big" (higher scores), either before any grant
	// or once "big" has been served for a while.
	for _, warm := range []int{0, 7} {
		t.Run(fmt.Sprintf("after_%d_grants", warm), func(t *testing.T) {
			rdb, _ := setup(t)
			ctx := testCtx(t)
			s := newSched(t, rdb, Config{Cap: 2})

			big := make([]Item, 1000)
			for i := range big {
				big[i] = item("big", fmt.Sprintf("c%04d", i), "HTTP-01", fmt.Sprintf("b%04d.example.com", i), 1_000+int64(i))
			}
			for i := 0; i < len(big); i += 250 {
				mustEnqueue(t, ctx, s, big[i:i+250]...)
			}
			for range warm {
				gs := mustGrant(t, ctx, s, 1)
				if len(gs) != 1 || !strings.HasPrefix(gs[0].ID, "big/") {
					t.Fatalf("warm-up Grant = %v", ids(gs))
				}
				mustRelease(t, ctx, s, gs[0].ID)
			}
			for i := range 5 {
				mustEnqueue(t, ctx, s, item("small", fmt.Sprintf("c%d", i), "HTTP-01", fmt.Sprintf("s%d.example.com", i), 1_000_000+int64(i)))
			}

			var order []string
			smallAt := []int{}
			for len(order) < 40 {
				gs := mustGrant(t, ctx, s, 0)
				if len(gs) == 0 || len(gs) > 2 {
					t.Fatalf("Grant = %v, want 1 or 2 grants with cap 2", ids(gs))
				}
				for _, g := range gs {
					order = append(order, g.ID)
					if strings.HasPrefix(g.ID, "small/") {
						smallAt = append(smallAt, len(order))
						// Oldest first within the namespace.
						if want := fmt.Sprintf("small/c%d", len(smallAt)-1); g.ID != want {
							t.Fatalf("small grant %d = %s, want %s", len(smallAt), g.ID, want)
						}
					}
				}
				for _, g := range gs {
					mustRelease(t, ctx, s, g.ID)
				}
			}
			if len(smallAt) != 5 || smallAt[4] > 11 {
				t.Fatalf("small namespace granted at positions %v of %v; want all 5 within the first ~10 grants", smallAt, order)
			}
			// Round-robin: no two small grants in a row while big waits.
			for i := 1; i < len(smallAt); i++ {
				if smallAt[i] == smallAt[i-1]+1 {
					t.Fatalf("small served twice in a row at %v: %v", smallAt, order)
				}
			}
			wantCounts(t, ctx, s, 1000-int64(warm)-35, 0)
		})
	}
}

func TestIdempotency(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 60})

	a := item("ns", "a", "HTTP-01", "a.example.com", 1)
	b := item("ns", "b", "HTTP-01", "b.example.com", 2)
	if st := mustLookup(t, ctx, s, a.ID); st != StateUnknown {
		t.Fatalf("Lookup before enqueue = %q, want unknown", st)
	}
	if n := mustEnqueue(t, ctx, s, a); n != 1 {
		t.Fatalf("first Enqueue added %d, want 1", n)
	}
	if n := mustEnqueue(t, ctx, s, a); n != 0 {
		t.Fatalf("second Enqueue added %d, want 0", n)
	}
	if n := mustEnqueue(t, ctx, s, b, b, a); n != 1 {
		t.Fatalf("Enqueue(b, b, a) added %d, want 1", n)
	}
	if n, err := s.Enqueue(ctx); n != 0 || err != nil {
		t.Fatalf("Enqueue() = %d, %v; want 0, nil", n, err)
	}
	wantCounts(t, ctx, s, 2, 0)
	if st := mustLookup(t, ctx, s, a.ID); st != StateQueued {
		t.Fatalf("Lookup(a) = %q, want queued", st)
	}

	gs := mustGrant(t, ctx, s, 1)
	if len(gs) != 1 || gs[0].ID != a.ID {
		t.Fatalf("Grant(1) = %v, want [%s]", ids(gs), a.ID)
	}
	// a holds a lease: enqueueing it again does not queue it.
	if n := mustEnqueue(t, ctx, s, a); n != 0 {
		t.Fatalf("Enqueue of a leased item added %d, want 0", n)
	}
	if st := mustLookup(t, ctx, s, a.ID); st != StateInflight {
		t.Fatalf("Lookup(a) = %q, want inflight", st)
	}
	wantCounts(t, ctx, s, 1, 1)
	gs = mustGrant(t, ctx, s, 0)
	if len(gs) != 1 || gs[0].ID != b.ID {
		t.Fatalf("Grant = %v, want only [%s] (a must not be granted twice)", ids(gs), b.ID)
	}
	wantCounts(t, ctx, s, 0, 2)

	if ok := mustRelease(t, ctx, s, "ns/unknown"); ok {
		t.Fatalf("Release of an unknown id = true, want false")
	}
	if ok := mustRelease(t, ctx, s, "no-slash"); ok {
		t.Fatalf("Release of a malformed id = true, want false")
	}
	if ok := mustRelease(t, ctx, s, a.ID); !ok {
		t.Fatalf("Release(a) = false, want true")
	}
	if ok := mustRelease(t, ctx, s, a.ID); ok {
		t.Fatalf("second Release(a) = true, want false")
	}
	wantCounts(t, ctx, s, 0, 1)
	if got := s.Stats.Releases.Load(); got != 1 {
		t.Fatalf("Stats.Releases = %d, want 1", got)
	}

	// Malformed items are refused before touching Redis.
	for _, bad := range []Item{{ID: "", Lock: "L"}, {ID: "ns/x", Lock: ""}, {ID: "noslash", Lock: "L"}} {
		if _, err := s.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) succeeded, want an error", bad)
		}
	}
}

func TestRenew(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 5, LeaseTTL: time.Second})

	if err := s.Renew(ctx, "ns/unknown"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew(unknown) = %v, want ErrNotHeld", err)
	}
	x := item("ns", "x", "HTTP-01", "x.example.com", 1)
	mustEnqueue(t, ctx, s, x)
	if err := s.Renew(ctx, x.ID); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew(queued) = %v, want ErrNotHeld", err)
	}
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 1 {
		t.Fatalf("Grant = %v", ids(gs))
	}

	// Renewing every 200ms keeps a 1s lease alive well past its TTL.
	until := time.Now().Add(2500 * time.Millisecond)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(until) {
		if err := s.Renew(ctx, x.ID); err != nil {
			t.Fatalf("Renew(held): %v", err)
		}
		reaped, err := s.Reap(ctx, 0)
		if err != nil {
			t.Fatalf("reap: %v", err)
		}
		if len(reaped) != 0 {
			t.Fatalf("renewed lease reaped: %v", reaped)
		}
		<-tick.C
	}
	if st := mustLookup(t, ctx, s, x.ID); st != StateInflight {
		t.Fatalf("Lookup after renewals = %q, want inflight", st)
	}
	if got := s.Stats.Reaped.Load(); got != 0 {
		t.Fatalf("Stats.Reaped = %d, want 0", got)
	}
}

func TestLeaseExpiry(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 1, LeaseTTL: time.Second})

	a := item("ns", "a", "HTTP-01", "shared.example.com", 10)
	mustEnqueue(t, ctx, s, a)
	first := mustGrant(t, ctx, s, 0)
	if len(first) != 1 || first[0].ID != a.ID {
		t.Fatalf("Grant = %v, want [%s]", ids(first), a.ID)
	}
	// b shares a's lock and is younger; c has a free lock but the cap is 1.
	b := item("ns", "b", "HTTP-01", "shared.example.com", 20)
	c := item("other", "c", "DNS-01", "c.example.com", 5)
	mustEnqueue(t, ctx, s, b, c)
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 0 {
		t.Fatalf("Grant at cap = %v, want none", ids(gs))
	}
	if reaped, err := s.Reap(ctx, 0); err != nil || len(reaped) != 0 {
		t.Fatalf("Reap of a fresh lease = %v, %v; want none", reaped, err)
	}

	// No renewal: the lease expires and the reaper frees slot and lock.
	var reaped []string
	eventually(t, 10*time.Second, func() bool {
		r, err := s.Reap(ctx, 0)
		if err != nil {
			t.Fatalf("reap: %v", err)
		}
		reaped = append(reaped, r...)
		return len(reaped) > 0
	})
	if !slices.Equal(reaped, []string{a.ID}) {
		t.Fatalf("reaped %v, want [%s]", reaped, a.ID)
	}
	if st := mustLookup(t, ctx, s, a.ID); st != StateQueued {
		t.Fatalf("Lookup(a) after reap = %q, want queued", st)
	}
	if err := s.Renew(ctx, a.ID); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew after reap = %v, want ErrNotHeld", err)
	}
	if ok := mustRelease(t, ctx, s, "ns/nothing"); ok {
		t.Fatal("Release(unknown) = true")
	}
	wantCounts(t, ctx, s, 3, 0)
	if got := s.Stats.Reaped.Load(); got != 1 {
		t.Fatalf("Stats.Reaped = %d, want 1", got)
	}

	// a went back at its old score, so it is again the oldest of ns (ahead
	// of b) and needs the freed lock; with the cap of 1 freed, grants
	// resume. Grant one at a time until a shows up (c's namespace may take
	// its turn first); b must not come before a.
	seen := map[string]bool{}
	for !seen[a.ID] {
		gs := mustGrant(t, ctx, s, 0)
		if len(gs) != 1 {
			t.Fatalf("Grant after reap = %v, want 1 grant (seen %v)", ids(gs), seen)
		}
		id := gs[0].ID
		if id == b.ID {
			t.Fatalf("b granted before a: a did not go back at its old score")
		}
		if seen[id] {
			t.Fatalf("%s granted twice", id)
		}
		seen[id] = true
		if id != a.ID {
			mustRelease(t, ctx, s, id)
		}
	}
	if st := mustLookup(t, ctx, s, a.ID); st != StateInflight {
		t.Fatalf("Lookup(a) after re-grant = %q, want inflight", st)
	}
	if got := s.Stats.Grants.Load(); got != int64(1+len(seen)) {
		t.Fatalf("Stats.Grants = %d, want %d", got, 1+len(seen))
	}
	// Once a is done, the rest drains.
	mustRelease(t, ctx, s, a.ID)
	for !seen[b.ID] || !seen[c.ID] {
		gs := mustGrant(t, ctx, s, 0)
		if len(gs) != 1 || seen[gs[0].ID] {
			t.Fatalf("Grant after releasing a = %v (seen %v)", ids(gs), seen)
		}
		seen[gs[0].ID] = true
		mustRelease(t, ctx, s, gs[0].ID)
	}
	wantCounts(t, ctx, s, 0, 0)
}

func TestRedisRestart(t *testing.T) {
	rdb, srv := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 5})

	a := item("ns", "a", "HTTP-01", "a.example.com", 1)
	b := item("ns", "b", "HTTP-01", "b.example.com", 2)
	mustEnqueue(t, ctx, s, a, b)
	if gs := mustGrant(t, ctx, s, 1); len(gs) != 1 || gs[0].ID != a.ID {
		t.Fatalf("Grant = %v", ids(gs))
	}

	if err := srv.Restart(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	// The client's pooled connections died with the server; let it
	// reconnect.
	eventually(t, 10*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil })

	for _, id := range []string{a.ID, b.ID} {
		if st := mustLookup(t, ctx, s, id); st != StateUnknown {
			t.Fatalf("Lookup(%s) after restart = %q, want unknown", id, st)
		}
	}
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 0 {
		t.Fatalf("Grant after restart = %v, want none", ids(gs))
	}
	if err := s.Renew(ctx, a.ID); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew after restart = %v, want ErrNotHeld", err)
	}
	if ok := mustRelease(t, ctx, s, a.ID); ok {
		t.Fatalf("Release after restart = true, want false")
	}
	wantCounts(t, ctx, s, 0, 0)

	// Resync re-enqueues what is unfinished; scheduling resumes.
	if n := mustEnqueue(t, ctx, s, a, b); n != 2 {
		t.Fatalf("re-Enqueue added %d, want 2", n)
	}
	gs := mustGrant(t, ctx, s, 0)
	if got, want := ids(gs), []string{a.ID, b.ID}; !slices.Equal(got, want) {
		t.Fatalf("Grant after re-enqueue = %v, want %v", got, want)
	}
	if gs[0].Seq != 1 {
		t.Errorf("first Seq after restart = %d, want 1 (fresh counter)", gs[0].Seq)
	}
	wantCounts(t, ctx, s, 0, 2)
}

// TestCountsUnderChurn reads Counts while other clients release, enqueue
// and grant: every snapshot must be consistent (never a negative backlog,
// never more than the items that exist).
func TestCountsUnderChurn(t *testing.T) {
	_, srv := setup(t)
	ctx := testCtx(t)
	const n = 5
	prefix := "{acmeqtest-counts}:"
	s := newSched(t, newClient(t, srv), Config{Cap: n, Prefix: prefix})
	items := make([]Item, n)
	for i := range items {
		items[i] = item("ns", fmt.Sprintf("c%d", i), "HTTP-01", fmt.Sprintf("h%d.example.com", i), int64(i))
	}
	mustEnqueue(t, ctx, s, items...)
	if gs := mustGrant(t, ctx, s, 0); len(gs) != n {
		t.Fatalf("Grant = %v", ids(gs))
	}

	var (
		wg      sync.WaitGroup
		running atomic.Int32
		errs    = make(chan error, n)
	)
	deadline := time.Now().Add(20 * time.Second)
	for _, it := range items {
		w := newSched(t, newClient(t, srv), Config{Cap: n, Prefix: prefix})
		running.Add(1)
		wg.Go(func() {
			defer running.Add(-1)
			for range 300 {
				if time.Now().After(deadline) {
					return
				}
				if _, err := w.Release(ctx, it.ID); err != nil {
					errs <- err
					return
				}
				if _, err := w.Enqueue(ctx, it); err != nil {
					errs <- err
					return
				}
				if _, err := w.Grant(ctx, 1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	reads := 0
	for running.Load() > 0 {
		backlog, inflight, err := s.Counts(ctx)
		if err != nil {
			t.Fatalf("counts: %v", err)
		}
		reads++
		if backlog < 0 || inflight < 0 || backlog+inflight > n {
			t.Errorf("inconsistent Counts = (backlog %d, inflight %d) with %d items", backlog, inflight, n)
			break
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d consistent Counts reads", reads)
}

// redisTime returns the Redis server's clock, in microseconds.
func redisTime(ctx context.Context, rdb *redis.Client) (int64, error) {
	tm, err := rdb.Time(ctx).Result()
	if err != nil {
		return 0, err
	}
	return tm.UnixMicro(), nil
}

// hold is a recorded lease. start is a Redis TIME read after Grant returned
// and end one read before Release was called, so [start, end] lies within
// the true lease: recorded holds may only overlap if true ones did.
type hold struct {
	id, lock   string
	start, end int64
	worker     int
}

func TestConcurrentWorkers(t *testing.T) {
	_, srv := setup(t)
	ctx := testCtx(t)
	const (
		workers  = 8
		nItems   = 300
		nLocks   = 50
		capacity = 5
	)
	prefix := "{acmeqtest-concurrent}:"
	lockOf := map[string]string{}
	{
		s := newSched(t, newClient(t, srv), Config{Cap: capacity, Prefix: prefix})
		items := make([]Item, nItems)
		for i := range items {
			// Neighbours in age share a lock (6 items per lock key), so
			// the locks are contended while the cap is not the only limit.
			ns := fmt.Sprintf("ns%d", i%4)
			l := i * nLocks / nItems
			items[i] = item(ns, fmt.Sprintf("c%03d", i), []string{"HTTP-01", "DNS-01"}[l%2], fmt.Sprintf("h%02d.example.com", l/2), int64(i))
			lockOf[items[i].ID] = items[i].Lock
		}
		distinct := map[string]bool{}
		for _, it := range items {
			distinct[it.Lock] = true
		}
		if len(distinct) != nLocks {
			t.Fatalf("%d distinct locks, want %d", len(distinct), nLocks)
		}
		if n := mustEnqueue(t, ctx, s, items...); n != nItems {
			t.Fatalf("Enqueue added %d", n)
		}
	}

	var (
		mu      sync.Mutex
		holds   []hold
		granted atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	deadline := time.Now().Add(30 * time.Second)
	for w := range workers {
		// Each worker has its own client (own connections) and Scheduler.
		rdb := newClient(t, srv)
		s := newSched(t, rdb, Config{Cap: capacity, Prefix: prefix})
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for iter := 0; iter < 50_000 && granted.Load() < nItems && time.Now().Before(deadline); iter++ {
				gs, err := s.Grant(ctx, 1)
				if err != nil {
					errs <- err
					return
				}
				if len(gs) == 0 {
					continue // cap full or locks held: ask again
				}
				if len(gs) != 1 {
					errs <- fmt.Errorf("Grant(1) returned %d grants", len(gs))
					return
				}
				granted.Add(1)
				g := gs[0]
				start, err := redisTime(ctx, rdb)
				if err != nil {
					errs <- err
					return
				}
				// Simulated work while holding the lease.
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
				end, err := redisTime(ctx, rdb)
				if err != nil {
					errs <- err
					return
				}
				if g.At.UnixMicro() > start {
					errs <- fmt.Errorf("grant %s: At %v after a later TIME %d", g.ID, g.At, start)
					return
				}
				mu.Lock()
				holds = append(holds, hold{id: g.ID, lock: lockOf[g.ID], start: start, end: end, worker: w})
				mu.Unlock()
				ok, err := s.Release(ctx, g.ID)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					errs <- fmt.Errorf("release %s: lease not held", g.ID)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every item granted exactly once.
	count := map[string]int{}
	for _, h := range holds {
		count[h.id]++
	}
	if len(holds) != nItems || len(count) != nItems {
		t.Fatalf("%d grants of %d distinct items, want %d of %d", len(holds), len(count), nItems, nItems)
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s granted %d times", id, n)
		}
	}

	// Sweep the recorded intervals in time order: ends before starts at
	// equal times, since recorded intervals only touch if true ones don't
	// overlap.
	type event struct {
		at    int64
		start bool
		h     *hold
	}
	var evs []event
	for i := range holds {
		h := &holds[i]
		if h.end < h.start {
			t.Fatalf("hold %s ends (%d) before it starts (%d)", h.id, h.end, h.start)
		}
		evs = append(evs, event{h.start, true, h}, event{h.end, false, h})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at != evs[j].at {
			return evs[i].at < evs[j].at
		}
		return !evs[i].start && evs[j].start
	})
	active, peak := 0, 0
	lockHolder := map[string]*hold{}
	for _, e := range evs {
		if !e.start {
			active--
			delete(lockHolder, e.h.lock)
			continue
		}
		active++
		peak = max(peak, active)
		if active > capacity {
			t.Fatalf("%d leases at once at %d, cap %d", active, e.at, capacity)
		}
		if other := lockHolder[e.h.lock]; other != nil {
			t.Fatalf("lock %s held by %s [%d,%d] and %s [%d,%d] at once",
				e.h.lock, other.id, other.start, other.end, e.h.id, e.h.start, e.h.end)
		}
		lockHolder[e.h.lock] = e.h
	}
	t.Logf("%d grants by %d workers, peak %d concurrent recorded leases", len(holds), workers, peak)

	s := newSched(t, newClient(t, srv), Config{Cap: capacity, Prefix: prefix})
	wantCounts(t, ctx, s, 0, 0)
	if gs := mustGrant(t, ctx, s, 0); len(gs) != 0 {
		t.Fatalf("Grant after all released = %v", ids(gs))
	}
}
