package stack_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
)

func TestStack(t *testing.T) {
	httpPort, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := stacktest.New(t, httpPort)

	t.Run("NATS", func(t *testing.T) { testNATS(t, s) })
	t.Run("Redis", func(t *testing.T) { testRedis(t, s) })
	t.Run("DNS", func(t *testing.T) { testDNS(t, s) })
	t.Run("PebbleOrder", func(t *testing.T) { testPebbleOrder(t, s) })
	t.Run("PebbleRoot", func(t *testing.T) { testPebbleRoot(t, s) })
	t.Run("PebbleIssue", func(t *testing.T) { testPebbleIssue(t, s, httpPort) })
}

func testNATS(t *testing.T, s *stack.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(s.NATS.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TEST", Subjects: []string{"test.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "test.a", []byte("hello"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Stream != "TEST" || ack.Sequence != 1 {
		t.Fatalf("ack = %+v, want stream TEST seq 1", ack)
	}
}

func newRedisClient(t *testing.T, s *stack.Stack) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(s.Redis.URL())
	if err != nil {
		t.Fatalf("parse %q: %v", s.Redis.URL(), err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testRedis(t *testing.T, s *stack.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if want := "127.0.0.1:"; s.Redis.Addr[:len(want)] != want {
		t.Fatalf("Addr = %q", s.Redis.Addr)
	}
	c := newRedisClient(t, s)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("get = %q, %v", got, err)
	}
	addr := s.Redis.Addr

	if err := s.Redis.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if s.Redis.Addr != addr {
		t.Fatalf("Addr after restart = %q, want %q", s.Redis.Addr, addr)
	}
	c2 := newRedisClient(t, s)
	if err := c2.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get after restart: err = %v, want redis.Nil", err)
	}
	// A client created before the restart reconnects.
	if err := c.Ping(ctx).Err(); err != nil {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("old client ping after restart: %v", err)
		}
	}

	if err := s.Redis.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", s.Redis.Addr, time.Second); err == nil {
		_ = conn.Close()
		t.Fatal("redis still accepts connections after Kill")
	}
	if err := s.Redis.Restart(); err != nil {
		t.Fatalf("restart after kill: %v", err)
	}
	if err := newRedisClient(t, s).Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after kill+restart: %v", err)
	}
}

func testDNS(t *testing.T, s *stack.Stack) {
	query := func(t *testing.T, network, name string, qtype uint16) *dns.Msg {
		t.Helper()
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		in, _, err := c.Exchange(m, s.DNS.Addr)
		if err != nil {
			t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
		}
		if in.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s %s %s: rcode %s", network, name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
		}
		return in
	}
	txts := func(m *dns.Msg) []string {
		var out []string
		for _, rr := range m.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				out = append(out, txt.Txt...)
			}
		}
		return out
	}

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			in := query(t, network, "anything.example.test.", dns.TypeA)
			if len(in.Answer) != 1 {
				t.Fatalf("A answers = %v", in.Answer)
			}
			a, ok := in.Answer[0].(*dns.A)
			if !ok || !a.A.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Fatalf("A answer = %v", in.Answer[0])
			}
			if !in.Authoritative {
				t.Error("answer not authoritative")
			}
			if in := query(t, network, "anything.example.test.", dns.TypeAAAA); len(in.Answer) != 0 {
				t.Fatalf("AAAA answers = %v, want none", in.Answer)
			}
			if in := query(t, network, "anything.example.test.", dns.TypeMX); len(in.Answer) != 0 {
				t.Fatalf("MX answers = %v, want none", in.Answer)
			}

			name := "_acme-challenge." + network + ".Example.TEST"
			s.DNS.SetTXT(name, "one", "two")
			got := txts(query(t, network, "_ACME-challenge."+network+".example.test.", dns.TypeTXT))
			if len(got) != 2 || got[0] != "one" || got[1] != "two" {
				t.Fatalf("TXT = %q, want [one two]", got)
			}
			s.DNS.DeleteTXT(name + ".")
			if got := txts(query(t, network, name+".", dns.TypeTXT)); len(got) != 0 {
				t.Fatalf("TXT after delete = %q", got)
			}
		})
	}
}

func newACMEClient(t *testing.T, s *stack.Stack) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{Key: key, DirectoryURL: s.Pebble.DirectoryURL, HTTPClient: s.Pebble.HTTPClient()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := c.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if acct.Status != acme.StatusValid {
		t.Fatalf("account status = %q", acct.Status)
	}
	return c
}

func testPebbleOrder(t *testing.T, s *stack.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newACMEClient(t, s)
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs("order.example.test"))
	if err != nil {
		t.Fatalf("authorize order: %v", err)
	}
	if order.Status != acme.StatusPending {
		t.Fatalf("order status = %q, want pending", order.Status)
	}
	if len(order.AuthzURLs) != 1 {
		t.Fatalf("authz URLs = %q, want one", order.AuthzURLs)
	}
}

func testPebbleRoot(t *testing.T, s *stack.Stack) {
	rootPEM, err := s.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(rootPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("RootPEM is not one PEM certificate: %q", rootPEM)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse root: %v", err)
	}
	if !root.IsCA || !root.BasicConstraintsValid {
		t.Fatalf("root is not a CA: %+v", root.Subject)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Fatalf("root not self-signed: %v", err)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("root key is %T, want ECDSA", root.PublicKey)
	}
}

// testPebbleIssue gets a certificate for two names, one validated with
// HTTP-01 on httpPort and one with DNS-01 through the stack's DNS server, and
// verifies it chains to RootPEM.
func testPebbleIssue(t *testing.T, s *stack.Stack, httpPort int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newACMEClient(t, s)

	const httpName, dnsName = "http01.example.test", "dns01.example.test"
	tokens := make(chan map[string]string, 1)
	tokens <- map[string]string{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/acme-challenge/{token}", func(w http.ResponseWriter, r *http.Request) {
		m := <-tokens
		body, ok := m[r.PathValue("token")]
		tokens <- m
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	})
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)))
	if err != nil {
		t.Fatalf("listen on HTTP-01 port: %v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(httpName, dnsName))
	if err != nil {
		t.Fatalf("authorize order: %v", err)
	}
	for _, u := range order.AuthzURLs {
		authz, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("get authz: %v", err)
		}
		want := "http-01"
		if authz.Identifier.Value == dnsName {
			want = "dns-01"
		}
		var chal *acme.Challenge
		for _, ch := range authz.Challenges {
			if ch.Type == want {
				chal = ch
			}
		}
		if chal == nil {
			t.Fatalf("no %s challenge for %s", want, authz.Identifier.Value)
		}
		switch want {
		case "http-01":
			body, err := c.HTTP01ChallengeResponse(chal.Token)
			if err != nil {
				t.Fatal(err)
			}
			m := <-tokens
			m[chal.Token] = body
			tokens <- m
		case "dns-01":
			rec, err := c.DNS01ChallengeRecord(chal.Token)
			if err != nil {
				t.Fatal(err)
			}
			s.DNS.SetTXT("_acme-challenge."+dnsName, rec)
			defer s.DNS.DeleteTXT("_acme-challenge." + dnsName)
		}
		if _, err := c.Accept(ctx, chal); err != nil {
			t.Fatalf("accept %s: %v", want, err)
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			t.Fatalf("%s validation of %s: %v", want, authz.Identifier.Value, err)
		}
	}
	if order, err = c.WaitOrder(ctx, order.URI); err != nil {
		t.Fatalf("wait order: %v", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{httpName, dnsName}}, key)
	if err != nil {
		t.Fatal(err)
	}
	// Pebble answers finalize with a "processing" order and no Location
	// header, so CreateOrderCert (which needs that header to poll) fails;
	// CreateCertFromOrder polls order.URI instead.
	ders, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	if len(ders) != 2 {
		t.Fatalf("chain has %d certificates, want leaf + 1 intermediate", len(ders))
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(ders[1])
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := s.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	intermediates := x509.NewCertPool()
	intermediates.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots, Intermediates: intermediates}); err != nil {
		t.Fatalf("verify leaf against RootPEM: %v", err)
	}
}
