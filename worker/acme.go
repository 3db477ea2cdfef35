package worker

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// acmeCache keeps one acme.Client per Issuer or ClusterIssuer (per
// registered account): the directory, nonces and connections are reused
// across messages. A ClusterIssuer has one entry, whichever namespace its
// Certificates are in: they share its account.
type acmeCache struct {
	st      *store.Store
	observe acmeclient.Observer
	// clusterNS is Config.ClusterResourceNamespace: where the Secrets of
	// ClusterIssuers are.
	clusterNS string
	mu        sync.Mutex
	clients   map[string]cachedClient
	issuers   map[string]cachedIssuer
}

type cachedClient struct {
	uri    string
	client *acmeclient.Client
}

func newACMECache(st *store.Store, observe acmeclient.Observer, clusterNS string) *acmeCache {
	return &acmeCache{st: st, observe: observe, clusterNS: clusterNS, clients: map[string]cachedClient{}, issuers: map[string]cachedIssuer{}}
}

func issuerOptions(iss *messages.Issuer, observe acmeclient.Observer) acmeclient.Options {
	return acmeclient.Options{
		DirectoryURL:  iss.Spec.ACME.Server,
		CABundle:      []byte(iss.Spec.ACME.CABundle),
		SkipTLSVerify: iss.Spec.ACME.SkipTLSVerify,
		Observe:       observe,
	}
}

// ErrIssuerNotReady: the issuer has no registered account yet.
var ErrIssuerNotReady = errors.New("worker: issuer not ready")

// issuerTTL bounds how stale a cached Issuer may be: issuers change
// rarely, and every order and challenge message would otherwise read one.
const issuerTTL = 5 * time.Second

// issuerCacheKey keys the caches by kind, namespace and name: an Issuer
// and a ClusterIssuer may have the same name.
func issuerCacheKey(k messages.Kind, ns, name string) string {
	return k.Token() + "/" + messages.Key(ns, name)
}

// issuer reads the issuer that ref names for a resource in namespace ns:
// the Issuer ns/ref.Name, or, when ref.kind is ClusterIssuer, the
// ClusterIssuer ref.Name (whatever ns is). It is cached for issuerTTL; a
// not-Ready issuer is not cached, so a worker sees it become Ready at once.
func (c *acmeCache) issuer(ctx context.Context, ns string, ref messages.IssuerRef) (*messages.Issuer, error) {
	kind, ins := ref.IssuerKind(), ref.IssuerNamespace(ns)
	key := issuerCacheKey(kind, ins, ref.Name)
	c.mu.Lock()
	e, ok := c.issuers[key]
	c.mu.Unlock()
	if ok && time.Since(e.at) < issuerTTL {
		return e.iss, nil
	}
	iss := messages.NewIssuer(kind)
	if err := c.st.Get(ctx, ins, ref.Name, iss); err != nil {
		return nil, fmt.Errorf("get %s: %w", issuerString(kind, ins, ref.Name), err)
	}
	if messages.IsReady(iss.Status.Conditions) {
		c.mu.Lock()
		c.issuers[key] = cachedIssuer{iss: iss, at: time.Now()}
		c.mu.Unlock()
	}
	return iss, nil
}

// issuerString names an issuer in errors: "issuer shop/le",
// "clusterissuer le".
func issuerString(k messages.Kind, ns, name string) string {
	if ns == "" {
		return k.Token() + " " + name
	}
	return k.Token() + " " + ns + "/" + name
}

type cachedIssuer struct {
	iss *messages.Issuer
	at  time.Time
}

// client returns the client of the Ready issuer ref names for a resource
// in namespace ns (see issuer).
func (c *acmeCache) client(ctx context.Context, ns string, ref messages.IssuerRef) (*acmeclient.Client, *messages.Issuer, error) {
	iss, err := c.issuer(ctx, ns, ref)
	if err != nil {
		return nil, nil, err
	}
	m := iss.Metadata
	if iss.Spec.ACME == nil || iss.Status.ACME == nil || iss.Status.ACME.URI == "" || !messages.IsReady(iss.Status.Conditions) {
		return nil, iss, fmt.Errorf("%w: %s", ErrIssuerNotReady, issuerString(iss.GetKind(), m.Namespace, m.Name))
	}
	key := issuerCacheKey(iss.GetKind(), m.Namespace, m.Name)
	c.mu.Lock()
	cc, ok := c.clients[key]
	c.mu.Unlock()
	if ok && cc.uri == iss.Status.ACME.URI+"|"+iss.Spec.ACME.Server {
		return cc.client, iss, nil
	}
	signer, err := loadAccountKey(ctx, c.st, resourceNamespace(iss, c.clusterNS), iss)
	if err != nil {
		return nil, iss, err
	}
	opts := issuerOptions(iss, c.observe)
	hc, err := acmeclient.NewHTTPClient(opts)
	if err != nil {
		return nil, iss, err
	}
	cl := acmeclient.New(opts, hc, signer, iss.Status.ACME.URI)
	c.mu.Lock()
	c.clients[key] = cachedClient{uri: iss.Status.ACME.URI + "|" + iss.Spec.ACME.Server, client: cl}
	c.mu.Unlock()
	return cl, iss, nil
}

// resourceNamespace is the namespace of the Secrets an issuer refers to
// (its ACME account key, its External Account Binding key, its solvers'
// credentials): an Issuer's own namespace, or clusterNS (the workers'
// ClusterResourceNamespace) for a ClusterIssuer, which has none.
func resourceNamespace(iss *messages.Issuer, clusterNS string) string {
	if iss.GetKind() == messages.KindClusterIssuer {
		return clusterNS
	}
	return iss.Metadata.Namespace
}

func accountKeySecret(iss *messages.Issuer) string {
	if n := iss.Spec.ACME.PrivateKeySecretRef.Name; n != "" {
		return n
	}
	return iss.Metadata.Name + "-account-key"
}

// loadAccountKey reads the account key of iss from namespace ns (see
// resourceNamespace).
func loadAccountKey(ctx context.Context, st *store.Store, ns string, iss *messages.Issuer) (crypto.Signer, error) {
	data, err := st.GetSecret(ctx, ns, accountKeySecret(iss))
	if err != nil {
		m := iss.Metadata
		return nil, fmt.Errorf("load ACME account key of %s: %w", issuerString(iss.GetKind(), m.Namespace, m.Name), err)
	}
	return parseKeyPEM(data[messages.SecretTLSKey])
}

// ensureAccountKey returns the issuer's account key from namespace ns
// (see resourceNamespace), generating it once. The key is created with
// Create semantics so two workers racing on a new issuer end up with the
// same key.
func ensureAccountKey(ctx context.Context, st *store.Store, ns string, iss *messages.Issuer) (crypto.Signer, error) {
	name := accountKeySecret(iss)
	data, err := st.GetSecret(ctx, ns, name)
	if err == nil {
		return parseKeyPEM(data[messages.SecretTLSKey])
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate account key: %w", err)
	}
	pemKey, err := marshalKeyPEM(k)
	if err != nil {
		return nil, err
	}
	owner := &messages.ObjectReference{Kind: iss.GetKind(), Namespace: iss.Metadata.Namespace, Name: iss.Metadata.Name}
	err = st.CreateSecret(ctx, ns, name, map[string][]byte{messages.SecretTLSKey: pemKey}, owner)
	if errors.Is(err, store.ErrExists) {
		return loadAccountKey(ctx, st, ns, iss)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// register registers (or finds) the account of iss at its CA, bound to
// the external account eab when it is not nil. A CA answers an account
// that exists for the key without looking at the binding (RFC 8555
// section 7.3.1), so an issuer whose account was registered keeps it.
func register(ctx context.Context, iss *messages.Issuer, key crypto.Signer, eab *acme.ExternalAccountBinding, observe acmeclient.Observer) (*acme.Account, error) {
	opts := issuerOptions(iss, observe)
	hc, err := acmeclient.NewHTTPClient(opts)
	if err != nil {
		return nil, err
	}
	cl := acmeclient.New(opts, hc, key, "")
	acct := &acme.Account{ExternalAccountBinding: eab}
	if iss.Spec.ACME.Email != "" {
		acct.Contact = []string{"mailto:" + iss.Spec.ACME.Email}
	}
	a, err := cl.Register(ctx, acct, acme.AcceptTOS)
	if errors.Is(err, acme.ErrAccountAlreadyExists) {
		a, err = cl.GetReg(ctx, "")
		if err == nil && iss.Spec.ACME.Email != "" && (len(a.Contact) != 1 || a.Contact[0] != "mailto:"+iss.Spec.ACME.Email) {
			a.Contact = acct.Contact
			a, err = cl.UpdateReg(ctx, a)
			if err != nil {
				return nil, &updateError{err}
			}
		}
	}
	return a, err
}

// updateError marks a failure to update an existing account
// (ErrUpdateACMEAccount rather than ErrRegisterACMEAccount).
type updateError struct{ err error }

func (e *updateError) Error() string { return e.err.Error() }
func (e *updateError) Unwrap() error { return e.err }
