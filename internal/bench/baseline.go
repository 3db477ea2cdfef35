package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/stack"
)

// Polling schedule of the baseline: acmeq's own (worker.pollDelay), so the
// baseline does not pay x/crypto/acme's one-second sleeps.
const (
	pollFirst = 50 * time.Millisecond
	pollMax   = 2 * time.Second
)

// tlsALPNPort is what the stack gives Pebble; nothing serves it.
const tlsALPNPort = 5001

// Baseline issues n certificates of two names each with a bare
// golang.org/x/crypto/acme client and concurrency goroutines, against a
// fresh in-process Pebble with its own DNS server and HTTP-01 server. Each
// certificate is: new-order, get each authorization, accept each http-01
// challenge, poll the authorizations (50 ms doubling to 2 s), finalize,
// poll the order on the same schedule, fetch the chain. The clock runs from
// the first new-order to the last chain; registration is not timed.
//
// The deadline is TimeoutBase + n*TimeoutPerCertificate. The error is
// Result.Err: set-up failures, ErrPebbleHang or ErrTimeout; certificates
// that failed are counted in the Result.
func Baseline(ctx context.Context, n, concurrency int) (Result, error) {
	r := baseline(ctx, n, concurrency, defaultTimeout(n), "")
	return r, r.Err
}

func baseline(ctx context.Context, n, concurrency int, timeout time.Duration, profile string) (res Result) {
	res = Result{Kind: "baseline", N: n}
	concurrency = max(concurrency, 1)

	dns, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		res.Err = fmt.Errorf("bench: baseline: %w", err)
		return res
	}
	defer dns.Close()
	var tokens sync.Map // token -> key authorization
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		res.Err = fmt.Errorf("bench: baseline: listen for HTTP-01: %w", err)
		return res
	}
	srv := &http.Server{Handler: http01Handler(&tokens), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	reqs := newRequestCounter()
	p, err := stack.StartPebble(stack.PebbleConfig{
		HTTPPort: ln.Addr().(*net.TCPAddr).Port,
		TLSPort:  tlsALPNPort,
		DNSAddr:  dns.Addr,
		Logger:   log.New(reqs, "", 0),
	})
	if err != nil {
		res.Err = fmt.Errorf("bench: baseline: %w", err)
		return res
	}
	defer p.Close()

	cl, err := newAccount(ctx, p)
	if err != nil {
		res.Err = err
		return res
	}

	rctx, stop := runContext(ctx, p, timeout)
	defer stop()
	jobs := make(chan int)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	stopProfile, err := startProfile(profile)
	if err != nil {
		res.addError(err.Error())
	}
	reqs0 := reqs.snapshot()
	start, cpu0 := time.Now(), processCPU()
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				err := issue(rctx, cl, &tokens, DNSNames(i))
				mu.Lock()
				switch {
				case err == nil:
					res.Issued++
				case rctx.Err() == nil:
					res.Failed++
					res.addError(fmt.Sprintf("%s: %v", CertName(i), err))
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-rctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	res.Wall, res.CPU = time.Since(start), processCPU()-cpu0
	stopProfile()
	res.ACMERequests = reqs.since(reqs0)
	res.Load = loadAverage()
	switch {
	case ctx.Err() != nil:
		res.Err = ctx.Err()
	case rctx.Err() != nil && res.Issued+res.Failed < n:
		res.Err = runError(rctx, p, timeout, res.Wall)
	}
	return res
}

// http01Handler serves key authorizations from tokens.
func http01Handler(tokens *sync.Map) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		ka, ok := tokens.Load(token)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ka.(string)))
	})
}

// newAccount registers a fresh account at p and returns its client, built
// as acmeq builds its own (acmeclient: no library sleeps, pooled
// connections).
func newAccount(ctx context.Context, p *stack.Pebble) (*acme.Client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: account key: %w", err)
	}
	o := acmeclient.Options{DirectoryURL: p.DirectoryURL, CABundle: p.TLSCertPEM}
	hc, err := acmeclient.NewHTTPClient(o)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cl := acmeclient.New(o, hc, key, "")
	acct, err := cl.Register(ctx, &acme.Account{Contact: []string{"mailto:bench@" + Domain}}, acme.AcceptTOS)
	if err != nil {
		return nil, fmt.Errorf("bench: register: %w", err)
	}
	cl.KID = acme.KeyID(acct.URI)
	return cl.Client, nil
}

// issue obtains one certificate for names.
func issue(ctx context.Context, cl *acme.Client, tokens *sync.Map, names []string) error {
	o, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		return fmt.Errorf("new-order: %w", err)
	}
	var pending []string
	for _, u := range o.AuthzURLs {
		a, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			return fmt.Errorf("get authorization: %w", err)
		}
		if a.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, c := range a.Challenges {
			if c.Type == "http-01" {
				chal = c
			}
		}
		if chal == nil {
			return fmt.Errorf("no http-01 challenge for %s", a.Identifier.Value)
		}
		ka, err := cl.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		tokens.Store(chal.Token, ka)
		defer tokens.Delete(chal.Token)
		if _, err := cl.Accept(ctx, chal); err != nil {
			return fmt.Errorf("accept challenge: %w", err)
		}
		pending = append(pending, u)
	}
	for _, u := range pending {
		err := poll(ctx, func() (bool, error) {
			a, err := cl.GetAuthorization(ctx, u)
			if err != nil {
				return false, fmt.Errorf("poll authorization: %w", err)
			}
			switch a.Status {
			case acme.StatusValid:
				return true, nil
			case acme.StatusPending, acme.StatusProcessing:
				return false, nil
			}
			for _, c := range a.Challenges {
				if c.Error != nil {
					return false, fmt.Errorf("authorization %s is %s: %w", a.Identifier.Value, a.Status, c.Error)
				}
			}
			return false, fmt.Errorf("authorization %s is %s", a.Identifier.Value, a.Status)
		})
		if err != nil {
			return err
		}
	}
	csr, err := newCSR(names)
	if err != nil {
		return err
	}
	if err := acmeclient.Finalize(ctx, cl, o, csr); err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	var certURL string
	err = poll(ctx, func() (bool, error) {
		got, err := cl.GetOrder(ctx, o.URI)
		if err != nil {
			return false, fmt.Errorf("poll order: %w", err)
		}
		switch got.Status {
		case acme.StatusValid:
			certURL = got.CertURL
			return true, nil
		case acme.StatusProcessing, acme.StatusReady:
			return false, nil
		}
		if got.Error != nil {
			return false, fmt.Errorf("order is %s: %w", got.Status, got.Error)
		}
		return false, fmt.Errorf("order is %s", got.Status)
	})
	if err != nil {
		return err
	}
	if _, err := cl.FetchCert(ctx, certURL, true); err != nil {
		return fmt.Errorf("fetch certificate: %w", err)
	}
	return nil
}

// poll waits pollFirst, doubling to pollMax, between calls of check until
// it reports done or fails.
func poll(ctx context.Context, check func() (bool, error)) error {
	t := time.NewTimer(pollFirst)
	defer t.Stop()
	for d := pollFirst; ; d = min(2*d, pollMax) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		done, err := check()
		if err != nil || done {
			return err
		}
		t.Reset(min(2*d, pollMax))
	}
}
