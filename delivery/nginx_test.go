package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/producer"
)

var netDialer = net.Dialer{Timeout: 5 * time.Second}

// served is what a TLS client sees at addr for name, verified against
// roots.
func served(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&netDialer, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// The whole path on real parts: acmeq issues a certificate from Pebble,
// the agent writes it, nginx serves it; a re-issuance (new dnsNames) is
// written and nginx serves the new serial once the agent's hook has
// reloaded it, not before.
func TestSyncNginx(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	rootPEM, err := env.Stack.Pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)

	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: "default", Name: "shop", Issuer: dev.IssuerName, DNSNames: []string{"shop.example.test"}}); err != nil {
		t.Fatal(err)
	}
	if res, err := env.WaitCertificates(ctx, "default", []string{"shop"}); err != nil || !res["shop"].Ready {
		t.Fatalf("issuance: %+v, %v", res, err)
	}

	// The agent has a NATS connection of its own and only the key.
	nc, err := nats.Connect(env.Stack.NATS.URL, nats.Name("acmeq-sync"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	key, err := store.ParseSecretKey(env.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := store.NewSealer(key)
	dir := filepath.Join(t.TempDir(), "certs")
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}), nil))

	// First the files (nginx does not start without them), as a user
	// does with --once, then nginx, then the agent that follows changes.
	first, err := New(js, sealer, Config{Dir: dir, Names: []string{"shop"}, Once: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ng, err := stack.StartNginx(t.TempDir(), filepath.Join(dir, "default", "shop", FileCert), filepath.Join(dir, "default", "shop", FileKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ng.Stop() })
	onDisk := readPair(t, dir, "default", "shop", roots)
	c, err := served(ng.Addr, "shop.example.test", roots)
	if err != nil {
		t.Fatalf("TLS to nginx: %v\n%s", err, ng.Output())
	}
	if fmt.Sprintf("%x", c.SerialNumber) != onDisk.serial || !slices.Equal(c.DNSNames, []string{"shop.example.test"}) {
		t.Fatalf("nginx serves serial %x for %v, the agent wrote %s", c.SerialNumber, c.DNSNames, onDisk.serial)
	}

	reg := prometheus.NewRegistry()
	hookLog := filepath.Join(t.TempDir(), "hook.log")
	agent, err := New(js, sealer, Config{
		Dir:   dir,
		Names: []string{"shop"},
		// The mark goes first: whoever sees the new certificate served
		// finds the mark already written.
		Exec:       "echo reloading >> " + hookLog + " && " + ng.ReloadCommand(),
		Debounce:   100 * time.Millisecond,
		Registerer: reg,
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	eventually(t, 20*time.Second, "the agent's initial sync", func() bool {
		return metric(t, reg, "acmeq_sync_certificates") == 1
	})
	if metric(t, reg, "acmeq_sync_certificates_synced_total") != 0 || metric(t, reg, "acmeq_sync_hook_runs_total") != 0 {
		t.Error("the agent rewrote up-to-date files or reloaded nginx for nothing")
	}

	// Re-issue with another name.
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: "default", Name: "shop", Issuer: dev.IssuerName, DNSNames: []string{"shop.example.test", "www.shop.example.test"}}); err != nil {
		t.Fatal(err)
	}
	oldSerial := c.SerialNumber
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := served(ng.Addr, "www.shop.example.test", roots)
		reloaded := len(hookLines(hookLog))
		if err == nil && c.SerialNumber.Cmp(oldSerial) != 0 {
			if reloaded == 0 {
				t.Fatal("nginx served the new certificate before the hook ran")
			}
			p := readPair(t, dir, "default", "shop", roots)
			if fmt.Sprintf("%x", c.SerialNumber) != p.serial || !slices.Equal(c.DNSNames, []string{"shop.example.test", "www.shop.example.test"}) {
				t.Fatalf("nginx serves serial %x for %v, the agent wrote %s", c.SerialNumber, c.DNSNames, p.serial)
			}
			break
		}
		if len(hookLines(hookLog)) == 0 {
			if old, err := served(ng.Addr, "shop.example.test", roots); err != nil || old.SerialNumber.Cmp(oldSerial) != 0 {
				t.Fatalf("before the hook ran nginx served %v, %v", old, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx still serves serial %x (hook runs: %d); nginx:\n%s", oldSerial, reloaded, ng.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(t, reg, "acmeq_sync_hook_runs_total"); got != 1 {
		t.Errorf("hook runs = %v, want 1 for one re-issuance", got)
	}
	if metric(t, reg, "acmeq_sync_hook_failures_total") != 0 {
		t.Error("hook failures")
	}
}
