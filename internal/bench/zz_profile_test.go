package bench

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"github.com/nats-io/nats.go"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

func TestZZProfileAcmeq(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE_N"))
	if n == 0 {
		t.Skip()
	}
	kind := os.Getenv("BENCH_PROFILE_KIND")
	f, _ := os.Create(os.Getenv("BENCH_PROFILE_OUT"))
	defer f.Close()
	timedHook = func(start bool) {
		if start {
			pprof.StartCPUProfile(f)
		} else {
			pprof.StopCPUProfile()
		}
	}
	var r Result
	if kind == "baseline" {
		r = baseline(t.Context(), n, 16, time.Minute)
	} else {
		r = acmeqRun(t.Context(), n, 3, time.Minute)
	}
	t.Logf("%s %+v", r.summary(), r.Cost)
}

func TestZZRequests(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE_N"))
	if n == 0 {
		t.Skip()
	}
	b := baseline(t.Context(), n, 16, time.Minute)
	a := acmeqRun(t.Context(), n, 3, time.Minute)
	for _, r := range []Result{b, a} {
		t.Logf("%s %s total %d per cert %.2f", r.Kind, r.summary(), total(r.ACMERequests), float64(total(r.ACMERequests))/float64(n))
		for k, v := range r.ACMERequests {
			t.Logf("   %-28s %6.2f", k, float64(v)/float64(n))
		}
	}
}

func TestZZNATSOps(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE_N"))
	if n == 0 {
		t.Skip()
	}
	// Patch: wrap acmeqRun's meter start by subscribing to ">" via a hook.
	var mu sync.Mutex
	ops := map[string]int{}
	var sub *nats.Subscription
	startHook = func(nc *nats.Conn) {
		sub, _ = nc.Subscribe(">", func(m *nats.Msg) {
			s := m.Subject
			f := strings.Split(s, ".")
			key := f[0]
			switch {
			case strings.HasPrefix(s, "acmeq."):
				key = f[0] + "." + f[1] + "." + f[2]
			case strings.HasPrefix(s, "$KV."):
				key = "kv write " + f[1]
			case strings.HasPrefix(s, "$JS.API.DIRECT.GET."):
				key = "kv read " + f[4]
			case strings.HasPrefix(s, "$JS.API.CONSUMER.MSG.NEXT"):
				key = "pull " + f[6]
			case strings.HasPrefix(s, "$JS.API."):
				key = "jsapi " + f[2] + "." + f[3]
			case strings.HasPrefix(s, "$JS.ACK."):
				d := string(m.Data)
				if len(d) > 5 {
					d = d[:5]
				}
				key = "ack " + f[3] + " " + d
			case strings.HasPrefix(s, "_INBOX."):
				key = "_INBOX"
				if len(m.Data) == 0 {
					key += " (empty)"
				}
			}
			mu.Lock()
			ops[key]++
			mu.Unlock()
		})
	}
	stopHook = func() { sub.Unsubscribe() }
	r := acmeqRun(t.Context(), n, 3, time.Minute)
	t.Logf("%s", r.summary())
	keys := slices.Sorted(maps.Keys(ops))
	for _, k := range keys {
		t.Logf("  %-50s %7.2f", k, float64(ops[k])/float64(n))
	}
}
