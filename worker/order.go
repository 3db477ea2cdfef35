package worker

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// ChallengeName is the name of an order's challenge for authorization i,
// as in the reference (example-com-2745722290-439160286-0).
func ChallengeName(order string, i int) string { return order + "-" + strconv.Itoa(i) }

// pollDelay is the wait before polling a CA that is working and sent no
// Retry-After: short at first (Pebble and Boulder are usually done in
// milliseconds), doubling to PollMax.
func (w *Worker) pollDelay(delivered uint64) time.Duration {
	d := 50 * time.Millisecond
	for i := uint64(1); i < delivered && d < w.cfg.PollMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.PollMax)
}

// reconcileOrder moves an Order: new-order at the CA, one Challenge per
// pending authorization, wait for them, finalize, fetch the chain.
func (w *Worker) reconcileOrder(ctx context.Context, t messages.Transition, delivered uint64) (Outcome, error) {
	order := &messages.Order{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, order); err != nil {
		return Done(), err
	}
	if order.Status.State.Final() {
		return Done(), w.wakeRequest(ctx, order)
	}
	cl, _, err := w.acme.client(ctx, order.Metadata.Namespace, order.Spec.IssuerRef)
	if errors.Is(err, ErrIssuerNotReady) {
		return RetryAfter(IssuerNotReadyRetry), nil
	}
	if err != nil {
		return Done(), err
	}
	if order.Status.URL == "" {
		if out, err := w.newOrder(ctx, cl, order); err != nil || out.kind != outcomeDone {
			return out, err
		}
	}
	switch order.Status.State {
	case messages.StatePending:
		return w.orderPending(ctx, cl, order)
	case messages.StateReady, messages.StateProcessing:
		if t.Action == messages.ActionChild && delivered == 1 {
			// A late challenge wake-up arriving for the first time: the
			// message that moved the order past pending polls the CA (by
			// redelivery, so never on its first delivery); a second poller
			// would only double the requests. If that worker dies, its
			// message is redelivered and resumes.
			return Done(), nil
		}
		return w.orderFinalize(ctx, cl, order, delivered)
	}
	return Done(), fmt.Errorf("order %s/%s: unexpected state %q", order.Metadata.Namespace, order.Metadata.Name, order.Status.State)
}

func (w *Worker) newOrder(ctx context.Context, cl *acme.Client, order *messages.Order) (Outcome, error) {
	ids := acme.DomainIDs(order.Spec.DNSNames...)
	o, err := cl.AuthorizeOrder(ctx, ids)
	if err != nil {
		return w.acmeFailure(ctx, order, "Failed to create Order", err)
	}
	order.Status.URL = o.URI
	order.Status.FinalizeURL = o.FinalizeURL
	order.Status.State = messages.State(o.Status)
	order.Status.Authorizations = order.Status.Authorizations[:0]
	for _, u := range o.AuthzURLs {
		a, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			return w.acmeFailure(ctx, order, "Failed to fetch authorization", err)
		}
		ma := messages.ACMEAuthorization{URL: a.URI, Identifier: a.Identifier.Value, Wildcard: a.Wildcard, InitialState: messages.State(a.Status)}
		for _, c := range a.Challenges {
			ma.Challenges = append(ma.Challenges, messages.ACMEChallenge{URL: c.URI, Token: c.Token, Type: c.Type})
		}
		order.Status.Authorizations = append(order.Status.Authorizations, ma)
	}
	if err := w.store.Update(ctx, order); err != nil {
		return Done(), err
	}
	return Done(), nil
}

// orderPending makes sure every pending authorization has its Challenge,
// queued with the scheduler, and moves on when all are final.
func (w *Worker) orderPending(ctx context.Context, cl *acme.Client, order *messages.Order) (Outcome, error) {
	ns := order.Metadata.Namespace
	iss, err := w.acme.issuer(ctx, ns, order.Spec.IssuerRef.Name)
	if err != nil {
		return Done(), err
	}
	allValid := true
	var failed *messages.Challenge
	var queue []scheduler.Item
	for i, a := range order.Status.Authorizations {
		if a.InitialState == messages.StateValid {
			continue
		}
		name := ChallengeName(order.Metadata.Name, i)
		ch := &messages.Challenge{}
		err := w.store.Get(ctx, ns, name, ch)
		if errors.Is(err, store.ErrNotFound) {
			ch, err = buildChallenge(cl, iss, order, i, a)
			if err != nil {
				return w.failOrder(ctx, order, messages.StateErrored, err.Error())
			}
			err = w.store.Create(ctx, ch)
			switch {
			case err == nil:
				w.record(ctx, order, messages.EventNormal, messages.ReasonCreated, fmt.Sprintf("Created Challenge resource %q for domain %q", name, ch.Spec.DNSName))
			case errors.Is(err, store.ErrExists):
				if err := w.store.Get(ctx, ns, name, ch); err != nil {
					return Done(), err
				}
			default:
				return Done(), err
			}
		} else if err != nil {
			return Done(), err
		}
		switch {
		case ch.Status.State == messages.StateValid:
		case ch.Status.State.Failed():
			allValid = false
			if failed == nil {
				failed = ch
			}
		default:
			allValid = false
			if !ch.Status.Processing {
				queue = append(queue, schedItem(ch))
			}
		}
	}
	if failed != nil {
		return w.failOrder(ctx, order, messages.StateInvalid, fmt.Sprintf("Failed to finalize Order: challenge %q for %q is %s: %s", failed.Metadata.Name, failed.Spec.DNSName, failed.Status.State, failed.Status.Reason))
	}
	if !allValid {
		if _, err := w.sched.Enqueue(ctx, queue...); err != nil {
			return Done(), err
		}
		// Start what the cap allows now; the rest starts as slots free.
		w.grant(ctx)
		return Done(), nil
	}
	// All challenges are valid: the order is ready at the CA. The finalize
	// step below claims it (state processing) in its first write.
	order.Status.State = messages.StateReady
	return w.orderFinalize(ctx, cl, order, 1)
}

func schedItem(ch *messages.Challenge) scheduler.Item {
	return scheduler.Item{
		ID:    scheduler.ChallengeID(ch.Metadata.Namespace, ch.Metadata.Name),
		Lock:  scheduler.LockKey(ch.Spec.Type, ch.Spec.DNSName),
		Score: ch.Metadata.CreationTimestamp.UnixMilli(),
	}
}

// buildChallenge picks the solver for authorization a and fills the spec.
func buildChallenge(cl *acme.Client, iss *messages.Issuer, order *messages.Order, i int, a messages.ACMEAuthorization) (*messages.Challenge, error) {
	solver, typ := selectSolver(iss, a.Identifier, a.Wildcard)
	if solver == nil {
		return nil, fmt.Errorf("Failed to determine a valid solver configuration for the set of domains on the Order: no solver of issuer %q matches %q", iss.Metadata.Name, a.Identifier)
	}
	acmeType := strings.ToLower(typ)
	var chal *messages.ACMEChallenge
	for j := range a.Challenges {
		if a.Challenges[j].Type == acmeType {
			chal = &a.Challenges[j]
		}
	}
	if chal == nil {
		return nil, fmt.Errorf("Failed to determine a valid solver configuration: the CA offered no %s challenge for %q", acmeType, a.Identifier)
	}
	var key string
	var err error
	if typ == messages.ChallengeTypeDNS01 {
		key, err = cl.DNS01ChallengeRecord(chal.Token)
	} else {
		key, err = cl.HTTP01ChallengeResponse(chal.Token)
	}
	if err != nil {
		return nil, fmt.Errorf("compute key authorization: %w", err)
	}
	ns := order.Metadata.Namespace
	return &messages.Challenge{
		Metadata: messages.ObjectMeta{Name: ChallengeName(order.Metadata.Name, i), Namespace: ns,
			OwnerReference: &messages.ObjectReference{Kind: messages.KindOrder, Namespace: ns, Name: order.Metadata.Name}},
		Spec: messages.ChallengeSpec{
			URL: chal.URL, AuthorizationURL: a.URL, DNSName: a.Identifier, Wildcard: a.Wildcard,
			Type: typ, Token: chal.Token, Key: key, Solver: *solver, IssuerRef: order.Spec.IssuerRef,
		},
	}, nil
}

// selectSolver returns the first solver whose selector matches, as
// cert-manager does (without its specificity ranking).
func selectSolver(iss *messages.Issuer, name string, wildcard bool) (*messages.ACMESolver, string) {
	solvers := iss.Spec.ACME.Solvers
	if len(solvers) == 0 {
		solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}}
	}
	for i := range solvers {
		s := &solvers[i]
		if !selectorMatches(s.Selector, name) {
			continue
		}
		if s.DNS01 != nil {
			return s, messages.ChallengeTypeDNS01
		}
		if s.HTTP01 != nil && !wildcard {
			return s, messages.ChallengeTypeHTTP01
		}
	}
	return nil, ""
}

func selectorMatches(sel *messages.SolverSelector, name string) bool {
	if sel == nil || (len(sel.DNSNames) == 0 && len(sel.DNSZones) == 0) {
		return true
	}
	for _, n := range sel.DNSNames {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	for _, z := range sel.DNSZones {
		z = strings.ToLower(strings.TrimSuffix(z, "."))
		if name == z || strings.HasSuffix(name, "."+z) {
			return true
		}
	}
	return false
}

// orderFinalize finalizes a ready order and fetches the certificate.
func (w *Worker) orderFinalize(ctx context.Context, cl *acme.Client, order *messages.Order, delivered uint64) (Outcome, error) {
	o, err := cl.GetOrder(ctx, order.Status.URL)
	if err != nil {
		return w.acmeFailure(ctx, order, "Failed to get order", err)
	}
	switch o.Status {
	case acme.StatusReady:
		blk, _ := pem.Decode([]byte(order.Spec.Request))
		if blk == nil {
			return w.failOrder(ctx, order, messages.StateErrored, "spec.request holds no PEM CSR")
		}
		if order.Status.State != messages.StateProcessing {
			// Claim the finalize step first: of two workers woken by the
			// last two challenges, only one finalizes.
			order.Status.State = messages.StateProcessing
			if err := w.store.Update(ctx, order); err != nil {
				return Done(), err
			}
		}
		if err := acmeclient.Finalize(ctx, cl, o, blk.Bytes); err != nil {
			// Another worker (woken by another challenge) may have
			// finalized first; the CA then says orderNotReady.
			if strings.HasSuffix(acmeclient.ProblemType(err), ":orderNotReady") {
				if again, gerr := cl.GetOrder(ctx, order.Status.URL); gerr == nil && (again.Status == acme.StatusProcessing || again.Status == acme.StatusValid) {
					return RetryAfter(w.pollDelay(1)), nil
				}
			}
			return w.acmeFailure(ctx, order, "Failed to finalize Order", err)
		}
		return RetryAfter(w.pollDelay(1)), nil
	case acme.StatusProcessing:
		if order.Status.State != messages.StateProcessing {
			order.Status.State = messages.StateProcessing
			if err := w.store.Update(ctx, order); err != nil {
				return Done(), err
			}
		}
		return RetryAfter(w.pollDelay(delivered)), nil
	case acme.StatusValid:
		return w.orderValid(ctx, cl, order, o)
	case acme.StatusPending:
		// Authorizations went back to pending (e.g. expired): start over.
		order.Status.State = messages.StatePending
		if err := w.store.Update(ctx, order); err != nil {
			return Done(), err
		}
		return Done(), nil
	default:
		reason := fmt.Sprintf("Order is %s", o.Status)
		if o.Error != nil {
			reason += ": " + acmeclient.Describe(o.Error)
		}
		return w.failOrder(ctx, order, messages.State(o.Status), reason)
	}
}

func (w *Worker) orderValid(ctx context.Context, cl *acme.Client, order *messages.Order, o *acme.Order) (Outcome, error) {
	ns := order.Metadata.Namespace
	der, err := cl.FetchCert(ctx, o.CertURL, true)
	if err != nil {
		return w.acmeFailure(ctx, order, "Failed to fetch certificate", err)
	}
	var chainPEM []byte
	for _, c := range der {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	data := map[string][]byte{messages.SecretTLSCert: chainPEM}
	if last, err := x509.ParseCertificate(der[len(der)-1]); err == nil && len(der) > 1 && last.CheckSignatureFrom(last) == nil {
		data[messages.SecretCACert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[len(der)-1]})
	}
	owner := order.Metadata.OwnerReference
	if owner == nil {
		return w.failOrder(ctx, order, messages.StateErrored, "order has no owning CertificateRequest")
	}
	// The chain is stored sealed under the request's name before the
	// order says valid, so whoever reads "valid" finds it.
	if err := w.store.PutSecret(ctx, ns, owner.Name, data, &messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: owner.Name}); err != nil {
		return Done(), err
	}
	order.Status.State = messages.StateValid
	order.Status.CertificateURL = o.CertURL
	order.Status.Reason = ""
	if err := w.store.Update(ctx, order); err != nil {
		return Done(), err
	}
	w.record(ctx, order, messages.EventNormal, messages.ReasonOrderValid, "Order completed successfully")
	return Done(), w.wakeRequest(ctx, order)
}

// acmeFailure handles an ACME error on an order: rate limits and server
// errors are retried after Retry-After or backoff; a client error fails the
// order with the problem document in its reason.
func (w *Worker) acmeFailure(ctx context.Context, order *messages.Order, what string, err error) (Outcome, error) {
	if isShutdown(ctx, err) {
		return Done(), err
	}
	if d := acmeclient.RetryAfter(err); d > 0 {
		logger(ctx).Info("CA asked to wait", "retry_after", d, "err", err)
		return RetryAfter(d), nil
	}
	if acmeclient.IsPermanent(err) {
		return w.failOrder(ctx, order, messages.StateErrored, what+": "+acmeclient.Describe(err))
	}
	return Done(), fmt.Errorf("order %s/%s: %s: %w", order.Metadata.Namespace, order.Metadata.Name, what, err)
}

func (w *Worker) failOrder(ctx context.Context, order *messages.Order, state messages.State, reason string) (Outcome, error) {
	now := w.cfg.Now().UTC()
	order.Status.State = state
	order.Status.Reason = reason
	order.Status.FailureTime = &now
	if err := w.store.Update(ctx, order); err != nil {
		return Done(), err
	}
	w.record(ctx, order, messages.EventWarning, messages.ReasonErrOrder, reason)
	return Done(), w.wakeRequest(ctx, order)
}

func (w *Worker) wakeRequest(ctx context.Context, order *messages.Order) error {
	o := order.Metadata.OwnerReference
	if o == nil {
		return nil
	}
	return w.bus.Publish(ctx, messages.Transition{Kind: messages.KindCertificateRequest, Namespace: o.Namespace, Name: o.Name, Action: messages.ActionChild, Cause: order.Metadata.Name}, incarnation(&order.Metadata)+"-"+string(order.Status.State))
}
