package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// Issuer condition reasons and messages, as cert-manager words them.
const (
	msgAccountRegistered = "The ACME account was registered with the ACME server"
	msgFailedRegister    = "Failed to register ACME account: "
	msgFailedUpdate      = "Failed to update ACME account:"
	msgFailedInit        = "Error initializing issuer: "
)

// IssuerRetryMax caps the delay between two attempts of an issuer that
// waits for something that may appear (its External Account Binding
// Secret, a CA that did not answer): IssuerNotReadyRetry, doubled at each
// attempt up to this. Writing the Secret with acmeq create secret (the
// producer's PutSecret) wakes the issuer at once.
const IssuerRetryMax = 5 * time.Minute

// issuerRetry is the delay before the next attempt of an issuer whose
// message is delivered for the n-th time.
func issuerRetry(ctx context.Context) time.Duration {
	n, _ := ctx.Value(deliveredKey{}).(uint64)
	return doubling(IssuerNotReadyRetry, IssuerRetryMax, max(n, 1))
}

// reconcileIssuer registers the account of an Issuer or a ClusterIssuer
// (the transition's kind says which): its key is generated once and stored
// sealed in the issuer's resource namespace (its own namespace; for a
// ClusterIssuer, Config.ClusterResourceNamespace), its External Account
// Binding, if any, is read from there too, and the issuer is set Ready. A
// ClusterIssuer has one account, whichever namespaces use it.
//
// Failures set Ready=False with cert-manager's reasons (ErrRegisterACMEAccount,
// ErrUpdateACMEAccount, ErrInitIssuer), the CA's problem in the message,
// and a Warning event. What may heal (a missing Secret, a CA that did not
// answer) is retried with back-off (issuerRetry); what the CA refused is
// retried when the issuer or its Secret changes.
func (w *Worker) reconcileIssuer(ctx context.Context, t messages.Transition) (Outcome, error) {
	iss := messages.NewIssuer(t.Kind)
	if err := w.store.Get(ctx, t.Namespace, t.Name, iss); err != nil {
		return Done(), err
	}
	what := issuerString(t.Kind, t.Namespace, t.Name)
	if iss.Spec.ACME == nil {
		return Poison(what + ": spec.acme is required"), nil
	}
	st := iss.Status.ACME
	if messages.IsReady(iss.Status.Conditions) && st != nil && st.URI != "" && st.LastRegisteredEmail == iss.Spec.ACME.Email {
		return Done(), nil
	}
	ns := resourceNamespace(iss, w.cfg.ClusterResourceNamespace)
	if iss.GetKind() == messages.KindClusterIssuer {
		// Apply cannot claim a ClusterIssuer's account key Secret (the
		// producer does not know the cluster resource namespace): the
		// worker does, so it never uses another resource's key.
		owner := messages.ObjectReference{Kind: messages.KindClusterIssuer, Name: iss.Metadata.Name}
		err := w.store.ClaimSecret(ctx, ns, accountKeySecret(iss), owner)
		var oe *store.OwnedError
		if errors.As(err, &oe) {
			msg := fmt.Sprintf("%sspec.acme.privateKeySecretRef: Secret %q of namespace %q is owned by %s %s", msgFailedInit,
				oe.Name, oe.Namespace, oe.Owner.Kind, ownerName(oe.Owner))
			return w.issuerFailed(ctx, iss, messages.ReasonErrInitIssuer, msg, Done())
		}
		if err != nil {
			return Done(), fmt.Errorf("%s: %w", what, err)
		}
	}
	key, err := ensureAccountKey(ctx, w.store, ns, iss)
	if err != nil {
		return Done(), fmt.Errorf("%s: %w", what, err)
	}
	eab, err := externalAccountBinding(ctx, w.store, ns, iss.Spec.ACME.ExternalAccountBinding)
	if errors.Is(err, errEABKey) {
		return w.issuerFailed(ctx, iss, messages.ReasonErrRegisterACMEAccount, msgFailedRegister+err.Error(), RetryAfter(issuerRetry(ctx)))
	}
	if err != nil {
		return Done(), fmt.Errorf("%s: %w", what, err)
	}
	acct, regErr := register(ctx, iss, key, eab, w.metrics.observeACME)
	if regErr != nil {
		if isShutdown(ctx, regErr) {
			return Done(), regErr
		}
		reason, msg := messages.ReasonErrRegisterACMEAccount, msgFailedRegister+acmeclient.Describe(regErr)
		var ue *updateError
		if errors.As(regErr, &ue) {
			reason, msg = messages.ReasonErrUpdateACMEAccount, msgFailedUpdate+acmeclient.Describe(regErr)
		}
		var next Outcome
		switch v := acmeclient.Classify(regErr); {
		case v.Class == acmeclient.Permanent:
			// The CA said no (invalidEmail, externalAccountRequired, a
			// wrong MAC: unauthorized): retrying will not help until the
			// user changes the spec or the Secret, which sends a new
			// message.
			next = Done()
		case v.After > 0:
			next = RetryAfter(v.After)
		default:
			next = RetryAfter(IssuerNotReadyRetry)
		}
		return w.issuerFailed(ctx, iss, reason, msg, next)
	}
	iss.Status.ACME = &messages.ACMEIssuerStatus{URI: acct.URI, LastRegisteredEmail: iss.Spec.ACME.Email}
	messages.SetCondition(&iss.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonACMEAccountRegistered, Message: msgAccountRegistered}, w.cfg.Now().UTC())
	if err := w.store.Update(ctx, iss); err != nil {
		return Done(), err
	}
	w.record(ctx, iss, messages.EventNormal, messages.ReasonACMEAccountRegistered, msgAccountRegistered)
	return Done(), nil
}

// issuerFailed sets the issuer's Ready condition False with reason and
// msg, records a Warning event, and returns next.
func (w *Worker) issuerFailed(ctx context.Context, iss *messages.Issuer, reason, msg string, next Outcome) (Outcome, error) {
	messages.SetCondition(&iss.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: reason, Message: msg}, w.cfg.Now().UTC())
	if err := w.store.Update(ctx, iss); err != nil {
		return Done(), err
	}
	w.record(ctx, iss, messages.EventWarning, reason, msg)
	return next, nil
}

// ownerName is "ns/name", or "name" for an owner without a namespace.
func ownerName(o messages.ObjectReference) string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}
