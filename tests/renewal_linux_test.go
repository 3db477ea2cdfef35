//go:build linux

package tests

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// issuance is one certificate seen in a Secret.
type issuance struct {
	seen                time.Time // first seen in the Secret
	serial              *big.Int
	notBefore, notAfter time.Time
}

// secretWatch samples every Secret of a set of Certificates and checks, at
// every sample, that it holds a matching key pair valid at that moment; it
// records each certificate the first time it is seen.
type secretWatch struct {
	mu       sync.Mutex
	history  map[string][]issuance
	problems []string
	samples  int
}

func (w *secretWatch) run(ctx context.Context, env *dev.Env, names []string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, n := range names {
			leaf, _, err := storedPair(ctx, env, dev.Namespace, n)
			now := time.Now()
			w.mu.Lock()
			h := w.history[n]
			switch {
			case err != nil && len(h) == 0:
				// Not issued yet.
			case err != nil:
				if ctx.Err() == nil {
					w.problems = append(w.problems, fmt.Sprintf("%s at %s: %v", n, now.Format(time.StampMilli), err))
				}
			default:
				w.samples++
				if now.After(leaf.NotAfter) || now.Add(time.Second).Before(leaf.NotBefore) {
					w.problems = append(w.problems, fmt.Sprintf("%s at %s: the Secret holds a certificate valid %s..%s", n, now.Format(time.StampMilli), leaf.NotBefore.Format(time.StampMilli), leaf.NotAfter.Format(time.StampMilli)))
				}
				if len(h) == 0 || h[len(h)-1].serial.Cmp(leaf.SerialNumber) != 0 {
					w.history[n] = append(h, issuance{seen: now, serial: leaf.SerialNumber, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter})
				}
			}
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// 50 certificates valid for 40 s, renewed by `acmeq worker` processes at
// two thirds of their lifetime: each is renewed at least twice, every
// renewal has a new serial and reaches the Secret before the certificate it
// replaces expires, and the Secret holds a valid certificate at every
// moment — although every worker process is killed (SIGKILL) and replaced
// in the middle.
func TestRenewalsKeepEveryCertificateValid(t *testing.T) {
	const (
		certs    = 50
		validity = 40 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: -1, CertValidity: validity})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	procs := []*workerProc{startWorker(t, env, "renew-a"), startWorker(t, env, "renew-b")}
	for _, p := range procs {
		waitStarted(t, p)
	}
	if err := env.CreateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	names := make([]string, certs)
	for i := range names {
		names[i] = fmt.Sprintf("r%02d", i)
		if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: names[i], Issuer: dev.IssuerName,
			DNSNames: []string{names[i] + ".renew.acmeq.test"}}); err != nil {
			t.Fatal(err)
		}
	}
	watch := &secretWatch{history: map[string][]issuance{}}
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); watch.run(wctx, env, names, 200*time.Millisecond) }()

	atLeast := func(rev int, timeout time.Duration) {
		t.Helper()
		stacktest.Eventually(t, timeout, func() error {
			for _, n := range names {
				c := &messages.Certificate{}
				if err := env.Store.Get(ctx, dev.Namespace, n, c); err != nil {
					return err
				}
				if c.Status.Revision < rev {
					return fmt.Errorf("certificate %s at revision %d, want %d", n, c.Status.Revision, rev)
				}
			}
			return nil
		})
	}
	atLeast(1, time.Minute)
	atLeast(2, validity+30*time.Second)

	// Every worker dies at once and is replaced: the renewal schedules and
	// the messages the dead held wait in JetStream.
	for i, p := range procs {
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		procs[i] = startWorker(t, env, fmt.Sprintf("renew-%c2", 'a'+i))
	}
	killedAt := time.Now()
	atLeast(3, validity+30*time.Second)
	// The watch samples every 200 ms: let it see the last renewals.
	stacktest.Eventually(t, 5*time.Second, func() error {
		watch.mu.Lock()
		defer watch.mu.Unlock()
		for _, n := range names {
			if len(watch.history[n]) < 3 {
				return fmt.Errorf("%s: %d certificates seen in its Secret", n, len(watch.history[n]))
			}
		}
		return nil
	})
	stopWatch()
	<-watchDone

	watch.mu.Lock()
	defer watch.mu.Unlock()
	for _, p := range watch.problems {
		t.Error(p)
	}
	var worst time.Duration
	renewals := 0
	for _, n := range names {
		h := watch.history[n]
		if len(h) < 3 {
			t.Errorf("%s: %d certificates seen, want the first and at least two renewals", n, len(h))
			continue
		}
		for i := 1; i < len(h); i++ {
			prev, cur := h[i-1], h[i]
			renewals++
			if !cur.seen.Before(prev.notAfter) {
				t.Errorf("%s: renewal %d reached the Secret at %s, after the certificate it replaced expired (%s)", n, i, cur.seen.Format(time.StampMilli), prev.notAfter.Format(time.StampMilli))
			}
			// On time: after its renewal time (two thirds of the
			// lifetime), within a redelivery (ACMEQ_ACK_WAIT) and the
			// issuance itself.
			due := prev.notBefore.Add(prev.notAfter.Sub(prev.notBefore) * 2 / 3)
			late := cur.seen.Sub(due)
			worst = max(worst, late)
			if late < -2*time.Second || late > 15*time.Second {
				t.Errorf("%s: renewal %d reached the Secret %s after its renewal time %s", n, i, late.Round(time.Millisecond), due.Format(time.StampMilli))
			}
		}
	}
	t.Logf("%d certificates, %d renewals, %d samples of the Secrets, workers killed at %s; latest renewal %s after its renewal time",
		certs, renewals, watch.samples, killedAt.Format(time.StampMilli), worst.Round(time.Millisecond))
}
