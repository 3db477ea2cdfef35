package worker

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// generateKey makes a private key as the Certificate's spec.privateKey says:
// ECDSA P-256 by default, P-384, or RSA 2048/3072/4096.
func generateKey(spec *messages.PrivateKeySpec) (crypto.Signer, error) {
	alg, size := messages.KeyAlgorithmECDSA, 0
	if spec != nil {
		if spec.Algorithm != "" {
			alg = spec.Algorithm
		}
		size = spec.Size
	}
	switch alg {
	case messages.KeyAlgorithmECDSA:
		switch size {
		case 0, 256:
			return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case 384:
			return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		}
	case messages.KeyAlgorithmRSA:
		switch size {
		case 0:
			return rsa.GenerateKey(rand.Reader, 2048)
		case 2048, 3072, 4096:
			return rsa.GenerateKey(rand.Reader, size)
		}
	}
	return nil, fmt.Errorf("spec.privateKey: unsupported algorithm %q size %d", alg, size)
}

// makeCSR returns a PEM CSR for the certificate's names.
func makeCSR(key crypto.Signer, spec messages.CertificateSpec) ([]byte, error) {
	tmpl := &x509.CertificateRequest{DNSNames: spec.DNSNames}
	if spec.CommonName != "" {
		tmpl.Subject = pkix.Name{CommonName: spec.CommonName}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// RequestName is the CertificateRequest of a Certificate's revision.
func RequestName(cert string, revision int) string { return cert + "-" + strconv.Itoa(revision) }

// nextKeySecretName holds the private key of a revision until issuance.
func nextKeySecretName(cert string, revision int) string {
	return cert + "-" + strconv.Itoa(revision) + "-key"
}

// Certificate condition messages.
const (
	msgIssuingNew     = "Issuing certificate as Secret does not exist"
	msgIssuingChanged = "Issuing certificate as Secret does not match the Certificate spec"
	msgIssuingRetry   = "Issuing certificate as the previous request failed"
	msgIssued         = "Certificate is up to date and has not expired"
	msgIssuedEvent    = "The certificate has been successfully issued"
)

// reconcileCertificate drives a Certificate: when it has no request for
// its current spec, it generates a key (once per revision) and creates the
// CertificateRequest; when the request is issued, it writes the Secret and
// sets Ready.
func (w *Worker) reconcileCertificate(ctx context.Context, t messages.Transition, delivered uint64) (Outcome, error) {
	cert := &messages.Certificate{}
	if err := w.store.Get(ctx, t.Namespace, t.Name, cert); err != nil {
		return Done(), err
	}
	ns := cert.Metadata.Namespace
	var cr *messages.CertificateRequest
	if cert.Status.Revision > 0 {
		cr = &messages.CertificateRequest{}
		err := w.store.Get(ctx, ns, RequestName(cert.Metadata.Name, cert.Status.Revision), cr)
		if errors.Is(err, store.ErrNotFound) {
			cr = nil
		} else if err != nil {
			return Done(), err
		}
	}
	switch {
	case cr == nil || !sameNames(cr.Metadata.Labels[labelDNSNames], cert.Spec):
		// No request for the current spec: issue. A failed request is not
		// retried automatically here: the user applies again (a new
		// revision), as with cert-manager's backoff after failure.
		msg := msgIssuingNew
		if cr != nil {
			msg = msgIssuingChanged
		}
		return w.issue(ctx, cert, msg)
	case messages.IsReady(cr.Status.Conditions):
		return w.storeIssued(ctx, cert, cr)
	case cr.Status.FailureTime != nil:
		c := messages.GetCondition(cr.Status.Conditions, messages.ConditionReady)
		msg := "The CertificateRequest failed"
		if c != nil {
			msg = fmt.Sprintf("The certificate request has failed to complete and will be retried: %s", c.Message)
		}
		if cert.Status.LastFailureTime == nil {
			cert.Status.LastFailureTime = cr.Status.FailureTime
			messages.SetCondition(&cert.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonFailed, Message: msg}, w.cfg.Now().UTC())
			if err := w.store.Update(ctx, cert); err != nil {
				return Done(), err
			}
			w.record(ctx, cert, messages.EventWarning, messages.ReasonFailed, msg)
			return Done(), nil
		}
		// As cert-manager: a failed issuance is retried with a new request
		// after a back-off. The resync sends the message that gets here
		// once it is due; no message is held back meanwhile.
		if w.cfg.Now().Sub(*cert.Status.LastFailureTime) >= w.cfg.FailedRetry {
			return w.issue(ctx, cert, msgIssuingRetry)
		}
		return Done(), nil
	}
	// In progress: the request wakes us when it is done. If it never ran
	// (a crash between our status write and the publish), send its first
	// transition again; Nats-Msg-Id drops the duplicate otherwise.
	if messages.GetCondition(cr.Status.Conditions, messages.ConditionReady) == nil {
		return Done(), w.bus.Publish(ctx, messages.Transition{Kind: messages.KindCertificateRequest, Namespace: ns, Name: cr.Metadata.Name, Action: messages.ActionCreated}, incarnation(&cr.Metadata))
	}
	return Done(), nil
}

// labelDNSNames records on a CertificateRequest the names it was made for,
// so a spec change is seen without parsing the CSR.
const labelDNSNames = "acmeq.io/dns-names"

func namesLabel(spec messages.CertificateSpec) string {
	names := slices.Clone(spec.DNSNames)
	slices.Sort(names)
	s := spec.CommonName + "|"
	for i, n := range names {
		if i > 0 {
			s += ","
		}
		s += n
	}
	return s
}

func sameNames(label string, spec messages.CertificateSpec) bool { return label == namesLabel(spec) }

// issue starts revision N+1: key (once), CertificateRequest (once), status.
func (w *Worker) issue(ctx context.Context, cert *messages.Certificate, why string) (Outcome, error) {
	ns, name := cert.Metadata.Namespace, cert.Metadata.Name
	rev := cert.Status.Revision + 1
	// Requests left by an earlier Certificate of the same name (deleted,
	// then applied again) are history, not ours: skip their revisions.
	for {
		old := &messages.CertificateRequest{}
		err := w.store.Get(ctx, ns, RequestName(name, rev), old)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return Done(), err
		}
		if !old.Metadata.CreationTimestamp.Before(cert.Metadata.CreationTimestamp) {
			break
		}
		rev++
	}
	crName := RequestName(name, rev)
	keyName := nextKeySecretName(name, rev)
	owner := &messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: name}

	// The key of a revision is created once (Create semantics): a
	// redelivered message reuses it, so the CSR always matches the key.
	var key crypto.Signer
	data, err := w.store.GetSecret(ctx, ns, keyName)
	generated := false
	switch {
	case err == nil:
		key, err = parseKeyPEM(data[messages.SecretTLSKey])
		if err != nil {
			return Done(), fmt.Errorf("certificate %s/%s: %w", ns, name, err)
		}
	case errors.Is(err, store.ErrNotFound):
		key, err = generateKey(cert.Spec.PrivateKey)
		if err != nil {
			return Poison(fmt.Sprintf("certificate %s/%s: %v", ns, name, err)), nil
		}
		pemKey, err := marshalKeyPEM(key)
		if err != nil {
			return Done(), err
		}
		if err := w.store.CreateSecret(ctx, ns, keyName, map[string][]byte{messages.SecretTLSKey: pemKey}, owner); err != nil {
			// ErrExists: another worker won; redeliver and use its key.
			return Done(), fmt.Errorf("certificate %s/%s: store private key: %w", ns, name, errors.Join(err, store.ErrConflict))
		}
		generated = true
	default:
		return Done(), err
	}
	csr, err := makeCSR(key, cert.Spec)
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: %w", ns, name, err)
	}
	cr := &messages.CertificateRequest{
		Metadata: messages.ObjectMeta{Name: crName, Namespace: ns, OwnerReference: owner,
			Labels: map[string]string{labelDNSNames: namesLabel(cert.Spec)}},
		Spec: messages.CertificateRequestSpec{Request: string(csr), IssuerRef: cert.Spec.IssuerRef},
	}
	created := true
	if err := w.store.Create(ctx, cr); errors.Is(err, store.ErrExists) {
		created = false
	} else if err != nil {
		return Done(), err
	}
	now := w.cfg.Now().UTC()
	cert.Status.Revision = rev
	cert.Status.NextPrivateKeySecretName = keyName
	cert.Status.LastFailureTime = nil
	reason := messages.ReasonDoesNotExist
	messages.SetCondition(&cert.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: reason, Message: why}, now)
	if err := w.store.Update(ctx, cert); err != nil {
		return Done(), err
	}
	w.record(ctx, cert, messages.EventNormal, messages.ReasonIssuing, why)
	if generated {
		w.record(ctx, cert, messages.EventNormal, messages.ReasonGenerated, fmt.Sprintf("Stored new private key in temporary Secret resource %q", keyName))
	}
	if created {
		w.record(ctx, cert, messages.EventNormal, messages.ReasonRequested, fmt.Sprintf("Created new CertificateRequest resource %q", crName))
	}
	if err := w.bus.Publish(ctx, messages.Transition{Kind: messages.KindCertificateRequest, Namespace: ns, Name: crName, Action: messages.ActionCreated}, incarnation(&cr.Metadata)); err != nil {
		return Done(), err
	}
	return Done(), nil
}

// storeIssued writes spec.secretName from the request's certificate and the
// revision's key, and sets the Certificate Ready.
func (w *Worker) storeIssued(ctx context.Context, cert *messages.Certificate, cr *messages.CertificateRequest) (Outcome, error) {
	ns, name := cert.Metadata.Namespace, cert.Metadata.Name
	if messages.IsReady(cert.Status.Conditions) && cert.Status.NextPrivateKeySecretName == "" {
		return Done(), nil
	}
	chain, err := w.store.GetSecret(ctx, ns, cr.Metadata.Name)
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: read issued chain: %w", ns, name, err)
	}
	keyName := nextKeySecretName(name, cert.Status.Revision)
	keyData, err := w.store.GetSecret(ctx, ns, keyName)
	if errors.Is(err, store.ErrNotFound) {
		// Already moved into the Secret by an earlier delivery.
		keyData, err = w.store.GetSecret(ctx, ns, secretName(cert))
	}
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: read private key: %w", ns, name, err)
	}
	leaf, err := parseLeaf(chain[messages.SecretTLSCert])
	if err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: %w", ns, name, err)
	}
	out := map[string][]byte{messages.SecretTLSCert: chain[messages.SecretTLSCert], messages.SecretTLSKey: keyData[messages.SecretTLSKey]}
	if ca := chain[messages.SecretCACert]; len(ca) > 0 {
		out[messages.SecretCACert] = ca
	}
	owner := &messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: name}
	if err := w.store.PutSecret(ctx, ns, secretName(cert), out, owner); err != nil {
		return Done(), err
	}
	nb, na := leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	cert.Status.NotBefore, cert.Status.NotAfter = &nb, &na
	cert.Status.NextPrivateKeySecretName = ""
	cert.Status.LastFailureTime = nil
	messages.SetCondition(&cert.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: messages.ReasonReady, Message: msgIssued}, w.cfg.Now().UTC())
	if err := w.store.Update(ctx, cert); err != nil {
		return Done(), err
	}
	w.record(ctx, cert, messages.EventNormal, messages.ReasonIssued, msgIssuedEvent)
	// The temporary key is now in the Secret.
	if err := w.store.Delete(ctx, messages.KindSecret, ns, keyName); err != nil {
		logger(ctx).Warn("delete temporary key secret", "secret", keyName, "err", err)
	}
	return Done(), nil
}

func secretName(cert *messages.Certificate) string {
	if cert.Spec.SecretName != "" {
		return cert.Spec.SecretName
	}
	return cert.Metadata.Name
}

func parseLeaf(chainPEM []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(chainPEM)
	if blk == nil {
		return nil, errors.New("issued chain holds no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
