package producer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// env is a real embedded NATS server with acmeq's streams and buckets.
type env struct {
	js  jetstream.JetStream
	st  *store.Store
	bus *bus.Bus
	c   *Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	js := stacktest.JetStream(t)
	ctx := t.Context()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := bus.New(js, "producer-test")
	return &env{js: js, st: st, bus: b, c: New(st, b)}
}

// workMsgs is the number of messages on the work stream (nobody consumes
// them in these tests).
func (e *env) workMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), messages.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// lastTransition returns the last transition queued for a resource and its
// Nats-Msg-Id.
func (e *env) lastTransition(t *testing.T, k messages.Kind, ns, name string) (messages.Transition, string) {
	t.Helper()
	s, err := e.js.Stream(t.Context(), messages.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(t.Context(), messages.WorkSubject(k, ns, name))
	if err != nil {
		t.Fatalf("last message for %s/%s/%s: %v", k, ns, name, err)
	}
	tr, err := messages.DecodeTransition(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return tr, msg.Header.Get(jetstream.MsgIDHeader)
}

func (e *env) mustApply(t *testing.T, obj messages.Object, want Result) {
	t.Helper()
	got, err := e.c.Apply(t.Context(), obj)
	if err != nil {
		t.Fatalf("Apply %s %s: %v", obj.GetKind(), obj.GetMeta().Name, err)
	}
	if got != want {
		t.Fatalf("Apply %s %s: %s, want %s", obj.GetKind(), obj.GetMeta().Name, got, want)
	}
}

func (e *env) expectMsgs(t *testing.T, want uint64) {
	t.Helper()
	if got := e.workMsgs(t); got != want {
		t.Fatalf("%s holds %d messages, want %d", messages.WorkStream, got, want)
	}
}

// userIssuer and userCert are as users write them: no namespace, no defaults.
func userIssuer() *messages.Issuer {
	return &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: "dev"},
		Spec:     messages.IssuerSpec{ACME: &messages.ACMEIssuer{Server: "https://acme.example.com/directory"}},
	}
}

func userCert() *messages.Certificate {
	return &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "web"},
		Spec: messages.CertificateSpec{
			DNSNames:  []string{"Example.com", "www.example.com"},
			IssuerRef: messages.IssuerRef{Name: "dev"},
		},
	}
}

func TestApplyCreatedUnchangedConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	e.mustApply(t, userIssuer(), Created)
	e.expectMsgs(t, 1)
	e.mustApply(t, userIssuer(), Unchanged)
	e.expectMsgs(t, 1)

	var iss messages.Issuer
	if err := e.st.Get(ctx, "default", "dev", &iss); err != nil {
		t.Fatal(err)
	}
	if iss.Spec.ACME.PrivateKeySecretRef.Name != "dev-account-key" {
		t.Errorf("stored Issuer spec: %+v", iss.Spec.ACME)
	}

	// A user-supplied status is ignored on create.
	cert := userCert()
	cert.Status.Revision = 7
	in := fmt.Sprintf("%+v", *cert)
	e.mustApply(t, cert, Created)
	if out := fmt.Sprintf("%+v", *cert); out != in {
		t.Errorf("Apply modified its argument:\n%s\n%s", in, out)
	}
	e.expectMsgs(t, 2)
	var stored messages.Certificate
	if err := e.st.Get(ctx, "default", "web", &stored); err != nil {
		t.Fatal(err)
	}
	want := messages.CertificateSpec{
		SecretName: "web",
		DNSNames:   []string{"example.com", "www.example.com"},
		IssuerRef:  messages.IssuerRef{Name: "dev", Kind: "Issuer", Group: "cert-manager.io"},
		PrivateKey: &messages.PrivateKeySpec{Algorithm: "ECDSA", Size: 256},
	}
	if !reflect.DeepEqual(stored.Spec, want) {
		t.Errorf("stored spec %+v, want %+v", stored.Spec, want)
	}
	if stored.Status.Revision != 0 || stored.APIVersion != messages.APIVersion || stored.Kind != messages.KindCertificate {
		t.Errorf("stored Certificate: %+v", stored)
	}
	tr, id := e.lastTransition(t, messages.KindCertificate, "default", "web")
	if tr != (messages.Transition{Version: messages.MessageVersion, Kind: messages.KindCertificate, Namespace: "default", Name: "web", Action: messages.ActionApply}) {
		t.Errorf("transition %+v", tr)
	}
	if want := "certificate/default/web/apply/" + strconv.FormatUint(stored.Metadata.ResourceVersion, 10); id != want {
		t.Errorf("Nats-Msg-Id %q, want %q", id, want)
	}

	// The same manifest again, with defaults spelled out: nothing happens.
	e.mustApply(t, userCert(), Unchanged)
	e.mustApply(t, &stored, Unchanged)
	e.expectMsgs(t, 2)

	// A worker records a status; a spec change keeps it.
	stored.Status.Revision = 1
	messages.SetCondition(&stored.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue, Reason: "Ready"}, time.Now())
	if err := e.st.Update(ctx, &stored); err != nil {
		t.Fatal(err)
	}
	changed := userCert()
	changed.Spec.DNSNames = append(changed.Spec.DNSNames, "api.example.com")
	e.mustApply(t, changed, Configured)
	e.expectMsgs(t, 3)
	var updated messages.Certificate
	if err := e.st.Get(ctx, "default", "web", &updated); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(updated.Spec.DNSNames, []string{"example.com", "www.example.com", "api.example.com"}) {
		t.Errorf("updated dnsNames %v", updated.Spec.DNSNames)
	}
	if updated.Status.Revision != 1 || !messages.IsReady(updated.Status.Conditions) || !updated.Metadata.CreationTimestamp.Equal(stored.Metadata.CreationTimestamp) {
		t.Errorf("update lost the stored status or metadata: %+v %+v", updated.Metadata, updated.Status)
	}
	_, id = e.lastTransition(t, messages.KindCertificate, "default", "web")
	if want := "certificate/default/web/apply/" + strconv.FormatUint(updated.Metadata.ResourceVersion, 10); id != want {
		t.Errorf("Nats-Msg-Id %q, want %q", id, want)
	}
	e.mustApply(t, changed, Unchanged)
	e.expectMsgs(t, 3)

	// Labels are the user's too.
	labelled := userCert()
	labelled.Spec.DNSNames = changed.Spec.DNSNames
	labelled.Metadata.Labels = map[string]string{"team": "shop"}
	e.mustApply(t, labelled, Configured)
	e.mustApply(t, labelled, Unchanged)
	e.expectMsgs(t, 4)
}

func TestApplyInvalidWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.mustApply(t, userIssuer(), Created)
	e.expectMsgs(t, 1)

	bad := userCert()
	bad.Spec.DNSNames = []string{"example.com", "foo..example.com"}
	res, err := e.c.Apply(ctx, bad)
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Apply: %v (result %q), want an *InvalidError", err, res)
	}
	const want = `producer: certificate/default/web is invalid: spec.dnsNames[1]: "foo..example.com" is not a valid DNS name: empty label`
	if err.Error() != want {
		t.Errorf("Apply:\n got: %s\nwant: %s", err, want)
	}
	badIssuer := userIssuer()
	badIssuer.Metadata.Name = "other"
	badIssuer.Spec.ACME.Server = "http://acme.example.com/directory"
	if _, err := e.c.Apply(ctx, badIssuer); !errors.As(err, &inv) {
		t.Fatalf("Apply invalid Issuer: %v, want an *InvalidError", err)
	}
	// Request builds a Certificate the same way.
	if _, err := e.c.Request(ctx, RequestOptions{Issuer: "dev", DNSNames: []string{"10.0.0.1"}}); !errors.As(err, &inv) {
		t.Fatalf("Request with an IP address: %v, want an *InvalidError", err)
	}

	certs, err := e.st.List(ctx, messages.KindCertificate, "")
	if err != nil {
		t.Fatal(err)
	}
	issuers, err := e.st.List(ctx, messages.KindIssuer, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 0 || len(issuers) != 1 {
		t.Errorf("store holds %d certificates and %d issuers, want 0 and 1", len(certs), len(issuers))
	}
	e.expectMsgs(t, 1)
}

func TestApplyUnknownIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.c.Apply(ctx, userCert())
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Apply: %v, want an *InvalidError", err)
	}
	const want = `spec.issuerRef.name: issuer "dev" not found in namespace "default"`
	if inv.Err.Error() != want {
		t.Errorf("Apply:\n got: %s\nwant: %s", inv.Err, want)
	}
	if inv.Kind != messages.KindCertificate || inv.Namespace != "default" || inv.Name != "web" {
		t.Errorf("InvalidError names %s %s/%s", inv.Kind, inv.Namespace, inv.Name)
	}
	// An Issuer of the same name in another namespace does not count.
	other := userIssuer()
	other.Metadata.Namespace = "staging"
	e.mustApply(t, other, Created)
	if _, err := e.c.Apply(ctx, userCert()); !errors.As(err, &inv) || inv.Err.Error() != want {
		t.Errorf("Apply with the Issuer in another namespace: %v", err)
	}
	certs, err := e.st.List(ctx, messages.KindCertificate, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 0 {
		t.Errorf("store holds %d certificates, want 0", len(certs))
	}
	e.expectMsgs(t, 1)
}

func TestApplyWildcardNeedsDNS01(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustApply(t, userIssuer(), Created)
	wild := userCert()
	wild.Spec.DNSNames = []string{"*.example.com"}
	_, err := e.c.Apply(t.Context(), wild)
	const want = `producer: certificate/default/web is invalid: spec.dnsNames[0]: "*.example.com" is a wildcard, which only DNS-01 can validate: issuer "dev": no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name`
	if err == nil || err.Error() != want {
		t.Fatalf("Apply:\n got: %v\nwant: %s", err, want)
	}
	iss := userIssuer()
	iss.Spec.ACME.Solvers = []messages.ACMESolver{{DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{Nameserver: "10.0.0.53:53"}}}}
	e.mustApply(t, iss, Configured)
	e.mustApply(t, wild, Created)
	e.expectMsgs(t, 3)
}

func TestRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	iss := userIssuer()
	iss.Metadata.Namespace = "shop"
	e.mustApply(t, iss, Created)
	opts := RequestOptions{
		Namespace:    "shop",
		Issuer:       "dev",
		DNSNames:     []string{"*.Example.com", "example.com"},
		KeyAlgorithm: "rsa",
	}
	iss.Spec.ACME.Solvers = []messages.ACMESolver{{DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{Nameserver: "10.0.0.53:53"}}}}
	e.mustApply(t, iss, Configured)
	if res, err := e.c.Request(ctx, opts); err != nil || res != Created {
		t.Fatalf("Request: %s, %v", res, err)
	}
	if res, err := e.c.Request(ctx, opts); err != nil || res != Unchanged {
		t.Fatalf("Request again: %s, %v", res, err)
	}
	var c messages.Certificate
	if err := e.st.Get(ctx, "shop", "wildcard-example-com", &c); err != nil {
		t.Fatal(err)
	}
	if c.Spec.SecretName != "wildcard-example-com" || *c.Spec.PrivateKey != (messages.PrivateKeySpec{Algorithm: "RSA", Size: 2048}) ||
		!slices.Equal(c.Spec.DNSNames, []string{"*.example.com", "example.com"}) {
		t.Errorf("requested Certificate: %+v %+v", c.Spec, *c.Spec.PrivateKey)
	}
	e.expectMsgs(t, 3)
}

func TestCertificateFromOptions(t *testing.T) {
	t.Parallel()
	dns := []string{"www.example.com"}
	c := CertificateFromOptions(RequestOptions{Issuer: "dev", DNSNames: dns, CommonName: "www.example.com", KeySize: 384, SecretName: "tls"})
	dns[0] = "changed.example.com"
	if c.Metadata.Name != "www-example-com" || c.Metadata.Namespace != "" || c.Spec.DNSNames[0] != "www.example.com" ||
		c.Spec.IssuerRef.Name != "dev" || c.Spec.SecretName != "tls" || c.Spec.CommonName != "www.example.com" ||
		*c.Spec.PrivateKey != (messages.PrivateKeySpec{Size: 384}) || c.Kind != messages.KindCertificate {
		t.Errorf("CertificateFromOptions: %+v", c)
	}
	if c := CertificateFromOptions(RequestOptions{Name: "web", DNSNames: dns}); c.Metadata.Name != "web" || c.Spec.PrivateKey != nil {
		t.Errorf("CertificateFromOptions: %+v", c)
	}
}

// TestApplyConcurrent applies from several producers at once: creating the
// same resource makes exactly one Created, and competing updates all land
// through the compare-and-set retries.
func TestApplyConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.mustApply(t, userIssuer(), Created)

	const n = 4
	var mu sync.Mutex
	results := map[Result]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := e.c.Apply(ctx, userCert())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			results[res]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if results[Created] != 1 || results[Unchanged] != n-1 {
		t.Fatalf("concurrent creates: %v", results)
	}
	e.expectMsgs(t, 2)

	clear(results)
	var applied []string
	for i := range n {
		wg.Go(func() {
			c := userCert()
			name := fmt.Sprintf("host%d.example.com", i)
			c.Spec.DNSNames = []string{name}
			res, err := e.c.Apply(ctx, c)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			results[res]++
			applied = append(applied, name)
			mu.Unlock()
		})
	}
	wg.Wait()
	if results[Configured] != n {
		t.Fatalf("concurrent updates: %v", results)
	}
	var c messages.Certificate
	if err := e.st.Get(ctx, "default", "web", &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Spec.DNSNames) != 1 || !slices.Contains(applied, c.Spec.DNSNames[0]) {
		t.Errorf("final dnsNames %v, want one of %v", c.Spec.DNSNames, applied)
	}
	e.expectMsgs(t, 2+n)
}

// TestApplyPublishFailure: when queueing fails after the write, Apply says
// what it wrote and returns the error; the resource is stored.
func TestApplyPublishFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if err := e.js.DeleteStream(ctx, messages.WorkStream); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := e.c.Apply(ctx, userIssuer())
	if res != Created || err == nil || !strings.HasPrefix(err.Error(), "producer: issuer/default/dev created but not queued (apply it again to queue it): ") {
		t.Fatalf("Apply: %s, %v", res, err)
	}
	var iss messages.Issuer
	if err := e.st.Get(ctx, "default", "dev", &iss); err != nil {
		t.Errorf("the Issuer was not stored: %v", err)
	}
	// Applying again, once the stream is back, queues what was lost.
	if err := bus.EnsureStreams(ctx, e.js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.c.Apply(ctx, userIssuer()); res != Unchanged || err != nil {
		t.Fatalf("Apply again: %s, %v", res, err)
	}
	e.expectMsgs(t, 1)
	// And once more: the same message ID, dropped as a duplicate.
	if res, err := e.c.Apply(ctx, userIssuer()); res != Unchanged || err != nil {
		t.Fatalf("Apply a third time: %s, %v", res, err)
	}
	e.expectMsgs(t, 1)
}

func TestApplyRefusesOtherKinds(t *testing.T) {
	t.Parallel()
	c := New(nil, nil) // refused before the store or bus is used
	tests := []struct {
		obj  messages.Object
		want string
	}{
		{&messages.Order{}, "producer: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)"},
		{&messages.Challenge{}, "producer: Challenge cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)"},
		{&messages.CertificateRequest{}, "producer: CertificateRequest cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)"},
		{&messages.Secret{}, "producer: Secret cannot be applied (want Issuer, ClusterIssuer or Certificate)"},
		{nil, "producer: nil object"},
		{(*messages.Certificate)(nil), "producer: nil Certificate"},
	}
	for _, tt := range tests {
		if _, err := c.Apply(t.Context(), tt.obj); err == nil || err.Error() != tt.want {
			t.Errorf("Apply(%T): %v, want %s", tt.obj, err, tt.want)
		}
	}
}
