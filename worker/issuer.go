package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
func (w *Worker) reconcileIssuer(ctx context.Context, t messages.Transition, delivered uint64) (Outcome, error) {
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
		if acmeclient.IsPermanent(regErr) {
			// The CA said no (invalidEmail, ...): retrying will not help
			// until the user changes the spec, which sends a new message.
			return Done(), nil
		}
		if d := acmeclient.RetryAfter(regErr); d > 0 {
			return RetryAfter(d), nil
		}
		return RetryAfter(backoff(delivered)), nil
	}
	iss.Status.ACME = &messages.ACMEIssuerStatus{URI: acct.URI, LastRegisteredEmail: iss.Spec.ACME.Email}
	messages.SetCondition(&iss.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonACMEAccountRegistered, Message: msgAccountRegistered}, now)
	if err := w.store.Update(ctx, iss); err != nil {
		return Done(), err
	}
	w.record(ctx, iss, messages.EventNormal, messages.ReasonACMEAccountRegistered, msgAccountRegistered)
	return Done(), nil
}

// record publishes an event; a failure is logged, not fatal: the status
// write already happened and is the source of truth.
func (w *Worker) record(ctx context.Context, obj messages.Object, typ messages.EventType, reason, msg string) {
	if err := w.bus.Record(ctx, obj, typ, reason, msg); err != nil {
		logger(ctx).Warn("record event", "reason", reason, "err", err)
	}
}

// eventRef is an Object standing for a resource that could not be read
// (e.g. the target of a poison message).
type eventRef struct {
	kind messages.Kind
	meta messages.ObjectMeta
}

func (e *eventRef) GetMeta() *messages.ObjectMeta { return &e.meta }
func (e *eventRef) GetKind() messages.Kind        { return e.kind }

func involvedFromSubject(kind messages.Kind, subject string, t messages.Transition) messages.Object {
	ref := &eventRef{kind: kind}
	if t.Namespace != "" && t.Name != "" && messages.ValidateObjectName("", t.Namespace) == nil && messages.ValidateObjectName("", t.Name) == nil {
		ref.meta.Namespace, ref.meta.Name = t.Namespace, t.Name
		return ref
	}
	// acmeq.work.<kind>.<ns>.<name>
	ref.meta.Namespace, ref.meta.Name = "unknown", "unknown"
	if parts := strings.Split(subject, "."); len(parts) == 5 {
		ref.meta.Namespace, ref.meta.Name = parts[3], parts[4]
	}
	return ref
}
