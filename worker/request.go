package worker

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// IssuerNotReadyRetry is how often a request waiting for its issuer looks
// again.
const IssuerNotReadyRetry = 5 * time.Second

// OrderName is cert-manager's naming: <request>-<hash of the order spec>,
// shortened with a hash when too long (messages.DerivedName).
func OrderName(crName string, spec messages.OrderSpec) string {
	h := fnv.New32a()
	h.Write([]byte(spec.Request))
	h.Write([]byte(spec.IssuerRef.Name))
	h.Write([]byte(spec.CommonName))
	for _, n := range spec.DNSNames {
		h.Write([]byte{0})
		h.Write([]byte(n))
	}
	if spec.Duration != nil {
		h.Write([]byte(spec.Duration.String()))
	}
	h.Write([]byte(spec.Replaces))
	return messages.DerivedName(crName, "-"+strconv.FormatUint(uint64(h.Sum32()), 10))
}

func orderSpecFor(cr *messages.CertificateRequest) (messages.OrderSpec, error) {
	return orderSpec(cr, true)
}

// orderSpec is the Order spec of a request; verify checks the CSR's
// signature, which the request's first handling did already: its spec is
// immutable, and a request with a Ready condition got it after the check
// passed (one that failed it is final).
func orderSpec(cr *messages.CertificateRequest, verify bool) (messages.OrderSpec, error) {
	csr, err := parseCSRVerify(cr.Spec.Request, verify)
	if err != nil {
		return messages.OrderSpec{}, err
	}
	names := slices.Clone(csr.DNSNames)
	if len(names) == 0 {
		return messages.OrderSpec{}, errors.New("spec.request: the CSR has no DNS names")
	}
	return messages.OrderSpec{Request: cr.Spec.Request, IssuerRef: cr.Spec.IssuerRef, CommonName: csr.Subject.CommonName,
		DNSNames: names, Duration: cr.Spec.Duration, Replaces: cr.Spec.Replaces}, nil
}

func parseCSR(p string) (*x509.CertificateRequest, error) {
	return parseCSRVerify(p, true)
}

func parseCSRVerify(p string, verify bool) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		return nil, errors.New("spec.request: no PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("spec.request: %w", err)
	}
	if !verify {
		return csr, nil
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spec.request: %w", err)
	}
	return csr, nil
}

// reconcileRequest creates the Order of a CertificateRequest and mirrors
// its outcome in the request's Ready condition.
func (w *Worker) reconcileRequest(ctx context.Context, t messages.Transition) (Outcome, error) {
	cr := &messages.CertificateRequest{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, cr); err != nil {
		return Done(), err
	}
	if messages.IsReady(cr.Status.Conditions) || cr.Status.FailureTime != nil {
		// Final; make sure the owner heard (deduplicated if it did).
		return Done(), w.wakeCertificate(ctx, cr)
	}
	// Only its first handling checks the CSR's signature (a public-key
	// verification, too costly to repeat on every delivery).
	spec, err := orderSpec(cr, messages.GetCondition(cr.Status.Conditions, messages.ConditionReady) == nil)
	if err != nil {
		return w.failRequest(ctx, cr, fmt.Sprintf("Failed to build order: %v", err))
	}
	order, out, err := w.ensureOrder(ctx, cr, spec)
	if order == nil || err != nil {
		return out, err
	}
	ns, orderName := cr.Metadata.Namespace, order.Metadata.Name
	switch {
	case order.Status.State == messages.StateValid:
		msg := "Certificate fetched from issuer successfully"
		messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonCertIssued, Message: msg}, w.cfg.Now().UTC())
		if err := w.store.Update(ctx, cr); err != nil {
			return Done(), err
		}
		w.record(ctx, cr, messages.EventNormal, messages.ReasonCertIssued, msg)
		return Done(), w.wakeCertificate(ctx, cr)
	case order.Status.State.Failed():
		return w.failRequest(ctx, cr, fmt.Sprintf("Failed to wait for order resource %q to become ready: order is in %q state: %s", orderName, order.Status.State, order.Status.Reason))
	}
	state := order.Status.State
	if state == "" {
		state = messages.StatePending
	}
	return w.pendingRequest(ctx, cr, fmt.Sprintf("Waiting on certificate issuance from order %s/%s: %q", ns, orderName, state), Done())
}

// ensureOrder returns the request's Order, creating it (once) when its
// issuer is ready; a nil order comes with the outcome to report.
func (w *Worker) ensureOrder(ctx context.Context, cr *messages.CertificateRequest, spec messages.OrderSpec) (*messages.Order, Outcome, error) {
	ns := cr.Metadata.Namespace
	orderName := OrderName(cr.Metadata.Name, spec)
	order := &messages.Order{}
	// A request never handled before (no Ready condition yet) has no
	// Order yet, as a rule: create it without reading first. The Create
	// fails on one that is there after all (a crash after it), which is
	// then read.
	fresh := messages.GetCondition(cr.Status.Conditions, messages.ConditionReady) == nil
	err := store.ErrNotFound
	if !fresh {
		err = w.store.Get(ctx, ns, orderName, order)
	}
	if errors.Is(err, store.ErrNotFound) {
		iss, err := w.acme.issuer(ctx, ns, cr.Spec.IssuerRef)
		if errors.Is(err, store.ErrNotFound) {
			out, err := w.pendingRequest(ctx, cr, fmt.Sprintf("Referenced issuer %q not found", cr.Spec.IssuerRef.Name), RetryAfter(IssuerNotReadyRetry))
			return nil, out, err
		}
		if err != nil {
			return nil, Done(), err
		}
		if !messages.IsReady(iss.Status.Conditions) {
			out, err := w.pendingRequest(ctx, cr, fmt.Sprintf("Referenced issuer %q is not ready", iss.Metadata.Name), RetryAfter(IssuerNotReadyRetry))
			return nil, out, err
		}
		order = &messages.Order{
			Metadata: messages.ObjectMeta{Name: orderName, Namespace: ns, Labels: userLabels(cr.Metadata.Labels),
				OwnerReference: &messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: cr.Metadata.Name}},
			Spec: spec,
		}
		err = w.store.Create(ctx, order)
		switch {
		case err == nil:
			w.record(ctx, cr, messages.EventNormal, messages.ReasonOrderCreated, fmt.Sprintf("Created Order resource %s/%s", ns, orderName))
		case errors.Is(err, store.ErrExists) && fresh:
			order = &messages.Order{}
			if err := w.store.Get(ctx, ns, orderName, order); err != nil {
				return nil, Done(), err
			}
		case !errors.Is(err, store.ErrExists):
			return nil, Done(), err
		}
	} else if err != nil {
		return nil, Done(), err
	}
	if order.Status.State == "" {
		// Not started: (re)send its first transition. A crash between the
		// Create and this publish is healed by the redelivery of our own
		// message; Nats-Msg-Id drops the duplicate when there was none.
		if err := w.publish(ctx, messages.KindOrder, ns, orderName, messages.ActionCreated, "", incarnation(&order.Metadata)); err != nil {
			return nil, Done(), err
		}
	}
	return order, Done(), nil
}

func (w *Worker) pendingRequest(ctx context.Context, cr *messages.CertificateRequest, msg string, out Outcome) (Outcome, error) {
	if messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonPending, Message: msg}, w.cfg.Now().UTC()) {
		if err := w.store.Update(ctx, cr); err != nil {
			return Done(), err
		}
	}
	return out, nil
}

func (w *Worker) failRequest(ctx context.Context, cr *messages.CertificateRequest, msg string) (Outcome, error) {
	now := w.cfg.Now().UTC()
	cr.Status.FailureTime = &now
	messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonFailed, Message: msg}, now)
	if err := w.store.Update(ctx, cr); err != nil {
		return Done(), err
	}
	w.record(ctx, cr, messages.EventWarning, messages.ReasonOrderFailed, msg)
	return Done(), w.wakeCertificate(ctx, cr)
}

// wakeCertificate tells the request's Certificate that it finished; the
// message ID is unique per outcome.
func (w *Worker) wakeCertificate(ctx context.Context, cr *messages.CertificateRequest) error {
	o := cr.Metadata.OwnerReference
	if o == nil || o.Kind != messages.KindCertificate {
		return nil
	}
	return w.publish(ctx, messages.KindCertificate, cr.Metadata.Namespace, o.Name, messages.ActionChild, cr.Metadata.Name,
		incarnation(&cr.Metadata)+"-"+readyGeneration(cr.Status.Conditions))
}

// readyGeneration makes the wake-up of an owner unique per outcome.
func readyGeneration(conds []messages.Condition) string {
	c := messages.GetCondition(conds, messages.ConditionReady)
	if c == nil {
		return ""
	}
	return string(c.Status) + "-" + c.Reason
}

// userLabels are the labels of a resource without acmeq's own: the
// Certificate's labels, which solver selectors match.
func userLabels(l map[string]string) map[string]string {
	var out map[string]string
	for k, v := range l {
		if k == labelSpecHash {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}
