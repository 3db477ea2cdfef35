package bench

import (
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBaselineAndAcmeq proves both sides issue, and that the cost is
// counted, on a handful of certificates.
func TestBaselineAndAcmeq(t *testing.T) {
	const n = 5
	ctx := t.Context()
	b := baseline(ctx, n, 4, 30*time.Second, "")
	if !b.OK() {
		t.Fatalf("baseline: %s (errors %q)", b.summary(), b.Errors)
	}
	a := acmeqRun(ctx, n, 2, 30*time.Second, "")
	if !a.OK() {
		t.Fatalf("acmeq: %s (errors %q)", a.summary(), a.Errors)
	}
	c := a.Cost
	if c == nil || c.Certificates != n {
		t.Fatalf("acmeq cost = %+v, want %d certificates", c, n)
	}
	// Every certificate takes at least its Certificate, CertificateRequest,
	// Order and two Challenge transitions, and Redis for its challenges.
	if c.WorkMessages < 5*n || c.Events == 0 || c.KVWrites < 5*n {
		t.Errorf("acmeq cost too small to be real: %+v", c)
	}
	if c.RedisMonitorErr != nil {
		t.Errorf("redis monitor: %v", c.RedisMonitorErr)
	} else if c.RedisCalls == 0 || c.RedisCommands < c.RedisCalls/2 {
		t.Errorf("redis counts: calls %d, commands %d", c.RedisCalls, c.RedisCommands)
	}
	rep := &Report{Options: Options{N: n, Concurrency: 4, Workers: 2, Rounds: 1, Timeout: 30 * time.Second}, Rounds: []Round{{Baseline: b, Acmeq: a}}}
	var out strings.Builder
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"median certs/s", "ratio acmeq/baseline", "KV writes", "Redis calls"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
}

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=1\r\n")
	if got["evalsha"] != 12 || got["client|setinfo"] != 2 || len(got) != 2 {
		t.Errorf("parseCommandStats = %v", got)
	}
}

func TestMonitorLine(t *testing.T) {
	sum := sha1.Sum([]byte("-- Renew a lease.\nreturn 1"))
	renewSHA := hex.EncodeToString(sum[:])
	m := &monitor{nonce: "n1", phase: -1, byCmd: map[string]uint64{}, scripts: map[string]string{}, seen: make(chan int, 3)}
	m.line(`+1.0 [0 127.0.0.1:1] "get" "before"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "echo" "acmeq-bench-n1-0"` + "\r\n")
	// The EVAL (after a NOSCRIPT) teaches the name of the script.
	m.line(`+1.0 [0 127.0.0.1:1] "evalsha" "` + renewSHA + `" "1" "k"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "eval" "-- Renew a lease.\nreturn 1" "0"` + "\r\n")
	m.line(`+1.0 [0 lua] "zadd" "k" "1" "m"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "EVALSHA" "` + renewSHA + `" "0"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "info" "commandstats"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:2] "echo" "acmeq-bench-n1-1"` + "\r\n")
	m.line(`+1.0 [0 127.0.0.1:1] "setnx" "x" "y"` + "\r\n")
	busy, idle, by := m.counts()
	if busy != 3 || idle != 1 || by["evalsha renew"] != 2 || by["eval renew"] != 1 || len(by) != 2 {
		t.Errorf("busy %d idle %d by %v", busy, idle, by)
	}
}

func TestMonitorArgs(t *testing.T) {
	got := monitorArgs(` "eval" "-- a \"b\"\nc\\d\x41" "0"` + "\r\n")
	want := []string{"eval", "-- a \"b\"\nc\\dA", "0"}
	if !slices.Equal(got, want) {
		t.Errorf("monitorArgs = %q, want %q", got, want)
	}
}

func TestLockWaiters(t *testing.T) {
	dump := `goroutine 1 [running]:
main.main()
	/x/main.go:1 +0x1

goroutine 7 [sync.RWMutex.RLock, 2 minutes]:
sync.runtime_SemacquireRWMutexR(0xc0001, 0x0, 0x0)
	/go/src/runtime/sema.go:100 +0x25
github.com/letsencrypt/pebble/v2/db.(*MemoryStore).FindValidAuthorization(0xc000123, {0xc0002, 0x20}, {{0xc0003, 0x3}, {0xc0004, 0x10}})
	/m/pebble/v2@v2.10.1/db/memorystore.go:321 +0x9c
github.com/letsencrypt/pebble/v2/wfe.(*WebFrontEndImpl).makeAuthorizations(...)
	/m/pebble/v2@v2.10.1/wfe/wfe.go:1563

goroutine 9 [sync.Mutex.Lock]:
github.com/acmeq/acmeq/other.F()
	/x/other.go:1 +0x1

goroutine 8 [chan receive]:
github.com/letsencrypt/pebble/v2/db.(*MemoryStore).X()
	/m/db/memorystore.go:1 +0x1
`
	got := parseLockWaiters(dump)
	if len(got) != 1 || got["7"] != "db.(*MemoryStore).FindValidAuthorization" {
		t.Fatalf("parseLockWaiters = %q", got)
	}
	if fn := stuck(nil, got, got); fn != got["7"] {
		t.Errorf("stuck across two dumps = %q", fn)
	}
	if fn := stuck(got, got, got); fn != "" {
		t.Errorf("stuck before the run counted: %q", fn)
	}
	if fn := stuck(nil, map[string]string{}, got); fn != "" {
		t.Errorf("stuck on first sight: %q", fn)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 2, 3}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// BenchmarkIssuance issues a batch of certificates per iteration, each
// iteration on a fresh Pebble (and, for acmeq, a fresh stack), and reports
// certs/s. Run with: go test -run '^$' -bench Issuance ./internal/bench/
func BenchmarkIssuance(b *testing.B) {
	const batch = 20
	b.Run("baseline", func(b *testing.B) {
		var issued int
		var wall time.Duration
		for b.Loop() {
			r := baseline(b.Context(), batch, ConcurrencyDefault, defaultTimeout(batch), "")
			if !r.OK() {
				b.Fatalf("baseline: %s", r.summary())
			}
			issued += r.Issued
			wall += r.Wall
		}
		b.ReportMetric(float64(issued)/wall.Seconds(), "certs/s")
	})
	b.Run("acmeq", func(b *testing.B) {
		var issued int
		var wall time.Duration
		var cost Cost
		for b.Loop() {
			r := acmeqRun(b.Context(), batch, WorkersDefault, defaultTimeout(batch), "")
			if !r.OK() {
				b.Fatalf("acmeq: %s", r.summary())
			}
			issued += r.Issued
			wall += r.Wall
			cost.Certificates += r.Cost.Certificates
			cost.WorkMessages += r.Cost.WorkMessages
			cost.Events += r.Cost.Events
			cost.KVWrites += r.Cost.KVWrites
			cost.RedisCalls += r.Cost.RedisCalls
		}
		b.ReportMetric(float64(issued)/wall.Seconds(), "certs/s")
		b.ReportMetric(cost.Per(float64(cost.Messages())), "msgs/cert")
		b.ReportMetric(cost.Per(float64(cost.KVWrites)), "kvwrites/cert")
		b.ReportMetric(cost.Per(float64(cost.RedisCalls)), "redis/cert")
	})
}
