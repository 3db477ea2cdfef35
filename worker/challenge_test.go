package worker

import (
	"context"
	"testing"
	"time"

	"github.com/acmeq/acmeq/messages"
)

func TestChallengePhase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status messages.ChallengeStatus
		want   Phase
	}{
		{"new", messages.ChallengeStatus{}, PhaseQueued},
		{"requeued after restart keeps pending state", messages.ChallengeStatus{State: messages.StatePending}, PhaseQueued},
		{"scheduled", messages.ChallengeStatus{Processing: true}, PhaseScheduled},
		{"presented", messages.ChallengeStatus{Processing: true, Presented: true, State: messages.StatePending}, PhasePresented},
		{"accepted, CA processing", messages.ChallengeStatus{Processing: true, Presented: true, Accepted: true, State: messages.StateProcessing}, PhaseAccepted},
		{"valid, still presented", messages.ChallengeStatus{Processing: true, Presented: true, Accepted: true, State: messages.StateValid}, PhaseFinishing},
		{"invalid, still presented", messages.ChallengeStatus{Processing: true, Presented: true, Accepted: true, State: messages.StateInvalid}, PhaseFinishing},
		{"synced valid before presenting", messages.ChallengeStatus{Processing: true, State: messages.StateValid}, PhaseFinishing},
		{"errored while queued (deadline)", messages.ChallengeStatus{State: messages.StateErrored, Presented: true}, PhaseFinishing},
		{"valid and cleaned up", messages.ChallengeStatus{State: messages.StateValid}, PhaseDone},
		{"expired and cleaned up", messages.ChallengeStatus{State: messages.StateExpired}, PhaseDone},
		{"revoked and cleaned up", messages.ChallengeStatus{State: messages.StateRevoked}, PhaseDone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ChallengePhase(tt.status); got != tt.want {
				t.Errorf("ChallengePhase(%+v) = %s, want %s", tt.status, got, tt.want)
			}
		})
	}
}

// Each named transition moves a challenge from one phase to the next, and
// only there: the table is the lifecycle of the reference.
func TestChallengeTransitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		from  Phase
		apply func(*messages.ChallengeStatus)
		to    Phase
		check func(*testing.T, messages.ChallengeStatus)
	}{
		{"start", PhaseQueued, func(s *messages.ChallengeStatus) { transitionStart(s, now) }, PhaseScheduled,
			func(t *testing.T, s messages.ChallengeStatus) {
				if !s.Processing || s.ScheduledTime == nil || !s.ScheduledTime.Equal(now) {
					t.Errorf("start: %+v", s)
				}
			}},
		{"already valid at the CA", PhaseScheduled, func(s *messages.ChallengeStatus) { transitionSynced(s, messages.StateValid, "") }, PhaseFinishing, nil},
		{"present http-01", PhaseScheduled, func(s *messages.ChallengeStatus) { transitionPresented(s, messages.ChallengeTypeHTTP01) }, PhasePresented,
			func(t *testing.T, s messages.ChallengeStatus) {
				if s.Reason != "Waiting for http-01 challenge propagation" || s.State != messages.StatePending {
					t.Errorf("presented: reason %q state %q", s.Reason, s.State)
				}
			}},
		{"accept", PhasePresented, func(s *messages.ChallengeStatus) { transitionAccepted(s, messages.StateProcessing) }, PhaseAccepted,
			func(t *testing.T, s messages.ChallengeStatus) {
				if s.Reason != "" {
					t.Errorf("accepted keeps reason %q", s.Reason)
				}
			}},
		{"accept, CA already valid", PhasePresented, func(s *messages.ChallengeStatus) { transitionAccepted(s, messages.StateValid) }, PhaseFinishing, nil},
		{"authorization valid", PhaseAccepted, func(s *messages.ChallengeStatus) { transitionFinal(s, messages.StateValid, "") }, PhaseFinishing, nil},
		{"authorization invalid", PhaseAccepted, func(s *messages.ChallengeStatus) {
			transitionFinal(s, messages.StateInvalid, "403 urn:ietf:params:acme:error:unauthorized: nope")
		}, PhaseFinishing, func(t *testing.T, s messages.ChallengeStatus) {
			if s.Reason == "" || s.State != messages.StateInvalid {
				t.Errorf("invalid: %+v", s)
			}
		}},
		{"clean up", PhaseFinishing, transitionFinished, PhaseDone,
			func(t *testing.T, s messages.ChallengeStatus) {
				if s.Processing || s.Presented {
					t.Errorf("finished: %+v", s)
				}
			}},
	}
	// A status in each phase to start from.
	start := map[Phase]messages.ChallengeStatus{
		PhaseQueued:    {},
		PhaseScheduled: {Processing: true},
		PhasePresented: {Processing: true, Presented: true, State: messages.StatePending, Reason: "Waiting for http-01 challenge propagation: wrong status code '404', expected '200'"},
		PhaseAccepted:  {Processing: true, Presented: true, Accepted: true, State: messages.StateProcessing},
		PhaseFinishing: {Processing: true, Presented: true, Accepted: true, State: messages.StateValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start[tt.from]
			if got := ChallengePhase(s); got != tt.from {
				t.Fatalf("fixture for %s is in phase %s", tt.from, got)
			}
			tt.apply(&s)
			if got := ChallengePhase(s); got != tt.to {
				t.Errorf("%s: %s -> %s, want %s", tt.name, tt.from, got, tt.to)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cfg := Config{}
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.SelfCheckInterval != 10*time.Second || cfg.Scheduler.Cap != 60 || cfg.ChallengeTimeout != time.Hour {
		t.Errorf("defaults = self-check %s, cap %d, timeout %s; want cert-manager's 10s, 60 and 1h", cfg.SelfCheckInterval, cfg.Scheduler.Cap, cfg.ChallengeTimeout)
	}
	cfg.Scheduler.Cap = -1
	if err := cfg.Validate(); err == nil || err.Error() != "worker: Scheduler.Cap (ACMEQ_MAX_CONCURRENT_CHALLENGES) must be at least 1, got -1" {
		t.Errorf("Validate(cap -1) = %v", err)
	}
}

func TestOrderAndChallengeNames(t *testing.T) {
	t.Parallel()
	spec := messages.OrderSpec{Request: "csr", IssuerRef: messages.IssuerRef{Name: "le"}, DNSNames: []string{"a.example.com"}}
	a, b := OrderName("example-com-1", spec), OrderName("example-com-1", spec)
	if a != b {
		t.Errorf("OrderName is not deterministic: %s, %s", a, b)
	}
	spec.DNSNames = []string{"b.example.com"}
	if OrderName("example-com-1", spec) == a {
		t.Errorf("OrderName ignores the names")
	}
	if got := ChallengeName(a, 1); got != a+"-1" {
		t.Errorf("ChallengeName = %s", got)
	}
	if got := RequestName("example-com", 3); got != "example-com-3" {
		t.Errorf("RequestName = %s", got)
	}
}

// Which deliveries skip the lease renewal: only the first delivery of a
// "scheduled" message stored moments ago, for a challenge still queued.
func TestFreshGrant(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	msg := func(delivered uint64, age time.Duration) context.Context {
		ctx := context.WithValue(context.Background(), deliveredKey{}, delivered)
		return context.WithValue(ctx, publishedKey{}, time.Now().Add(-age))
	}
	scheduled := messages.Transition{Kind: messages.KindChallenge, Action: messages.ActionScheduled}
	poll := messages.Transition{Kind: messages.KindChallenge, Action: messages.ActionCreated}
	tests := []struct {
		name  string
		ctx   context.Context
		t     messages.Transition
		phase Phase
		want  bool
	}{
		{"first delivery of a fresh grant", msg(1, time.Second), scheduled, PhaseQueued, true},
		{"redelivered (a worker died holding it)", msg(2, time.Second), scheduled, PhaseQueued, false},
		{"older than half the lease", msg(1, 16*time.Second), scheduled, PhaseQueued, false},
		{"stored in the future (clocks apart)", msg(1, -time.Minute), scheduled, PhaseQueued, false},
		{"challenge already past queued", msg(1, time.Second), scheduled, PhaseAccepted, false},
		{"not a grant", msg(1, time.Second), poll, PhaseQueued, false},
		{"no metadata", context.Background(), scheduled, PhaseQueued, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := freshGrant(tt.ctx, tt.t, tt.phase, ttl); got != tt.want {
				t.Errorf("freshGrant = %v, want %v", got, tt.want)
			}
		})
	}
}
