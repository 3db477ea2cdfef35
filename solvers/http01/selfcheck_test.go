package http01

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/solvers"
)

// loopback resolves every name to 127.0.0.1, recording the names asked for.
type loopback struct {
	mu    sync.Mutex
	names []string
}

func (l *loopback) resolve(_ context.Context, host string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, host)
	return "127.0.0.1", nil
}

func portOf(t *testing.T, ts *httptest.Server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func newSelfCheck(t *testing.T, port int, l *loopback) *SelfCheck {
	t.Helper()
	sc, err := NewSelfCheck(SelfCheckConfig{Port: port, Timeout: 5 * time.Second, Resolve: l.resolve})
	if err != nil {
		t.Fatalf("NewSelfCheck: %v", err)
	}
	return sc
}

func TestSelfCheck(t *testing.T) {
	url := setup(t)
	kv := connect(t, url)
	p := NewPresenter(kv)
	r := startResponder(t, connect(t, url))

	// The responder, behind a front that records Host headers and
	// redirects requests for redirect.example to challenge.example.
	var (
		hostsMu sync.Mutex
		hosts   []string
	)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hostsMu.Lock()
		hosts = append(hosts, req.Host)
		hostsMu.Unlock()
		switch req.Host {
		case "redirect.example":
			http.Redirect(w, req, "http://challenge.example"+req.URL.Path, http.StatusFound)
		case "loop.example":
			http.Redirect(w, req, "http://loop.example"+req.URL.Path, http.StatusFound)
		case "port.example":
			http.Redirect(w, req, "http://challenge.example:8080"+req.URL.Path, http.StatusFound)
		default:
			r.ServeHTTP(w, req)
		}
	}))
	l := &loopback{}
	sc := newSelfCheck(t, portOf(t, ts), l)

	ch := solvers.Challenge{DNSName: "example.com", Type: solvers.TypeHTTP01, Token: "TOKEN", Key: "TOKEN.thumbprint"}
	if err := p.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return r.Stats().Tokens == 1 })

	t.Run("success", func(t *testing.T) {
		if err := sc.Check(t.Context(), ch); err != nil {
			t.Fatalf("Check: %v", err)
		}
		hostsMu.Lock()
		defer hostsMu.Unlock()
		if got := hosts[len(hosts)-1]; got != "example.com" {
			t.Errorf("Host header %q, want example.com", got)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if got := l.names[len(l.names)-1]; got != "example.com" {
			t.Errorf("Resolve called with %q, want example.com", got)
		}
	})

	t.Run("body mismatch", func(t *testing.T) {
		wrong := ch
		wrong.Key = "TOKEN.other"
		err := sc.Check(t.Context(), wrong)
		want := `http01: did not get expected response when querying endpoint, expected "TOKEN.other" but got: "TOKEN.thumbprint"`
		if err == nil || err.Error() != want {
			t.Fatalf("Check error\n got: %v\nwant: %s", err, want)
		}
		if !errors.Is(err, ErrSelfCheckFailed) {
			t.Errorf("error does not wrap ErrSelfCheckFailed")
		}
	})

	t.Run("not found", func(t *testing.T) {
		missing := ch
		missing.Token, missing.Key = "MISSING", "MISSING.thumbprint"
		err := sc.Check(t.Context(), missing)
		want := `http01: wrong status code '404', expected '200'`
		if err == nil || err.Error() != want {
			t.Fatalf("Check error\n got: %v\nwant: %s", err, want)
		}
		if !errors.Is(err, ErrSelfCheckFailed) {
			t.Errorf("error does not wrap ErrSelfCheckFailed")
		}
	})

	t.Run("redirect to another host", func(t *testing.T) {
		redirected := ch
		redirected.DNSName = "redirect.example"
		if err := sc.Check(t.Context(), redirected); err != nil {
			t.Fatalf("Check: %v", err)
		}
		hostsMu.Lock()
		defer hostsMu.Unlock()
		if got := hosts[len(hosts)-2:]; got[0] != "redirect.example" || got[1] != "challenge.example" {
			t.Errorf("Host headers %q, want redirect.example then challenge.example", got)
		}
	})

	t.Run("redirect loop", func(t *testing.T) {
		looping := ch
		looping.DNSName = "loop.example"
		err := sc.Check(t.Context(), looping)
		want := `http01: failed to perform self check GET request 'http://loop.example/.well-known/acme-challenge/TOKEN': stopped after 10 redirects`
		if err == nil || err.Error() != want {
			t.Fatalf("Check error\n got: %v\nwant: %s", err, want)
		}
		if !errors.Is(err, ErrSelfCheckFailed) {
			t.Errorf("error does not wrap ErrSelfCheckFailed")
		}
	})

	t.Run("redirect to other port", func(t *testing.T) {
		c := ch
		c.DNSName = "port.example"
		err := sc.Check(t.Context(), c)
		if err == nil || !strings.Contains(err.Error(), "only ports 80 and 443 are allowed") {
			t.Fatalf("Check = %v, want a redirect port error", err)
		}
	})

	t.Run("trailing whitespace is ignored", func(t *testing.T) {
		ws := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("TOKEN.thumbprint\r\n"))
		}))
		if err := newSelfCheck(t, portOf(t, ws), l).Check(t.Context(), ch); err != nil {
			t.Fatalf("Check: %v", err)
		}
	})

	t.Run("long body is truncated", func(t *testing.T) {
		long := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", 100<<10)))
		}))
		err := newSelfCheck(t, portOf(t, long), l).Check(t.Context(), ch)
		want := `http01: did not get expected response when querying endpoint, expected "TOKEN.thumbprint" but got: "` +
			strings.Repeat("x", 64) + `"...`
		if err == nil || err.Error() != want {
			t.Fatalf("Check error\n got: %v\nwant: %s", err, want)
		}
	})
}

func TestSelfCheckConnectionRefused(t *testing.T) {
	// Find a port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	sc := newSelfCheck(t, port, &loopback{})
	ch := solvers.Challenge{DNSName: "example.com", Token: "TOKEN", Key: "TOKEN.thumbprint"}
	err = sc.Check(t.Context(), ch)
	if err == nil {
		t.Fatal("Check succeeded against a closed port")
	}
	const prefix = "http01: failed to perform self check GET request 'http://example.com/.well-known/acme-challenge/TOKEN': "
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q does not start with %q", err, prefix)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not mention connection refused", err)
	}
	if !errors.Is(err, ErrSelfCheckFailed) {
		t.Errorf("error does not wrap ErrSelfCheckFailed")
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error does not wrap the *net.OpError")
	}
}

func TestSelfCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	hang := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer close(release) // before hang.Close, which waits for the handler

	sc, err := NewSelfCheck(SelfCheckConfig{
		Port:    portOf(t, hang),
		Timeout: 100 * time.Millisecond,
		Resolve: (&loopback{}).resolve,
	})
	if err != nil {
		t.Fatal(err)
	}
	ch := solvers.Challenge{DNSName: "example.com", Token: "TOKEN", Key: "TOKEN.thumbprint"}

	err = sc.Check(t.Context(), ch)
	if !errors.Is(err, ErrSelfCheckFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check = %v, want ErrSelfCheckFailed wrapping context.DeadlineExceeded", err)
	}

	// The caller giving up is not a failed self check.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = sc.Check(ctx, ch)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrSelfCheckFailed) {
		t.Fatalf("Check with cancelled context = %v, want context.Canceled without ErrSelfCheckFailed", err)
	}
}

func TestSelfCheckRejectsBadInput(t *testing.T) {
	for _, cfg := range []SelfCheckConfig{{Port: -1}, {Port: 65536}, {Timeout: -time.Second}} {
		if _, err := NewSelfCheck(cfg); err == nil {
			t.Errorf("NewSelfCheck(%+v) succeeded", cfg)
		}
	}
	sc, err := NewSelfCheck(SelfCheckConfig{})
	if err != nil {
		t.Fatalf("NewSelfCheck with zero config: %v", err)
	}
	if sc.port != "80" || sc.timeout != DefaultSelfCheckTimeout {
		t.Errorf("defaults: port %s, timeout %s", sc.port, sc.timeout)
	}
	valid := solvers.Challenge{DNSName: "example.com", Token: "TOKEN", Key: "TOKEN.k"}
	tests := []struct {
		name   string
		modify func(*solvers.Challenge)
		want   error
	}{
		{"invalid token", func(c *solvers.Challenge) { c.Token = "a/b" }, ErrInvalidToken},
		{"wildcard", func(c *solvers.Challenge) { c.Wildcard = true }, ErrUnsupportedChallenge},
		{"DNS-01", func(c *solvers.Challenge) { c.Type = solvers.TypeDNS01 }, ErrUnsupportedChallenge},
		{"empty name", func(c *solvers.Challenge) { c.DNSName = "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := valid
			tt.modify(&ch)
			err := sc.Check(t.Context(), ch)
			if err == nil {
				t.Fatal("Check succeeded")
			}
			if errors.Is(err, ErrSelfCheckFailed) {
				t.Errorf("invalid input reported as a failed self check: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v does not wrap %v", err, tt.want)
			}
		})
	}
}
