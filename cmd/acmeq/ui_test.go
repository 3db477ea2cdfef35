package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/producer"
)

// TestUIRefusesBadSetup: an address beyond loopback without credentials,
// a short token and bad flags are refused before anything starts, naming
// what to set.
func TestUIRefusesBadSetup(t *testing.T) {
	t.Setenv("ACMEQ_NATS_URL", "nats://127.0.0.1:1") // never reached
	for _, tc := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"ui", "--listen", "0.0.0.0:0"}, nil, 1, "set ACMEQ_UI_TOKEN (at least 16 characters) or ACMEQ_UI_BASIC_AUTH (user:password)"},
		{[]string{"ui"}, map[string]string{"ACMEQ_UI_TOKEN": "short"}, 1, "Token (ACMEQ_UI_TOKEN) must be at least 16 characters, got 5"},
		{[]string{"ui"}, map[string]string{"ACMEQ_UI_BASIC_AUTH": "admin"}, 1, "ACMEQ_UI_BASIC_AUTH) must be user:password"},
		{[]string{"ui", "--page-size", "0"}, nil, 2, "--page-size must be from 1 to 500, got 0"},
		{[]string{"ui", "--expiring-within", "-1h"}, nil, 2, "--expiring-within must be a positive duration"},
		{[]string{"ui", "--tls-cert", "x.pem"}, nil, 2, "--tls-cert and --tls-key go together"},
		{[]string{"ui", "--listen", "nohost"}, nil, 1, `Listen (--listen) "nohost" is not host:port`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}

// TestUIServesTheFleet: `acmeq ui` against a real stack serves the
// certificate list and the metrics of a certificate issued for real, and
// stops cleanly (exit 0) when its context ends.
func TestUIServesTheFleet(t *testing.T) {
	env, ctx := startEnv(t, []producer.RequestOptions{{Namespace: dev.Namespace, Name: "shop", Issuer: dev.IssuerName, DNSNames: []string{"shop.acmeq.test"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("ACMEQ_NATS_URL", env.Stack.NATS.URL)
	t.Setenv("ACMEQ_REDIS_URL", env.Stack.Redis.URL())
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(rctx, []string{"ui", "--listen", addr}, io.Discard, &errOut) }()

	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b), err
	}
	var page, metrics string
	eventually(t, 20*time.Second, "the ui serves the issued certificate", func() bool {
		page, err = get("/certificates")
		if err != nil || !strings.Contains(page, "shop.acmeq.test") {
			return false
		}
		metrics, err = get("/metrics")
		return err == nil && strings.Contains(metrics, `acmeq_certificate_ready_status{`) && strings.Contains(metrics, `name="shop"`)
	})
	if !strings.Contains(metrics, "acmeq_certificate_expiration_timestamp_seconds{") {
		t.Errorf("/metrics has no expiration metric:\n%.2000s", metrics)
	}
	if _, err := get("/scheduler"); err != nil {
		t.Errorf("scheduler page: %v", err)
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("acmeq ui exited %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acmeq ui did not stop within 10s of its context ending")
	}
}
