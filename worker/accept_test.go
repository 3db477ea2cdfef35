package worker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// A second accept of a challenge the CA is still validating (an earlier
// delivery accepted, and its status write was lost) is not an error: the
// CA refuses it ("Cannot update challenge with status processing"), and
// accept reports the challenge processing, so the worker polls instead of
// failing the challenge. Against a real Pebble whose validation request
// is held until the test lets it through.
func TestAcceptTwiceWhileProcessing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dns, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var keyAuth string
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release // the CA's validation waits here: the challenge is processing
		_, _ = w.Write([]byte(keyAuth))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	peb, err := stack.StartPebble(stack.PebbleConfig{HTTPPort: port, TLSPort: 5001, DNSAddr: dns.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peb.Close)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cl := acmeclient.New(acmeclient.Options{DirectoryURL: peb.DirectoryURL}, peb.HTTPClient(), key, "")
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := cl.AuthorizeOrder(ctx, acme.DomainIDs("slow.acmeq.test"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := cl.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	ch := &messages.Challenge{Spec: messages.ChallengeSpec{AuthorizationURL: a.URI, Type: messages.ChallengeTypeHTTP01, DNSName: "slow.acmeq.test"}}
	for _, c := range a.Challenges {
		if c.Type == "http-01" {
			ch.Spec.URL, ch.Spec.Token = c.URI, c.Token
		}
	}
	if keyAuth, err = cl.HTTP01ChallengeResponse(ch.Spec.Token); err != nil {
		t.Fatal(err)
	}

	st, _, err := accept(ctx, cl, ch)
	if err != nil || st != messages.StateProcessing {
		t.Fatalf("first accept: %s, %v; want processing", st, err)
	}
	st, reason, err := accept(ctx, cl, ch)
	if err != nil || st != messages.StateProcessing {
		t.Fatalf("second accept while the CA validates: %s %q, %v; want processing (an earlier delivery accepted)", st, reason, err)
	}
	close(release)
	stacktest.Eventually(t, 20*time.Second, func() error {
		a, err := cl.GetAuthorization(ctx, ch.Spec.AuthorizationURL)
		if err != nil {
			return err
		}
		if a.Status != acme.StatusValid {
			return &acme.Error{Detail: "authorization is " + a.Status}
		}
		return nil
	})
	// Once decided, accepting again reports the verdict.
	if st, _, err := accept(ctx, cl, ch); err != nil || st != messages.StateValid {
		t.Fatalf("accept after validation: %s, %v; want valid", st, err)
	}
}
