package deploy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/solvers/http01"
	"github.com/acmeq/acmeq/worker"
)

// roles are the users of the test server, each with the variable of
// nats/permissions.conf that is its role.
var roles = map[string]string{
	"worker":   "ACMEQ_WORKER",
	"http01":   "ACMEQ_HTTP01",
	"producer": "ACMEQ_PRODUCER",
	"reader":   "ACMEQ_READER",
	"sync":     "ACMEQ_SYNC",
}

// permServer runs an embedded nats-server whose configuration includes
// nats/permissions.conf as it is, with one user per role (password
// "pw-<role>"), and returns its client URL.
func permServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	perms, err := os.ReadFile(filepath.Join("nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// include paths are relative to the including file.
	if err := os.WriteFile(filepath.Join(dir, "acmeq-permissions.conf"), perms, 0o600); err != nil {
		t.Fatal(err)
	}
	var users []string
	for user, v := range roles {
		users = append(users, fmt.Sprintf("{user: %q, password: %q, permissions: $%s}", user, "pw-"+user, v))
	}
	conf := fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
include ./acmeq-permissions.conf
authorization { users: [
  %s
] }
`, filepath.Join(dir, "js"), strings.Join(users, "\n  "))
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects nats/permissions.conf: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s.ClientURL()
}

// roleConn is a connection as one role, recording the permission
// violations the server reports for it.
type roleConn struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

func connectAs(t *testing.T, url, role string) *roleConn {
	t.Helper()
	rc := &roleConn{}
	t.Cleanup(func() {
		// A role that failed because a subject is missing says which.
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if t.Failed() && len(rc.violations) > 0 {
			t.Logf("permission violations of role %s: %q", role, rc.violations)
		}
	})
	nc, err := connect.NATSConfig{URL: url, User: role, Password: "pw-" + role}.Connect("acmeq-"+role,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				rc.mu.Lock()
				rc.violations = append(rc.violations, err.Error())
				rc.mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	rc.nc = nc
	// A denied JetStream request gets no answer: keep the wait short.
	if rc.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	return rc
}

// denied runs op, which the role may not do, and checks that it failed and
// that the server reported a permission violation naming subject.
func (rc *roleConn) denied(t *testing.T, what, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := op(ctx); err == nil {
		t.Errorf("%s: allowed, want denied", what)
		return
	}
	_ = rc.nc.Flush()
	deadline := time.Now().Add(3 * time.Second)
	for {
		rc.mu.Lock()
		for _, v := range rc.violations {
			if strings.Contains(v, subject) {
				rc.mu.Unlock()
				return
			}
		}
		got := append([]string(nil), rc.violations...)
		rc.mu.Unlock()
		if time.Now().After(deadline) {
			t.Errorf("%s: failed, but the server reported no permission violation on %q (got %q)", what, subject, got)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clean fails the test if the role hit a permission violation: what it
// did was within its permissions.
func (rc *roleConn) clean(t *testing.T, role string) {
	t.Helper()
	_ = rc.nc.Flush()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.violations) > 0 {
		t.Errorf("role %s needed subjects nats/permissions.conf does not give it: %q", role, rc.violations)
	}
	rc.violations = nil
}

// Each role of nats/permissions.conf against a real nats-server: a worker,
// an HTTP-01 responder and a producer connected as their roles issue
// certificates end to end (with Pebble and Redis), a reader lists every
// resource and reads the events, and a sync agent reads the certificates
// and their keys; none of them hits a violation. Then each tries something
// its role forbids, and the server refuses it.
func TestPermissionsPerRole(t *testing.T) {
	// Each step is short: a subject missing from a role shows up as a
	// request that gets no answer, so bound the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	url := permServer(t)
	dir := t.TempDir()

	dns, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	rds, err := stack.StartRedis(filepath.Join(dir, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rds.Stop() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := ln.Addr().(*net.TCPAddr).Port
	tlsPort, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pebble, err := stack.StartPebble(stack.PebbleConfig{HTTPPort: httpPort, TLSPort: tlsPort, DNSAddr: dns.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pebble.Close)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Worker: creates everything, as the first process of a fleet does.
	w := connectAs(t, url, "worker")
	wst, err := store.Open(ctx, w.js, sealer, store.Config{Replicas: 1})
	if err != nil {
		t.Fatalf("worker: open store: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	wk, err := worker.New(w.js, wst, rdb, worker.Config{
		Name: "perm-worker", HTTP01Port: httpPort, Resolve: worker.ResolveTo("127.0.0.1"),
		SelfCheckInterval: time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wk.Start(ctx); err != nil {
		t.Fatalf("worker: start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		wk.Stop(sctx)
	})

	// HTTP-01 responder: opens the existing bucket and watches it.
	h := connectAs(t, url, "http01")
	kv, err := http01.EnsureBucket(ctx, h.js)
	if err != nil {
		t.Fatalf("http01: open bucket: %v", err)
	}
	resp := http01.NewResponder(kv, quiet)
	if err := resp.Start(ctx); err != nil {
		t.Fatalf("http01: watch: %v", err)
	}
	srv := &http.Server{Handler: resp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); resp.Stop() })

	// Producer: what acmeq apply does (checks the streams, opens the
	// store), then an Issuer and two Certificates, and waits for them.
	p := connectAs(t, url, "producer")
	if err := bus.EnsureStreams(ctx, p.js, bus.Config{}); err != nil {
		t.Fatalf("producer: check streams: %v", err)
	}
	pst, err := store.Open(ctx, p.js, sealer, store.Config{})
	if err != nil {
		t.Fatalf("producer: open store: %v", err)
	}
	prod := producer.New(pst, bus.New(p.js, "acmeq-producer"))
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: dev.IssuerName, Namespace: dev.Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server: pebble.DirectoryURL, Email: "perm@acmeq.test", CABundle: string(pebble.TLSCertPEM),
			PrivateKeySecretRef: messages.SecretRef{Name: "dev-account-key"},
			Solvers:             []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}},
		}},
	}
	if _, err := prod.Apply(ctx, iss); err != nil {
		t.Fatalf("producer: apply issuer: %v", err)
	}
	// A ClusterIssuer: its own bucket and subject, its account key in the
	// workers' cluster resource namespace.
	ciss := messages.NewIssuer(messages.KindClusterIssuer)
	ciss.Metadata.Name = "shared"
	ciss.Spec.ACME = &messages.ACMEIssuer{Server: pebble.DirectoryURL, Email: "perm@acmeq.test", CABundle: string(pebble.TLSCertPEM)}
	if _, err := prod.Apply(ctx, ciss); err != nil {
		t.Fatalf("producer: apply clusterissuer: %v", err)
	}
	reqs := dev.DemoRequests(2)
	keys := make([][2]string, len(reqs))
	for i, r := range reqs {
		if _, err := prod.Request(ctx, r); err != nil {
			t.Fatalf("producer: request %s: %v", r.Name, err)
		}
		keys[i] = [2]string{r.Namespace, r.Name}
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	got, err := producer.WaitCertificates(wctx, pst, keys, nil)
	wcancel()
	if err != nil {
		t.Fatalf("producer: wait: %v", err)
	}
	for k, o := range got {
		if !o.Ready {
			t.Errorf("certificate %s: %s", k[1], o.Reason)
		}
	}

	stacktest.Eventually(t, 30*time.Second, func() error {
		got := messages.NewIssuer(messages.KindClusterIssuer)
		if err := pst.Get(ctx, "", "shared", got); err != nil {
			return err
		}
		if !messages.IsReady(got.Status.Conditions) {
			return fmt.Errorf("clusterissuer shared is not ready: %+v", got.Status.Conditions)
		}
		return nil
	})

	// Reader: acmeq get, describe and events.
	r := connectAs(t, url, "reader")
	rst, err := store.Open(ctx, r.js, sealer, store.Config{})
	if err != nil {
		t.Fatalf("reader: open store: %v", err)
	}
	for _, k := range messages.ReconciledKinds {
		objs, err := rst.List(ctx, k, "")
		// Finished challenges are removed with their final orders: the
		// list is read, and empty.
		if err != nil || (len(objs) == 0 && k != messages.KindChallenge) {
			t.Errorf("reader: list %s: %d, %v", k, len(objs), err)
		}
	}
	evs, err := bus.ReadEvents(ctx, r.js, bus.EventsOptions{})
	if err != nil || len(evs) == 0 {
		t.Errorf("reader: events: %d, %v", len(evs), err)
	}

	// Sync agent: the certificates (watched) and their secrets, unsealed.
	s := connectAs(t, url, "sync")
	certs, err := s.js.KeyValue(ctx, messages.KindCertificate.Bucket())
	if err != nil {
		t.Fatalf("sync: open certificates: %v", err)
	}
	secrets, err := s.js.KeyValue(ctx, messages.SecretBucket)
	if err != nil {
		t.Fatalf("sync: open secrets: %v", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	watch, err := certs.WatchAll(sctx)
	if err != nil {
		t.Fatalf("sync: watch certificates: %v", err)
	}
	seen := 0
	for e := range watch.Updates() {
		if e == nil {
			break
		}
		seen++
	}
	_ = watch.Stop()
	if seen != len(reqs) {
		t.Errorf("sync: watched %d certificates, want %d", seen, len(reqs))
	}
	root, err := pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, rq := range reqs {
		e, err := secrets.Get(ctx, messages.Key(rq.Namespace, rq.Name))
		if err != nil {
			t.Errorf("sync: get secret %s: %v", rq.Name, err)
			continue
		}
		var sec messages.Secret
		if err := json.Unmarshal(e.Value(), &sec); err != nil {
			t.Fatal(err)
		}
		chain, err := sealer.Open(sec.Data[messages.SecretTLSCert], rq.Namespace+"/"+rq.Name+"/"+messages.SecretTLSCert)
		if err != nil {
			t.Fatalf("sync: unseal %s: %v", rq.Name, err)
		}
		if _, err := dev.VerifyChain(chain, root, rq.DNSNames); err != nil {
			t.Errorf("sync: certificate %s: %v", rq.Name, err)
		}
	}

	for role, rc := range map[string]*roleConn{"worker": w, "http01": h, "producer": p, "reader": r, "sync": s} {
		rc.clean(t, role)
	}

	// What each role may not do (at once: each waits for a timeout).
	var wg sync.WaitGroup
	wg.Go(func() {
		w.denied(t, "worker deletes the event stream", "$JS.API.STREAM.DELETE."+messages.EventStream, func(ctx context.Context) error {
			return w.js.DeleteStream(ctx, messages.EventStream)
		})
	})
	wg.Go(func() {
		w.denied(t, "worker publishes outside acmeq", "other.subject", func(ctx context.Context) error {
			_, err := w.js.Publish(ctx, "other.subject", []byte("x"))
			return err
		})
	})
	wg.Go(func() {
		h.denied(t, "http01 writes a token", "$KV."+http01.Bucket+".forged", func(ctx context.Context) error {
			_, err := kv.Put(ctx, "forged", []byte("x"))
			return err
		})
	})
	wg.Go(func() {
		h.denied(t, "http01 opens the secrets", "$JS.API.STREAM.INFO.KV_"+messages.SecretBucket, func(ctx context.Context) error {
			_, err := h.js.KeyValue(ctx, messages.SecretBucket)
			return err
		})
	})
	wg.Go(func() {
		p.denied(t, "producer writes an Order", "$KV."+messages.KindOrder.Bucket()+".default.forged", func(ctx context.Context) error {
			_, err := pst.KV(messages.KindOrder).Put(ctx, "default.forged", []byte("{}"))
			return err
		})
	})
	wg.Go(func() {
		p.denied(t, "producer queues an Order transition", "acmeq.work.order.default.forged", func(ctx context.Context) error {
			_, err := p.js.Publish(ctx, messages.WorkSubject(messages.KindOrder, "default", "forged"), []byte("{}"))
			return err
		})
	})
	wg.Go(func() {
		r.denied(t, "reader writes a Certificate", "$KV."+messages.KindCertificate.Bucket()+".default.forged", func(ctx context.Context) error {
			_, err := rst.KV(messages.KindCertificate).Put(ctx, "default.forged", []byte("{}"))
			return err
		})
	})
	wg.Go(func() {
		r.denied(t, "reader reads a private key", "KV_"+messages.SecretBucket, func(ctx context.Context) error {
			_, err := rst.GetSecret(ctx, reqs[0].Namespace, reqs[0].Name)
			return err
		})
	})
	wg.Go(func() {
		s.denied(t, "sync writes a Certificate", "$KV."+messages.KindCertificate.Bucket()+".default.forged", func(ctx context.Context) error {
			_, err := certs.Put(ctx, "default.forged", []byte("{}"))
			return err
		})
	})
	wg.Go(func() {
		s.denied(t, "sync opens the Issuers", "$JS.API.STREAM.INFO.KV_"+messages.KindIssuer.Bucket(), func(ctx context.Context) error {
			_, err := s.js.KeyValue(ctx, messages.KindIssuer.Bucket())
			return err
		})
	})
	wg.Go(func() {
		s.denied(t, "sync writes a Secret", "$KV."+messages.SecretBucket+".default.forged", func(ctx context.Context) error {
			_, err := secrets.Put(ctx, "default.forged", []byte("{}"))
			return err
		})
	})
	wg.Wait()
}
