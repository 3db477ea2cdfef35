package tests

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/worker"
)

// setupRenewal starts the stack with Pebble issuing certificates valid for
// validity, and in-process workers adjusted by configure.
func setupRenewal(t *testing.T, workers int, validity time.Duration, pc stack.PebbleConfig, configure func(*worker.Config)) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: workers, CertValidity: validity, Pebble: pc, Configure: configure})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	return env, ctx
}

// storedPair reads a Certificate's Secret: its leaf and its key's public
// half.
func storedPair(ctx context.Context, env *dev.Env, ns, secret string) (*x509.Certificate, crypto.PublicKey, error) {
	data, err := env.Store.GetSecret(ctx, ns, secret)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(data[messages.SecretTLSCert])
	if blk == nil {
		return nil, nil, errors.New("tls.crt holds no PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(data[messages.SecretTLSKey])
	if kb == nil {
		return nil, nil, errors.New("tls.key holds no PEM")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tls.key (%s): %w", kb.Type, err)
	}
	pub := key.(crypto.Signer).Public()
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		return nil, nil, errors.New("tls.key does not match tls.crt")
	}
	return leaf, pub, nil
}

// certificate reads a Certificate.
func certificate(t *testing.T, ctx context.Context, env *dev.Env, name string) *messages.Certificate {
	t.Helper()
	c := &messages.Certificate{}
	if err := env.Store.Get(ctx, dev.Namespace, name, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitIssued waits until a Certificate is Ready at revision rev or later.
func waitIssued(t *testing.T, ctx context.Context, env *dev.Env, name string, rev int, timeout time.Duration) *messages.Certificate {
	t.Helper()
	var c *messages.Certificate
	stacktest.Eventually(t, timeout, func() error {
		c = &messages.Certificate{}
		if err := env.Store.Get(ctx, dev.Namespace, name, c); err != nil {
			return err
		}
		if c.Status.Revision < rev || !messages.IsReady(c.Status.Conditions) {
			return fmt.Errorf("certificate %s: revision %d (want %d), conditions %+v", name, c.Status.Revision, rev, c.Status.Conditions)
		}
		return nil
	})
	return c
}

// The CA moves a certificate's ARI window to now (as in a mass
// revocation): acmeq sees it at its next check, renews at once, and the
// new order names the old certificate in "replaces".
func TestARIWindowMovedEarlierRenews(t *testing.T) {
	env, ctx := setupRenewal(t, 2, time.Hour, stack.PebbleConfig{}, func(c *worker.Config) { c.ARICheckMax = time.Second })
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: "ari", Issuer: dev.IssuerName, DNSNames: []string{"ari.acmeq.test"}}); err != nil {
		t.Fatal(err)
	}
	c := waitIssued(t, ctx, env, "ari", 1, time.Minute)
	ri := c.Status.RenewalInfo
	if ri == nil || ri.WindowStart.IsZero() || c.Status.RenewalTime == nil {
		t.Fatalf("certificate status has no ARI window: %+v", c.Status)
	}
	// A third of an hour before expiry is inside Pebble's default window.
	if rt := *c.Status.RenewalTime; rt.Before(ri.WindowStart) || rt.After(ri.WindowEnd) {
		t.Errorf("renewal time %s outside the ARI window %s..%s", rt, ri.WindowStart, ri.WindowEnd)
	}
	old, _, err := storedPair(ctx, env, dev.Namespace, "ari")
	if err != nil {
		t.Fatal(err)
	}
	oldID, err := acmeclient.CertID(old)
	if err != nil || oldID != ri.CertID {
		t.Fatalf("CertID = %q, %v; status says %q", oldID, err, ri.CertID)
	}

	now := time.Now().UTC()
	window := fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q},"explanationURL":"https://ca.test/incident"}`,
		now.Add(-time.Minute).Format(time.RFC3339), now.Add(2*time.Second).Format(time.RFC3339))
	setRenewalInfo(t, env, old, window)

	c = waitIssued(t, ctx, env, "ari", 2, 30*time.Second)
	renewed, _, err := storedPair(ctx, env, dev.Namespace, "ari")
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("renewed certificate has the old serial")
	}
	cr := &messages.CertificateRequest{}
	if err := env.Store.Get(ctx, dev.Namespace, worker.RequestName("ari", 2), cr); err != nil {
		t.Fatal(err)
	}
	if cr.Spec.Replaces != oldID {
		t.Errorf("request %s replaces %q, want %q", cr.Metadata.Name, cr.Spec.Replaces, oldID)
	}
	orders, err := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range orders {
		if o.(*messages.Order).Spec.Replaces == oldID {
			found = true
		}
	}
	if !found {
		t.Errorf("no order carries replaces=%s", oldID)
	}
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindCertificate, dev.Namespace, "ari")})
	if err != nil {
		t.Fatal(err)
	}
	renewing := false
	for _, e := range evs {
		if e.Reason == messages.ReasonIssuing && strings.HasPrefix(e.Message, "Renewing certificate as renewal was scheduled at") {
			renewing = true
		}
	}
	if !renewing {
		t.Errorf("no Issuing event says it is renewing: %+v", evs)
	}
	t.Logf("window moved at %s; renewed (revision %d) with replaces=%s", now.Format(time.TimeOnly), c.Status.Revision, oldID)
}

// setRenewalInfo sets Pebble's ARI answer for a certificate (its
// management API).
func setRenewalInfo(t *testing.T, env *dev.Env, leaf *x509.Certificate, window string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{
		"Certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		"ARIResponse": window,
	})
	res, err := env.Stack.Pebble.HTTPClient().Post(env.Stack.Pebble.ManagementURL+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("set-renewal-info: %s", res.Status)
	}
}

// Each change of a field the certificate is issued for re-issues it exactly
// once; with rotationPolicy Never the key is kept.
func TestSpecChangesReissueOnce(t *testing.T) {
	env, ctx := setupRenewal(t, 2, time.Hour, stack.PebbleConfig{}, nil)
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "second"); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitIssuerReady(ctx, dev.Namespace, "second"); err != nil {
		t.Fatal(err)
	}
	cert := &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "spec", Namespace: dev.Namespace},
		Spec: messages.CertificateSpec{SecretName: "spec", DNSNames: []string{"spec.acmeq.test"}, IssuerRef: messages.IssuerRef{Name: dev.IssuerName},
			PrivateKey: &messages.PrivateKeySpec{RotationPolicy: messages.RotationPolicyNever}},
	}
	apply := func() {
		t.Helper()
		if _, err := env.Producer.Apply(ctx, cert); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	c := waitIssued(t, ctx, env, "spec", 1, time.Minute)
	_, key, err := storedPair(ctx, env, dev.Namespace, "spec")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		field  string
		change func(*messages.CertificateSpec)
		check  func(*x509.Certificate, crypto.PublicKey) error
	}{
		{"dnsNames", func(s *messages.CertificateSpec) { s.DNSNames = append(s.DNSNames, "www.spec.acmeq.test") },
			func(l *x509.Certificate, k crypto.PublicKey) error {
				if len(l.DNSNames) != 2 {
					return fmt.Errorf("names %v", l.DNSNames)
				}
				if !k.(interface{ Equal(crypto.PublicKey) bool }).Equal(key) {
					return errors.New("rotationPolicy Never, but the key changed")
				}
				return nil
			}},
		{"commonName", func(s *messages.CertificateSpec) { s.CommonName = "spec.acmeq.test" }, nil},
		{"duration", func(s *messages.CertificateSpec) { s.Duration = &messages.Duration{Duration: 30 * time.Minute} },
			func(l *x509.Certificate, _ crypto.PublicKey) error {
				if life := l.NotAfter.Sub(l.NotBefore); life > 31*time.Minute || life < 29*time.Minute {
					return fmt.Errorf("lifetime %s, want 30m", life)
				}
				return nil
			}},
		{"issuerRef", func(s *messages.CertificateSpec) { s.IssuerRef.Name = "second" }, nil},
		{"privateKey.encoding", func(s *messages.CertificateSpec) { s.PrivateKey.Encoding = messages.KeyEncodingPKCS8 }, nil},
		{"privateKey.algorithm", func(s *messages.CertificateSpec) {
			s.PrivateKey.Algorithm, s.PrivateKey.Size, s.PrivateKey.RotationPolicy = messages.KeyAlgorithmRSA, 2048, messages.RotationPolicyAlways
		}, func(l *x509.Certificate, _ crypto.PublicKey) error {
			if l.PublicKeyAlgorithm != x509.RSA {
				return fmt.Errorf("key algorithm %s", l.PublicKeyAlgorithm)
			}
			return nil
		}},
		{"secretName", func(s *messages.CertificateSpec) { s.SecretName = "spec-moved" }, nil},
	}
	rev := c.Status.Revision
	for _, st := range steps {
		st.change(&cert.Spec)
		apply()
		waitIssued(t, ctx, env, "spec", rev+1, time.Minute)
		waitQueueDrained(t, ctx, env)
		c = certificate(t, ctx, env, "spec")
		if c.Status.Revision != rev+1 {
			t.Errorf("changing %s: revision %d, want exactly one re-issue (%d)", st.field, c.Status.Revision, rev+1)
		}
		rev = c.Status.Revision
		leaf, k, err := storedPair(ctx, env, dev.Namespace, cert.Spec.SecretName)
		if err != nil {
			t.Fatalf("changing %s: %v", st.field, err)
		}
		if st.check != nil {
			if err := st.check(leaf, k); err != nil {
				t.Errorf("changing %s: %v", st.field, err)
			}
		}
		t.Logf("changed %s: revision %d, serial %x", st.field, rev, leaf.SerialNumber)
	}
	// Applying the same spec again changes nothing.
	apply()
	waitQueueDrained(t, ctx, env)
	if c = certificate(t, ctx, env, "spec"); c.Status.Revision != rev {
		t.Errorf("re-applying an unchanged spec re-issued: revision %d, want %d", c.Status.Revision, rev)
	}
}

// A name the CA always refuses: attempts back off 1x, 2x, 4x ... the base
// (scaled from cert-manager's 1h here), up to the cap; `acmeq renew` resets
// the back-off and tries at once.
func TestFailureBackoffSchedule(t *testing.T) {
	// Schedules fire with a precision of a second: the scaled back-off
	// counts in seconds.
	const base, limit = time.Second, 4 * time.Second
	env, ctx := setupRenewal(t, 1, time.Hour, stack.PebbleConfig{BlockedDomains: []string{"refused.acmeq.test"}},
		func(c *worker.Config) { c.FailureBackoff, c.FailureBackoffMax = base, limit })
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: "refused", Issuer: dev.IssuerName, DNSNames: []string{"www.refused.acmeq.test"}}); err != nil {
		t.Fatal(err)
	}
	// The failures recorded, in order: attempts n and their times.
	var failures []time.Time
	stacktest.Eventually(t, 60*time.Second, func() error {
		c := certificate(t, ctx, env, "refused")
		st := c.Status
		if st.FailedIssuanceAttempts > len(failures) && st.LastFailureTime != nil {
			failures = append(failures, *st.LastFailureTime)
		}
		if len(failures) < 5 {
			return fmt.Errorf("%d failures recorded", len(failures))
		}
		return nil
	})
	c := certificate(t, ctx, env, "refused")
	if cond := messages.GetCondition(c.Status.Conditions, worker.ConditionIssuing); cond == nil || cond.Reason != messages.ReasonFailed || !strings.Contains(cond.Message, "rejectedIdentifier") {
		t.Errorf("Issuing condition = %+v, want Failed with the CA's problem", cond)
	}
	// Gap i is the back-off after failure i (from 1): base * 2^(i-1),
	// capped, plus the time the attempt itself takes.
	for i := 1; i < len(failures); i++ {
		gap := failures[i].Sub(failures[i-1])
		want := worker.FailureBackoff(i, base, limit)
		if gap < want || gap > want+1500*time.Millisecond {
			t.Errorf("failure %d came %s after failure %d; want the back-off %s (+ under 1.5s: the schedule's second and the attempt)", i+1, gap.Round(time.Millisecond), i, want)
		}
		t.Logf("failure %d: +%s (back-off %s)", i+1, gap.Round(time.Millisecond), want)
	}

	// acmeq renew: attempts start again at once, from zero.
	before := certificate(t, ctx, env, "refused").Status
	if err := env.Producer.Renew(ctx, dev.Namespace, "refused"); err != nil {
		t.Fatal(err)
	}
	renewedAt := time.Now()
	stacktest.Eventually(t, 10*time.Second, func() error {
		st := certificate(t, ctx, env, "refused").Status
		if st.LastFailureTime == nil || !st.LastFailureTime.After(*before.LastFailureTime) || st.FailedIssuanceAttempts != 1 {
			return fmt.Errorf("after renew: attempts %d, last failure %v", st.FailedIssuanceAttempts, st.LastFailureTime)
		}
		if d := st.LastFailureTime.Sub(renewedAt); d > 2*time.Second {
			return fmt.Errorf("the renewal was tried %s after acmeq renew, want at once", d)
		}
		return nil
	})
}

// After many renewals the store holds at most revisionHistoryLimit requests
// and orders of the certificate, and no finished challenge.
func TestRevisionHistoryIsBounded(t *testing.T) {
	env, ctx := setupRenewal(t, 2, time.Hour, stack.PebbleConfig{}, nil)
	limit := 2
	cert := &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "hist", Namespace: dev.Namespace},
		Spec:     messages.CertificateSpec{DNSNames: []string{"hist.acmeq.test"}, IssuerRef: messages.IssuerRef{Name: dev.IssuerName}, RevisionHistoryLimit: &limit},
	}
	if _, err := env.Producer.Apply(ctx, cert); err != nil {
		t.Fatal(err)
	}
	waitIssued(t, ctx, env, "hist", 1, time.Minute)
	const renewals = 20
	for i := 2; i <= renewals+1; i++ {
		if err := env.Producer.Renew(ctx, dev.Namespace, "hist"); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
		waitIssued(t, ctx, env, "hist", i, time.Minute)
	}
	waitQueueDrained(t, ctx, env)
	count := func(k messages.Kind) int {
		objs, err := env.Store.List(ctx, k, dev.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		return len(objs)
	}
	if n := count(messages.KindCertificateRequest); n > limit {
		t.Errorf("%d certificate requests after %d renewals, want at most %d", n, renewals, limit)
	}
	if n := count(messages.KindOrder); n > limit {
		t.Errorf("%d orders after %d renewals, want at most %d", n, renewals, limit)
	}
	if n := count(messages.KindChallenge); n != 0 {
		t.Errorf("%d challenges left, want none", n)
	}
	// The Secrets: the certificate's, the account key, and the chains of
	// the requests kept; no temporary keys.
	secrets, err := env.Store.List(ctx, messages.KindSecret, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range secrets {
		names = append(names, s.GetMeta().Name)
	}
	if len(secrets) > 2+limit {
		t.Errorf("secrets %v: want at most the certificate's, the account key and %d chains", names, limit)
	}
	t.Logf("after %d renewals: %d requests, %d orders, secrets %v", renewals, count(messages.KindCertificateRequest), count(messages.KindOrder), names)
}

// A CA that will not take a renewal's "replaces" (here: a CertID it has
// never issued, answered 500 "could not find an order for the given
// certificate", as Pebble also answers for its own certificates whose
// serial has an odd number of hex digits) still gets the renewal: the
// order is sent again without "replaces".
func TestRenewalWhenTheCARefusesReplaces(t *testing.T) {
	env, ctx := setupRenewal(t, 2, time.Hour, stack.PebbleConfig{}, nil)
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: "unknown-id", Issuer: dev.IssuerName, DNSNames: []string{"unknown-id.acmeq.test"}}); err != nil {
		t.Fatal(err)
	}
	first := waitIssued(t, ctx, env, "unknown-id", 1, time.Minute)
	if first.Status.RenewalInfo == nil {
		t.Fatal("no ARI status: Pebble offers ARI")
	}
	aki, _, ok := strings.Cut(first.Status.RenewalInfo.CertID, ".")
	if !ok {
		t.Fatalf("certID %q is not AKI.serial", first.Status.RenewalInfo.CertID)
	}
	bogus := aki + "." + base64.RawURLEncoding.EncodeToString([]byte{0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	first.Status.RenewalInfo.CertID = bogus
	if err := env.Store.Update(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := env.Producer.Renew(ctx, dev.Namespace, "unknown-id"); err != nil {
		t.Fatal(err)
	}
	renewed := waitIssued(t, ctx, env, "unknown-id", 2, 30*time.Second)
	if renewed.Status.SerialNumber == first.Status.SerialNumber {
		t.Fatalf("serial %s unchanged after the renewal", renewed.Status.SerialNumber)
	}
	cr := &messages.CertificateRequest{}
	if err := env.Store.Get(ctx, dev.Namespace, worker.RequestName("unknown-id", 2), cr); err != nil {
		t.Fatal(err)
	}
	if cr.Spec.Replaces != bogus {
		t.Fatalf("the renewal's request replaces %q, want the CertID the CA refuses %q (else this test proves nothing)", cr.Spec.Replaces, bogus)
	}
}
