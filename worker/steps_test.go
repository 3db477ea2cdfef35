package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/solvers"
)

// testSolver presents, checks and cleans up as told: the solver interface
// is ours, so the step tests drive it directly (NATS and the store are
// real).
type testSolver struct {
	presentErr, checkErr, cleanUpErr error
	presented, checked, cleaned      int
}

func (s *testSolver) Present(context.Context, solvers.Challenge) error {
	s.presented++
	return s.presentErr
}

func (s *testSolver) CleanUp(context.Context, solvers.Challenge) error {
	s.cleaned++
	return s.cleanUpErr
}

func (s *testSolver) Check(context.Context, solvers.Challenge) error {
	s.checked++
	return s.checkErr
}

// stepEnv is a worker with a real store on an in-process NATS, for running
// one step at a time.
type stepEnv struct {
	w   *Worker
	js  jetstream.JetStream
	now time.Time
}

func newStepEnv(t *testing.T) *stepEnv {
	t.Helper()
	js := stacktest.JetStream(t)
	ctx := context.Background()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	sealer, _ := store.NewSealer(make([]byte, 32))
	st, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cfg := Config{Name: "step-test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
	cfg.defaults()
	return &stepEnv{w: &Worker{cfg: cfg, store: st, bus: bus.New(js, "step-test"), log: cfg.Logger}, js: js, now: now}
}

// run creates a challenge with status st and returns a run of it with
// solver s, as the reconciler would set it up.
func (e *stepEnv) run(t *testing.T, name string, st messages.ChallengeStatus, s solvers.Solver) *challengeRun {
	t.Helper()
	ch := &messages.Challenge{
		Metadata: messages.ObjectMeta{Name: name, Namespace: "default"},
		Spec:     messages.ChallengeSpec{DNSName: name + ".test", Type: messages.ChallengeTypeHTTP01, Token: "tok", Key: "tok.key"},
		Status:   st,
	}
	if err := e.w.store.Create(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	return &challengeRun{w: e.w, ch: ch, now: e.now, solver: s}
}

// stored reads the challenge back, to see what the step committed.
func (e *stepEnv) stored(t *testing.T, name string) messages.ChallengeStatus {
	t.Helper()
	ch := &messages.Challenge{}
	if err := e.w.store.Get(context.Background(), "default", name, ch); err != nil {
		t.Fatal(err)
	}
	return ch.Status
}

// assertReasons waits until the events recorded about a challenge have
// the reasons want (events are core publishes the stream stores a moment
// later).
func (e *stepEnv) assertReasons(t *testing.T, name string, want []string) {
	t.Helper()
	stacktest.Eventually(t, 2*time.Second, func() error {
		evs, err := bus.ReadEvents(context.Background(), e.js, bus.EventsOptions{Filter: messages.EventFilter(messages.KindChallenge, "default", name)})
		if err != nil {
			return err
		}
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Reason)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("events of %s = %v, want %v", name, got, want)
		}
		return nil
	})
}

func TestStepSchedule(t *testing.T) {
	t.Parallel()
	e := newStepEnv(t)
	r := e.run(t, "sched", messages.ChallengeStatus{Attempts: 3}, &testSolver{})
	next, _, err := stepSchedule(context.Background(), r)
	if err != nil || !next {
		t.Fatalf("stepSchedule = %v, %v", next, err)
	}
	s := r.ch.Status
	if !s.Processing || s.ScheduledTime == nil || !s.ScheduledTime.Equal(e.now) || s.Attempts != 0 || ChallengePhase(s) != PhaseScheduled {
		t.Errorf("status after schedule = %+v", s)
	}
	if len(r.events) != 1 {
		t.Errorf("%d events wait for the next write, want Started", len(r.events))
	}
	if got := e.stored(t, "sched"); got.Processing {
		t.Errorf("schedule wrote the status by itself; it shares the next step's write")
	}
}

func TestStepPresent(t *testing.T) {
	t.Parallel()
	e := newStepEnv(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		err       error
		runs      int
		wantNext  bool
		wantDelay time.Duration // of the last run
		wantState messages.ChallengeStatus
		events    []string
	}{
		{"presented", nil, 1, true, 0,
			messages.ChallengeStatus{Processing: true, Presented: true, State: messages.StatePending, Reason: "Waiting for http-01 challenge propagation"},
			[]string{"Started", "Presented"}},
		{"refused three times", errors.New("rfc2136: server answered REFUSED"), 3, false, 800 * time.Millisecond,
			messages.ChallengeStatus{Processing: true, Attempts: 3, Reason: "Error presenting challenge: rfc2136: server answered REFUSED"},
			[]string{"Started", "PresentError"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, "present-"+tt.name[:4], messages.ChallengeStatus{}, &testSolver{presentErr: tt.err})
			if _, _, err := stepSchedule(ctx, r); err != nil {
				t.Fatal(err)
			}
			var next bool
			var out Outcome
			var err error
			for range tt.runs {
				next, out, err = stepPresent(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
			}
			if next != tt.wantNext || (!next && out.delay != tt.wantDelay) {
				t.Errorf("stepPresent = next %v, delay %s; want %v, %s", next, out.delay, tt.wantNext, tt.wantDelay)
			}
			got := e.stored(t, r.ch.Metadata.Name)
			got.ScheduledTime = nil
			if got != tt.wantState {
				t.Errorf("stored status = %+v, want %+v", got, tt.wantState)
			}
			// One PresentError per distinct error, not one per attempt.
			e.assertReasons(t, r.ch.Metadata.Name, tt.events)
		})
	}
}

func TestStepSelfCheck(t *testing.T) {
	t.Parallel()
	e := newStepEnv(t)
	ctx := context.Background()
	presented := messages.ChallengeStatus{Processing: true, Presented: true, State: messages.StatePending}
	// Passing: go on to accept, nothing written.
	r := e.run(t, "check-ok", presented, &testSolver{})
	if next, _, err := stepSelfCheck(ctx, r); !next || err != nil {
		t.Fatalf("passing self-check = %v, %v", next, err)
	}
	// Failing: three quick retries, doubling (the responders' watch
	// lagging), then cert-manager's interval; the attempts are in the status, not the
	// message's delivery count.
	r = e.run(t, "check-fail", presented, &testSolver{checkErr: errors.New("http01: wrong status code '404', expected '200'")})
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, SelfCheckIntervalDefault, SelfCheckIntervalDefault}
	for i, w := range want {
		next, out, err := stepSelfCheck(ctx, r)
		if next || err != nil || out.delay != w {
			t.Fatalf("failing self-check %d = next %v, delay %s, %v; want retry after %s", i+1, next, out.delay, err, w)
		}
	}
	got := e.stored(t, "check-fail")
	if got.Attempts != 5 || got.Reason != "Waiting for http-01 challenge propagation: wrong status code '404', expected '200'" {
		t.Errorf("stored status = %+v", got)
	}
	// Accepting starts the next phase's count at zero, so polls start
	// short after a long self-check.
	transitionAccepted(&r.ch.Status, messages.StateProcessing)
	if r.ch.Status.Attempts != 0 || e.w.pollDelay(r.ch.Status.Attempts+1) != PollInitialDefault {
		t.Errorf("after accept: attempts %d, first poll in %s", r.ch.Status.Attempts, e.w.pollDelay(r.ch.Status.Attempts+1))
	}
}

func TestStepCleanUp(t *testing.T) {
	t.Parallel()
	e := newStepEnv(t)
	ctx := context.Background()
	final := messages.ChallengeStatus{Processing: true, Presented: true, Accepted: true, State: messages.StateValid}
	s := &testSolver{cleanUpErr: errors.New("rfc2136: timeout")}
	r := e.run(t, "cleanup", final, s)
	next, out, err := stepCleanUp(ctx, r)
	if next || err != nil || out.delay != 200*time.Millisecond {
		t.Fatalf("failing cleanup = next %v, delay %s, %v", next, out.delay, err)
	}
	s.cleanUpErr = nil
	if next, _, err := stepCleanUp(ctx, r); !next || err != nil {
		t.Fatalf("cleanup = %v, %v", next, err)
	}
	got := e.stored(t, "cleanup")
	if ChallengePhase(got) != PhaseDone || got.State != messages.StateValid || got.Attempts != 0 {
		t.Errorf("stored status = %+v, want done and valid", got)
	}
	e.assertReasons(t, "cleanup", []string{"CleanUpError"})
}

// What a CA error means for a challenge, from the one classifier.
func TestChallengeACMEError(t *testing.T) {
	t.Parallel()
	e := newStepEnv(t)
	ctx := context.Background()
	retryAfter := http.Header{"Retry-After": []string{"120"}}
	tests := []struct {
		name      string
		err       error
		wantNext  bool
		wantDelay time.Duration
		wantState messages.State
	}{
		{"unauthorized fails the challenge", &acme.Error{StatusCode: 403, ProblemType: "urn:ietf:params:acme:error:unauthorized", Detail: "no"}, true, 0, messages.StateErrored},
		{"rate limited waits for Retry-After", &acme.Error{StatusCode: 429, ProblemType: "urn:ietf:params:acme:error:rateLimited", Header: retryAfter}, false, 2 * time.Minute, messages.StatePending},
		{"server error backs off", &acme.Error{StatusCode: 503, ProblemType: "urn:ietf:params:acme:error:serverInternal"}, false, 200 * time.Millisecond, messages.StatePending},
		{"transport error backs off", errors.New("dial tcp: connection refused"), false, 200 * time.Millisecond, messages.StatePending},
		{"badNonce retries at once", &acme.Error{StatusCode: 400, ProblemType: "urn:ietf:params:acme:error:badNonce"}, false, 0, messages.StatePending},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(t, "acme-"+string(rune('a'+i)), messages.ChallengeStatus{Processing: true, Presented: true, State: messages.StatePending}, &testSolver{})
			next, out, err := r.acmeError(ctx, "Error accepting challenge", tt.err)
			if err != nil || next != tt.wantNext || (!next && out.delay != tt.wantDelay) || r.ch.Status.State != tt.wantState {
				t.Errorf("acmeError = next %v delay %s err %v state %q; want next %v delay %s state %q", next, out.delay, err, r.ch.Status.State, tt.wantNext, tt.wantDelay, tt.wantState)
			}
		})
	}
}
