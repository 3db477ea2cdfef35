package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers"
)

// Phase is where a Challenge is in cert-manager's lifecycle. It is derived
// from the status alone (processing, presented, accepted, state), so any
// worker reading the resource knows the next step.
type Phase string

// The phases, in lifecycle order.
const (
	// PhaseQueued: waiting in the scheduler's backlog (processing=false).
	PhaseQueued Phase = "Queued"
	// PhaseScheduled: granted a slot (processing=true); next: sync with
	// the CA and present.
	PhaseScheduled Phase = "Scheduled"
	// PhasePresented: presented=true; next: self-check, then accept.
	PhasePresented Phase = "Presented"
	// PhaseAccepted: accepted at the CA; next: poll the authorization.
	PhaseAccepted Phase = "Accepted"
	// PhaseFinishing: a final state is known; next: clean up, set
	// processing=false, release the slot and lock, wake the order.
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

// Challenge status transitions: each is a pure function of the status,
// applied through one guarded (CAS) write by the handler.

// transitionStart: queued -> scheduled.
func transitionStart(s *messages.ChallengeStatus, now time.Time) {
	s.Processing = true
	s.ScheduledTime = &now
}

// transitionSynced: the CA already holds a final state for the
// authorization (e.g. valid from an earlier order).
func transitionSynced(s *messages.ChallengeStatus, state messages.State, reason string) {
	s.State = state
	s.Reason = reason
}

// transitionPresented: scheduled -> presented.
func transitionPresented(s *messages.ChallengeStatus, typ string) {
	s.Presented = true
	s.State = messages.StatePending
	s.Reason = fmt.Sprintf("Waiting for %s challenge propagation", strings.ToLower(typ))
}

// transitionAccepted: presented -> accepted.
func transitionAccepted(s *messages.ChallengeStatus, state messages.State) {
	s.Accepted = true
	s.State = state
	s.Reason = ""
}

// transitionFinal: accepted -> final state copied from the authorization.
func transitionFinal(s *messages.ChallengeStatus, state messages.State, reason string) {
	s.State = state
	s.Reason = reason
}

// transitionFinished: final -> done (cleaned up, unscheduled).
func transitionFinished(s *messages.ChallengeStatus) {
	s.Processing = false
	s.Presented = false
}

// reconcileChallenge advances a challenge as far as it can without
// waiting, and returns a delayed retry where it must wait. Steps that follow
// each other in one call share one status write (scheduled+presented,
// final+cleaned up): a crash between them only repeats idempotent steps.
func (w *Worker) reconcileChallenge(ctx context.Context, t messages.Transition, delivered uint64) (Outcome, error) {
	ch := &messages.Challenge{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, ch); err != nil {
		return Done(), err
	}
	id := scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name)
	phase := ChallengePhase(ch.Status)
	if phase == PhaseDone {
		// Make sure the slot is free and the order heard (both idempotent).
		if _, err := w.sched.Release(ctx, id); err != nil {
			return Done(), err
		}
		return Done(), w.wakeOrder(ctx, ch)
	}
	if phase != PhaseFinishing {
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
	// Events wait for the write that makes them true.
	var pending []func()
	update := func() error {
		if err := w.store.Update(ctx, ch); err != nil {
			return err
		}
		for _, f := range pending {
			f()
		}
		pending = pending[:0]
		return nil
	}
	event := func(typ messages.EventType, reason, msg string) {
		pending = append(pending, func() { w.record(ctx, ch, typ, reason, msg) })
	}

	now := w.cfg.Now().UTC()
	if phase != PhaseQueued && phase != PhaseFinishing && ch.Status.ScheduledTime != nil && now.Sub(*ch.Status.ScheduledTime) > w.cfg.ChallengeTimeout {
		transitionFinal(&ch.Status, messages.StateErrored, fmt.Sprintf("Challenge did not complete within %s (ACMEQ_CHALLENGE_TIMEOUT)", w.cfg.ChallengeTimeout))
		event(messages.EventWarning, messages.ReasonTimedOut, ch.Status.Reason)
		phase = PhaseFinishing
	}
	// The order read the authorization when it created this challenge: on
	// a first scheduling soon after, syncing again would only repeat that.
	freshAuthz := ch.Status.ScheduledTime == nil && now.Sub(ch.Metadata.CreationTimestamp) < time.Minute
	if phase == PhaseQueued {
		transitionStart(&ch.Status, now)
		event(messages.EventNormal, messages.ReasonStarted, "Challenge scheduled for processing")
		phase = PhaseScheduled
	}
	var cl *acme.Client
	if phase == PhaseScheduled || phase == PhasePresented || phase == PhaseAccepted {
		var err error
		cl, _, err = w.acme.client(ctx, ch.Metadata.Namespace, ch.Spec.IssuerRef)
		if err != nil {
			return Done(), err
		}
	}
	solver, err := w.solverFor(ch)
	if err != nil {
		transitionFinal(&ch.Status, messages.StateErrored, err.Error())
		phase = PhaseFinishing
	}

	if phase == PhaseScheduled {
		st := messages.StatePending
		reason := ""
		if !freshAuthz {
			a, err := cl.GetAuthorization(ctx, ch.Spec.AuthorizationURL)
			if err != nil {
				return w.challengeACMEError(ctx, ch, update, "Failed to sync challenge with the ACME server", err, delivered)
			}
			st, reason = messages.State(a.Status), authzReason(a, ch.Spec.URL)
		}
		if st.Final() {
			transitionSynced(&ch.Status, st, reason)
			phase = PhaseFinishing
		} else {
			// Synced: the CA's state (pending) is recorded with the next
			// write, whether presenting works or not.
			ch.Status.State = st
			if err := solver.Present(ctx, solverChallenge(ch)); err != nil {
				msg := fmt.Sprintf("Error presenting challenge: %v", err)
				if ch.Status.Reason != msg || len(pending) > 0 {
					if ch.Status.Reason != msg {
						event(messages.EventWarning, messages.ReasonPresentError, msg)
					}
					ch.Status.Reason = msg
					if err := update(); err != nil {
						return Done(), err
					}
				}
				return RetryAfter(backoff(delivered)), nil
			}
			transitionPresented(&ch.Status, ch.Spec.Type)
			event(messages.EventNormal, messages.ReasonPresented, fmt.Sprintf("Presented challenge using %s challenge mechanism", strings.ToLower(ch.Spec.Type)))
			if err := update(); err != nil {
				return Done(), err
			}
			phase = PhasePresented
		}
	}

	if phase == PhasePresented {
		if checker, ok := solver.(solvers.SelfChecker); ok {
			if err := checker.Check(ctx, solverChallenge(ch)); err != nil {
				if isShutdown(ctx, err) {
					return Done(), err
				}
				first := !strings.Contains(ch.Status.Reason, ": ")
				// Users read cert-manager's words here, without our package prefix.
				reason := fmt.Sprintf("Waiting for %s challenge propagation: %s", strings.ToLower(ch.Spec.Type), strings.TrimPrefix(err.Error(), "http01: "))
				if ch.Status.Reason != reason {
					ch.Status.Reason = reason
					if err := update(); err != nil {
						return Done(), err
					}
				}
				// The first failure right after presenting is usually the
				// responders' KV watch lagging by milliseconds: look once
				// more soon, then keep cert-manager's fixed interval.
				if first {
					return RetryAfter(min(250*time.Millisecond, w.cfg.SelfCheckInterval)), nil
				}
				return RetryAfter(w.cfg.SelfCheckInterval), nil
			}
		}
		state, err := w.accept(ctx, cl, ch)
		if err != nil {
			return w.challengeACMEError(ctx, ch, update, "Error accepting challenge", err, delivered)
		}
		transitionAccepted(&ch.Status, state)
		if err := update(); err != nil {
			return Done(), err
		}
		if !state.Final() {
			// The CA validates now; asking at once would only find it
			// still processing.
			return RetryAfter(w.pollDelay(1)), nil
		}
		phase = PhaseAccepted
	}

	if phase == PhaseAccepted {
		a, err := cl.GetAuthorization(ctx, ch.Spec.AuthorizationURL)
		if err != nil {
			return w.challengeACMEError(ctx, ch, update, "Error fetching authorization", err, delivered)
		}
		st := messages.State(a.Status)
		if !st.Final() {
			return RetryAfter(w.pollDelay(delivered)), nil
		}
		transitionFinal(&ch.Status, st, authzReason(a, ch.Spec.URL))
		if st == messages.StateValid {
			event(messages.EventNormal, messages.ReasonDomainVerified, fmt.Sprintf("Domain %q verified with %q validation", ch.Spec.DNSName, strings.ToLower(ch.Spec.Type)))
		} else {
			event(messages.EventWarning, messages.ReasonFailedCheck, "Accepting challenge authorization failed: "+ch.Status.Reason)
		}
		phase = PhaseFinishing
	}

	// PhaseFinishing: clean up, unschedule, free the slot, wake the order.
	if ch.Status.Presented && solver != nil {
		if err := solver.CleanUp(context.WithoutCancel(ctx), solverChallenge(ch)); err != nil {
			event(messages.EventWarning, messages.ReasonCleanUpError, fmt.Sprintf("Error cleaning up challenge: %v", err))
			if err := update(); err != nil {
				return Done(), err
			}
			return RetryAfter(backoff(delivered)), nil
		}
	}
	transitionFinished(&ch.Status)
	if err := update(); err != nil {
		return Done(), err
	}
	if _, err := w.sched.Release(context.WithoutCancel(ctx), id); err != nil {
		return Done(), err
	}
	w.grant(ctx)
	return Done(), w.wakeOrder(ctx, ch)
}

// accept tells the CA to validate. If an earlier delivery accepted already
// (the CA says the authorization is not pending), it returns the
// authorization's state instead of failing.
func (w *Worker) accept(ctx context.Context, cl *acme.Client, ch *messages.Challenge) (messages.State, error) {
	c, err := cl.Accept(ctx, &acme.Challenge{URI: ch.Spec.URL, Type: strings.ToLower(ch.Spec.Type), Token: ch.Spec.Token})
	if err == nil {
		return messages.State(c.Status), nil
	}
	a, gerr := cl.GetAuthorization(ctx, ch.Spec.AuthorizationURL)
	if gerr == nil && a.Status != acme.StatusPending {
		return messages.State(a.Status), nil
	}
	return "", err
}

// challengeACMEError retries transient CA errors; a client error fails the
// challenge with the ACME problem in its reason.
// update is the handler's status write, which also records the events
// waiting for it (e.g. Started).
func (w *Worker) challengeACMEError(ctx context.Context, ch *messages.Challenge, update func() error, what string, err error, delivered uint64) (Outcome, error) {
	if isShutdown(ctx, err) {
		return Done(), err
	}
	if d := acmeclient.RetryAfter(err); d > 0 {
		return RetryAfter(d), nil
	}
	if !acmeclient.IsPermanent(err) {
		return RetryAfter(backoff(delivered)), nil
	}
	transitionFinal(&ch.Status, messages.StateErrored, what+": "+acmeclient.Describe(err))
	if err := update(); err != nil {
		return Done(), err
	}
	w.record(ctx, ch, messages.EventWarning, messages.ReasonFailedCheck, ch.Status.Reason)
	// Redelivered now, it finishes (cleans up and releases).
	return RetryAfter(0), nil
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

func (w *Worker) wakeOrder(ctx context.Context, ch *messages.Challenge) error {
	o := ch.Metadata.OwnerReference
	if o == nil {
		return nil
	}
	return w.bus.Publish(ctx, messages.Transition{Kind: messages.KindOrder, Namespace: o.Namespace, Name: o.Name, Action: messages.ActionChild, Cause: ch.Metadata.Name}, incarnation(&ch.Metadata)+"-"+string(ch.Status.State))
}
