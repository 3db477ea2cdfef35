package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/solvers/dns01"
	"github.com/acmeq/acmeq/solvers/dns01/lego"
	"github.com/acmeq/acmeq/solvers/dns01/webhook"
	"github.com/acmeq/acmeq/worker"
)

// setupProviders starts the whole stack with the DNS-01 front (see
// dev.DNS01), with a short self-check interval: tests add their DNS
// servers to the front with Route.
func setupProviders(t *testing.T) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 3, DNS01: true, SelfCheckInterval: time.Second})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	recordChallenges(t, ctx, env)
	return env, ctx
}

// startBINDFor starts a BIND serving zones, stopped with the test.
func startBINDFor(t *testing.T, zones ...string) *stack.BIND {
	t.Helper()
	b, err := stack.StartBIND(t.TempDir(), zones...)
	if err != nil {
		t.Fatalf("start BIND: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

// recordsAt asks addr, over TCP, for the records of type qtype at name.
func recordsAt(t *testing.T, addr, name string, qtype uint16) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r.Answer
}

// challengesOf returns the challenges of the order of a certificate, as
// last stored: the workers remove finished challenges once their order is
// final, so setupProviders records every Challenge written.
func challengesOf(t *testing.T, ctx context.Context, env *dev.Env, cert string) []*messages.Challenge {
	t.Helper()
	order := orderOf(t, ctx, env, cert)
	v, ok := challengeLogs.Load(env)
	if !ok {
		t.Fatal("challengesOf: the stack was not started by setupProviders")
	}
	log := v.(*challengeLog)
	var out []*messages.Challenge
	for i := range order.Status.Authorizations {
		name := worker.ChallengeName(order.Metadata.Name, i)
		var ch *messages.Challenge
		stacktest.Eventually(t, 5*time.Second, func() error {
			if ch = log.get(dev.Namespace, name); ch == nil {
				return fmt.Errorf("challenge %s/%s was never stored", dev.Namespace, name)
			}
			return nil
		})
		out = append(out, ch)
	}
	return out
}

// challengeLogs maps a stack (*dev.Env) to its *challengeLog.
var challengeLogs sync.Map

// challengeLog is the last stored value of every Challenge of a stack.
type challengeLog struct {
	mu   sync.Mutex
	last map[string][]byte
}

// recordChallenges watches the Challenge bucket of env until ctx ends.
func recordChallenges(t *testing.T, ctx context.Context, env *dev.Env) {
	t.Helper()
	w, err := env.Store.KV(messages.KindChallenge).WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log := &challengeLog{last: map[string][]byte{}}
	challengeLogs.Store(env, log)
	t.Cleanup(func() { challengeLogs.Delete(env) })
	go func() {
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				log.mu.Lock()
				log.last[e.Key()] = e.Value()
				log.mu.Unlock()
			}
		}
	}()
}

func (l *challengeLog) get(ns, name string) *messages.Challenge {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.last {
		ch := &messages.Challenge{}
		if json.Unmarshal(b, ch) == nil && ch.Metadata.Namespace == ns && ch.Metadata.Name == name {
			return ch
		}
	}
	return nil
}

// hookService is a DNS bridge implementing acmeq's webhook contract: a
// real HTTP server on loopback. Below each path prefix it behaves as
// set with mode: "ok" hands the request to a webhook.Handler that writes
// into a real BIND with RFC 2136, "500" answers an error, "hang" never
// answers. It records the requests it served.
type hookService struct {
	srv    *httptest.Server
	token  string
	hmac   string
	mu     sync.Mutex
	modes  map[string]string
	served []hookCall
	done   chan struct{} // closed when the test ends: hanging requests return
}

type hookCall struct {
	Path string
	Req  webhook.Request
}

func startHookService(t *testing.T, b *stack.BIND) *hookService {
	t.Helper()
	rfc, err := dns01.NewRFC2136(dns01.RFC2136Config{Nameserver: b.Addr, TSIGKeyName: b.TSIGKeyName, TSIGSecret: b.TSIGSecret, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := &hookService{token: "bridge-token", hmac: "bridge-hmac-key", modes: map[string]string{}, done: make(chan struct{})}
	h := &webhook.Handler{Provider: rfc, BearerToken: s.token, HMACKey: []byte(s.hmac)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix := r.URL.Path[:strings.LastIndex(r.URL.Path, "/")]
		s.mu.Lock()
		mode := s.modes[prefix]
		s.mu.Unlock()
		switch mode {
		case "500":
			http.Error(w, "bridge: upstream DNS API unavailable", http.StatusInternalServerError)
			return
		case "hang":
			// Read the body first: only then does the server notice that
			// the client gave up and cancel the request's context.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code/100 == 2 {
			var req webhook.Request
			_ = json.Unmarshal(body, &req)
			s.mu.Lock()
			s.served = append(s.served, hookCall{Path: r.URL.Path, Req: req})
			s.mu.Unlock()
		}
	}))
	t.Cleanup(func() { close(s.done); s.srv.Close() })
	return s
}

func (s *hookService) setMode(prefix, mode string) {
	s.mu.Lock()
	s.modes[prefix] = mode
	s.mu.Unlock()
}

func (s *hookService) calls() []hookCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.served)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// hookSolver is a webhook solver of s below prefix, authenticated with the
// Secret "hook-auth", which it writes.
func hookSolver(t *testing.T, ctx context.Context, env *dev.Env, s *hookService, prefix, timeout string) messages.ACMESolver {
	t.Helper()
	if err := env.Store.PutSecret(ctx, dev.Namespace, "hook-auth", map[string][]byte{"token": []byte(s.token), "hmac": []byte(s.hmac + "\n")}, nil); err != nil {
		t.Fatal(err)
	}
	return messages.ACMESolver{DNS01: &messages.DNS01Solver{Webhook: &messages.WebhookProvider{
		URL:                  s.srv.URL + prefix,
		BearerTokenSecretRef: &messages.SecretKeySelector{Name: "hook-auth", Key: "token"},
		HMACSecretRef:        &messages.SecretKeySelector{Name: "hook-auth", Key: "hmac"},
		Timeout:              timeout,
	}}}
}

// assertDNS01Valid checks that every challenge of cert was solved with
// DNS-01 and cert-manager's events.
func assertDNS01Valid(t *testing.T, ctx context.Context, env *dev.Env, cert string) {
	t.Helper()
	for _, ch := range challengesOf(t, ctx, env, cert) {
		if ch.Spec.Type != messages.ChallengeTypeDNS01 || ch.Status.State != messages.StateValid || ch.Status.Presented {
			t.Errorf("challenge %s: type %s, state %s, presented %v", ch.Metadata.Name, ch.Spec.Type, ch.Status.State, ch.Status.Presented)
		}
		assertReasons(t, ctx, env, messages.KindChallenge, ch.Metadata.Name, []string{"Started", "Presented", "DomainVerified"})
	}
}

// A name and its wildcard through the webhook contract: the service got a
// present and a cleanup for each value, at the one record name they share.
func TestDNS01WebhookApexAndWildcard(t *testing.T) {
	env, ctx := setupProviders(t)
	b := startBINDFor(t, "hook.test")
	env.DNS01.Route("hook.test", b.Addr)
	svc := startHookService(t, b)
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "hook", hookSolver(t, ctx, env, svc, "/bridge", "")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ctx, env, []producer.RequestOptions{{Namespace: dev.Namespace, Name: "hook-wild", Issuer: "hook", DNSNames: []string{"a.hook.test", "*.a.hook.test"}}})
	assertDNS01Valid(t, ctx, env, "hook-wild")

	const fqdn = "_acme-challenge.a.hook.test."
	values := map[string]map[bool]string{} // path -> wildcard -> value
	for _, c := range svc.calls() {
		if c.Req.FQDN != fqdn || c.Req.Zone != "hook.test." || c.Req.DNSName != "a.hook.test" {
			t.Errorf("request %s %+v", c.Path, c.Req)
		}
		if values[c.Path] == nil {
			values[c.Path] = map[bool]string{}
		}
		values[c.Path][c.Req.Wildcard] = c.Req.Value
	}
	for _, p := range []string{"/bridge/present", "/bridge/cleanup"} {
		if len(values[p]) != 2 || values[p][true] == values[p][false] {
			t.Errorf("%s calls for the apex and the wildcard: %v", p, values[p])
		}
	}
	if v := stacktest.TXT(t, b.Addr, fqdn); len(v) != 0 {
		t.Errorf("TXT %s after issuance = %q", fqdn, v)
	}
}

// A name and its wildcard through lego's pdns provider into a real
// PowerDNS, configured with its API key from a sealed Secret.
func TestDNS01LegoPDNS(t *testing.T) {
	env, ctx := setupProviders(t)
	p, err := stack.StartPDNS(t.TempDir())
	if err != nil {
		t.Fatalf("start PowerDNS: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.CreateZone("pdns.test"); err != nil {
		t.Fatal(err)
	}
	env.DNS01.Route("pdns.test", p.Addr)
	if err := env.Store.PutSecret(ctx, dev.Namespace, "pdns-api", map[string][]byte{"PDNS_API_KEY": []byte(p.APIKey)}, nil); err != nil {
		t.Fatal(err)
	}
	solver := messages.ACMESolver{DNS01: &messages.DNS01Solver{Lego: &messages.LegoProvider{
		Provider: "pdns", Config: map[string]string{"PDNS_API_URL": p.APIURL, "PDNS_TTL": "60"},
		CredentialsSecretRef: &messages.SecretRef{Name: "pdns-api"},
	}}}
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "pdns", solver); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ctx, env, []producer.RequestOptions{{Namespace: dev.Namespace, Name: "pdns-wild", Issuer: "pdns", DNSNames: []string{"pdns.test", "*.pdns.test"}}})
	assertDNS01Valid(t, ctx, env, "pdns-wild")
	if v := stacktest.TXT(t, p.Addr, "_acme-challenge.pdns.test."); len(v) != 0 {
		t.Errorf("TXT after issuance = %q", v)
	}
	// The API key is nowhere in plain text in the store.
	ent, err := env.Store.KV(messages.KindIssuer).Get(ctx, messages.Key(dev.Namespace, "pdns"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ent.Value()), p.APIKey) {
		t.Errorf("the stored Issuer holds the API key: %s", ent.Value())
	}
}

// A customer delegates _acme-challenge.shop.customer.test by CNAME to a
// name in the platform's zone (another nameserver); the platform's rfc2136
// solver follows it and writes there, and Pebble validates through the
// delegation.
func TestDNS01CNAMEDelegation(t *testing.T) {
	env, ctx := setupProviders(t)
	platform := startBINDFor(t, "acme-delegation.test")
	customer := startBINDFor(t, "customer.test")
	env.DNS01.Route("acme-delegation.test", platform.Addr)
	env.DNS01.Route("customer.test", customer.Addr)
	for _, n := range []string{"shop", "blog"} {
		cname := &dns.CNAME{Hdr: dns.RR_Header{Name: "_acme-challenge." + n + ".customer.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60},
			Target: n + ".acme-delegation.test."}
		if err := customer.AddRecord("customer.test.", cname); err != nil {
			t.Fatalf("customer's CNAME: %v", err)
		}
	}
	if err := env.Store.PutSecret(ctx, dev.Namespace, "platform-tsig", map[string][]byte{"secret": []byte(platform.TSIGSecret)}, nil); err != nil {
		t.Fatal(err)
	}
	solver := messages.ACMESolver{
		Selector: &messages.SolverSelector{DNSZones: []string{"customer.test"}},
		DNS01: &messages.DNS01Solver{CNAMEStrategy: messages.CNAMEStrategyFollow, RFC2136: &messages.RFC2136Provider{
			Nameserver: platform.Addr, TSIGKeyName: platform.TSIGKeyName,
			TSIGSecretSecretRef: &messages.SecretKeySelector{Name: "platform-tsig", Key: "secret"},
		}},
	}
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "platform", solver); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ctx, env, []producer.RequestOptions{
		{Namespace: dev.Namespace, Name: "shop", Issuer: "platform", DNSNames: []string{"shop.customer.test", "*.shop.customer.test"}},
		{Namespace: dev.Namespace, Name: "blog", Issuer: "platform", DNSNames: []string{"blog.customer.test"}},
	})
	assertDNS01Valid(t, ctx, env, "shop")
	assertDNS01Valid(t, ctx, env, "blog")
	// Nothing was written into the customer's zone: its challenge names
	// are still the CNAMEs alone; the platform's records are cleaned up.
	for _, n := range []string{"shop", "blog"} {
		rrs := recordsAt(t, customer.Addr, "_acme-challenge."+n+".customer.test.", dns.TypeTXT)
		if len(rrs) != 1 || rrs[0].Header().Rrtype != dns.TypeCNAME {
			t.Errorf("customer's _acme-challenge.%s records = %v, want the CNAME only", n, rrs)
		}
		if v := stacktest.TXT(t, platform.Addr, n+".acme-delegation.test."); len(v) != 0 {
			t.Errorf("platform TXT %s after issuance = %q", n, v)
		}
	}
}

// One order whose names are split between HTTP-01 and DNS-01 by
// selectors: the most specific solver wins (a dnsZones match over the
// solver without selector listed first; a matchLabels match for the
// Certificate's labels), as in cert-manager. This needs the order
// reconciler to pick solvers with solvers.Select.
func TestDNS01SplitBySelectors(t *testing.T) {
	env, ctx := setupProviders(t)
	dnsSolver, err := env.DNS01SolverIn(ctx, dev.Namespace) // selector: dnsZones dns.test
	if err != nil {
		t.Fatal(err)
	}
	labelled := dnsSolver
	labelled.Selector = &messages.SolverSelector{MatchLabels: map[string]string{"acmeq.io/solver": "dns"}, DNSNames: []string{"*.l.dns.test"}}
	solvers := []messages.ACMESolver{
		{HTTP01: &messages.HTTP01Solver{}}, // no selector: the least specific
		dnsSolver,
		labelled,
	}
	if err := env.CreateIssuerIn(ctx, dev.Namespace, "split", solvers...); err != nil {
		t.Fatal(err)
	}
	cert := producer.CertificateFromOptions(producer.RequestOptions{Namespace: dev.Namespace, Name: "split", Issuer: "split",
		DNSNames: []string{"web.split.test", "a.dns.test", "*.a.dns.test", "*.l.dns.test"}})
	cert.Metadata.Labels = map[string]string{"acmeq.io/solver": "dns"}
	if _, err := env.Producer.Apply(ctx, cert); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, []string{"split"})
	if err != nil || !res["split"].Ready {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("certificate split: %v %+v", err, res["split"])
	}
	want := map[string]string{
		"web.split.test": messages.ChallengeTypeHTTP01,
		"a.dns.test":     messages.ChallengeTypeDNS01,
		"*.a.dns.test":   messages.ChallengeTypeDNS01,
		"*.l.dns.test":   messages.ChallengeTypeDNS01,
	}
	for _, ch := range challengesOf(t, ctx, env, "split") {
		name := ch.Spec.DNSName
		if ch.Spec.Wildcard {
			name = "*." + name
		}
		if ch.Spec.Type != want[name] {
			t.Errorf("challenge for %s: type %s, want %s", name, ch.Spec.Type, want[name])
		}
		wantSel := &solvers[0]
		switch name {
		case "a.dns.test", "*.a.dns.test":
			wantSel = &solvers[1]
		case "*.l.dns.test":
			wantSel = &solvers[2]
		}
		got, _ := json.Marshal(ch.Spec.Solver.Selector)
		exp, _ := json.Marshal(wantSel.Selector)
		if string(got) != string(exp) {
			t.Errorf("challenge for %s: solver selector %s, want %s", name, got, exp)
		}
	}
}

// Bad input leaves the challenge pending, with the reason in its status
// and a PresentError event, and it recovers once fixed: a missing
// credentials Secret, a lego provider this worker does not know, a webhook
// that answers 500 or never answers, and a zone no nameserver serves.
func TestDNS01BadInputRecovers(t *testing.T) {
	env, ctx := setupProviders(t)
	b := startBINDFor(t, "hook.test", "late.test")
	env.DNS01.Route("hook.test", b.Addr)
	svc := startHookService(t, b)
	p, err := stack.StartPDNS(t.TempDir())
	if err != nil {
		t.Fatalf("start PowerDNS: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.CreateZone("pdns.test"); err != nil {
		t.Fatal(err)
	}
	env.DNS01.Route("pdns.test", p.Addr)
	if err := env.Store.PutSecret(ctx, dev.Namespace, "pdns-api", map[string][]byte{"PDNS_API_KEY": []byte(p.APIKey)}, nil); err != nil {
		t.Fatal(err)
	}
	legoSolver := func(provider, secret string) messages.ACMESolver {
		return messages.ACMESolver{DNS01: &messages.DNS01Solver{Lego: &messages.LegoProvider{
			Provider: provider, Config: map[string]string{"PDNS_API_URL": p.APIURL, "PDNS_TTL": "60"},
			CredentialsSecretRef: &messages.SecretRef{Name: secret},
		}}}
	}
	svc.setMode("/fail", "500")
	svc.setMode("/slow", "hang")

	cases := []struct {
		name   string
		solver messages.ACMESolver
		bypass bool // write the Issuer directly: apply would refuse it
		dnsNam string
		reason string // the whole reason, or its start when it ends with "..."
		fix    func()
	}{
		{name: "missing-secret", solver: legoSolver("pdns", "pdns-late"), dnsNam: "secret.pdns.test",
			reason: `Error presenting challenge: lego: pdns: credentials: Secret "pdns-late" not found in namespace "default"`,
			fix: func() {
				if err := env.Store.PutSecret(ctx, dev.Namespace, "pdns-late", map[string][]byte{"PDNS_API_KEY": []byte(p.APIKey)}, nil); err != nil {
					t.Error(err)
				}
			}},
		{name: "unknown-provider", solver: legoSolver("pdns-next", "pdns-api"), bypass: true, dnsNam: "next.pdns.test",
			reason: `Error presenting challenge: lego: unknown provider "pdns-next" (known: pdns)`,
			fix: func() {
				r, _ := lego.Lookup("pdns")
				lego.Register("pdns-next", r)
				// The registry is the process's: a second run (-count=2)
				// must find the provider unknown again.
				t.Cleanup(func() { lego.Unregister("pdns-next") })
			}},
		{name: "webhook-500", solver: hookSolver(t, ctx, env, svc, "/fail", ""), dnsNam: "fail.hook.test",
			reason: `Error presenting challenge: webhook: present ` + svc.srv.URL + `/fail/present: service answered 500 Internal Server Error: bridge: upstream DNS API unavailable`,
			fix:    func() { svc.setMode("/fail", "ok") }},
		{name: "webhook-timeout", solver: hookSolver(t, ctx, env, svc, "/slow", "1s"), dnsNam: "slow.hook.test",
			reason: `Error presenting challenge: webhook: present ` + svc.srv.URL + `/slow/present: no answer within 1s: context deadline exceeded`,
			fix:    func() { svc.setMode("/slow", "ok") }},
		{name: "zone-not-found", solver: hookSolver(t, ctx, env, svc, "/late", ""), dnsNam: "www.late.test",
			reason: `Error presenting challenge: webhook: present _acme-challenge.www.late.test.: no zone found for _acme-challenge.www.late.test.: no SOA record for it or a parent at ...`,
			fix:    func() { env.DNS01.Route("late.test", b.Addr) }},
	}
	pub := bus.New(env.JS, "test")
	for _, c := range cases {
		if !c.bypass {
			if err := env.CreateIssuerIn(ctx, dev.Namespace, c.name, c.solver); err != nil {
				t.Fatal(err)
			}
		} else {
			iss := &messages.Issuer{
				TypeMeta: messages.TypeMeta{APIVersion: messages.APIVersion, Kind: messages.KindIssuer},
				Metadata: messages.ObjectMeta{Name: c.name, Namespace: dev.Namespace},
				Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
					Server: env.Stack.Pebble.DirectoryURL, CABundle: string(env.Stack.Pebble.TLSCertPEM),
					PrivateKeySecretRef: messages.SecretRef{Name: c.name + "-account-key"},
					Solvers:             []messages.ACMESolver{c.solver},
				}},
			}
			if _, err := env.Producer.Apply(ctx, iss); err == nil || !strings.Contains(err.Error(), `unknown provider "pdns-next"`) {
				t.Fatalf("apply of an issuer with an unknown provider = %v, want it refused", err)
			}
			if err := env.Store.Create(ctx, iss); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(ctx, messages.Transition{Kind: messages.KindIssuer, Namespace: dev.Namespace, Name: c.name, Action: messages.ActionApply}, "1"); err != nil {
				t.Fatal(err)
			}
			if err := env.WaitIssuerReady(ctx, dev.Namespace, c.name); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: c.name, Issuer: c.name, DNSNames: []string{c.dnsNam}}); err != nil {
			t.Fatal(err)
		}
	}
	matches := func(got, want string) bool {
		if p, ok := strings.CutSuffix(want, "..."); ok {
			return strings.HasPrefix(got, p)
		}
		return got == want
	}
	for _, c := range cases {
		var ch *messages.Challenge
		seen := map[string]string{}
		deadline := time.Now().Add(time.Minute)
		for ch == nil {
			objs, err := env.Store.List(ctx, messages.KindChallenge, dev.Namespace)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if x := o.(*messages.Challenge); x.Spec.DNSName == c.dnsNam {
					seen[x.Metadata.Name] = x.Status.Reason
					if matches(x.Status.Reason, c.reason) {
						ch = x
					}
				}
			}
			if ch == nil && time.Now().After(deadline) {
				dumpUnfinished(t, ctx, env)
				t.Fatalf("%s: no challenge for %s with reason\n  %s\nseen: %q", c.name, c.dnsNam, c.reason, seen)
			}
			if ch == nil {
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		if ch.Status.State != messages.StatePending || ch.Status.Presented || !ch.Status.Processing {
			t.Errorf("%s: challenge status %+v, want pending, processing, not presented", c.name, ch.Status)
		}
		eventually(t, 10*time.Second, func() bool {
			evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindChallenge, dev.Namespace, ch.Metadata.Name)})
			return err == nil && slices.ContainsFunc(evs, func(e messages.Event) bool {
				return e.Type == messages.EventWarning && e.Reason == messages.ReasonPresentError && matches(e.Message, c.reason)
			})
		})
		c.fix()
	}
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		dumpUnfinished(t, ctx, env)
		t.Fatalf("waiting for the certificates once fixed: %v", err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Errorf("certificate %s not issued once fixed: %s", n, res[n].Message)
		}
	}
}
