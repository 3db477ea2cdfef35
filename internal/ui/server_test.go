package ui

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// fixture is a real dev stack (NATS, Redis, Pebble, workers) with the
// fleet view in front of it.
type fixture struct {
	env *dev.Env
	ui  *Server
	srv *httptest.Server
	ctx context.Context
}

// setup starts the dev stack and the fleet view (with cfg) on a loopback
// httptest server; everything stops with the test.
func setup(t *testing.T, cfg Config, opts dev.Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	opts.Dir = t.TempDir()
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	env, err := dev.Start(ctx, opts)
	if err != nil {
		t.Fatalf("dev stack: %v", err)
	}
	t.Cleanup(env.Close)
	// The view needs no more than read access to the buckets.
	st, err := store.OpenReadOnly(ctx, env.JS, nil, messages.ReconciledKinds...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LiveInterval == 0 {
		cfg.LiveInterval = 100 * time.Millisecond
	}
	u, err := New(env.JS, st, env.Scheduler(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Stop)
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	if err := u.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, ui: u, srv: srv, ctx: ctx}
}

// get fetches path and returns the status and body.
func (f *fixture) get(t *testing.T, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// request asks for a certificate and returns its name.
func (f *fixture) request(t *testing.T, name string, labels map[string]string, dns ...string) {
	t.Helper()
	c := producer.CertificateFromOptions(producer.RequestOptions{Namespace: dev.Namespace, Name: name, Issuer: dev.IssuerName, DNSNames: dns})
	c.Metadata.Labels = labels
	if _, err := f.env.Producer.Apply(f.ctx, c); err != nil {
		t.Fatalf("request %s: %v", name, err)
	}
}

// waitReady waits until the certificate is Ready in the store and in the
// view's index.
func (f *fixture) waitReady(t *testing.T, name string) {
	t.Helper()
	stacktest.Eventually(t, 90*time.Second, func() error {
		e := f.ui.index.get(dev.Namespace, name)
		if e == nil || e.state != StateReady {
			return fmt.Errorf("certificate %s not ready in the index: %+v", name, e)
		}
		return nil
	})
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	if t.Failed() {
		t.Logf("%s:\n%s", what, body)
		t.FailNow()
	}
}

func mustNotContain(t *testing.T, what, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Fatalf("%s contains %q:\n%s", what, b, body)
		}
	}
}

// TestPages: every page against a real stack that issued a certificate:
// the list with its filters, describe with the request → order →
// challenge tree and events, issuers, scheduler, events and /metrics.
func TestPages(t *testing.T) {
	f := setup(t, Config{}, dev.Options{})
	f.request(t, "shop", map[string]string{"app": "shop", "env": "prod"}, "shop.example.test", "www.shop.example.test")
	f.request(t, "blog", map[string]string{"app": "blog", "env": "dev"}, "blog.example.test")
	f.waitReady(t, "shop")
	f.waitReady(t, "blog")

	code, body := f.get(t, "/certificates")
	if code != 200 {
		t.Fatalf("/certificates: %d\n%s", code, body)
	}
	mustContain(t, "/certificates", body, `href="/r/certificate/default/shop"`, "shop.example.test", `<span class="more">+1</span>`,
		`class="badge ready-true">True</span>`, `data-live="/live/certificates"`, "Showing 1–2 of 2")
	for _, tc := range []struct {
		query      string
		want, nots []string
	}{
		{"state=ready", []string{"/r/certificate/default/shop", "/r/certificate/default/blog"}, nil},
		{"state=failing", []string{"No certificate matches."}, []string{"/r/certificate/default/shop"}},
		{"l=" + url.QueryEscape("env=prod"), []string{"/r/certificate/default/shop"}, []string{"/r/certificate/default/blog"}},
		{"l=" + url.QueryEscape("app in (blog),env!=prod"), []string{"/r/certificate/default/blog"}, []string{"/r/certificate/default/shop"}},
		{"q=WWW.SHOP", []string{"/r/certificate/default/shop"}, []string{"/r/certificate/default/blog"}},
		{"ns=other", []string{"No certificate matches."}, []string{"/r/certificate/default/shop"}},
		{"per=1", []string{"Showing 1–1 of 2", `href="/certificates?page=2&amp;per=1"`, "page 1 of 2"}, []string{"/r/certificate/default/shop"}},
		{"per=1&page=2", []string{"/r/certificate/default/shop", "page 2 of 2", `href="/certificates?per=1"`}, []string{"/r/certificate/default/blog"}},
		{"sort=expiry&state=expiring", []string{"No certificate matches."}, []string{"/r/certificate/default/shop"}}, // Pebble issues for 90 days
	} {
		code, body := f.get(t, "/certificates?"+tc.query)
		if code != 200 {
			t.Fatalf("?%s: %d\n%s", tc.query, code, body)
		}
		mustContain(t, "?"+tc.query, body, tc.want...)
		mustNotContain(t, "?"+tc.query, body, tc.nots...)
	}
	// The partial the script fetches is the list without the layout.
	_, part := f.get(t, "/certificates?partial=1")
	mustContain(t, "partial", part, `id="certificates"`, "/r/certificate/default/shop")
	mustNotContain(t, "partial", part, "<html", "<footer")

	code, body = f.get(t, "/r/certificate/default/shop")
	if code != 200 {
		t.Fatalf("describe: %d\n%s", code, body)
	}
	mustContain(t, "describe certificate", body, "Requests, orders and challenges", `href="/r/certificaterequest/default/shop-1"`,
		`href="/r/order/default/shop-1-`, "The certificate has been successfully issued", "Certificate fetched from issuer successfully", "Dns Names:", "shop.example.test",
		"removed</span>") // finished challenges are gone once the order is valid

	_, body = f.get(t, "/r/certificaterequest/default/shop-1")
	mustContain(t, "describe request", body, "Orders and challenges", `href="/r/order/default/shop-1-`, "owned by", `href="/r/certificate/default/shop"`)

	_, body = f.get(t, "/r/issuer/default/dev")
	mustContain(t, "describe issuer", body, "ACMEAccountRegistered")

	code, body = f.get(t, "/issuers")
	if code != 200 {
		t.Fatalf("/issuers: %d", code)
	}
	mustContain(t, "/issuers", body, `href="/r/issuer/default/dev"`, `ready-true`)

	// ClusterIssuers are listed too, without a namespace, and described
	// under the cluster scope token.
	if _, err := f.env.Producer.Apply(f.ctx, f.env.ClusterIssuerFor("shared")); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, 30*time.Second, func() error {
		_, body = f.get(t, "/issuers")
		if !strings.Contains(body, `<td>ClusterIssuer</td><td><span class="muted">(cluster)</span></td><td><a href="/r/clusterissuer/_/shared">shared</a></td><td><span class="badge ready-true">`) {
			return fmt.Errorf("/issuers lacks the Ready ClusterIssuer shared:\n%s", body)
		}
		return nil
	})
	code, body = f.get(t, "/r/clusterissuer/_/shared")
	if code != 200 {
		t.Fatalf("/r/clusterissuer/_/shared: %d\n%s", code, body)
	}
	mustContain(t, "describe clusterissuer", body, "<h1>ClusterIssuer shared</h1>", "ACMEAccountRegistered")
	if code, body = f.get(t, "/r/clusterissuer/default/shared"); code != http.StatusBadRequest || !strings.Contains(body, "a ClusterIssuer has no namespace") {
		t.Errorf("/r/clusterissuer/default/shared: %d, want 400 saying it has no namespace:\n%s", code, body)
	}

	code, body = f.get(t, "/scheduler")
	if code != 200 {
		t.Fatalf("/scheduler: %d\n%s", code, body)
	}
	mustContain(t, "/scheduler", body, "0 / 60", "No backlog.", "acmeq-challenge", "acmeq-certificate")

	code, body = f.get(t, "/events")
	if code != 200 {
		t.Fatalf("/events: %d\n%s", code, body)
	}
	mustContain(t, "/events", body, "OrderValid", "DomainVerified", `data-events="/live/events?"`)
	_, body = f.get(t, "/events?kind=certificate&ns=default")
	mustContain(t, "/events?kind=certificate", body, "Issued")
	mustNotContain(t, "/events?kind=certificate", body, "DomainVerified")

	code, body = f.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	mustContain(t, "/metrics", body,
		`acmeq_certificate_expiration_timestamp_seconds{namespace="default",name="shop",issuer_name="dev",issuer_kind="Issuer"} `,
		`acmeq_certificate_renewal_timestamp_seconds{namespace="default",name="blog",issuer_name="dev",issuer_kind="Issuer"} `,
		`acmeq_certificate_ready_status{namespace="default",name="shop",issuer_name="dev",issuer_kind="Issuer",condition="True"} 1`,
		`acmeq_certificate_ready_status{namespace="default",name="shop",issuer_name="dev",issuer_kind="Issuer",condition="False"} 0`,
		`acmeq_certificate_failed_issuance_attempts{namespace="default",name="shop",issuer_name="dev",issuer_kind="Issuer"} 0`,
		`acmeq_certificates{state="ready"} 2`,
		`acmeq_queue_pending_messages{consumer="acmeq-certificate"} 0`,
		`acmeq_queue_pending_messages{consumer="acmeq-challenge"} 0`,
		`acmeq_scheduler_cap 60`, `acmeq_scheduler_inflight 0`, `acmeq_scheduler_backlog 0`, `acmeq_ui_index_synced 1`,
		"# TYPE acmeq_certificate_expiration_timestamp_seconds gauge")
	// The expiration is the certificate's notAfter.
	cert := &messages.Certificate{}
	if err := f.env.Store.Get(f.ctx, dev.Namespace, "shop", cert); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "/metrics", body, fmt.Sprintf(`name="shop",issuer_name="dev",issuer_kind="Issuer"} %d`, cert.Status.NotAfter.Unix()))
	for _, name := range MetricNames() {
		if name == MetricSchedulerNamespaceBacklog {
			continue // a series per namespace with a backlog: none here
		}
		if !strings.Contains(body, "# TYPE "+name+" ") {
			t.Errorf("/metrics lacks the family %s", name)
		}
	}
}

// TestBadInput: unknown resources and kinds are clear 404 pages, malformed
// filters 400 pages naming the parameter, never a stack trace.
func TestBadInput(t *testing.T) {
	f := setup(t, Config{}, dev.Options{Workers: 1})
	for _, tc := range []struct {
		path  string
		code  int
		wants []string
	}{
		{"/r/certificate/default/nope", 404, []string{"Certificate default/nope does not exist"}},
		{"/r/challenge/default/nope-1-2-0", 404, []string{"does not exist", "Finished challenges are removed"}},
		{"/r/widget/default/x", 404, []string{"Unknown kind", "widget"}},
		{"/r/secret/default/x", 404, []string{"Secrets are not shown"}},
		{"/r/certificate/Default/x", 400, []string{`Parameter &#34;namespace&#34;`}},
		{"/r/certificate/default/a.b", 400, []string{`Parameter &#34;name&#34;`}},
		{"/nowhere", 404, []string{"There is no page at /nowhere"}},
		{"/certificates?l=" + url.QueryEscape("app in (x"), 400, []string{`Parameter &#34;l&#34;`, "not a label selector"}},
		{"/certificates?l=" + url.QueryEscape("==="), 400, []string{`Parameter &#34;l&#34;`}},
		{"/certificates?state=bogus", 400, []string{`Parameter &#34;state&#34;`, "unknown state &#34;bogus&#34;", "ready, issuing, renewing, failing, notready, expiring"}},
		{"/certificates?page=0", 400, []string{`Parameter &#34;page&#34;`}},
		{"/certificates?page=x", 400, []string{`Parameter &#34;page&#34;`}},
		{"/certificates?per=100000", 400, []string{`Parameter &#34;per&#34;`}},
		{"/certificates?sort=size", 400, []string{`Parameter &#34;sort&#34;`}},
		{"/certificates?ns=" + url.QueryEscape("a.>"), 400, []string{`Parameter &#34;ns&#34;`}},
		{"/events?ns=" + url.QueryEscape("*"), 400, []string{`Parameter &#34;ns&#34;`}},
		{"/events?kind=secret", 400, []string{`Parameter &#34;kind&#34;`}},
		{"/live/events?kind=x", 400, []string{`Parameter &#34;kind&#34;`}},
		{"/certificates?state=" + url.QueryEscape("<script>alert(1)</script>"), 400, []string{"&lt;script&gt;alert(1)&lt;/script&gt;"}},
		{"/certificates?q=" + url.QueryEscape(`"><script>x</script>`), 200, []string{`value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"`}},
	} {
		code, body := f.get(t, tc.path)
		if code != tc.code {
			t.Errorf("%s: status %d, want %d\n%s", tc.path, code, tc.code, body)
			continue
		}
		mustContain(t, tc.path, body, tc.wants...)
		mustNotContain(t, tc.path, body, "goroutine ", ".go:", "<script>", "panic")
	}
}

// TestEscaping: what users and CAs write (labels, reasons, messages) is
// shown as text, never as markup, on the list, describe and tree.
func TestEscaping(t *testing.T) {
	f := setup(t, Config{}, dev.Options{Workers: -1})
	evil := `<img src=x onerror=alert(1)>`
	now := time.Now().UTC()
	c := &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "evil", Namespace: "default", Labels: map[string]string{"team": "x"}},
		Spec:     messages.CertificateSpec{SecretName: "evil", DNSNames: []string{"evil.example.test"}, IssuerRef: messages.IssuerRef{Name: "dev"}},
		Status: messages.CertificateStatus{
			Conditions: []messages.Condition{{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: "Failed", Message: evil, LastTransitionTime: now}},
		},
	}
	// Written straight to the store (no worker runs): the CA's words.
	if err := f.env.Store.Create(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, 10*time.Second, func() error {
		if f.ui.index.get("default", "evil") == nil {
			return fmt.Errorf("not indexed")
		}
		return nil
	})
	for _, path := range []string{"/certificates", "/r/certificate/default/evil"} {
		_, body := f.get(t, path)
		mustContain(t, path, body, "&lt;img src=x onerror=alert(1)&gt;")
		mustNotContain(t, path, body, evil)
	}
	// A page never carries inline script, and the policy forbids it.
	res, err := f.srv.Client().Get(f.srv.URL + "/certificates")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline: %q", csp)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

// TestAuth: with a token and basic auth configured, a request without
// credentials or with wrong ones is 401; either credential, or the token
// cookie of the login form, lets it in; /healthz stays open.
func TestAuth(t *testing.T) {
	const token = "0123456789abcdef-token"
	f := setup(t, Config{Token: token, BasicAuth: "ops:s3cret-pass"}, dev.Options{Workers: -1})
	for _, tc := range []struct {
		name string
		path string
		hdr  []string
		code int
	}{
		{"no credentials", "/certificates", nil, 401},
		{"no credentials, metrics", "/metrics", nil, 401},
		{"no credentials, live", "/live/certificates", nil, 401},
		{"wrong token", "/certificates", []string{"Authorization", "Bearer nope-nope-nope-nope"}, 401},
		{"wrong password", "/certificates", []string{"Authorization", basic("ops", "wrong")}, 401},
		{"wrong user", "/certificates", []string{"Authorization", basic("root", "s3cret-pass")}, 401},
		{"token cookie wrong", "/certificates", []string{"Cookie", tokenCookie + "=nope"}, 401},
		{"bearer", "/certificates", []string{"Authorization", "Bearer " + token}, 200},
		{"bearer, metrics", "/metrics", []string{"Authorization", "Bearer " + token}, 200},
		{"basic", "/certificates", []string{"Authorization", basic("ops", "s3cret-pass")}, 200},
		{"token cookie", "/certificates", []string{"Cookie", tokenCookie + "=" + token}, 200},
		{"healthz open", "/healthz", nil, 200},
	} {
		code, body := f.get(t, tc.path, tc.hdr...)
		if code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.code)
		}
		if code == 401 {
			mustContain(t, tc.name, body, "401 · Unauthorized", "needs credentials", `action="/login"`)
			mustNotContain(t, tc.name, body, token, "s3cret")
		}
	}
	// The login form sets the cookie.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.PostForm(f.srv.URL+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 || res.Cookies()[0].Value != token || !res.Cookies()[0].HttpOnly {
		t.Fatalf("login: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	res, err = client.PostForm(f.srv.URL+"/login", url.Values{"token": {"wrong-wrong-wrong-wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || len(res.Cookies()) != 0 {
		t.Fatalf("login with a wrong token: %d, cookies %v", res.StatusCode, res.Cookies())
	}
}

func basic(u, p string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(u, p)
	return r.Header.Get("Authorization")
}

// sseReader reads Server-Sent Events from a live stream.
type sseReader struct {
	res *http.Response
	sc  *bufio.Scanner
}

func openSSE(t *testing.T, f *fixture, path string) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(f.ctx, http.MethodGet, f.srv.URL+path, nil)
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return &sseReader{res: res, sc: bufio.NewScanner(res.Body)}
}

// next returns the next event's name and data (the test's context bounds
// the wait: the body read fails when it ends).
func (r *sseReader) next(t *testing.T) (string, string) {
	t.Helper()
	var event, data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if event != "" || data != "" {
				return event, data
			}
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
	t.Fatalf("stream ended: %v", r.sc.Err())
	return "", ""
}

// TestLive: the certificate stream says "changed" when a certificate is
// added, and the event stream carries events recorded after it opened.
func TestLive(t *testing.T) {
	f := setup(t, Config{}, dev.Options{})
	certs := openSSE(t, f, "/live/certificates")
	ev, first := certs.next(t)
	if ev != "changed" {
		t.Fatalf("first message %q %q", ev, first)
	}
	events := openSSE(t, f, "/live/events?kind=certificate")
	f.request(t, "live", nil, "live.example.test")
	ev, second := certs.next(t)
	if ev != "changed" || second == first {
		t.Fatalf("after a request: %q %q (first %q)", ev, second, first)
	}
	for {
		ev, data := events.next(t)
		if ev != "event" {
			continue
		}
		if !strings.Contains(data, `"object":"certificate/live"`) {
			t.Fatalf("event of another object: %s", data)
		}
		if strings.Contains(data, `"reason":"Issued"`) {
			break
		}
	}
}

// TestStreamsBounded: one live stream past MaxStreams is refused with 503
// and Retry-After, not queued.
func TestStreamsBounded(t *testing.T) {
	f := setup(t, Config{MaxStreams: 1}, dev.Options{Workers: -1})
	openSSE(t, f, "/live/certificates")
	res, err := f.srv.Client().Get(f.srv.URL + "/live/certificates")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream: %d", res.StatusCode)
	}
}

// TestRun: Run refuses to start beyond loopback without credentials
// (Validate), and serves until its context ends.
func TestRun(t *testing.T) {
	f := setup(t, Config{}, dev.Options{Workers: -1})
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.OpenReadOnly(f.ctx, f.env.JS, nil, messages.KindCertificate)
	if _, err := New(f.env.JS, st, nil, Config{Listen: fmt.Sprintf(":%d", port)}); err == nil || !strings.Contains(err.Error(), "ACMEQ_UI_TOKEN") {
		t.Fatalf("New beyond loopback without credentials: %v", err)
	}
	u, err := New(f.env.JS, st, nil, Config{Listen: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	stacktest.Eventually(t, 10*time.Second, func() error {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	})
	// A scheduler-less view says so instead of failing.
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/scheduler", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	mustContain(t, "/scheduler without Redis", string(b), "runs without Redis")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
