package worker

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"crypto/x509"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// IssuerNotReadyRetry is how often a request waiting for its issuer looks
// again.
const IssuerNotReadyRetry = 5 * time.Second

// OrderName is cert-manager's naming: <request>-<hash of the order spec>.
func OrderName(crName string, spec messages.OrderSpec) string {
	h := fnv.New32a()
	h.Write([]byte(spec.Request))
	h.Write([]byte(spec.IssuerRef.Name))
	h.Write([]byte(spec.CommonName))
	for _, n := range spec.DNSNames {
		h.Write([]byte{0})
		h.Write([]byte(n))
	}
	return crName + "-" + strconv.FormatUint(uint64(h.Sum32()), 10)
}

func orderSpecFor(cr *messages.CertificateRequest) (messages.OrderSpec, error) {
	blk, _ := pem.Decode([]byte(cr.Spec.Request))
	if blk == nil {
		return messages.OrderSpec{}, errors.New("spec.request: no PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return messages.OrderSpec{}, fmt.Errorf("spec.request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return messages.OrderSpec{}, fmt.Errorf("spec.request: %w", err)
	}
	names := slices.Clone(csr.DNSNames)
	if len(names) == 0 {
		return messages.OrderSpec{}, errors.New("spec.request: the CSR has no DNS names")
	}
	return messages.OrderSpec{Request: cr.Spec.Request, IssuerRef: cr.Spec.IssuerRef, CommonName: csr.Subject.CommonName, DNSNames: names}, nil
}

// reconcileRequest creates the Order of a CertificateRequest and mirrors
// its outcome in the request's Ready condition.
func (w *Worker) reconcileRequest(ctx context.Context, t messages.Transition, delivered uint64) (Outcome, error) {
	cr := &messages.CertificateRequest{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, cr); err != nil {
		return Done(), err
	}
	ns := cr.Metadata.Namespace
	wakeCert := func() error {
		o := cr.Metadata.OwnerReference
		if o == nil || o.Kind != messages.KindCertificate {
			return nil
		}
		return w.bus.Publish(ctx, messages.Transition{Kind: messages.KindCertificate, Namespace: ns, Name: o.Name, Action: messages.ActionChild, Cause: cr.Metadata.Name}, incarnation(&cr.Metadata)+"-"+readyGeneration(cr.Status.Conditions))
	}
	if messages.IsReady(cr.Status.Conditions) || cr.Status.FailureTime != nil {
		// Final; make sure the owner heard (deduplicated if it did).
		return Done(), wakeCert()
	}
	spec, err := orderSpecFor(cr)
	if err != nil {
		return w.failRequest(ctx, cr, messages.ReasonFailed, fmt.Sprintf("Failed to build order: %v", err), wakeCert)
	}
	orderName := OrderName(cr.Metadata.Name, spec)
	order := &messages.Order{}
	err = w.store.Get(ctx, ns, orderName, order)
	if errors.Is(err, store.ErrNotFound) {
		iss := &messages.Issuer{}
		if err := w.store.Get(ctx, ns, cr.Spec.IssuerRef.Name, iss); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return w.pendingRequest(ctx, cr, fmt.Sprintf("Referenced issuer %q not found", cr.Spec.IssuerRef.Name), RetryAfter(IssuerNotReadyRetry))
			}
			return Done(), err
		}
		if !messages.IsReady(iss.Status.Conditions) {
			return w.pendingRequest(ctx, cr, fmt.Sprintf("Referenced issuer %q is not ready", iss.Metadata.Name), RetryAfter(IssuerNotReadyRetry))
		}
		order = &messages.Order{
			Metadata: messages.ObjectMeta{Name: orderName, Namespace: ns,
				OwnerReference: &messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: cr.Metadata.Name}},
			Spec: spec,
		}
		if err := w.store.Create(ctx, order); err != nil && !errors.Is(err, store.ErrExists) {
			return Done(), err
		} else if err == nil {
			w.record(ctx, cr, messages.EventNormal, messages.ReasonOrderCreated, fmt.Sprintf("Created Order resource %s/%s", ns, orderName))
		}
	} else if err != nil {
		return Done(), err
	}
	if order.Status.State == "" {
		// Not started: (re)send its first transition. A crash between the
		// Create and this publish is healed by the redelivery of our own
		// message; Nats-Msg-Id drops the duplicate when there was none.
		if err := w.bus.Publish(ctx, messages.Transition{Kind: messages.KindOrder, Namespace: ns, Name: orderName, Action: messages.ActionCreated}, incarnation(&order.Metadata)); err != nil {
			return Done(), err
		}
	}
	switch {
	case order.Status.State == messages.StateValid:
		now := w.cfg.Now().UTC()
		messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonCertIssued, Message: "Certificate fetched from issuer successfully"}, now)
		if err := w.store.Update(ctx, cr); err != nil {
			return Done(), err
		}
		w.record(ctx, cr, messages.EventNormal, messages.ReasonCertIssued, "Certificate fetched from issuer successfully")
		return Done(), wakeCert()
	case order.Status.State.Failed():
		msg := fmt.Sprintf("Failed to wait for order resource %q to become ready: order is in %q state: %s", orderName, order.Status.State, order.Status.Reason)
		return w.failRequest(ctx, cr, messages.ReasonFailed, msg, wakeCert)
	}
	state := order.Status.State
	if state == "" {
		state = messages.StatePending
	}
	return w.pendingRequest(ctx, cr, fmt.Sprintf("Waiting on certificate issuance from order %s/%s: %q", ns, orderName, state), Done())
}

func (w *Worker) pendingRequest(ctx context.Context, cr *messages.CertificateRequest, msg string, out Outcome) (Outcome, error) {
	if messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonPending, Message: msg}, w.cfg.Now().UTC()) {
		if err := w.store.Update(ctx, cr); err != nil {
			return Done(), err
		}
	}
	return out, nil
}

func (w *Worker) failRequest(ctx context.Context, cr *messages.CertificateRequest, reason, msg string, wake func() error) (Outcome, error) {
	now := w.cfg.Now().UTC()
	cr.Status.FailureTime = &now
	messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: reason, Message: msg}, now)
	if err := w.store.Update(ctx, cr); err != nil {
		return Done(), err
	}
	w.record(ctx, cr, messages.EventWarning, messages.ReasonOrderFailed, msg)
	return Done(), wake()
}

// readyGeneration makes the wake-up of an owner unique per outcome.
func readyGeneration(conds []messages.Condition) string {
	c := messages.GetCondition(conds, messages.ConditionReady)
	if c == nil {
		return ""
	}
	return string(c.Status) + "-" + c.Reason
}
