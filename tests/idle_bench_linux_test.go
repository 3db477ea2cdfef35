//go:build linux

package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// procCPU returns the CPU time (user + system) a process has used, from
// /proc/<pid>/stat, and its resident set size.
func procCPU(pid int) (cpu time.Duration, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	const ticks = 100 // USER_HZ
	return time.Duration(utime+stime) * time.Second / ticks, pages * int64(os.Getpagesize()), nil
}

// synthesize stores n issued Certificates (status as a worker leaves it)
// and their renewal schedules, dueIn from now for the first due of them and
// a month away for the rest.
func synthesize(b *testing.B, ctx context.Context, env *dev.Env, n, due int, dueIn time.Duration) {
	b.Helper()
	bs := bus.New(env.JS, "bench")
	now := time.Now().UTC()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("idle-%06d", i)
				nb, na := now.Add(-24*time.Hour), now.Add(60*24*time.Hour)
				rt := now.Add(30 * 24 * time.Hour)
				if i < due {
					rt = now.Add(dueIn)
				}
				c := &messages.Certificate{
					Metadata: messages.ObjectMeta{Name: name, Namespace: dev.Namespace},
					Spec:     messages.CertificateSpec{SecretName: name, DNSNames: []string{name + ".idle.acmeq.test"}, IssuerRef: messages.IssuerRef{Name: dev.IssuerName}},
					Status: messages.CertificateStatus{Revision: 1, NotBefore: &nb, NotAfter: &na, RenewalTime: &rt,
						Conditions: []messages.Condition{{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: "Ready", Message: "Certificate is up to date and has not expired", LastTransitionTime: nb}}},
				}
				err := env.Store.Create(ctx, c)
				if err == nil {
					err = bs.Schedule(ctx, messages.Transition{Kind: messages.KindCertificate, Namespace: dev.Namespace, Name: name, Action: messages.ActionTimer}, rt)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			b.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// BenchmarkIdleWorker: 100,000 issued certificates in the store, none due.
// One `acmeq worker` process's CPU over 20 s of idleness and its RSS: the
// cost does not grow with the certificates stored (no scan; their renewals
// are schedules in JetStream). Run:
//
//	go test ./tests -run '^$' -bench IdleWorker -benchtime 1x -timeout 30m
func BenchmarkIdleWorker(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				idleRun(b, n)
			}
		})
	}
}

func idleRun(b *testing.B, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: b.TempDir(), Workers: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	start := time.Now()
	synthesize(b, ctx, env, n, 0, 0)
	b.Logf("stored %d certificates and their schedules in %s", n, time.Since(start).Round(time.Millisecond))
	p := startWorker(b, env, "idle")
	waitStarted(b, p)
	// Let start-up settle, then measure a window of idleness.
	stacktest.Eventually(b, 10*time.Second, func() error {
		if strings.Contains(p.out.String(), "resync done") {
			return nil
		}
		return fmt.Errorf("worker has not run its first resync")
	})
	pid := p.cmd.Process.Pid
	cpu0, _, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	const window = 20 * time.Second
	timer := time.NewTimer(window)
	<-timer.C
	cpu1, rss, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	share := float64(cpu1-cpu0) / float64(window) * 100
	b.ReportMetric(share, "%cpu-idle")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
	b.Logf("%d certificates stored, none due: worker CPU %.2f%% of a core over %s, RSS %.1f MiB", n, share, window, float64(rss)/(1<<20))
}

// BenchmarkRenewalCycle: 200 of the stored certificates come due at once.
// The worker's CPU per certificate renewed is the same with 1,000 and with
// 100,000 stored: a renewal cycle costs what is due, not what is stored.
//
//	go test ./tests -run '^$' -bench RenewalCycle -benchtime 1x -timeout 30m
func BenchmarkRenewalCycle(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				renewalCycle(b, n, 200)
			}
		})
	}
}

func renewalCycle(b *testing.B, n, due int) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: b.TempDir(), Workers: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	p := startWorker(b, env, "cycle")
	waitStarted(b, p)
	if err := env.CreateIssuer(ctx); err != nil {
		b.Fatal(err)
	}
	const lead = 15 * time.Second
	start := time.Now()
	synthesize(b, ctx, env, n, due, lead)
	if left := lead - time.Since(start); left < 2*time.Second {
		b.Fatalf("storing %d certificates took %s, longer than the lead before they are due", n, time.Since(start))
	}
	pid := p.cmd.Process.Pid
	cpu0, _, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	stacktest.Eventually(b, 5*time.Minute, func() error {
		for i := range due {
			c := &messages.Certificate{}
			if err := env.Store.Get(ctx, dev.Namespace, fmt.Sprintf("idle-%06d", i), c); err != nil {
				return err
			}
			if c.Status.Revision < 2 || !messages.IsReady(c.Status.Conditions) {
				return fmt.Errorf("idle-%06d at revision %d", i, c.Status.Revision)
			}
		}
		return nil
	})
	cpu1, rss, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	per := (cpu1 - cpu0) / time.Duration(due)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms-cpu/renewal")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
	b.Logf("%d stored, %d due: worker CPU %s for the cycle, %s per renewal, RSS %.1f MiB", n, due, (cpu1 - cpu0).Round(time.Millisecond), per.Round(10*time.Microsecond), float64(rss)/(1<<20))
}
