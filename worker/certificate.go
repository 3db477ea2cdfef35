package worker

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// RequestName is the CertificateRequest of a Certificate's revision,
// shortened with a hash when too long (messages.DerivedName).
func RequestName(cert string, revision int) string {
	return messages.DerivedName(cert, "-"+strconv.Itoa(revision))
}

// labelSpecHash records on a CertificateRequest the spec hash of the
// Certificate it was made for.
const labelSpecHash = "acmeq.io/spec-hash"

// Certificate condition and event messages, as cert-manager's.
const (
	msgIssued      = "Certificate is up to date and has not expired"
	msgIssuedEvent = "The certificate has been successfully issued"
	msgFailedFmt   = "The certificate request has failed to complete and will be retried: %s"
)

// certRun is one handling of a Certificate message.
type certRun struct {
	w    *Worker
	cert *messages.Certificate
	now  time.Time
	ref  messages.ObjectReference
}

func (r *certRun) ns() string   { return r.cert.Metadata.Namespace }
func (r *certRun) name() string { return r.cert.Metadata.Name }

// setCondition sets a condition of the Certificate (not yet written).
func (r *certRun) setCondition(typ string, status messages.ConditionStatus, reason, msg string) {
	messages.SetCondition(&r.cert.Status.Conditions, messages.Condition{Type: typ, Status: status, Reason: reason, Message: msg}, r.now)
}

// commit is the one guarded write of the Certificate's status.
func (r *certRun) commit(ctx context.Context) error {
	if err := r.w.store.Update(ctx, r.cert); err != nil {
		return err
	}
	progress(ctx)
	return nil
}

// reconcileCertificate keeps a Certificate issued: it stores the outcome of
// the request in progress, or decides (decide, the trigger policy) whether a
// new request is due — first issuance, spec change, renewal, expiry, manual
// renewal — or backed off, and schedules its next wake-up (renewal time,
// expiry, ARI check, end of back-off) as a durable message schedule.
func (w *Worker) reconcileCertificate(ctx context.Context, t messages.Transition) (Outcome, error) {
	cert := &messages.Certificate{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, cert); err != nil {
		return Done(), err
	}
	r := &certRun{w: w, cert: cert, now: w.cfg.Now().UTC(),
		ref: messages.ObjectReference{Kind: messages.KindCertificate, Namespace: cert.Metadata.Namespace, Name: cert.Metadata.Name}}
	if cert.Metadata.DeletionTimestamp != nil {
		return w.deleteCertificate(ctx, cert)
	}
	if t.Action == messages.ActionRevoke {
		return r.revoke(ctx, t.Cause)
	}
	next, err := r.nextRequest(ctx)
	if err != nil || next != nil {
		return r.inFlight(ctx, next, err)
	}
	f, err := r.facts(ctx)
	if err != nil {
		return Done(), err
	}
	d := decide(cert, f)
	switch {
	case d.issue != nil:
		return r.issue(ctx, d.issue)
	case d.blocked != nil:
		r.setCondition(messages.ConditionReady, messages.ConditionFalse, d.blocked.reason, d.blocked.message)
		return Done(), r.commit(ctx)
	case !d.waitUntil.IsZero():
		return r.backedOff(ctx, d.waitUntil)
	}
	return r.upToDate(ctx)
}

// nextRequest returns the request of the next revision, if one exists for
// this Certificate (a request left by an earlier Certificate of the same
// name is removed).
func (r *certRun) nextRequest(ctx context.Context) (*messages.CertificateRequest, error) {
	cr := &messages.CertificateRequest{}
	err := r.w.store.Get(ctx, r.ns(), RequestName(r.name(), r.cert.Status.Revision+1), cr)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if cr.Metadata.CreationTimestamp.Before(r.cert.Metadata.CreationTimestamp) {
		return nil, r.w.deleteRequest(ctx, cr)
	}
	return cr, nil
}

// inFlight handles the request of the next revision: store what it issued,
// record its failure, cancel it when the spec changed under it, or wait.
func (r *certRun) inFlight(ctx context.Context, cr *messages.CertificateRequest, err error) (Outcome, error) {
	if err != nil {
		return Done(), err
	}
	switch {
	case messages.IsReady(cr.Status.Conditions):
		return r.storeIssued(ctx, cr)
	case cr.Status.FailureTime != nil:
		return r.recordFailure(ctx, cr)
	case cr.Metadata.Labels[labelSpecHash] != specHash(r.cert.Spec):
		// The spec changed while issuing: that request is of no use any
		// more (cert-manager deletes it too); the next one is made now.
		if err := r.w.deleteRequest(ctx, cr); err != nil {
			return Done(), err
		}
		return RetryAfter(0), nil
	case messages.GetCondition(cr.Status.Conditions, messages.ConditionReady) == nil:
		// It never ran (a crash between our write and the publish): send
		// its first transition again; Nats-Msg-Id drops the duplicate.
		return Done(), r.w.publish(ctx, messages.KindCertificateRequest, r.ns(), cr.Metadata.Name, messages.ActionCreated, "", incarnation(&cr.Metadata))
	}
	// In progress: the request wakes us when it is done.
	return Done(), nil
}

// facts gathers what the trigger policy needs besides the Certificate.
func (r *certRun) facts(ctx context.Context) (certFacts, error) {
	w, st := r.w, r.cert.Status
	f := certFacts{now: r.now, backoff: func(n int) time.Duration { return FailureBackoff(n, w.cfg.FailureBackoff, w.cfg.FailureBackoffMax) }}
	if st.NotAfter != nil {
		ok, err := w.store.Exists(ctx, messages.KindSecret, r.ns(), r.cert.Spec.SecretName)
		if err != nil {
			return f, err
		}
		f.secretExists = ok
	}
	if st.IssuedSpecHash != "" && st.IssuedSpecHash != specHash(r.cert.Spec) && st.Revision > 0 {
		cr := &messages.CertificateRequest{}
		if err := w.store.Get(ctx, r.ns(), RequestName(r.name(), st.Revision), cr); err == nil {
			f.issuedRequest = cr
		} else if !errors.Is(err, store.ErrNotFound) {
			return f, err
		}
	}
	if st.FailedIssuanceAttempts > 0 {
		// The failed request is kept as the next revision until the retry
		// replaces it; a Certificate whose spec changed since is retried
		// at once.
		cr := &messages.CertificateRequest{}
		if err := w.store.Get(ctx, r.ns(), RequestName(r.name(), st.Revision+1), cr); err == nil {
			f.failedHash = cr.Metadata.Labels[labelSpecHash]
		} else if !errors.Is(err, store.ErrNotFound) {
			return f, err
		}
	}
	return f, nil
}

// recordFailure notes a failed request once: attempts, failure time, the
// Issuing condition and a Warning event; the retry is scheduled after the
// back-off. The failed request stays until the retry replaces it.
func (r *certRun) recordFailure(ctx context.Context, cr *messages.CertificateRequest) (Outcome, error) {
	st := &r.cert.Status
	recorded := st.LastFailureTime != nil && !st.LastFailureTime.Before(*cr.Status.FailureTime)
	renewAsked := st.RenewRequestedTime != nil && st.RenewRequestedTime.After(*cr.Status.FailureTime)
	if recorded || renewAsked {
		// This is the retry: due after the back-off, or at once when a
		// renewal was asked for since the failure.
		return r.retryFailed(ctx, cr)
	}
	msg := "The CertificateRequest failed"
	if c := messages.GetCondition(cr.Status.Conditions, messages.ConditionReady); c != nil {
		msg = fmt.Sprintf(msgFailedFmt, c.Message)
	}
	st.FailedIssuanceAttempts++
	st.LastFailureTime = cr.Status.FailureTime
	st.NextPrivateKeySecretName = ""
	r.setCondition(ConditionIssuing, messages.ConditionFalse, messages.ReasonFailed, msg)
	if st.NotAfter == nil {
		r.setCondition(messages.ConditionReady, messages.ConditionFalse, messages.ReasonFailed, msg)
	}
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	r.w.record(ctx, r.cert, messages.EventWarning, messages.ReasonFailed, msg)
	return Done(), r.schedule(ctx, st.LastFailureTime.Add(FailureBackoff(st.FailedIssuanceAttempts, r.w.cfg.FailureBackoff, r.w.cfg.FailureBackoffMax)))
}

// retryFailed runs the trigger policy on a recorded failure: once the
// back-off has passed (or the spec changed, or a renewal was asked for) the
// failed request is removed and a new one made under its name.
func (r *certRun) retryFailed(ctx context.Context, cr *messages.CertificateRequest) (Outcome, error) {
	f, err := r.facts(ctx)
	if err != nil {
		return Done(), err
	}
	d := decide(r.cert, f)
	if d.issue == nil {
		if !d.waitUntil.IsZero() {
			return r.backedOff(ctx, d.waitUntil)
		}
		return Done(), nil
	}
	if err := r.w.deleteRequest(ctx, cr); err != nil {
		return Done(), err
	}
	return r.issue(ctx, d.issue)
}

// backedOff waits for the end of the failure back-off: Ready says Expired
// once the certificate in the Secret has expired meanwhile.
func (r *certRun) backedOff(ctx context.Context, until time.Time) (Outcome, error) {
	st := &r.cert.Status
	if st.NotAfter != nil && due(*st.NotAfter, r.now) {
		r.setCondition(messages.ConditionReady, messages.ConditionFalse, reasonExpired, fmt.Sprintf("Certificate expired on %s", st.NotAfter.Format(time.RFC1123)))
		if err := r.commit(ctx); err != nil {
			return Done(), err
		}
	}
	at := until
	if st.NotAfter != nil && st.NotAfter.After(r.now) && st.NotAfter.Before(at) {
		at = *st.NotAfter
	}
	return Done(), r.schedule(ctx, at)
}

// upToDate: the Secret serves the spec. Ready is True, the CA's ARI window
// is checked when due, and the next wake-up is scheduled.
func (r *certRun) upToDate(ctx context.Context) (Outcome, error) {
	st := &r.cert.Status
	changed := false
	if ri := st.RenewalInfo; ri != nil && due(ri.NextCheck, r.now) {
		changed = r.refreshARI(ctx) || changed
		if st.RenewalTime != nil && due(*st.RenewalTime, r.now) {
			// The CA moved the window earlier (e.g. a mass revocation).
			return r.issue(ctx, &trigger{reason: reasonRenewing, renewal: true,
				message: fmt.Sprintf("Renewing certificate as renewal was scheduled at %s", st.RenewalTime.Format(time.RFC3339))})
		}
	}
	if !messages.IsReady(st.Conditions) {
		r.setCondition(messages.ConditionReady, messages.ConditionTrue, messages.ReasonReady, msgIssued)
		changed = true
	}
	if changed {
		if err := r.commit(ctx); err != nil {
			return Done(), err
		}
	}
	if at, ok := nextWake(*st); ok {
		return Done(), r.schedule(ctx, at)
	}
	return Done(), nil
}

// schedule asks for a wake-up at at (at least minTimerDelay ahead): one
// pending schedule per Certificate, replaced by every new one. Schedules
// have a precision of a second: at is rounded up, so the wake-up never
// comes before the time it is for.
func (r *certRun) schedule(ctx context.Context, at time.Time) error {
	if min := r.now.Add(minTimerDelay); at.Before(min) {
		at = min
	}
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	return r.w.bus.Schedule(ctx, messages.Transition{Kind: messages.KindCertificate, Namespace: r.ns(), Name: r.name(), Action: messages.ActionTimer}, at)
}

// issue starts the next revision: claims the Secret, makes (or reuses) the
// key, creates the CertificateRequest and records why.
func (r *certRun) issue(ctx context.Context, why *trigger) (Outcome, error) {
	w, cert := r.w, r.cert
	ns, name := r.ns(), r.name()
	if err := w.store.ClaimSecret(ctx, ns, cert.Spec.SecretName, r.ref); err != nil {
		return r.secretConflict(ctx, err)
	}
	rev := cert.Status.Revision + 1
	// The key of the revision is kept in the request's own Secret, where
	// the order adds the issued chain: one Secret per request.
	crName := RequestName(name, rev)
	keyName := crName
	key, generated, err := r.nextKey(ctx, keyName)
	if errors.Is(err, store.ErrOwned) {
		return r.secretConflict(ctx, err)
	}
	if err != nil {
		return Done(), err
	}
	csr, err := makeCSR(key, cert.Spec)
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: %w", ns, name, err)
	}
	labels := make(map[string]string, len(cert.Metadata.Labels)+1)
	for k, v := range cert.Metadata.Labels {
		labels[k] = v
	}
	labels[labelSpecHash] = specHash(cert.Spec) // ours, whatever the user's labels say
	cr := &messages.CertificateRequest{
		Metadata: messages.ObjectMeta{Name: crName, Namespace: ns, Labels: labels, OwnerReference: &r.ref},
		Spec:     messages.CertificateRequestSpec{Request: string(csr), IssuerRef: cert.Spec.IssuerRef, Duration: cert.Spec.Duration},
	}
	if why.renewal && cert.Status.RenewalInfo != nil {
		cr.Spec.Replaces = cert.Status.RenewalInfo.CertID
	}
	created := true
	if err := w.store.Create(ctx, cr); errors.Is(err, store.ErrExists) {
		created = false
		if err := w.store.Get(ctx, ns, crName, cr); err != nil {
			return Done(), err
		}
	} else if err != nil {
		return Done(), err
	}
	cert.Status.NextPrivateKeySecretName = keyName
	r.setCondition(ConditionIssuing, messages.ConditionTrue, why.reason, why.message)
	if why.notReady {
		r.setCondition(messages.ConditionReady, messages.ConditionFalse, why.reason, why.message)
	}
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	w.record(ctx, cert, messages.EventNormal, messages.ReasonIssuing, why.message)
	if generated {
		w.record(ctx, cert, messages.EventNormal, messages.ReasonGenerated, fmt.Sprintf("Stored new private key in temporary Secret resource %q", keyName))
	}
	if created {
		w.record(ctx, cert, messages.EventNormal, messages.ReasonRequested, fmt.Sprintf("Created new CertificateRequest resource %q", crName))
	}
	return Done(), w.publish(ctx, messages.KindCertificateRequest, ns, crName, messages.ActionCreated, "", incarnation(&cr.Metadata))
}

// nextKey returns the private key of the next revision, stored once in
// the request's Secret (Create semantics: a redelivered message reuses it,
// so the CSR always matches the key), which the request owns. With
// rotationPolicy Never the key of the Secret is kept while it matches
// spec.privateKey.
func (r *certRun) nextKey(ctx context.Context, keyName string) (crypto.Signer, bool, error) {
	w, ns := r.w, r.ns()
	data, err := w.store.GetSecret(ctx, ns, keyName)
	if err == nil {
		k, err := parseKeyPEM(data[messages.SecretTLSKey])
		return k, false, err
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	key, generated := r.reusableKey(ctx), false
	if key == nil {
		if key, err = generateKey(r.cert.Spec.PrivateKey); err != nil {
			return nil, false, fmt.Errorf("certificate %s/%s: %w", ns, r.name(), err)
		}
		generated = true
	}
	pemKey, err := marshalKeyPEM(key)
	if err != nil {
		return nil, false, err
	}
	crRef := messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: keyName}
	if err := w.store.ClaimSecret(ctx, ns, keyName, crRef); err != nil {
		return nil, false, fmt.Errorf("certificate %s/%s: store private key: %w", ns, r.name(), err)
	}
	if err := w.store.CreateSecret(ctx, ns, keyName, map[string][]byte{messages.SecretTLSKey: pemKey}, &crRef); err != nil {
		// ErrExists: another worker won; redeliver and use its key.
		return nil, false, fmt.Errorf("certificate %s/%s: store private key: %w", ns, r.name(), errors.Join(err, store.ErrConflict))
	}
	return key, generated, nil
}

// reusableKey is the Secret's key when rotationPolicy is Never and it
// still matches spec.privateKey; nil otherwise.
func (r *certRun) reusableKey(ctx context.Context) crypto.Signer {
	pk := r.cert.Spec.PrivateKey
	if pk == nil || pk.RotationPolicy != messages.RotationPolicyNever || r.cert.Status.NotAfter == nil {
		return nil
	}
	data, err := r.w.store.GetSecret(ctx, r.ns(), r.cert.Spec.SecretName)
	if err != nil {
		return nil
	}
	key, err := parseKeyPEM(data[messages.SecretTLSKey])
	if err != nil || keyMismatch(key.Public(), pk) != nil {
		return nil
	}
	return key
}

// secretConflict fails a Certificate whose Secret belongs to another
// resource: nothing is written, and it is not retried until the spec
// changes.
func (r *certRun) secretConflict(ctx context.Context, err error) (Outcome, error) {
	if !errors.Is(err, store.ErrOwned) {
		return Done(), err
	}
	msg := fmt.Sprintf("Secret %q was not written: %v. If this message is not transient, two resources name the same Secret: change spec.secretName", r.cert.Spec.SecretName, errors.Unwrap(err))
	if c := messages.GetCondition(r.cert.Status.Conditions, messages.ConditionReady); c != nil && c.Reason == reasonIncorrectCert && c.Message == msg {
		return Done(), nil
	}
	r.setCondition(messages.ConditionReady, messages.ConditionFalse, reasonIncorrectCert, msg)
	r.cert.Status.NextPrivateKeySecretName = ""
	if c := messages.GetCondition(r.cert.Status.Conditions, ConditionIssuing); c != nil {
		r.setCondition(ConditionIssuing, messages.ConditionFalse, reasonIncorrectCert, msg)
	}
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	r.w.record(ctx, r.cert, messages.EventWarning, reasonIncorrectCert, msg)
	return Done(), nil
}

// storeIssued writes the Secret from the request's chain and the
// revision's key — replacing the previous certificate in one write, so the
// Secret always holds a valid one — and records the new certificate:
// revision, validity, renewal time (ARI when the CA offers it), Ready.
func (r *certRun) storeIssued(ctx context.Context, cr *messages.CertificateRequest) (Outcome, error) {
	w, cert := r.w, r.cert
	ns := r.ns()
	rev := cert.Status.Revision + 1
	out, leaf, err := r.issuedSecret(ctx, cr, rev)
	if err != nil {
		return Done(), err
	}
	// The Secret was claimed when this revision was requested; a claim is
	// never taken over, so it is still ours.
	if err := w.store.PutSecret(ctx, ns, cert.Spec.SecretName, out, &r.ref); err != nil {
		return Done(), err
	}
	st := &cert.Status
	nb, na := leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	rt := RenewalTime(nb, na, cert.Spec)
	st.Revision, st.NotBefore, st.NotAfter, st.RenewalTime = rev, &nb, &na, &rt
	st.SerialNumber = leaf.SerialNumber.Text(16)
	st.IssuedSpecHash = cr.Metadata.Labels[labelSpecHash]
	st.NextPrivateKeySecretName, st.LastFailureTime, st.FailedIssuanceAttempts, st.Revocation = "", nil, 0, nil
	st.RenewalInfo = nil
	if id, err := acmeclient.CertID(leaf); err == nil {
		st.RenewalInfo = &messages.RenewalInfo{CertID: id, NextCheck: r.now}
		r.refreshARI(ctx)
	}
	r.setCondition(messages.ConditionReady, messages.ConditionTrue, messages.ReasonReady, msgIssued)
	removeCondition(&st.Conditions, ConditionIssuing)
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	w.record(ctx, cert, messages.EventNormal, messages.ReasonIssued, msgIssuedEvent)
	if at, ok := nextWake(*st); ok {
		if err := r.schedule(ctx, at); err != nil {
			return Done(), err
		}
	}
	r.cleanUpAfterIssue(ctx, rev)
	return Done(), nil
}

// issuedSecret builds the Secret data of an issued request: the chain, and
// the revision's key encoded as spec.privateKey.encoding asks, checked to
// match the certificate.
func (r *certRun) issuedSecret(ctx context.Context, cr *messages.CertificateRequest, rev int) (map[string][]byte, *x509.Certificate, error) {
	w, ns, name := r.w, r.ns(), r.name()
	chain, err := w.store.GetSecret(ctx, ns, cr.Metadata.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s/%s: read the key and issued chain of revision %d: %w", ns, name, rev, err)
	}
	key, err := parseKeyPEM(chain[messages.SecretTLSKey])
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s/%s: %w", ns, name, err)
	}
	leaf, err := parseLeaf(chain[messages.SecretTLSCert])
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s/%s: %w", ns, name, err)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		// Never write a mismatched pair.
		return nil, nil, fmt.Errorf("certificate %s/%s: the issued certificate of %s does not match the key of revision %d", ns, name, cr.Metadata.Name, rev)
	}
	var enc string
	if pk := r.cert.Spec.PrivateKey; pk != nil {
		enc = pk.Encoding
	}
	keyPEM, err := marshalKey(key, enc)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]byte{messages.SecretTLSCert: chain[messages.SecretTLSCert], messages.SecretTLSKey: keyPEM}
	if ca := chain[messages.SecretCACert]; len(ca) > 0 {
		out[messages.SecretCACert] = ca
	}
	return out, leaf, nil
}

// refreshARI fetches the CA's renewal window for the certificate and moves
// the renewal time into it when it is not there; it reports whether the
// status changed. A CA without ARI drops the RenewalInfo; a failed fetch is
// retried after ARIRetry.
func (r *certRun) refreshARI(ctx context.Context) bool {
	st := &r.cert.Status
	ri := st.RenewalInfo
	cl, _, err := r.w.acme.client(ctx, r.ns(), r.cert.Spec.IssuerRef)
	if err == nil {
		var win *acmeclient.RenewalWindow
		win, err = cl.RenewalInfo(ctx, ri.CertID)
		if errors.Is(err, acmeclient.ErrNoARI) {
			st.RenewalInfo = nil
			return true
		}
		if err == nil {
			progress(ctx)
			ri.WindowStart, ri.WindowEnd, ri.ExplanationURL = win.Start.UTC(), win.End.UTC(), win.ExplanationURL
			wait := win.RetryAfter
			if wait <= 0 {
				wait = r.w.cfg.ARIRetry
			}
			ri.NextCheck = r.now.Add(min(wait, r.w.cfg.ARICheckMax))
			if st.RenewalTime == nil || st.RenewalTime.Before(ri.WindowStart) || !st.RenewalTime.Before(ri.WindowEnd) {
				t := ARIRenewalTime(ri.WindowStart, ri.WindowEnd, st.SerialNumber)
				st.RenewalTime = &t
			}
			return true
		}
	}
	wait := min(r.w.cfg.ARIRetry, r.w.cfg.ARICheckMax)
	logger(ctx).Info("ACME renewal info not fetched; asking again later", "err", err, "retry_in", wait)
	ri.NextCheck = r.now.Add(wait)
	return true
}

// cleanUpAfterIssue removes the history beyond spec.revisionHistoryLimit
// (each request goes with its Order and its Secret, which holds that
// revision's key and chain). Failures are logged: the next issuance tries
// again.
func (r *certRun) cleanUpAfterIssue(ctx context.Context, rev int) {
	w, ns := r.w, r.ns()
	ctx = context.WithoutCancel(ctx)
	limit := messages.RevisionHistoryLimitDefault
	if l := r.cert.Spec.RevisionHistoryLimit; l != nil && *l > 0 {
		limit = *l
	}
	for old := rev - limit; old >= 1; old-- {
		cr := &messages.CertificateRequest{}
		err := w.store.Get(ctx, ns, RequestName(r.name(), old), cr)
		if errors.Is(err, store.ErrNotFound) {
			return // older ones were pruned before
		}
		if err == nil {
			err = w.deleteRequest(ctx, cr)
		}
		if err != nil {
			logger(ctx).Warn("prune certificate request history", "request", RequestName(r.name(), old), "err", err)
			return
		}
	}
}

// deleteRequest removes a CertificateRequest with its Order and its issued
// chain. The Order's challenges were removed when it became final; one
// still working removes itself when done (see the challenge reconciler).
func (w *Worker) deleteRequest(ctx context.Context, cr *messages.CertificateRequest) error {
	return deleteRequest(ctx, w.store, cr)
}

func deleteRequest(ctx context.Context, st *store.Store, cr *messages.CertificateRequest) error {
	ns := cr.Metadata.Namespace
	if spec, err := orderSpecFor(cr); err == nil {
		if err := st.Delete(ctx, messages.KindOrder, ns, OrderName(cr.Metadata.Name, spec)); err != nil {
			return err
		}
	}
	crRef := messages.ObjectReference{Kind: messages.KindCertificateRequest, Namespace: ns, Name: cr.Metadata.Name}
	if err := st.Delete(ctx, messages.KindSecret, ns, cr.Metadata.Name); err != nil {
		return err
	}
	if err := st.ReleaseSecret(ctx, ns, cr.Metadata.Name, crRef); err != nil {
		return err
	}
	return st.Delete(ctx, messages.KindCertificateRequest, ns, cr.Metadata.Name)
}

// removeCondition drops the condition of type typ.
func removeCondition(conds *[]messages.Condition, typ string) {
	out := (*conds)[:0]
	for _, c := range *conds {
		if c.Type != typ {
			out = append(out, c)
		}
	}
	*conds = out
}

// revoke revokes the certificate in the Secret at the CA, signed with the
// issuer's account key (RFC 8555 §7.6), if it is still the one the user
// named (cause "<serial>/<reason>"). The Certificate then is not renewed or
// re-issued until `acmeq renew`.
func (r *certRun) revoke(ctx context.Context, cause string) (Outcome, error) {
	serial, reason, ok := strings.Cut(cause, "/")
	code, err := acmeclient.ParseRevocationReason(reason)
	if !ok || serial == "" || err != nil {
		return Poison(fmt.Sprintf("revoke: cause %q is not <serial>/<reason>: %v", truncate(cause, 128), err)), nil
	}
	st := &r.cert.Status
	if rv := st.Revocation; rv != nil && rv.SerialNumber == serial {
		return Done(), nil
	}
	if st.SerialNumber != serial {
		r.w.record(ctx, r.cert, messages.EventWarning, messages.ReasonRevoked,
			fmt.Sprintf("Certificate %s was not revoked: it is no longer the certificate in the Secret (now %q)", serial, st.SerialNumber))
		return Done(), nil
	}
	data, err := r.w.store.GetSecret(ctx, r.ns(), r.cert.Spec.SecretName)
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: revoke: read Secret: %w", r.ns(), r.name(), err)
	}
	leaf, err := parseLeaf(data[messages.SecretTLSCert])
	if err != nil || leaf.SerialNumber.Text(16) != serial {
		return Done(), fmt.Errorf("certificate %s/%s: revoke: the Secret does not hold certificate %s", r.ns(), r.name(), serial)
	}
	cl, _, err := r.w.acme.client(ctx, r.ns(), r.cert.Spec.IssuerRef)
	if err != nil {
		return Done(), err
	}
	if err := cl.RevokeCert(ctx, nil, leaf.Raw, code); err != nil && !acmeclient.HasProblem(err, acmeclient.ProblemAlreadyRevoked) {
		switch v := acmeclient.Classify(err); v.Class {
		case acmeclient.Permanent:
			r.w.record(ctx, r.cert, messages.EventWarning, messages.ReasonRevoked, "Failed to revoke certificate "+serial+": "+acmeclient.Describe(err))
			return Done(), nil
		case acmeclient.RetryNow:
			return RetryAfter(0), nil
		default:
			return RetryAfter(max(v.After, time.Second)), nil
		}
	}
	if reason == "" {
		reason = "unspecified"
	}
	st.Revocation = &messages.Revocation{SerialNumber: serial, Reason: reason, Time: r.now}
	msg := fmt.Sprintf("Certificate %s was revoked at the CA (%s)", serial, reason)
	r.setCondition(messages.ConditionReady, messages.ConditionFalse, reasonRevoked, msg+"; run `acmeq renew` to issue a new one")
	if err := r.commit(ctx); err != nil {
		return Done(), err
	}
	r.w.record(ctx, r.cert, messages.EventNormal, messages.ReasonRevoked, msg)
	return Done(), nil
}
