package bench

import (
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
