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
	"github.com/acmeq/acmeq/solvers"
)

// ChallengeName is the name of an order's challenge for authorization i,
// as in the reference (example-com-2745722290-439160286-0), shortened with
// a hash when it would be too long (messages.DerivedName).
func ChallengeName(order string, i int) string {
	return messages.DerivedName(order, "-"+strconv.Itoa(i))
}

// orderRun is one handling of an Order message.
type orderRun struct {
	w     *Worker
	order *messages.Order
	cl    *acmeclient.Client
	iss   *messages.Issuer
	// created: this delivery created the order at the CA, so its
	// challenges are most likely not stored yet (see ensureChallenge).
	created bool
}

// commit is the one guarded write of the order's status.
func (r *orderRun) commit(ctx context.Context) error {
	if err := r.w.store.Update(ctx, r.order); err != nil {
		return err
	}
	progress(ctx)
	return nil
}

// reconcileOrder moves an Order through its states: new-order at the CA,
// one Challenge per pending authorization, wait for them, finalize, fetch
// the chain; once final, its finished challenges are removed and its
// request is woken.
func (w *Worker) reconcileOrder(ctx context.Context, t messages.Transition) (Outcome, error) {
	order := &messages.Order{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, order); errors.Is(err, store.ErrNotFound) && t.Action == messages.ActionChild {
		return Done(), w.removeOrphan(ctx, t)
	} else if err != nil {
		return Done(), err
	}
	if order.Status.State.Final() {
		return w.orderFinal(ctx, order)
	}
	cl, iss, err := w.acme.client(ctx, order.Metadata.Namespace, order.Spec.IssuerRef)
	if errors.Is(err, ErrIssuerNotReady) {
		return RetryAfter(IssuerNotReadyRetry), nil
	}
	if err != nil {
		return Done(), err
	}
	r := &orderRun{w: w, order: order, cl: cl, iss: iss}
	if order.Status.URL == "" {
		if out, err := r.newOrder(ctx); err != nil || out.kind != outcomeDone {
			return out, err
		}
	}
	switch order.Status.State {
	case messages.StatePending:
		return r.pending(ctx)
	case messages.StateReady, messages.StateProcessing:
		if t.Action == messages.ActionChild && order.Status.State == messages.StateProcessing && firstDelivery(ctx) {
			// A late challenge wake-up arriving for the first time: the
			// message that moved the order past pending polls the CA (by
			// redelivery, so never on its first delivery); a second poller
			// would only double the requests. If that worker dies, its
			// message is redelivered and resumes.
			return Done(), nil
		}
		return r.finalize(ctx)
	case messages.StateValid, messages.StateInvalid, messages.StateErrored, messages.StateExpired:
		return w.orderFinal(ctx, order)
	}
	return Done(), fmt.Errorf("order %s/%s: unexpected state %q", order.Metadata.Namespace, order.Metadata.Name, order.Status.State)
}

// removeOrphan removes the finished challenge that woke an order which is
// gone (its request was cancelled or pruned while the challenge worked):
// nothing else would. The challenge tells its order without checking that
// it still exists, which costs a read per challenge; the order's consumer
// cleans up after the rare one whose order is gone.
func (w *Worker) removeOrphan(ctx context.Context, t messages.Transition) error {
	if t.Cause == "" {
		return nil
	}
	ch := &messages.Challenge{}
	if err := w.store.Get(ctx, t.Namespace, t.Cause, ch); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	o := ch.Metadata.OwnerReference
	if o == nil || o.Kind != messages.KindOrder || o.Namespace != t.Namespace || o.Name != t.Name || ChallengePhase(ch.Status) != PhaseDone {
		return nil
	}
	logger(ctx).Debug("removing the challenge of a removed order", "challenge", t.Cause)
	return w.store.Delete(ctx, messages.KindChallenge, t.Namespace, t.Cause)
}

// replacesRefused reports whether the CA answered a new order that named
// a certificate it replaces with a problem other than a rate limit or a
// bad nonce (which have their own handling and say nothing of replaces).
func replacesRefused(err error) bool {
	var ae *acme.Error
	if !errors.As(err, &ae) {
		return false
	}
	v := acmeclient.Classify(err)
	return v.Class != acmeclient.RetryNow && !acmeclient.IsRateLimited(err)
}

// newOrder creates the order at the CA and records its authorizations.
func (r *orderRun) newOrder(ctx context.Context) (Outcome, error) {
	o := r.order
	opts := acmeclient.OrderOptions{Profile: r.iss.Spec.ACME.Profile, Replaces: o.Spec.Replaces}
	if d := o.Spec.Duration; d != nil && d.Duration > 0 {
		opts.NotAfter = r.w.cfg.Now().Add(d.Duration).UTC().Truncate(time.Second)
	}
	taken, wait, err := r.takeBudgets(ctx)
	if err != nil || wait != nil {
		return deref(wait), err
	}
	ao, err := r.cl.NewOrder(ctx, acme.DomainIDs(o.Spec.DNSNames...), opts)
	if err != nil && opts.Replaces != "" && replacesRefused(err) {
		// The CA would not take "replaces" (the certificate was replaced
		// already by an order of ours that was lost, or the CA cannot find
		// it — Pebble misses certificates whose serial has an odd number
		// of hex digits): order without it, as lego does, rather than
		// never renew.
		logger(ctx).Info("the CA refused the order's replaces; ordering without it", "replaces", opts.Replaces, "err", err)
		opts.Replaces = ""
		ao, err = r.cl.NewOrder(ctx, acme.DomainIDs(o.Spec.DNSNames...), opts)
	}
	if err != nil {
		// The CA did not count an order it refused.
		if rerr := r.w.budgets.Refund(context.WithoutCancel(ctx), taken); rerr != nil {
			logger(ctx).Warn("refund the budgets of a refused order", "err", rerr)
		}
		if acmeclient.IsRateLimited(err) {
			return r.rateLimited(ctx, err)
		}
		return r.acmeFailure(ctx, "Failed to create Order", err)
	}
	o.Status.Reason = ""
	o.Status.Attempts = 0
	progress(ctx)
	o.Status.URL = ao.URI
	o.Status.FinalizeURL = ao.FinalizeURL
	o.Status.State = messages.State(ao.Status)
	o.Status.Authorizations = o.Status.Authorizations[:0]
	for _, u := range ao.AuthzURLs {
		a, err := r.cl.GetAuthorization(ctx, u)
		if err != nil {
			return r.acmeFailure(ctx, "Failed to fetch authorization", err)
		}
		progress(ctx)
		ma := messages.ACMEAuthorization{URL: a.URI, Identifier: a.Identifier.Value, Wildcard: a.Wildcard, InitialState: messages.State(a.Status)}
		for _, c := range a.Challenges {
			ma.Challenges = append(ma.Challenges, messages.ACMEChallenge{URL: c.URI, Token: c.Token, Type: c.Type})
		}
		o.Status.Authorizations = append(o.Status.Authorizations, ma)
	}
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	r.created = true
	return Done(), nil
}

// pending makes sure every pending authorization has its Challenge, queued
// with the scheduler, and moves on when all are valid (or fails the order
// when one failed).
func (r *orderRun) pending(ctx context.Context) (Outcome, error) {
	w, order := r.w, r.order
	allValid := true
	var failed *messages.Challenge
	var queue []scheduler.Item
	for i, a := range order.Status.Authorizations {
		if a.InitialState == messages.StateValid {
			continue
		}
		ch, err := r.ensureChallenge(ctx, i, a)
		if err != nil {
			var bad *badSolverError
			if errors.As(err, &bad) {
				return w.failOrder(ctx, order, messages.StateErrored, bad.Error())
			}
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
	// All challenges are valid: the order is ready at the CA. Submit the
	// CSR at once (claiming the step first); a CA that disagrees says
	// orderNotReady and the order is read again.
	order.Status.State = messages.StateReady
	order.Status.Attempts = 0
	return r.submitCSR(ctx)
}

// badSolverError: no solver of the issuer can solve an authorization; the
// order fails with it as its reason.
type badSolverError struct{ msg string }

func (e *badSolverError) Error() string { return e.msg }

// ensureChallenge returns the Challenge of authorization i, creating it
// (once: Create semantics) when missing. Right after the order was created
// at the CA it creates without reading first: the Create fails on a
// challenge that is there after all, which is then read.
func (r *orderRun) ensureChallenge(ctx context.Context, i int, a messages.ACMEAuthorization) (*messages.Challenge, error) {
	w, order := r.w, r.order
	ns, name := order.Metadata.Namespace, ChallengeName(order.Metadata.Name, i)
	ch := &messages.Challenge{}
	if !r.created {
		err := w.store.Get(ctx, ns, name, ch)
		if err == nil || !errors.Is(err, store.ErrNotFound) {
			return ch, err
		}
	}
	ch, err := buildChallenge(r.cl, r.iss, order, i, a)
	if err != nil {
		return nil, err
	}
	err = w.store.Create(ctx, ch)
	switch {
	case err == nil:
		w.record(ctx, order, messages.EventNormal, messages.ReasonCreated, fmt.Sprintf("Created Challenge resource %q for domain %q", name, ch.Spec.DNSName))
		return ch, nil
	case errors.Is(err, store.ErrExists):
		ch = &messages.Challenge{}
		return ch, w.store.Get(ctx, ns, name, ch)
	}
	return nil, err
}

// buildChallenge picks the solver for authorization a and fills the spec.
func buildChallenge(cl *acmeclient.Client, iss *messages.Issuer, order *messages.Order, i int, a messages.ACMEAuthorization) (*messages.Challenge, error) {
	// Among the types the CA offers for this name, as cert-manager picks.
	offered := make([]string, 0, len(a.Challenges))
	for _, c := range a.Challenges {
		offered = append(offered, c.Type)
	}
	solver, typ, err := solvers.SelectOffered(iss.Spec.ACME.Solvers, a.Identifier, a.Wildcard, order.Metadata.Labels, offered)
	if err != nil {
		return nil, &badSolverError{fmt.Sprintf("Failed to determine a valid solver configuration for the set of domains on the Order: %v", err)}
	}
	acmeType := strings.ToLower(typ)
	var chal *messages.ACMEChallenge
	for j := range a.Challenges {
		if a.Challenges[j].Type == acmeType {
			chal = &a.Challenges[j]
		}
	}
	if chal == nil {
		return nil, &badSolverError{fmt.Sprintf("Failed to determine a valid solver configuration: the CA offered no %s challenge for %q", acmeType, a.Identifier)}
	}
	var key string
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

// finalize finalizes a ready order and polls it until the certificate is
// issued.
func (r *orderRun) finalize(ctx context.Context) (Outcome, error) {
	order := r.order
	o, err := r.cl.GetOrder(ctx, order.Status.URL)
	if err != nil {
		return r.acmeFailure(ctx, "Failed to get order", err)
	}
	progress(ctx)
	switch o.Status {
	case acme.StatusReady:
		return r.submitCSR(ctx)
	case acme.StatusProcessing:
		order.Status.Attempts++
		if order.Status.State != messages.StateProcessing {
			order.Status.State = messages.StateProcessing
		}
		if err := r.commit(ctx); err != nil {
			return Done(), err
		}
		return RetryAfter(r.w.pollDelay(order.Status.Attempts)), nil
	case acme.StatusValid:
		return r.valid(ctx, o)
	case acme.StatusPending:
		// Authorizations went back to pending (e.g. expired): start over.
		order.Status.State = messages.StatePending
		order.Status.Attempts = 0
		return Done(), r.commit(ctx)
	}
	reason := fmt.Sprintf("Order is %s", o.Status)
	if o.Error != nil {
		reason += ": " + acmeclient.Describe(o.Error)
	}
	return r.w.failOrder(ctx, order, messages.State(o.Status), reason)
}

// submitCSR claims the finalize step (state processing, so of two workers
// woken by the last two challenges only one finalizes: the other loses the
// compare-and-set and leaves it) and submits the CSR. A CA that issues at
// once answers "valid" and the chain is fetched in the same delivery.
func (r *orderRun) submitCSR(ctx context.Context) (Outcome, error) {
	order := r.order
	blk, _ := pem.Decode([]byte(order.Spec.Request))
	if blk == nil {
		return r.w.failOrder(ctx, order, messages.StateErrored, "spec.request holds no PEM CSR")
	}
	if order.Status.State != messages.StateProcessing {
		order.Status.State = messages.StateProcessing
		order.Status.Attempts = 0
		if err := r.commit(ctx); errors.Is(err, store.ErrConflict) {
			// Another worker claimed it: its message finalizes and polls.
			return Done(), nil
		} else if err != nil {
			return Done(), err
		}
	}
	o, wait, err := r.cl.Finalize(ctx, order.Status.URL, order.Status.FinalizeURL, blk.Bytes)
	if err != nil {
		if acmeclient.HasProblem(err, acmeclient.ProblemOrderNotReady) {
			// Finalized already (a redelivery), or not ready after all:
			// read the order and go on from what it says.
			return r.finalize(ctx)
		}
		return r.acmeFailure(ctx, "Failed to finalize Order", err)
	}
	progress(ctx)
	if o.Status == acme.StatusValid && o.CertURL != "" {
		return r.valid(ctx, o)
	}
	return RetryAfter(max(wait, r.w.pollDelay(1))), nil
}

// valid fetches the issued chain (the preferred one, if the issuer names
// one), stores it sealed under the request's name, and marks the order
// valid.
func (r *orderRun) valid(ctx context.Context, o *acme.Order) (Outcome, error) {
	w, order := r.w, r.order
	ns := order.Metadata.Namespace
	owner := order.Metadata.OwnerReference
	if owner == nil {
		return w.failOrder(ctx, order, messages.StateErrored, "order has no owning CertificateRequest")
	}
	der, err := r.fetchChain(ctx, o.CertURL)
	if err != nil {
		return r.acmeFailure(ctx, "Failed to fetch certificate", err)
	}
	// The chain is stored sealed in the request's Secret, next to the key
	// the request was made with, before the order says valid, so whoever
	// reads "valid" finds it. The request claimed that Secret.
	data, err := w.store.GetSecret(ctx, ns, owner.Name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Done(), err
	}
	if data == nil {
		data = map[string][]byte{}
	}
	for k, v := range chainSecretData(der) {
		data[k] = v
	}
	crRef := messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: owner.Name}
	if err := w.store.PutSecret(ctx, ns, owner.Name, data, &crRef); err != nil {
		return Done(), err
	}
	order.Status.State = messages.StateValid
	order.Status.CertificateURL = o.CertURL
	order.Status.Reason = ""
	order.Status.Attempts = 0
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	w.record(ctx, order, messages.EventNormal, messages.ReasonOrderValid, "Order completed successfully")
	return w.orderFinal(ctx, order)
}

// fetchChain downloads the certificate chain; with spec.acme.preferredChain
// it takes the first chain (the default, then the alternates) whose topmost
// certificate is issued by or is that common name, as cert-manager does.
func (r *orderRun) fetchChain(ctx context.Context, certURL string) ([][]byte, error) {
	der, err := r.cl.FetchCert(ctx, certURL, true)
	if err != nil {
		return nil, err
	}
	progress(ctx)
	want := r.iss.Spec.ACME.PreferredChain
	if want == "" || chainMatches(der, want) {
		return der, nil
	}
	alts, err := r.cl.ListCertAlternates(ctx, certURL)
	if err != nil {
		logger(ctx).Info("list alternate chains; keeping the default", "err", err)
		return der, nil
	}
	for _, u := range alts {
		alt, err := r.cl.FetchCert(ctx, u, true)
		if err == nil && chainMatches(alt, want) {
			return alt, nil
		}
	}
	return der, nil
}

func chainMatches(der [][]byte, cn string) bool {
	if len(der) == 0 {
		return false
	}
	top, err := x509.ParseCertificate(der[len(der)-1])
	return err == nil && (top.Issuer.CommonName == cn || top.Subject.CommonName == cn)
}

// chainSecretData is the Secret data of an issued chain: tls.crt (leaf
// first), and ca.crt when the chain ends with a self-signed root.
func chainSecretData(der [][]byte) map[string][]byte {
	var chainPEM []byte
	for _, c := range der {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	data := map[string][]byte{messages.SecretTLSCert: chainPEM}
	if last, err := x509.ParseCertificate(der[len(der)-1]); err == nil && len(der) > 1 && last.CheckSignatureFrom(last) == nil {
		data[messages.SecretCACert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[len(der)-1]})
	}
	return data
}

// orderFinal finishes a final order: its finished challenges are removed
// (their record stays in the events), and its request is woken.
func (w *Worker) orderFinal(ctx context.Context, order *messages.Order) (Outcome, error) {
	ns := order.Metadata.Namespace
	for i, a := range order.Status.Authorizations {
		if a.InitialState == messages.StateValid {
			continue
		}
		name := ChallengeName(order.Metadata.Name, i)
		ch := &messages.Challenge{}
		err := w.store.Get(ctx, ns, name, ch)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return Done(), err
		}
		// A challenge still working (the order failed on another one)
		// finishes, wakes the order, and is removed then.
		if ChallengePhase(ch.Status) != PhaseDone {
			continue
		}
		if err := w.store.Delete(ctx, messages.KindChallenge, ns, name); err != nil {
			return Done(), err
		}
	}
	return Done(), w.wakeRequest(ctx, order)
}

// acmeFailure handles an ACME error on an order: rate limits and server
// errors are retried after Retry-After or back-off; a client error fails
// the order with the problem document in its reason.
func (r *orderRun) acmeFailure(ctx context.Context, what string, err error) (Outcome, error) {
	if isShutdown(ctx, err) {
		return Done(), err
	}
	v := acmeclient.Classify(err)
	switch v.Class {
	case acmeclient.RetryNow:
		return RetryAfter(0), nil
	case acmeclient.Permanent:
		return r.w.failOrder(ctx, r.order, messages.StateErrored, what+": "+acmeclient.Describe(err))
	}
	// Attempts are kept in status whether or not the order exists at the
	// CA yet, so the back-off grows: a CA failing every new order is not
	// asked again five times a second.
	r.order.Status.Attempts++
	r.order.Status.Reason = what + ": " + acmeclient.Describe(err)
	if cerr := r.commit(ctx); cerr != nil {
		return Done(), cerr
	}
	delay := v.After
	if delay == 0 {
		delay = backoff(uint64(r.order.Status.Attempts))
	}
	logger(ctx).Info("CA error, will retry", "step", what, "err", err, "retry_in", delay)
	return RetryAfter(delay), nil
}

func (w *Worker) failOrder(ctx context.Context, order *messages.Order, state messages.State, reason string) (Outcome, error) {
	w.refundFailed(context.WithoutCancel(ctx), order)
	now := w.cfg.Now().UTC()
	order.Status.State = state
	order.Status.Reason = reason
	order.Status.FailureTime = &now
	order.Status.Attempts = 0
	if err := w.store.Update(ctx, order); err != nil {
		return Done(), err
	}
	w.record(ctx, order, messages.EventWarning, messages.ReasonErrOrder, reason)
	return w.orderFinal(ctx, order)
}

func (w *Worker) wakeRequest(ctx context.Context, order *messages.Order) error {
	o := order.Metadata.OwnerReference
	if o == nil {
		return nil
	}
	return w.publish(ctx, messages.KindCertificateRequest, o.Namespace, o.Name, messages.ActionChild, order.Metadata.Name, incarnation(&order.Metadata)+"-"+string(order.Status.State))
}

// deref is the outcome o points at, Done for nil.
func deref(o *Outcome) Outcome {
	if o == nil {
		return Done()
	}
	return *o
}
