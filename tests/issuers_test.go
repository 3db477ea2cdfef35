package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

// pebbleAccounts counts the accounts Pebble creates, from its log ("There
// are now N accounts in memory", one line per new account).
type pebbleAccounts struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	last int
}

var accountsLine = regexp.MustCompile(`There are now (\d+) accounts in memory`)

func (p *pebbleAccounts) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for {
		line, err := p.buf.ReadString('\n')
		if err != nil {
			// An unfinished line: keep it for the next write.
			p.buf.Reset()
			p.buf.WriteString(line)
			return len(b), nil
		}
		if m := accountsLine.FindStringSubmatch(line); m != nil {
			p.last, _ = strconv.Atoi(m[1])
		}
	}
}

// count is the number of accounts Pebble holds.
func (p *pebbleAccounts) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// clusterCert is a Certificate of namespace ns for one name, issued by the
// ClusterIssuer issuer.
func clusterCert(ns, name, dnsName, issuer string) *messages.Certificate {
	return &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: name, Namespace: ns},
		Spec: messages.CertificateSpec{
			DNSNames:  []string{dnsName},
			IssuerRef: messages.IssuerRef{Name: issuer, Kind: string(messages.KindClusterIssuer)},
		},
	}
}

// waitIssuedVerified waits until the Certificates (namespace, name) are Ready and
// checks each chain against Pebble's root.
func waitIssuedVerified(t *testing.T, ctx context.Context, env *dev.Env, certs ...*messages.Certificate) {
	t.Helper()
	root, err := env.Stack.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		m := c.Metadata
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := env.WaitCertificates(wctx, m.Namespace, []string{m.Name})
		cancel()
		if err != nil {
			dumpUnfinished(t, ctx, env)
			t.Fatalf("waiting for certificate %s/%s (if Pebble stopped answering, this is a Pebble hang): %v", m.Namespace, m.Name, err)
		}
		if !res[m.Name].Ready {
			t.Fatalf("certificate %s/%s not issued: %s", m.Namespace, m.Name, res[m.Name].Message)
		}
		data, err := env.Store.GetSecret(ctx, m.Namespace, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.VerifyChain(data[messages.SecretTLSCert], root, c.Spec.DNSNames); err != nil {
			t.Errorf("certificate %s/%s: %v", m.Namespace, m.Name, err)
		}
	}
}

// A ClusterIssuer used from three namespaces issues real certificates in
// each with one ACME account: Pebble creates exactly one account for it,
// its key is stored once, in the cluster resource namespace (claimed by
// the ClusterIssuer), and in no tenant namespace.
func TestClusterIssuerThreeNamespaces(t *testing.T) {
	accounts := &pebbleAccounts{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 3, PebbleLog: accounts})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	before := accounts.count() // the dev Issuer's
	if before != 1 {
		t.Fatalf("Pebble holds %d accounts after start, want 1 (the dev Issuer's)", before)
	}
	if err := env.CreateClusterIssuer(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	var certs []*messages.Certificate
	for _, ns := range []string{"tenant-a", "tenant-b", "tenant-c"} {
		c := clusterCert(ns, "site", "site."+ns+".acmeq.test", "shared")
		if _, err := env.Producer.Apply(ctx, c); err != nil {
			t.Fatalf("apply %s/site: %v", ns, err)
		}
		certs = append(certs, c)
	}
	waitIssuedVerified(t, ctx, env, certs...)

	if got := accounts.count(); got != before+1 {
		t.Errorf("Pebble holds %d accounts, want %d: the ClusterIssuer registered more than one", got, before+1)
	}
	ci := messages.NewIssuer(messages.KindClusterIssuer)
	if err := env.Store.Get(ctx, "", "shared", ci); err != nil {
		t.Fatal(err)
	}
	if ci.Status.ACME == nil || !strings.Contains(ci.Status.ACME.URI, "/my-account/") {
		t.Errorf("ClusterIssuer status.acme = %+v, want its account URI", ci.Status.ACME)
	}
	owner, err := env.Store.SecretOwner(ctx, worker.ClusterResourceNamespaceDefault, "shared-account-key")
	if err != nil || owner.Kind != messages.KindClusterIssuer || owner.Name != "shared" || owner.Namespace != "" {
		t.Errorf("account key %s/shared-account-key: owner %+v, %v", worker.ClusterResourceNamespaceDefault, owner, err)
	}
	for _, ns := range []string{"tenant-a", "tenant-b", "tenant-c", dev.Namespace} {
		if ok, err := env.Store.Exists(ctx, messages.KindSecret, ns, "shared-account-key"); err != nil || ok {
			t.Errorf("an account key of the ClusterIssuer in namespace %s: %v, %v", ns, ok, err)
		}
	}
	// Its events are its own, in no namespace.
	// (Published after the status write that made it Ready.)
	stacktest.Eventually(t, 10*time.Second, func() error {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindClusterIssuer, "", "shared")})
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].Reason != messages.ReasonACMEAccountRegistered || evs[0].InvolvedObject.Namespace != "" {
			return fmt.Errorf("ClusterIssuer events: %+v", evs)
		}
		return nil
	})
	// A Certificate naming the ClusterIssuer as an Issuer of its namespace
	// is refused: there is no such Issuer.
	bad := clusterCert("tenant-a", "wrong-kind", "w.acmeq.test", "shared")
	bad.Spec.IssuerRef.Kind = ""
	if _, err := env.Producer.Apply(ctx, bad); err == nil || !strings.Contains(err.Error(), `spec.issuerRef.name: issuer "shared" not found in namespace "tenant-a"`) {
		t.Errorf("Certificate naming Issuer shared in tenant-a: %v", err)
	}
}

// eabKey is a random External Account Binding HMAC key, base64url as CAs
// hand it out.
func eabKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(k)
}

// setupEAB starts the stack with a Pebble that requires External Account
// Binding and knows one key, kid-1.
func setupEAB(t *testing.T) (*dev.Env, context.Context, string) {
	t.Helper()
	key := eabKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 2,
		Pebble: stack.PebbleConfig{RequireEAB: true, EABKeys: map[string]string{"kid-1": key}}})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	return env, ctx, key
}

// issuerCondition waits until the issuer's Ready condition has status and
// reason and its message contains text; it returns the condition.
func issuerCondition(t *testing.T, ctx context.Context, env *dev.Env, kind messages.Kind, ns, name string, status messages.ConditionStatus, reason, text string) messages.Condition {
	t.Helper()
	var got messages.Condition
	stacktest.Eventually(t, 30*time.Second, func() error {
		iss := messages.NewIssuer(kind)
		if err := env.Store.Get(ctx, ns, name, iss); err != nil {
			return err
		}
		c := messages.GetCondition(iss.Status.Conditions, messages.ConditionReady)
		if c == nil {
			return fmt.Errorf("%s %s/%s has no Ready condition", kind, ns, name)
		}
		got = *c
		if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, text) {
			return fmt.Errorf("%s %s/%s Ready=%s %s: %q; want %s %s containing %q", kind, ns, name, c.Status, c.Reason, c.Message, status, reason, text)
		}
		return nil
	})
	return got
}

// warningEvent checks that a Warning event with reason and message was
// recorded for the issuer.
func warningEvent(t *testing.T, ctx context.Context, env *dev.Env, kind messages.Kind, ns, name, reason, msg string) {
	t.Helper()
	// Events are published after the status write that makes them true,
	// so the condition the caller saw can come a moment before its event.
	stacktest.Eventually(t, 10*time.Second, func() error {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(kind, ns, name)})
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == messages.EventWarning && e.Reason == reason && e.Message == msg {
				return nil
			}
		}
		return fmt.Errorf("%s %s/%s: no Warning %s event %q among %+v", kind, ns, name, reason, msg, evs)
	})
}

// External Account Binding against a Pebble that requires it: an Issuer
// without a binding is refused with the CA's externalAccountRequired; one
// whose Secret is missing waits, with a reason that says so; a wrong HMAC
// key is refused with unauthorized; correcting the Secret makes it Ready
// at once, and it issues a certificate.
func TestEABRegistration(t *testing.T) {
	env, ctx, key := setupEAB(t)
	ns := "tenant-a"

	// No binding: the CA's problem in the condition and an event.
	plain := env.ClusterIssuerFor("plain") // its spec, as an Issuer of ns
	plain.TypeMeta = messages.TypeMeta{}
	plain.Metadata.Namespace = ns
	if _, err := env.Producer.Apply(ctx, plain); err != nil {
		t.Fatal(err)
	}
	c := issuerCondition(t, ctx, env, messages.KindIssuer, ns, "plain", messages.ConditionFalse,
		messages.ReasonErrRegisterACMEAccount, "urn:ietf:params:acme:error:externalAccountRequired")
	warningEvent(t, ctx, env, messages.KindIssuer, ns, "plain", messages.ReasonErrRegisterACMEAccount, c.Message)
	if !strings.HasPrefix(c.Message, "Failed to register ACME account: ") {
		t.Errorf("message %q: want cert-manager's wording", c.Message)
	}

	// A binding whose Secret does not exist yet.
	iss := env.ClusterIssuerFor("zerossl")
	iss.TypeMeta = messages.TypeMeta{}
	iss.Metadata.Namespace = ns
	iss.Spec.ACME.ExternalAccountBinding = &messages.ExternalAccountBinding{
		KeyID: "kid-1", KeySecretRef: messages.SecretKeySelector{Name: "zerossl-eab", Key: "secret"}}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		t.Fatal(err)
	}
	c = issuerCondition(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ConditionFalse,
		messages.ReasonErrRegisterACMEAccount, `failed to get External Account Binding key from Secret "zerossl-eab": the Secret does not exist in namespace "tenant-a"`)
	warningEvent(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ReasonErrRegisterACMEAccount, c.Message)

	// The Secret, without the key the binding names.
	if err := env.Producer.PutSecret(ctx, ns, "zerossl-eab", map[string][]byte{"hmac": []byte(key)}); err != nil {
		t.Fatal(err)
	}
	issuerCondition(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ConditionFalse,
		messages.ReasonErrRegisterACMEAccount, `no data for key "secret" in Secret "zerossl-eab" of namespace "tenant-a"`)

	// A wrong HMAC key: the CA refuses the MAC (unauthorized). The issuer
	// is woken by the write (PutSecret); after the CA's refusal nothing
	// but the next write wakes it.
	if err := env.Producer.PutSecret(ctx, ns, "zerossl-eab", map[string][]byte{"secret": []byte(eabKey(t))}); err != nil {
		t.Fatal(err)
	}
	c = issuerCondition(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ConditionFalse,
		messages.ReasonErrRegisterACMEAccount, "urn:ietf:params:acme:error:unauthorized")
	warningEvent(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ReasonErrRegisterACMEAccount, c.Message)

	// Corrected: Ready, and it issues.
	if err := env.Producer.PutSecret(ctx, ns, "zerossl-eab", map[string][]byte{"secret": []byte(key)}); err != nil {
		t.Fatal(err)
	}
	// (WaitIssuerReady would stop at the False condition still stored.)
	issuerCondition(t, ctx, env, messages.KindIssuer, ns, "zerossl", messages.ConditionTrue,
		messages.ReasonACMEAccountRegistered, "The ACME account was registered with the ACME server")
	cert := clusterCert(ns, "shop", "shop.acmeq.test", "zerossl")
	cert.Spec.IssuerRef.Kind = ""
	if _, err := env.Producer.Apply(ctx, cert); err != nil {
		t.Fatal(err)
	}
	waitIssuedVerified(t, ctx, env, cert)
}

// A ClusterIssuer with a binding reads its HMAC key in the cluster
// resource namespace, and issues for another namespace.
func TestEABClusterIssuer(t *testing.T) {
	env, ctx, key := setupEAB(t)
	crns := worker.ClusterResourceNamespaceDefault
	if err := env.Producer.PutSecret(ctx, crns, "gts-eab", map[string][]byte{"secret": []byte(key + "==")}); err != nil {
		t.Fatal(err)
	}
	// The same Secret name in a tenant namespace is not read.
	if err := env.Producer.PutSecret(ctx, "tenant-b", "gts-eab", map[string][]byte{"secret": []byte(eabKey(t))}); err != nil {
		t.Fatal(err)
	}
	ci := env.ClusterIssuerFor("gts")
	ci.Spec.ACME.ExternalAccountBinding = &messages.ExternalAccountBinding{
		KeyID: "kid-1", KeySecretRef: messages.SecretKeySelector{Name: "gts-eab", Key: "secret"}, KeyAlgorithm: "HS256"}
	if _, err := env.Producer.Apply(ctx, ci); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitClusterIssuerReady(ctx, "gts"); err != nil {
		t.Fatal(err)
	}
	cert := clusterCert("tenant-b", "api", "api.acmeq.test", "gts")
	if _, err := env.Producer.Apply(ctx, cert); err != nil {
		t.Fatal(err)
	}
	waitIssuedVerified(t, ctx, env, cert)
}
