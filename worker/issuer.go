package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/messages"
)

// Issuer condition reasons and messages, as cert-manager words them.
const (
	msgAccountRegistered = "The ACME account was registered with the ACME server"
	msgFailedRegister    = "Failed to register ACME account: "
	msgFailedUpdate      = "Failed to update ACME account:"
)

// reconcileIssuer registers the issuer's ACME account (key generated once,
// stored sealed) and sets Ready.
func (w *Worker) reconcileIssuer(ctx context.Context, t messages.Transition) (Outcome, error) {
	iss := &messages.Issuer{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, iss); err != nil {
		return Done(), err
	}
	if iss.Spec.ACME == nil {
		return Poison(fmt.Sprintf("issuer %s/%s: spec.acme is required", t.Namespace, t.Name)), nil
	}
	st := iss.Status.ACME
	if messages.IsReady(iss.Status.Conditions) && st != nil && st.URI != "" && st.LastRegisteredEmail == iss.Spec.ACME.Email {
		return Done(), nil
	}
	key, err := ensureAccountKey(ctx, w.store, iss)
	if err != nil {
		return Done(), fmt.Errorf("issuer %s/%s: %w", t.Namespace, t.Name, err)
	}
	acct, regErr := register(ctx, iss, key, w.metrics.observeACME)
	now := w.cfg.Now().UTC()
	if regErr != nil {
		if isShutdown(ctx, regErr) {
			return Done(), regErr
		}
		reason, msg := messages.ReasonErrRegisterACMEAccount, msgFailedRegister+acmeclient.Describe(regErr)
		var ue *updateError
		if errors.As(regErr, &ue) {
			reason, msg = messages.ReasonErrUpdateACMEAccount, msgFailedUpdate+acmeclient.Describe(regErr)
		}
		messages.SetCondition(&iss.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: reason, Message: msg}, now)
		if err := w.store.Update(ctx, iss); err != nil {
			return Done(), err
		}
		w.record(ctx, iss, messages.EventWarning, reason, msg)
		switch v := acmeclient.Classify(regErr); {
		case v.Class == acmeclient.Permanent:
			// The CA said no (invalidEmail, ...): retrying will not help
			// until the user changes the spec, which sends a new message.
			return Done(), nil
		case v.After > 0:
			return RetryAfter(v.After), nil
		}
		return RetryAfter(IssuerNotReadyRetry), nil
	}
	iss.Status.ACME = &messages.ACMEIssuerStatus{URI: acct.URI, LastRegisteredEmail: iss.Spec.ACME.Email}
	messages.SetCondition(&iss.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonACMEAccountRegistered, Message: msgAccountRegistered}, now)
	if err := w.store.Update(ctx, iss); err != nil {
		return Done(), err
	}
	w.record(ctx, iss, messages.EventNormal, messages.ReasonACMEAccountRegistered, msgAccountRegistered)
	return Done(), nil
}
