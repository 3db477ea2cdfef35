package tests

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/solvers"
	"github.com/acmeq/acmeq/solvers/dns01"
	"github.com/acmeq/acmeq/worker"
)

// setupDNS01 starts the whole stack with a real BIND for dev.DNS01Zone,
// which Pebble's VA asks for that zone, and the issuer dev-dns whose
// rfc2136 solver updates it.
func setupDNS01(t *testing.T) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 3, DNS01: true})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	return env, ctx
}

// bindTXT asks the dev BIND, over TCP, for the TXT values at name.
func bindTXT(t *testing.T, env *dev.Env, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, env.DNS01.BIND.Addr)
	if err != nil {
		t.Fatalf("TXT query for %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		t.Fatalf("TXT query for %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var values []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			values = append(values, strings.Join(txt.Txt, ""))
		}
	}
	return values
}

// waitReady requests the certificates and waits until all are Ready.
func waitReady(t *testing.T, ctx context.Context, env *dev.Env, reqs []producer.RequestOptions) {
	t.Helper()
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatalf("request %s: %v", r.Name, err)
		}
		names[i] = r.Name
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("waiting for certificates: %v", err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s not issued: %s", n, res[n].Message)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// orderOf returns the order of revision 1 of a certificate.
func orderOf(t *testing.T, ctx context.Context, env *dev.Env, cert string) *messages.Order {
	t.Helper()
	cr := worker.RequestName(cert, 1)
	orders, err := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		if ow := o.GetMeta().OwnerReference; ow != nil && ow.Name == cr {
			return o.(*messages.Order)
		}
	}
	t.Fatalf("no order owned by %s", cr)
	return nil
}

func TestDNS01Issuance(t *testing.T) {
	env, ctx := setupDNS01(t)
	bind := env.DNS01.BIND

	// Another client's value at a record name acmeq uses: acmeq adds and
	// removes its own values only, and Pebble accepts the right one among
	// several.
	other, err := dns01.NewRFC2136(dns01.RFC2136Config{
		Nameserver: bind.Addr, TSIGKeyName: bind.TSIGKeyName, TSIGAlgorithm: bind.TSIGAlgorithm, TSIGSecret: bind.TSIGSecret,
		Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	foreign := solvers.Challenge{DNSName: "b.dns.test", Type: solvers.TypeDNS01, Token: "t", Key: "another-acme-client"}
	if err := other.Present(ctx, foreign); err != nil {
		t.Fatalf("presenting the foreign value: %v", err)
	}

	reqs := []producer.RequestOptions{
		// A name and its wildcard: both are validated at
		// _acme-challenge.a.dns.test, each with its own value.
		{Namespace: dev.Namespace, Name: "dns-wild", Issuer: dev.DNS01IssuerName, DNSNames: []string{"a.dns.test", "*.a.dns.test"}},
		{Namespace: dev.Namespace, Name: "dns-b", Issuer: dev.DNS01IssuerName, DNSNames: []string{"b.dns.test"}},
		{Namespace: dev.Namespace, Name: "dns-c", Issuer: dev.DNS01IssuerName, DNSNames: []string{"c.dns.test", "www.c.dns.test", "*.c.dns.test"}},
	}
	waitReady(t, ctx, env, reqs)

	root, err := env.Stack.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		data, err := env.Store.GetSecret(ctx, dev.Namespace, r.Name)
		if err != nil {
			t.Fatalf("secret of %s: %v", r.Name, err)
		}
		// A wildcard is verified with a name it covers.
		var verify []string
		for _, n := range r.DNSNames {
			verify = append(verify, strings.Replace(n, "*.", "any.", 1))
		}
		leaf, err := dev.VerifyChain(data[messages.SecretTLSCert], root, verify)
		if err != nil {
			t.Errorf("certificate %s: %v", r.Name, err)
			continue
		}
		got, want := slices.Sorted(slices.Values(leaf.DNSNames)), slices.Sorted(slices.Values(r.DNSNames))
		if !slices.Equal(got, want) {
			t.Errorf("certificate %s names = %v, want %v", r.Name, got, want)
		}
	}

	// Every challenge was solved with DNS-01, with cert-manager's events.
	for _, r := range reqs {
		order := orderOf(t, ctx, env, r.Name)
		if order.Status.State != messages.StateValid || len(order.Status.Authorizations) != len(r.DNSNames) {
			t.Errorf("order %s: state %q, %d authorizations", order.Metadata.Name, order.Status.State, len(order.Status.Authorizations))
		}
		for i, a := range order.Status.Authorizations {
			name := worker.ChallengeName(order.Metadata.Name, i)
			// The challenge is removed with its final order; its events
			// say what it was and how it went.
			evs := assertReasons(t, ctx, env, messages.KindChallenge, name, []string{"Started", "Presented", "DomainVerified"})
			want := []string{
				"Challenge scheduled for processing",
				"Presented challenge using dns-01 challenge mechanism",
				fmt.Sprintf("Domain %q verified with %q validation", a.Identifier, "dns-01"),
			}
			for j, e := range evs {
				if e.Message != want[j] || e.Type != messages.EventNormal {
					t.Errorf("challenge %s event %d = %s %q, want Normal %q", name, j, e.Type, e.Message, want[j])
				}
			}
		}
	}

	// Cleaned up: acmeq's values are gone, the foreign one is kept.
	for _, n := range []string{"_acme-challenge.a.dns.test", "_acme-challenge.c.dns.test", "_acme-challenge.www.c.dns.test"} {
		if v := bindTXT(t, env, n); len(v) != 0 {
			t.Errorf("TXT %s after issuance = %q, want no records", n, v)
		}
	}
	if v := bindTXT(t, env, "_acme-challenge.b.dns.test"); !slices.Equal(v, []string{foreign.Key}) {
		t.Errorf("TXT _acme-challenge.b.dns.test after issuance = %q, want only the foreign %q", v, foreign.Key)
	}

	// The TSIG secret is nowhere in plain text: not in the Issuer (which
	// only names the Secret), and not in the sealed Secret.
	ent, err := env.Store.KV(messages.KindIssuer).Get(ctx, messages.Key(dev.Namespace, dev.DNS01IssuerName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ent.Value(), []byte(bind.TSIGSecret)) || !bytes.Contains(ent.Value(), []byte(`"tsigSecretSecretRef":{"name":"`+dev.DNS01SecretName+`","key":"`+dev.DNS01SecretKey+`"}`)) {
		t.Errorf("stored issuer: %s", ent.Value())
	}
	ent, err = env.Store.KV(messages.KindSecret).Get(ctx, messages.Key(dev.Namespace, dev.DNS01SecretName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ent.Value(), []byte(bind.TSIGSecret)) {
		t.Errorf("stored Secret holds the TSIG secret in plain text: %s", ent.Value())
	}

	backlog, inflight, err := env.Workers[0].Scheduler().Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if backlog != 0 || inflight != 0 {
		t.Errorf("scheduler after the run: backlog %d, in flight %d; want 0, 0", backlog, inflight)
	}
}

// A missing TSIG Secret is a presentation error that is retried, as in
// cert-manager, and heals once the Secret exists.
func TestDNS01MissingTSIGSecret(t *testing.T) {
	env, ctx := setupDNS01(t)
	bind := env.DNS01.BIND
	const secret = "late-tsig"
	solver := messages.ACMESolver{DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{
		Nameserver:          bind.Addr,
		TSIGKeyName:         bind.TSIGKeyName,
		TSIGSecretSecretRef: &messages.SecretKeySelector{Name: secret, Key: "key"},
	}}}
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "late", solver); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: "late", Issuer: "late", DNSNames: []string{"late.dns.test"}}); err != nil {
		t.Fatal(err)
	}

	want := fmt.Sprintf("Error presenting challenge: rfc2136: TSIG secret: Secret %q not found in namespace %q", secret, dev.Namespace)
	var chName string
	eventually(t, time.Minute, func() bool {
		objs, err := env.Store.List(ctx, messages.KindChallenge, dev.Namespace)
		if err != nil {
			return false
		}
		for _, o := range objs {
			if ch := o.(*messages.Challenge); ch.Spec.DNSName == "late.dns.test" && ch.Status.Reason == want {
				chName = ch.Metadata.Name
				return !ch.Status.Presented && ch.Status.Processing
			}
		}
		return false
	})
	// The event is recorded just after the status is written.
	eventually(t, 10*time.Second, func() bool {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindChallenge, dev.Namespace, chName)})
		return err == nil && slices.ContainsFunc(evs, func(e messages.Event) bool {
			return e.Reason == messages.ReasonPresentError && e.Type == messages.EventWarning && e.Message == want
		})
	})

	// A value with a trailing newline, as written from a file, works.
	if err := env.Store.PutSecret(ctx, dev.Namespace, secret, map[string][]byte{"key": []byte(bind.TSIGSecret + "\n")}, nil); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, []string{"late"})
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("waiting for the certificate after creating the Secret: %v", err)
	}
	if !res["late"].Ready {
		t.Fatalf("certificate late not issued: %s", res["late"].Message)
	}
	if v := bindTXT(t, env, "_acme-challenge.late.dns.test"); len(v) != 0 {
		t.Errorf("TXT _acme-challenge.late.dns.test after issuance = %q, want no records", v)
	}
}
