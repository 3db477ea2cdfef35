//go:build linux

package tests

import (
	"context"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

// A worker killed with SIGKILL: the challenges it was working on move on
// at another worker within ACMEQ_ACK_WAIT (its default, 10 s) plus a
// margin, because the dead worker's messages are redelivered then (a live
// worker extends its messages with InProgress at every step instead).
//
// The victim's HTTP-01 self-check goes to a port that accepts and never
// answers, so every challenge it presents stays in its hands (a
// challenge's steps otherwise take milliseconds, and a victim killed "while
// working" held nothing more often than not); the other workers
// self-check against the real responder.
func TestKilledWorkerMessagesRedeliveredWithinAckWait(t *testing.T) {
	env, ctx := setup(t, -1)
	// Default AckWait and lease; a short self-check interval so that no
	// challenge legitimately waits longer than the redelivery.
	fast := []string{"ACMEQ_SELF_CHECK_INTERVAL=1s"}
	victim := startWorker(t, env, "victim", append(fast, "ACMEQ_HTTP01_SELF_CHECK_PORT="+strconv.Itoa(silentPort(t)))...)
	waitStarted(t, victim)
	others := []*workerProc{startWorker(t, env, "other-1", fast...), startWorker(t, env, "other-2", fast...)}
	for _, p := range others {
		waitStarted(t, p)
	}
	if err := env.CreateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := dev.DemoRequests(60)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatal(err)
		}
		names[i] = r.Name
	}
	// Kill the victim once it is working on challenges.
	var killedAt time.Time
	var held map[string]string // challenge -> the victim's last event
	eventually(t, 60*time.Second, func() bool {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindChallenge, "", "")})
		if err != nil {
			t.Fatal(err)
		}
		held = victimHeld(evs, "victim")
		if len(held) < 3 {
			return false
		}
		if err := syscall.Kill(-victim.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killedAt = time.Now()
		return true
	})
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatal(err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s: %s", n, res[n].Message)
		}
	}
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindChallenge, "", "")})
	if err != nil {
		t.Fatal(err)
	}
	// Held at the kill: the challenges whose last event before it came
	// from the victim and was not their last step.
	held = victimHeld(before(evs, killedAt), "victim")
	limit := worker.AckWaitDefault + 5*time.Second
	var worst time.Duration
	for ch := range held {
		next := firstAfter(evs, ch, killedAt)
		if next == nil {
			var seen []string
			for _, e := range evs {
				if e.InvolvedObject.Name == ch {
					seen = append(seen, e.Reason+"@"+e.Reporter+"@"+e.LastTimestamp.Format(time.StampMilli))
				}
			}
			t.Errorf("challenge %s made no progress after the kill (%s); its events: %v", ch, killedAt.Format(time.StampMilli), seen)
			continue
		}
		wait := next.LastTimestamp.Sub(killedAt)
		worst = max(worst, wait)
		if wait > limit {
			t.Errorf("challenge %s moved on %s after the kill (%s by %s); want within ACMEQ_ACK_WAIT + 5s = %s", ch, wait.Round(time.Millisecond), next.Reason, next.Reporter, limit)
		}
	}
	t.Logf("victim held %d challenges when killed; the last moved on %s after the kill", len(held), worst.Round(time.Millisecond))
}

// silentPort listens on a loopback port that accepts connections and never
// answers, until the test ends.
func silentPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// victimHeld returns the challenges whose last event came from reporter
// and was not DomainVerified (so it was still working on them).
func victimHeld(evs []messages.Event, reporter string) map[string]string {
	last := map[string]messages.Event{}
	for _, e := range evs {
		last[e.InvolvedObject.Name] = e
	}
	held := map[string]string{}
	for ch, e := range last {
		if e.Reporter == reporter && e.Reason != messages.ReasonDomainVerified {
			held[ch] = e.Reason
		}
	}
	return held
}

func before(evs []messages.Event, t time.Time) []messages.Event {
	var out []messages.Event
	for _, e := range evs {
		if e.LastTimestamp.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

func firstAfter(evs []messages.Event, name string, t time.Time) *messages.Event {
	for i, e := range evs {
		if e.InvolvedObject.Name == name && !e.LastTimestamp.Before(t) {
			return &evs[i]
		}
	}
	return nil
}
