package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/stack"
)

// PollIntervalDefault is how often the baseline polls an authorization or
// an order that is not done yet: a short, fixed schedule of its own (not
// x/crypto/acme's one-second sleeps), so that the baseline is not
// handicapped.
const PollIntervalDefault = 20 * time.Millisecond

// baselineConfig is one baseline run.
type baselineConfig struct {
	mode           string
	n, concurrency int
	nonceReject    int
	poll, timeout  time.Duration
	profile        string
}

// baseline issues n certificates of two names each with a bare
// golang.org/x/crypto/acme client and concurrency goroutines (one for a
// ModeLatency run, which keeps each certificate's time), against a fresh
// Pebble process with its own DNS process; the HTTP-01 server is the
// client's own, in this process. The client is built as acmeq builds its
// own (acmeclient: pooled connections, badNonce retried at once, no
// library sleeps). Each certificate is: new-order, get each
// authorization, accept each http-01 challenge, poll the authorizations
// every cfg.poll, finalize, poll the order on the same schedule, fetch the
// chain. The clock runs from the first new-order to the last chain;
// registration is not timed. CPU is this process's over that window.
func baseline(ctx context.Context, t *tools, cfg baselineConfig) (res Result) {
	res = Result{Kind: KindBaseline, Mode: cfg.mode, N: cfg.n, NonceRejectPercent: cfg.nonceReject}
	concurrency := max(cfg.concurrency, 1)
	if cfg.mode == ModeLatency {
		concurrency = 1
	}
	dir, err := os.MkdirTemp("", "acmeq-bench-baseline-")
	if err != nil {
		res.Err = fmt.Errorf("bench: %w", err)
		return res
	}
	defer os.RemoveAll(dir)
	var tokens sync.Map // token -> key authorization
	ca, closeCA, err := startBaselineCA(t, dir, &tokens, cfg.nonceReject)
	if err != nil {
		res.Err = err
		return res
	}
	defer closeCA()

	cl, hc, err := newAccount(ctx, ca.pebble)
	if err != nil {
		res.Err = err
		return res
	}
	defer hc.CloseIdleConnections()

	var (
		mu   sync.Mutex
		done int
	)
	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		return done
	}
	rctx, stop := runContext(ctx, ca.pebble, cfg.timeout, progress)
	defer stop()
	stopProfile, err := startProfile(cfg.profile)
	if err != nil {
		res.addError(err.Error())
	}
	caPIDs := ca.pids()
	ca0 := snapshotCPU(caPIDs)
	start, cpu0 := time.Now(), processCPU()
	forEach(rctx, concurrency, cfg.n, func(i int) {
		t0 := time.Now()
		err := issue(rctx, cl, &tokens, DNSNames(i), cfg.poll)
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		done++
		switch {
		case err == nil:
			res.Issued++
			if cfg.mode == ModeLatency {
				res.Latencies = append(res.Latencies, d)
			}
		case rctx.Err() == nil:
			res.Failed++
			res.addError(fmt.Sprintf("%s: %v", CertName(i), err))
		}
	})
	res.Wall, res.CPU = time.Since(start), processCPU()-cpu0
	res.CACPU = sum(snapshotCPU(caPIDs).since(ca0))
	res.ByProcess = map[string]time.Duration{"bench (baseline client)": res.CPU}
	stopProfile()
	if cfg.profile != "" {
		res.Profiles = map[string]string{"baseline": cfg.profile}
	}
	res.Load = loadAverage()
	switch {
	case ctx.Err() != nil:
		res.Err = ctx.Err()
	case rctx.Err() != nil && res.Issued+res.Failed < cfg.n:
		res.Err = runError(rctx, ca.pebble, cfg.timeout, res.Wall)
	}
	res.ACMERequests = ca.requests()
	return res
}

// startBaselineCA starts the client's HTTP-01 server, serving tokens, and
// the CA that validates against it. stop stops both.
func startBaselineCA(t *tools, dir string, tokens *sync.Map, nonceReject int) (ca *caSide, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("bench: baseline: listen for HTTP-01: %w", err)
	}
	srv := &http.Server{Handler: http01Handler(tokens), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ca, err = startCA(t, dir, ln.Addr().(*net.TCPAddr).Port, nonceReject)
	if err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("bench: baseline: %w", err)
	}
	return ca, func() { ca.close(); srv.Close() }, nil
}

// forEach calls do(i) for each i in [0, n), concurrency calls at a time,
// until ctx ends; it returns once every call has.
func forEach(ctx context.Context, concurrency, n int, do func(i int)) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				do(i)
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
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
// connections, badNonce retried at once), and its HTTP client.
func newAccount(ctx context.Context, p *stack.PebbleProcess) (*acmeclient.Client, *http.Client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: account key: %w", err)
	}
	o := acmeclient.Options{DirectoryURL: p.DirectoryURL, CABundle: p.TLSCertPEM}
	hc, err := acmeclient.NewHTTPClient(o)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	cl := acmeclient.New(o, hc, key, "")
	acct, err := cl.Register(ctx, &acme.Account{Contact: []string{"mailto:bench@" + Domain}}, acme.AcceptTOS)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: register: %w", err)
	}
	cl.KID = acme.KeyID(acct.URI)
	return cl, hc, nil
}

// issue obtains one certificate for names, polling every interval.
func issue(ctx context.Context, cl *acmeclient.Client, tokens *sync.Map, names []string, interval time.Duration) error {
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
		if err := poll(ctx, interval, authorizationValid(ctx, cl, u)); err != nil {
			return err
		}
	}
	csr, err := newCSR(names)
	if err != nil {
		return err
	}
	// As a good client does: a CA that issues at once answers "valid"
	// to the finalize request itself, and nothing is polled.
	fin, _, err := cl.Finalize(ctx, o.URI, o.FinalizeURL, csr)
	if err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	certURL := fin.CertURL
	if certURL == "" {
		err = poll(ctx, interval, orderValid(ctx, cl, o.URI, &certURL))
	}
	if err != nil {
		return err
	}
	if _, err := cl.FetchCert(ctx, certURL, true); err != nil {
		return fmt.Errorf("fetch certificate: %w", err)
	}
	return nil
}

// authorizationValid is a poll check: whether the authorization at u is
// valid. One that is neither valid nor on its way fails, with its
// challenge's error.
func authorizationValid(ctx context.Context, cl *acmeclient.Client, u string) func() (bool, error) {
	return func() (bool, error) {
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
	}
}

// orderValid is a poll check: whether the order at uri is valid, when it
// puts the order's certificate URL into certURL. One that is neither valid
// nor on its way fails, with its error.
func orderValid(ctx context.Context, cl *acmeclient.Client, uri string, certURL *string) func() (bool, error) {
	return func() (bool, error) {
		got, err := cl.GetOrder(ctx, uri)
		if err != nil {
			return false, fmt.Errorf("poll order: %w", err)
		}
		switch got.Status {
		case acme.StatusValid:
			*certURL = got.CertURL
			return true, nil
		case acme.StatusProcessing, acme.StatusReady:
			return false, nil
		}
		if got.Error != nil {
			return false, fmt.Errorf("order is %s: %w", got.Status, got.Error)
		}
		return false, fmt.Errorf("order is %s", got.Status)
	}
}

// poll calls check every interval until it reports done or fails.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		done, err := check()
		if err != nil || done {
			return err
		}
	}
}
