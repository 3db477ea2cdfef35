package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers"
)

// Phase is where a Challenge is in cert-manager's lifecycle. It is derived
// from the status alone (processing, presented, accepted, state), so any
// worker reading the resource knows the next step.
type Phase string

// The phases, in lifecycle order, with the steps each runs (phaseSteps).
const (
	// PhaseQueued: waiting in the scheduler's backlog (processing=false).
	// Step: schedule (once granted).
	PhaseQueued Phase = "Queued"
	// PhaseScheduled: granted a slot (processing=true). Steps: sync with
	// the CA, present.
	PhaseScheduled Phase = "Scheduled"
	// PhasePresented: presented=true. Steps: self-check, accept.
	PhasePresented Phase = "Presented"
	// PhaseAccepted: accepted at the CA. Step: wait for the authorization
	// to be final (poll).
	PhaseAccepted Phase = "Accepted"
	// PhaseFinishing: a final state is known. Step: clean up; then
	// processing=false, the slot and lock are released and the order woken.
	PhaseFinishing Phase = "Finishing"
	// PhaseDone: final and cleaned up.
	PhaseDone Phase = "Done"
)

// ChallengePhase derives the phase of a challenge status.
func ChallengePhase(s messages.ChallengeStatus) Phase {
	switch {
	case s.State.Final() && !s.Processing && !s.Presented:
		return PhaseDone
	case s.State.Final():
		return PhaseFinishing
	case !s.Processing:
		return PhaseQueued
	case !s.Presented:
		return PhaseScheduled
	case !s.Accepted:
		return PhasePresented
	default:
		return PhaseAccepted
	}
}

// Challenge status transitions: each is a pure function of the status that
// moves it to the next phase (and starts that phase's attempt count at 0),
// applied through the one guarded (CAS) write of challengeRun.commit.

// transitionStart: queued -> scheduled.
func transitionStart(s *messages.ChallengeStatus, now time.Time) {
	s.Processing = true
	s.ScheduledTime = &now
	s.Attempts = 0
}

// transitionSynced: the CA already holds a final state for the
// authorization (e.g. valid from an earlier order).
func transitionSynced(s *messages.ChallengeStatus, state messages.State, reason string) {
	s.State = state
	s.Reason = reason
	s.Attempts = 0
}

// transitionPresented: scheduled -> presented.
func transitionPresented(s *messages.ChallengeStatus, typ string) {
	s.Presented = true
	s.State = messages.StatePending
	s.Reason = fmt.Sprintf("Waiting for %s challenge propagation", strings.ToLower(typ))
	s.Attempts = 0
}

// transitionAccepted: presented -> accepted.
func transitionAccepted(s *messages.ChallengeStatus, state messages.State) {
	s.Accepted = true
	s.State = state
	s.Reason = ""
	s.Attempts = 0
}

// transitionFinal: any phase -> finishing, with the final state (the
// authorization's, or errored).
func transitionFinal(s *messages.ChallengeStatus, state messages.State, reason string) {
	s.State = state
	s.Reason = reason
	s.Attempts = 0
}

// transitionFinished: finishing -> done (cleaned up, unscheduled).
func transitionFinished(s *messages.ChallengeStatus) {
	s.Processing = false
	s.Presented = false
	s.Attempts = 0
}

// challengeRun is one handling of a Challenge message: the challenge whose
// status the steps edit, the events that wait for the write that makes them
// true, and what the steps share.
type challengeRun struct {
	w      *Worker
	ch     *messages.Challenge
	now    time.Time
	fresh  bool // the order read the authorization moments ago
	events []func()
	cl     *acmeclient.Client
	solver solvers.Solver
}

// event records an event once the next commit has succeeded.
func (r *challengeRun) event(ctx context.Context, typ messages.EventType, reason, msg string) {
	r.events = append(r.events, func() { r.w.record(ctx, r.ch, typ, reason, msg) })
}

// commit is the one guarded write: a compare-and-set of the status on the
// revision read, then the events waiting for it.
func (r *challengeRun) commit(ctx context.Context) error {
	if err := r.w.store.Update(ctx, r.ch); err != nil {
		return err
	}
	for _, f := range r.events {
		f()
	}
	r.events = r.events[:0]
	progress(ctx)
	return nil
}

func (r *challengeRun) client(ctx context.Context) (*acmeclient.Client, error) {
	if r.cl == nil {
		cl, _, err := r.w.acme.client(ctx, r.ch.Metadata.Namespace, r.ch.Spec.IssuerRef)
		if err != nil {
			return nil, err
		}
		r.cl = cl
	}
	return r.cl, nil
}

// step is one piece of a phase's work. It edits the status through the
// transition functions and says whether to go on in this delivery (next)
// or what to do with the message.
type step func(ctx context.Context, r *challengeRun) (next bool, out Outcome, err error)

var phaseSteps = map[Phase][]step{
	PhaseQueued:    {stepSchedule},
	PhaseScheduled: {stepSync, stepPresent},
	PhasePresented: {stepSelfCheck, stepAccept},
	PhaseAccepted:  {stepWait},
	PhaseFinishing: {stepCleanUp},
}

// proceed goes on with the next step in the same delivery.
func proceed() (bool, Outcome, error) { return true, Outcome{}, nil }

// stop ends the delivery with out.
func stop(out Outcome, err error) (bool, Outcome, error) { return false, out, err }

// reconcileChallenge advances a challenge as far as it can without
// waiting, running the steps of each phase in turn, and returns a delayed
// retry where it must wait.
func (w *Worker) reconcileChallenge(ctx context.Context, t messages.Transition) (Outcome, error) {
	ch := &messages.Challenge{}
	id := scheduler.ChallengeID(t.Namespace, t.Name)
	if err := w.store.Get(ctx, t.Namespace, t.Name, ch); errors.Is(err, store.ErrNotFound) {
		return Done(), w.forgetChallenge(ctx, id)
	} else if err != nil {
		return Done(), err
	}
	phase := ChallengePhase(ch.Status)
	if phase == PhaseDone {
		// Make sure the slot is free and the order heard (idempotent).
		return Done(), w.challengeDone(ctx, ch, id)
	}
	if phase != PhaseFinishing && !freshGrant(ctx, t, phase, w.sched.Config().LeaseTTL) {
		// Only a lease holder may progress a challenge.
		if err := w.sched.Renew(ctx, id); errors.Is(err, scheduler.ErrNotHeld) {
			// Queued, reaped, or lost with Redis' data: make sure it is in
			// the backlog; the scheduler sends "scheduled" when its turn
			// comes.
			if _, err := w.sched.Enqueue(ctx, schedItem(ch)); err != nil {
				return Done(), err
			}
			w.grant(ctx)
			return Done(), nil
		} else if err != nil {
			return Done(), err
		}
	}
	now := w.cfg.Now().UTC()
	r := &challengeRun{w: w, ch: ch, now: now,
		// The order read the authorization when it created this challenge:
		// on a first scheduling soon after, syncing again would repeat it.
		fresh: ch.Status.ScheduledTime == nil && now.Sub(ch.Metadata.CreationTimestamp) < time.Minute,
	}
	w.checkDeadline(ctx, r, phase)
	solver, err := w.solverFor(ch)
	if err != nil && !ch.Status.State.Final() {
		transitionFinal(&ch.Status, messages.StateErrored, err.Error())
		r.event(ctx, messages.EventWarning, messages.ReasonFailedCheck, ch.Status.Reason)
	}
	r.solver = solver
	return r.run(ctx, id)
}

// freshGrant reports whether the message is the first delivery of the
// "scheduled" transition that a grant published moments ago, for a
// challenge still queued: the lease that grant took runs leaseTTL from the
// grant, and only the challenge's own end (done, or removed: both handled
// before this) releases it, so renewing it would be a Redis call that
// cannot fail. A redelivered or older message, and any other, renews. If
// Redis lost its data meanwhile, the challenge's next delivery renews and
// finds out, as any challenge in flight does.
func freshGrant(ctx context.Context, t messages.Transition, phase Phase, leaseTTL time.Duration) bool {
	return t.Action == messages.ActionScheduled && phase == PhaseQueued && firstDelivery(ctx) &&
		ctx.Value(deliveredKey{}) != nil && publishedWithin(ctx, leaseTTL/2)
}

// checkDeadline fails a challenge processing for longer than
// ChallengeTimeout, so it frees its slot.
func (w *Worker) checkDeadline(ctx context.Context, r *challengeRun, phase Phase) {
	s := &r.ch.Status
	if phase == PhaseQueued || phase == PhaseFinishing || s.ScheduledTime == nil || r.now.Sub(*s.ScheduledTime) <= w.cfg.ChallengeTimeout {
		return
	}
	transitionFinal(s, messages.StateErrored, fmt.Sprintf("Challenge did not complete within %s (ACMEQ_CHALLENGE_TIMEOUT)", w.cfg.ChallengeTimeout))
	r.event(ctx, messages.EventWarning, messages.ReasonTimedOut, s.Reason)
}

// maxPhases bounds one delivery: the lifecycle has five phases before
// Done, so more means a step that does not move its phase (a bug).
const maxPhases = 8

// run applies the steps of each phase until one waits or the challenge is
// done; then it releases the slot and wakes the order.
func (r *challengeRun) run(ctx context.Context, id string) (Outcome, error) {
	for range maxPhases {
		phase := ChallengePhase(r.ch.Status)
		if phase == PhaseDone {
			return Done(), r.w.challengeDone(ctx, r.ch, id)
		}
		for _, s := range phaseSteps[phase] {
			next, out, err := s(ctx, r)
			if err != nil || !next {
				return out, err
			}
			if ChallengePhase(r.ch.Status) != phase {
				break
			}
		}
		if ChallengePhase(r.ch.Status) == phase {
			return Done(), fmt.Errorf("challenge %s: the steps of phase %s did not move it", id, phase)
		}
	}
	return Done(), fmt.Errorf("challenge %s: more than %d phases in one delivery", id, maxPhases)
}

// stepSchedule: the scheduler granted the challenge a slot.
func stepSchedule(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	transitionStart(&r.ch.Status, r.now)
	r.event(ctx, messages.EventNormal, messages.ReasonStarted, "Challenge scheduled for processing")
	return proceed()
}

// stepSync reads the authorization at the CA: one that is already final
// (valid from an earlier order, or expired) needs no presenting. Skipped
// right after the order read it, and when retrying a failed present.
func stepSync(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	if r.fresh || r.ch.Status.Attempts > 0 {
		if r.ch.Status.State == "" {
			r.ch.Status.State = messages.StatePending
		}
		return proceed()
	}
	cl, err := r.client(ctx)
	if err != nil {
		return stop(Done(), err)
	}
	a, err := cl.GetAuthorization(ctx, r.ch.Spec.AuthorizationURL)
	if err != nil {
		return r.acmeError(ctx, "Failed to sync challenge with the ACME server", err)
	}
	progress(ctx)
	st := messages.State(a.Status)
	if st.Final() {
		transitionSynced(&r.ch.Status, st, authzReason(a, r.ch.Spec.URL))
		return proceed()
	}
	// Recorded with the next write, whether presenting works or not.
	r.ch.Status.State = st
	return proceed()
}

// stepPresent presents the challenge with its solver.
func stepPresent(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	s := &r.ch.Status
	if err := r.solver.Present(ctx, solverChallenge(r.ch)); err != nil {
		if isShutdown(ctx, err) {
			return stop(Done(), err)
		}
		msg := fmt.Sprintf("Error presenting challenge: %v", err)
		if s.Reason != msg {
			r.event(ctx, messages.EventWarning, messages.ReasonPresentError, msg)
		}
		s.Reason = msg
		s.Attempts++
		if err := r.commit(ctx); err != nil {
			return stop(Done(), err)
		}
		return stop(RetryAfter(backoff(uint64(s.Attempts))), nil)
	}
	transitionPresented(s, r.ch.Spec.Type)
	r.event(ctx, messages.EventNormal, messages.ReasonPresented, fmt.Sprintf("Presented challenge using %s challenge mechanism", strings.ToLower(r.ch.Spec.Type)))
	if err := r.commit(ctx); err != nil {
		return stop(Done(), err)
	}
	return proceed()
}

// Quick retries of a failed self-check: right after presenting, a failure
// is usually the responders' KV watch lagging by milliseconds, so the
// first selfCheckQuickRetries retries wait selfCheckQuickRetry, doubling
// (50, 100, 200 ms: 350 ms in all, as long as the single 250 ms retry they
// replace covered, but a lag of a few milliseconds costs 50, not 250).
// Later retries wait SelfCheckInterval, as cert-manager.
const (
	selfCheckQuickRetry   = 50 * time.Millisecond
	selfCheckQuickRetries = 3
)

// stepSelfCheck checks that the presented challenge can be seen as the CA
// will see it, before accepting.
func stepSelfCheck(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	checker, ok := r.solver.(solvers.SelfChecker)
	if !ok {
		return proceed()
	}
	err := checker.Check(ctx, solverChallenge(r.ch))
	if err == nil {
		return proceed()
	}
	if isShutdown(ctx, err) {
		return stop(Done(), err)
	}
	s := &r.ch.Status
	s.Reason = fmt.Sprintf("Waiting for %s challenge propagation: %s", strings.ToLower(r.ch.Spec.Type), selfCheckDetail(err))
	s.Attempts++
	if err := r.commit(ctx); err != nil {
		return stop(Done(), err)
	}
	if s.Attempts <= selfCheckQuickRetries {
		return stop(RetryAfter(doubling(selfCheckQuickRetry, r.w.cfg.SelfCheckInterval, uint64(s.Attempts))), nil)
	}
	return stop(RetryAfter(r.w.cfg.SelfCheckInterval), nil)
}

// selfCheckDetail is what users read after "Waiting for ... propagation: ",
// in cert-manager's words, without our package prefix.
func selfCheckDetail(err error) string {
	return strings.TrimPrefix(err.Error(), "http01: ")
}

// stepAccept tells the CA to validate.
func stepAccept(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	cl, err := r.client(ctx)
	if err != nil {
		return stop(Done(), err)
	}
	state, reason, err := accept(ctx, cl, r.ch)
	if err != nil {
		return r.acmeError(ctx, "Error accepting challenge", err)
	}
	transitionAccepted(&r.ch.Status, state)
	if state.Final() {
		r.ch.Status.Reason = reason
		// Decided already (an earlier delivery accepted before it died).
		r.verdictEvent(ctx)
	}
	if err := r.commit(ctx); err != nil {
		return stop(Done(), err)
	}
	if !state.Final() {
		// The CA validates now; asking at once would only find it still
		// processing.
		return stop(RetryAfter(r.w.pollDelay(1)), nil)
	}
	return proceed()
}

// verdictEvent records the CA's verdict on the challenge: DomainVerified,
// or a Warning with the reason.
func (r *challengeRun) verdictEvent(ctx context.Context) {
	s := &r.ch.Status
	if s.State == messages.StateValid {
		r.event(ctx, messages.EventNormal, messages.ReasonDomainVerified, fmt.Sprintf("Domain %q verified with %q validation", r.ch.Spec.DNSName, strings.ToLower(r.ch.Spec.Type)))
		return
	}
	r.event(ctx, messages.EventWarning, messages.ReasonFailedCheck, "Accepting challenge authorization failed: "+s.Reason)
	if s.State == messages.StateInvalid {
		// The CA counts a failed validation against the account and name.
		r.w.spendFailedValidation(ctx, r.ch)
	}
}

// stepWait polls the authorization until the CA has decided.
func stepWait(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	cl, err := r.client(ctx)
	if err != nil {
		return stop(Done(), err)
	}
	a, err := cl.GetAuthorization(ctx, r.ch.Spec.AuthorizationURL)
	if err != nil {
		return r.acmeError(ctx, "Error fetching authorization", err)
	}
	s := &r.ch.Status
	st := messages.State(a.Status)
	if !st.Final() {
		s.Attempts++
		if err := r.commit(ctx); err != nil {
			return stop(Done(), err)
		}
		return stop(RetryAfter(r.w.pollDelay(s.Attempts+1)), nil)
	}
	transitionFinal(s, st, authzReason(a, r.ch.Spec.URL))
	r.verdictEvent(ctx)
	return proceed()
}

// stepCleanUp removes what was presented and unschedules the challenge.
func stepCleanUp(ctx context.Context, r *challengeRun) (bool, Outcome, error) {
	s := &r.ch.Status
	if s.Presented && r.solver != nil {
		// Cleanup outlives a cancelled delivery: a record left behind
		// would only be found by the next challenge of the name.
		if err := r.solver.CleanUp(context.WithoutCancel(ctx), solverChallenge(r.ch)); err != nil {
			r.event(ctx, messages.EventWarning, messages.ReasonCleanUpError, fmt.Sprintf("Error cleaning up challenge: %v", err))
			s.Attempts++
			if err := r.commit(ctx); err != nil {
				return stop(Done(), err)
			}
			return stop(RetryAfter(backoff(uint64(s.Attempts))), nil)
		}
	}
	transitionFinished(s)
	if err := r.commit(ctx); err != nil {
		return stop(Done(), err)
	}
	return proceed()
}

// acmeError decides what an error from the CA means for the challenge:
// a permanent problem fails it (and goes on to clean up in this delivery);
// anything else is retried, after the CA's Retry-After or with back-off by
// the step's attempts.
func (r *challengeRun) acmeError(ctx context.Context, what string, err error) (bool, Outcome, error) {
	if isShutdown(ctx, err) {
		return stop(Done(), err)
	}
	v := acmeclient.Classify(err)
	s := &r.ch.Status
	switch v.Class {
	case acmeclient.RetryNow:
		return stop(RetryAfter(0), nil)
	case acmeclient.Permanent:
		transitionFinal(s, messages.StateErrored, what+": "+acmeclient.Describe(err))
		r.event(ctx, messages.EventWarning, messages.ReasonFailedCheck, s.Reason)
		return proceed()
	}
	s.Attempts++
	if cerr := r.commit(ctx); cerr != nil {
		return stop(Done(), cerr)
	}
	delay := v.After
	if delay == 0 {
		delay = backoff(uint64(s.Attempts))
	}
	logger(ctx).Info("CA error, will retry", "step", what, "err", err, "retry_in", delay)
	return stop(RetryAfter(delay), nil)
}

// accept tells the CA to validate. If an earlier delivery accepted already
// (the CA says the authorization is not pending, or our challenge is
// processing), it returns that state and reason instead of failing.
func accept(ctx context.Context, cl *acmeclient.Client, ch *messages.Challenge) (messages.State, string, error) {
	c, err := cl.Accept(ctx, &acme.Challenge{URI: ch.Spec.URL, Type: strings.ToLower(ch.Spec.Type), Token: ch.Spec.Token})
	if err == nil {
		progress(ctx)
		return messages.State(c.Status), "", nil
	}
	a, gerr := cl.GetAuthorization(ctx, ch.Spec.AuthorizationURL)
	if gerr != nil {
		return "", "", err
	}
	if a.Status != acme.StatusPending {
		return messages.State(a.Status), authzReason(a, ch.Spec.URL), nil
	}
	// The authorization stays pending while the CA validates: a challenge
	// of ours already processing was accepted by an earlier delivery whose
	// status write was lost (a CA refuses a second accept, "Cannot update
	// challenge with status processing").
	for _, c := range a.Challenges {
		if c.URI == ch.Spec.URL && c.Status == acme.StatusProcessing {
			return messages.StateProcessing, "", nil
		}
	}
	return "", "", err
}

// pollDelay is the wait before the n-th poll (from 1) of a CA that is
// working and sent no Retry-After: PollInitial at first (a CA near us
// decides in milliseconds), doubling to PollMax.
func (w *Worker) pollDelay(n int) time.Duration {
	return doubling(w.cfg.PollInitial, w.cfg.PollMax, uint64(max(n, 1)))
}

// authzReason is the error of our challenge in a final authorization, as
// users see it: "403 urn:ietf:params:acme:error:unauthorized: ...".
func authzReason(a *acme.Authorization, chalURL string) string {
	if a.Status == acme.StatusValid {
		return ""
	}
	for _, c := range a.Challenges {
		if c.URI == chalURL && c.Error != nil {
			return fmt.Sprintf("Error accepting authorization: acme: authorization error for %s: %s", a.Identifier.Value, acmeclient.Describe(c.Error))
		}
	}
	for _, c := range a.Challenges {
		if c.Error != nil {
			return fmt.Sprintf("Error accepting authorization: acme: authorization error for %s: %s", a.Identifier.Value, acmeclient.Describe(c.Error))
		}
	}
	return fmt.Sprintf("Authorization for %s is %s", a.Identifier.Value, a.Status)
}

func solverChallenge(ch *messages.Challenge) solvers.Challenge {
	return solvers.Challenge{DNSName: ch.Spec.DNSName, Wildcard: ch.Spec.Wildcard, Type: ch.Spec.Type, Token: ch.Spec.Token, Key: ch.Spec.Key}
}

// challengeDone frees the slot and lock of a finished challenge, lets the
// next one start, and wakes its order. A challenge whose order is gone (the
// request was cancelled or pruned while it worked) is removed by the
// order's consumer when the wake-up finds no order (removeOrphan).
func (w *Worker) challengeDone(ctx context.Context, ch *messages.Challenge, id string) error {
	if _, err := w.sched.Release(context.WithoutCancel(ctx), id); err != nil {
		return err
	}
	w.grant(ctx)
	o := ch.Metadata.OwnerReference
	if o == nil {
		return nil
	}
	return w.publish(ctx, messages.KindOrder, o.Namespace, o.Name, messages.ActionChild, ch.Metadata.Name, incarnation(&ch.Metadata)+"-"+string(ch.Status.State))
}

// forgetChallenge drops the scheduler's record of a challenge that is
// gone: one removed with its order can still hold a lease (its worker died
// between the status write that finished it and the release) or sit in the
// backlog (a stale redelivery enqueued it). Left there, reaping and
// granting would pass it around forever and its slot would never free.
func (w *Worker) forgetChallenge(ctx context.Context, id string) error {
	freed, err := w.sched.Release(context.WithoutCancel(ctx), id)
	if err != nil {
		return err
	}
	if freed {
		logger(ctx).Info("released the slot of a removed challenge", "challenge", id)
		w.grant(ctx)
	}
	return nil
}

func schedItem(ch *messages.Challenge) scheduler.Item {
	return scheduler.Item{
		ID:    scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name),
		Lock:  scheduler.LockKey(ch.Spec.Type, ch.Spec.DNSName),
		Score: ch.Metadata.CreationTimestamp.UnixMilli(),
	}
}
