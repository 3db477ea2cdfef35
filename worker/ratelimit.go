package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// Rate limits: an Issuer's spec.acme.rateLimits become fleet-wide budgets
// in Redis (scheduler.Budgets). A new order takes its budgets before it
// reaches the CA, or waits as a delayed message with a reason and an event
// saying which limit and until when; a 429 pauses the budget the CA names
// for the whole fleet. An Issuer whose limits budget nothing (the "none"
// preset, the default for CAs other than Let's Encrypt) costs no Redis
// call: a 429 then pauses the CA for this worker, and each other worker
// learns it from its own first 429.

// Event reasons of rate limits.
const (
	// ReasonWaitingForRateLimit: an order waits for a budget (Normal).
	ReasonWaitingForRateLimit = "WaitingForRateLimit"
	// ReasonRateLimited: the CA answered 429 (Warning).
	ReasonRateLimited = "RateLimited"
)

// issuerLimits resolves an Issuer's rate limits and says whether any of
// them budgets something.
func issuerLimits(iss *messages.Issuer) (scheduler.Limits, bool) {
	a := iss.Spec.ACME
	l, err := messages.ResolveRateLimits(a.Server, a.RateLimits)
	if err != nil {
		// Refused at apply; an Issuer stored otherwise budgets nothing.
		return scheduler.Limits{}, false
	}
	active := !l.NewOrdersPerAccount.Unlimited() || !l.CertificatesPerRegisteredDomain.Unlimited() ||
		!l.DuplicateCertificates.Unlimited() || !l.FailedValidations.Unlimited() || !l.NewAccountsPerIPAddress.Unlimited()
	return l, active
}

// orderRequest is the budget request of an order.
func (r *orderRun) orderRequest(l scheduler.Limits) scheduler.Request {
	o := r.order
	return scheduler.NewOrderRequest(scheduler.ChallengeID(o.Metadata.Namespace, o.Metadata.Name), o.Metadata.CreationTimestamp.UnixMilli(),
		r.iss.Spec.ACME.Server, r.iss.Status.ACME.URI, o.Spec.DNSNames, o.Spec.Replaces != "", l)
}

// takeBudgets takes an order's budgets before its new-order request. It
// returns the needs taken (to refund if the CA refuses the order) and, when
// the order must wait, the outcome to report.
func (r *orderRun) takeBudgets(ctx context.Context) ([]scheduler.Need, *Outcome, error) {
	w := r.w
	if until, ok := w.paused.until(r.iss.Spec.ACME.Server); ok && until.After(w.cfg.Now()) {
		out, err := r.waitFor(ctx, fmt.Sprintf("Waiting for rate limit: the CA answered 429; paused until %s", until.UTC().Format(time.RFC3339)), until.Sub(w.cfg.Now()))
		return nil, &out, err
	}
	l, active := issuerLimits(r.iss)
	if !active {
		return nil, nil, nil
	}
	w.budgetsUsed.Store(true)
	d, err := w.budgets.Take(ctx, r.orderRequest(l))
	if err != nil {
		return nil, nil, err
	}
	if d.Granted {
		return d.Taken, nil, nil
	}
	if !d.Wait.At.After(d.Now) {
		// Only the queue holds it back: serve it now.
		w.serveBudgets(ctx)
	}
	out, err := r.waitFor(ctx, d.Wait.Reason(), d.Wait.RetryAt.Sub(d.Now))
	return nil, &out, err
}

// waitFor records why an order waits (its reason; an event when the limit
// it waits for changes) and returns the delayed retry.
func (r *orderRun) waitFor(ctx context.Context, reason string, wait time.Duration) (Outcome, error) {
	o := r.order
	before, _, _ := strings.Cut(o.Status.Reason, ", next at")
	now, _, _ := strings.Cut(reason, ", next at")
	if before != now {
		// A new limit to wait for: written once, with its next refill.
		// Each check-back does not rewrite it for a later "next at": that
		// write would race the wake-up of the order it delays.
		o.Status.Reason = reason
		if err := r.commit(ctx); err != nil {
			return Done(), err
		}
		r.w.record(ctx, o, messages.EventNormal, ReasonWaitingForRateLimit, reason)
	}
	return RetryAfter(max(wait, time.Second)), nil
}

// rateLimited handles a 429 from the CA: the budget the CA names is paused
// for the fleet (for this worker when the Issuer budgets nothing), the
// order records it, and waits until the pause ends.
func (r *orderRun) rateLimited(ctx context.Context, err error) (Outcome, error) {
	w := r.w
	now := w.cfg.Now()
	until := now.Add(max(acmeclient.RetryAfter(err), time.Second))
	var ae *acme.Error
	detail := err.Error()
	if errors.As(err, &ae) {
		detail = ae.Detail
	}
	what := "the CA"
	if l, active := issuerLimits(r.iss); active {
		req := r.orderRequest(l)
		ref, observed, ok := req.RateLimitedBudget(detail)
		if !ok {
			ref = req.Needs[0].Ref // new orders of the account
		}
		t, perr := w.budgets.Pause(ctx, ref, acmeclient.RetryAfter(err), observed)
		if perr != nil {
			return Done(), perr
		}
		until, what = t, ref.Kind.String()
	} else {
		w.paused.set(r.iss.Spec.ACME.Server, until)
	}
	w.metrics.rateLimited.Inc()
	msg := fmt.Sprintf("Rate limited by the CA (%s); %s paused fleet-wide until %s", acmeclient.Describe(err), what, until.UTC().Format(time.RFC3339))
	r.order.Status.Reason = msg
	if cerr := r.commit(ctx); cerr != nil {
		return Done(), cerr
	}
	w.record(ctx, r.order, messages.EventWarning, ReasonRateLimited, msg)
	return RetryAfter(max(until.Sub(now), time.Second)), nil
}

// refundFailed gives back the certificate and duplicate units of an order
// that became final without a certificate (the CA counted only its new
// order), and drops a wait of an order that never reached the CA.
func (w *Worker) refundFailed(ctx context.Context, order *messages.Order) {
	iss, err := w.acme.issuer(ctx, order.Metadata.Namespace, order.Spec.IssuerRef)
	if err != nil || iss.Status.ACME == nil {
		return
	}
	l, active := issuerLimits(iss)
	if !active {
		return
	}
	r := &orderRun{w: w, order: order, iss: iss}
	req := r.orderRequest(l)
	if order.Status.URL == "" {
		if _, err := w.budgets.Cancel(ctx, req.ID); err != nil {
			logger(ctx).Warn("cancel the budget wait of a failed order", "err", err)
		}
		return
	}
	if req.Exempt {
		return
	}
	var back []scheduler.Need
	for _, n := range req.Needs {
		if n.Cost > 0 && (n.Ref.Kind == scheduler.KindCertificatesPerDomain || n.Ref.Kind == scheduler.KindDuplicates) {
			back = append(back, n)
		}
	}
	if err := w.budgets.Refund(ctx, back); err != nil {
		logger(ctx).Warn("refund the budgets of a failed order", "err", err)
	}
}

// spendFailedValidation counts a failed validation of a challenge's name
// in its Issuer's budget.
func (w *Worker) spendFailedValidation(ctx context.Context, ch *messages.Challenge) {
	iss, err := w.acme.issuer(ctx, ch.Metadata.Namespace, ch.Spec.IssuerRef)
	if err != nil || iss.Status.ACME == nil {
		return
	}
	l, active := issuerLimits(iss)
	if !active || l.FailedValidations.Unlimited() {
		return
	}
	need := scheduler.FailedValidation(iss.Spec.ACME.Server, iss.Status.ACME.URI, ch.Spec.DNSName, l)
	if _, err := w.budgets.Spend(ctx, need); err != nil {
		logger(ctx).Warn("count a failed validation", "err", err)
	}
}

// serveBudgets hands refilled budgets to the orders waiting on them and
// wakes those orders. It runs on the maintenance tick once this worker has
// seen an Issuer with budgets.
func (w *Worker) serveBudgets(ctx context.Context) {
	res, err := w.budgets.Serve(ctx)
	if err != nil {
		w.redis.failed(err)
		return
	}
	gen := strconv.FormatInt(res.Now.UnixMilli(), 10)
	for _, id := range res.Granted {
		ns, name, _ := strings.Cut(id, "/")
		if err := w.publish(ctx, messages.KindOrder, ns, name, messages.ActionScheduled, "budget", gen); err != nil {
			w.log.Warn("wake an order granted its budgets; it checks back by itself", "order", id, "err", err)
		}
	}
}

// caPauses are the pauses this worker learned from 429s of CAs whose
// Issuers budget nothing, by directory URL.
type caPauses struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (p *caPauses) until(server string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.m[server]
	return t, ok
}

func (p *caPauses) set(server string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]time.Time{}
	}
	if t.After(p.m[server]) {
		p.m[server] = t
	}
}
