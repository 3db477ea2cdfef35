package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// Result says what Apply did, with kubectl's words: print it after the
// resource, as in "certificate/default/foo created".
type Result string

// Results of Apply.
const (
	// Created: the resource did not exist; it was stored and queued.
	Created Result = "created"
	// Configured: the spec changed; it was updated and queued.
	Configured Result = "configured"
	// Unchanged: the stored spec already equals the applied one; nothing was
	// written or queued.
	Unchanged Result = "unchanged"
)

// maxRetries bounds how often Apply re-reads and retries a write that lost
// a compare-and-set race.
const maxRetries = 5

// Client applies resources to an acmeq store and queues them for the
// workers. It is safe for concurrent use.
type Client struct {
	st  *store.Store
	bus *bus.Bus
}

// New returns a Client writing to st and publishing on b.
func New(st *store.Store, b *bus.Bus) *Client {
	return &Client{st: st, bus: b}
}

// InvalidError is returned by Apply and Request for a resource that fails
// validation; nothing was written or queued. Err holds every problem (see
// ValidateCertificate and ValidateIssuer).
type InvalidError struct {
	// Kind, Namespace and Name identify the resource (after defaulting).
	Kind      messages.Kind
	Namespace string
	Name      string
	// Err is the joined field errors.
	Err error
}

// Error implements error: "producer: certificate/default/foo is invalid: ...".
func (e *InvalidError) Error() string {
	return fmt.Sprintf("producer: %s is invalid: %v", ref(e.Kind, e.Namespace, e.Name), e.Err)
}

// Unwrap returns Err.
func (e *InvalidError) Unwrap() error { return e.Err }

// ref renders kind/namespace/name as kubectl does: certificate/default/foo;
// kind/name for a cluster-scoped resource: clusterissuer/letsencrypt.
func ref(k messages.Kind, ns, name string) string {
	if ns == "" && messages.IsClusterScoped(k) {
		return k.Token() + "/" + name
	}
	return k.Token() + "/" + ns + "/" + name
}

// Apply creates or updates an Issuer or a Certificate and queues it for the
// workers; it is idempotent (see the package documentation). obj is not
// modified: Apply defaults (SetDefaults) and validates a copy, and refuses
// invalid input with an *InvalidError before anything is written. Any status
// in obj is ignored: a new resource starts with an empty status and an
// updated one keeps the status the workers recorded.
//
// When the write succeeded but queueing the transition failed, Apply returns
// the write's Result together with the error.
func (c *Client) Apply(ctx context.Context, obj messages.Object) (Result, error) {
	switch o := obj.(type) {
	case *messages.Certificate:
		if o == nil {
			return "", errors.New("producer: nil Certificate")
		}
		return c.applyCertificate(ctx, o)
	case *messages.Issuer:
		if o == nil {
			return "", errors.New("producer: nil Issuer")
		}
		return c.applyIssuer(ctx, o)
	case nil:
		return "", errors.New("producer: nil object")
	}
	switch k := obj.GetKind(); k {
	case messages.KindCertificateRequest, messages.KindOrder, messages.KindChallenge:
		return "", fmt.Errorf("producer: %s cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)", k)
	default:
		return "", fmt.Errorf("producer: %s cannot be applied (want Issuer, ClusterIssuer or Certificate)", k)
	}
}

func (c *Client) applyCertificate(ctx context.Context, in *messages.Certificate) (Result, error) {
	cert := new(messages.Certificate)
	if err := deepCopy(cert, in); err != nil {
		return "", err
	}
	SetDefaults(cert)
	issuer, err := c.lookupIssuer(ctx, cert)
	if err != nil {
		return "", err
	}
	if err := ValidateCertificate(cert, issuer); err != nil {
		return "", &InvalidError{Kind: messages.KindCertificate, Namespace: cert.Metadata.Namespace, Name: cert.Metadata.Name, Err: err}
	}
	return apply(ctx, c, cert,
		func() *messages.Certificate { return new(messages.Certificate) },
		func(o *messages.Certificate) any { return &o.Spec },
		func(dst, src *messages.Certificate) { dst.Spec = src.Spec },
	)
}

// SecretClaim returns the Secret an Issuer or a Certificate, as stored
// (defaulted), holds: a Certificate's spec.secretName, an Issuer's
// spec.acme.privateKeySecretRef.name; with the owner it is claimed for and
// the field that names it. ok is false for other kinds, ClusterIssuer
// included: its account key is in the workers' cluster resource namespace,
// which the producer does not know, so the worker claims it. Deleting the
// resource passes secret and owner to the store's ReleaseSecret.
func SecretClaim(obj messages.Object) (field, secret string, owner messages.ObjectReference, ok bool) {
	m := obj.GetMeta()
	owner = messages.ObjectReference{Kind: obj.GetKind(), Namespace: m.Namespace, Name: m.Name}
	switch o := obj.(type) {
	case *messages.Certificate:
		secret = o.Spec.SecretName
		if secret == "" {
			secret = m.Name
		}
		return "spec.secretName", secret, owner, true
	case *messages.Issuer:
		if o.GetKind() == messages.KindClusterIssuer {
			return "", "", owner, false
		}
		if o.Spec.ACME != nil {
			secret = o.Spec.ACME.PrivateKeySecretRef.Name
		}
		if secret == "" {
			secret = withSuffix(m.Name, AccountKeySuffix)
		}
		return "spec.acme.privateKeySecretRef.name", secret, owner, true
	}
	return "", "", owner, false
}

// ErrSecretOwned is matched (errors.Is) by the error of Apply or PutSecret
// for a resource that names a Secret another resource owns. It is the
// store's ErrOwned.
var ErrSecretOwned = store.ErrOwned

// ownedError: field names a Secret another resource owns.
type ownedError struct {
	field, secret string
	owner         messages.ObjectReference
	err           error // wraps store.ErrOwned
}

func (e *ownedError) Error() string {
	o := e.owner
	switch o.Kind {
	case messages.KindSecret:
		return fmt.Sprintf("%s: Secret %s holds data created with acmeq create secret, which no Certificate or Issuer may overwrite", e.field, quote(e.secret))
	case messages.KindIssuer:
		return fmt.Sprintf("%s: Secret %s is owned by %s (its ACME account key)", e.field, quote(e.secret), ref(o.Kind, o.Namespace, o.Name))
	}
	return fmt.Sprintf("%s: Secret %s is owned by %s", e.field, quote(e.secret), ref(o.Kind, o.Namespace, o.Name))
}

func (e *ownedError) Unwrap() error { return e.err }

// claimSecret claims the Secret obj names for obj. A Secret owned by
// another resource is refused with an *InvalidError.
func (c *Client) claimSecret(ctx context.Context, obj messages.Object) error {
	field, secret, owner, ok := SecretClaim(obj)
	if !ok {
		return nil
	}
	return c.claim(ctx, obj.GetKind(), field, secret, owner)
}

func (c *Client) claim(ctx context.Context, kind messages.Kind, field, secret string, owner messages.ObjectReference) error {
	err := c.st.ClaimSecret(ctx, owner.Namespace, secret, owner)
	var oe *store.OwnedError
	if errors.As(err, &oe) {
		return &InvalidError{Kind: kind, Namespace: owner.Namespace, Name: owner.Name,
			Err: &ownedError{field: field, secret: secret, owner: oe.Owner, err: err}}
	}
	if err != nil {
		return fmt.Errorf("producer: claim Secret %s/%s for %s: %w", owner.Namespace, secret, ref(owner.Kind, owner.Namespace, owner.Name), err)
	}
	return nil
}

// releaseFresh gives back the claim obj made on a Secret it did not hold
// before (before, the stored resource, is nil for a new one), after its
// write failed: a failed apply leaves no claim. It runs on a failure path,
// so it outlives the caller's cancellation.
func (c *Client) releaseFresh(ctx context.Context, obj, before messages.Object) {
	_, secret, owner, ok := SecretClaim(obj)
	if !ok {
		return
	}
	if before != nil {
		if _, old, _, _ := SecretClaim(before); old == secret {
			return // held before this apply
		}
	}
	_ = c.st.ReleaseSecret(context.WithoutCancel(ctx), owner.Namespace, secret, owner)
}

// lookupIssuer reads the Issuer (or, with issuerRef.kind ClusterIssuer,
// the ClusterIssuer) a Certificate names; nil if it does not exist or the
// reference is too malformed to look up (validation reports that).
func (c *Client) lookupIssuer(ctx context.Context, cert *messages.Certificate) (*messages.Issuer, error) {
	certNS, name, r := cert.Metadata.Namespace, cert.Spec.IssuerRef.Name, cert.Spec.IssuerRef
	if messages.ValidateObjectName("namespace", certNS) != nil || messages.ValidateObjectName("name", name) != nil {
		return nil, nil
	}
	switch r.Kind {
	case "", string(messages.KindIssuer), string(messages.KindClusterIssuer):
	default:
		return nil, nil // validation refuses the kind
	}
	kind, ns := r.IssuerKind(), r.IssuerNamespace(certNS)
	issuer := messages.NewIssuer(kind)
	err := c.st.Get(ctx, ns, name, issuer)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("producer: read %s of %s: %w", ref(kind, ns, name), ref(messages.KindCertificate, certNS, cert.Metadata.Name), err)
	}
	return issuer, nil
}

// applyIssuer applies an Issuer or a ClusterIssuer (in's kind says which).
func (c *Client) applyIssuer(ctx context.Context, in *messages.Issuer) (Result, error) {
	kind := in.GetKind()
	iss := messages.NewIssuer(kind)
	if err := deepCopy(iss, in); err != nil {
		return "", err
	}
	SetDefaults(iss)
	if err := ValidateIssuer(iss); err != nil {
		return "", &InvalidError{Kind: kind, Namespace: iss.Metadata.Namespace, Name: iss.Metadata.Name, Err: err}
	}
	return apply(ctx, c, iss,
		func() *messages.Issuer { return messages.NewIssuer(kind) },
		func(o *messages.Issuer) any { return &o.Spec },
		func(dst, src *messages.Issuer) { dst.Spec = src.Spec },
	)
}

// apply writes desired (defaulted and valid) and queues it. empty returns a
// zero resource, spec its spec for comparison and setSpec copies the spec.
// Labels are user metadata and are compared and written with the spec.
//
// Before it writes, apply claims the Secret the resource names (see
// SecretClaim), so a resource naming another's Secret is refused before
// anything is written or queued. An unchanged resource claims nothing: it
// claimed when it was written.
func apply[T messages.Object](ctx context.Context, c *Client, desired T, empty func() T, spec func(T) any, setSpec func(dst, src T)) (Result, error) {
	dm := desired.GetMeta()
	ns, name, kind := dm.Namespace, dm.Name, desired.GetKind()
	r := ref(kind, ns, name)
	var lastErr error
	for range 1 + maxRetries {
		stored := empty()
		err := c.st.Get(ctx, ns, name, stored)
		if errors.Is(err, store.ErrNotFound) {
			fresh := empty()
			m := fresh.GetMeta()
			m.Name, m.Namespace, m.Labels = name, ns, dm.Labels
			setSpec(fresh, desired)
			if err := c.claimSecret(ctx, fresh); err != nil {
				return "", err
			}
			err := c.st.Create(ctx, fresh)
			if errors.Is(err, store.ErrExists) {
				// Someone created it since our read: compare with theirs.
				// The claim is by this resource's name, so it stays.
				lastErr = err
				continue
			}
			if err != nil {
				c.releaseFresh(ctx, fresh, nil)
				return "", fmt.Errorf("producer: create %s: %w", r, err)
			}
			return c.publish(ctx, fresh, Created)
		}
		if err != nil {
			return "", fmt.Errorf("producer: read %s: %w", r, err)
		}
		same, err := sameSpec(spec(stored), spec(desired))
		if err != nil {
			return "", fmt.Errorf("producer: compare %s: %w", r, err)
		}
		if same && labelsEqual(stored.GetMeta().Labels, dm.Labels) {
			// Queued again under the same message ID: a duplicate of a
			// transition that was stored is dropped by the work stream,
			// and one that was lost (a failed publish) goes out now.
			return c.publish(ctx, stored, Unchanged)
		}
		before := empty()
		setSpec(before, stored)
		before.GetMeta().Name, before.GetMeta().Namespace = name, ns
		setSpec(stored, desired)
		stored.GetMeta().Labels = dm.Labels
		// A changed Secret name claims the new one; the workers release
		// the old one once the certificate is re-issued into the new.
		if err := c.claimSecret(ctx, stored); err != nil {
			return "", err
		}
		err = c.st.Update(ctx, stored)
		if errors.Is(err, store.ErrConflict) {
			// A worker (or another producer) wrote in between: re-read,
			// keep its status, compare again.
			lastErr = err
			continue
		}
		if err != nil {
			c.releaseFresh(ctx, stored, before)
			return "", fmt.Errorf("producer: update %s: %w", r, err)
		}
		return c.publish(ctx, stored, Configured)
	}
	return "", fmt.Errorf("producer: apply %s: gave up after %d retries: %w", r, maxRetries, lastErr)
}

// publish queues an apply transition for obj, just written at its
// ResourceVersion, and returns res.
func (c *Client) publish(ctx context.Context, obj messages.Object, res Result) (Result, error) {
	m := obj.GetMeta()
	t := messages.Transition{Kind: obj.GetKind(), Namespace: m.Namespace, Name: m.Name, Action: messages.ActionApply}
	if err := c.bus.Publish(ctx, t, strconv.FormatUint(m.ResourceVersion, 10)); err != nil {
		// The write stands; applying again queues it (an unchanged
		// resource is queued again under the same message ID).
		return res, fmt.Errorf("producer: %s %s but not queued (apply it again to queue it): %w", ref(obj.GetKind(), m.Namespace, m.Name), res, err)
	}
	return res, nil
}

func sameSpec(a, b any) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ja, jb), nil
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// deepCopy copies src into dst through JSON, as the store would.
func deepCopy(dst, src messages.Object) error {
	b, err := json.Marshal(src)
	if err != nil {
		return fmt.Errorf("producer: encode %s: %w", src.GetKind(), err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("producer: copy %s: %w", src.GetKind(), err)
	}
	return nil
}

// RequestOptions describes a Certificate by flags, for `acmeq request`.
type RequestOptions struct {
	// Namespace defaults to "default".
	Namespace string
	// Name of the Certificate. Defaults to a name derived from the first
	// DNS name: "www.example.com" -> "www-example-com", "*.example.com" ->
	// "wildcard-example-com".
	Name string
	// Issuer is the name of the Issuer (in the same namespace) or of the
	// ClusterIssuer.
	Issuer string
	// IssuerKind is Issuer (the default) or ClusterIssuer, as
	// issuerRef.kind.
	IssuerKind string
	// DNSNames are the names the certificate is for.
	DNSNames []string
	// CommonName is optional; it must be one of DNSNames.
	CommonName string
	// KeyAlgorithm is ECDSA (the default) or RSA.
	KeyAlgorithm string
	// KeySize defaults to 256 for ECDSA and 2048 for RSA.
	KeySize int
	// SecretName defaults to the Certificate's name.
	SecretName string
}

// CertificateFromOptions builds the Certificate that Request applies,
// before defaulting (see SetDefaults) and validation.
func CertificateFromOptions(o RequestOptions) *messages.Certificate {
	name := o.Name
	if name == "" && len(o.DNSNames) > 0 {
		name = nameFromDNSName(o.DNSNames[0])
	}
	c := &messages.Certificate{
		TypeMeta: messages.TypeMeta{APIVersion: messages.APIVersion, Kind: messages.KindCertificate},
		Metadata: messages.ObjectMeta{Name: name, Namespace: o.Namespace},
		Spec: messages.CertificateSpec{
			SecretName: o.SecretName,
			CommonName: o.CommonName,
			DNSNames:   append([]string(nil), o.DNSNames...),
			IssuerRef:  messages.IssuerRef{Name: o.Issuer, Kind: o.IssuerKind},
		},
	}
	if o.KeyAlgorithm != "" || o.KeySize != 0 {
		c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: o.KeyAlgorithm, Size: o.KeySize}
	}
	return c
}

// nameFromDNSName derives a resource name from a DNS name; validation
// reports the result if it is still not a valid name.
func nameFromDNSName(n string) string {
	n = strings.ToLower(n)
	if rest, ok := strings.CutPrefix(n, "*."); ok {
		n = "wildcard." + rest
	}
	n = strings.ReplaceAll(n, ".", "-")
	if len(n) > messages.MaxObjectNameLength {
		n = n[:messages.MaxObjectNameLength]
	}
	return strings.Trim(n, "-")
}

// Request builds a Certificate from o (CertificateFromOptions) and applies
// it.
func (c *Client) Request(ctx context.Context, o RequestOptions) (Result, error) {
	return c.Apply(ctx, CertificateFromOptions(o))
}
