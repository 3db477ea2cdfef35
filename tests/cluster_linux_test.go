//go:build linux

package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers/http01"
	"github.com/acmeq/acmeq/worker"
)

const (
	clusterNodes = 3
	clusterCerts = 300
	// What heals a fault is shortened so the test sees it within seconds:
	// a message whose ack was lost comes back after clusterAckWait; a
	// challenge granted while its "scheduled" message could not be
	// published (no stream leader yet) comes back when its lease expires;
	// a transition whose publish failed after its write was committed
	// (the producer's, or a worker's on the way to Done) is re-sent by the
	// resync.
	clusterAckWait  = 5 * time.Second
	clusterLeaseTTL = 10 * time.Second
	clusterResync   = 15 * time.Second
	// clusterTimeout bounds the whole test, start-up included.
	clusterTimeout = 4 * time.Minute
)

// TestClusterLeaderKilled runs acmeq on a real 3-node JetStream cluster:
// nats-server child processes routed into one cluster, every stream and
// bucket R3, three workers each connected to a different node (the
// responder and the test's own client to the first), 300 certificates.
// When a third of them are issued, the node leading ACMEQ_WORK is killed
// with SIGKILL (a crash: no leadership hand-over), and it is restarted
// when two thirds are. Every certificate is issued, and exactly once: one
// CertificateRequest and one Order per Certificate, and one issuance per
// Certificate at Pebble (counted in Pebble's log).
//
// The nodes are child processes (see stack.StartNATSCluster) rather than
// embedded servers so that the kill is real: the kernel drops the node's
// sockets, its raft state stops mid-write, and restarting it replays its
// store from disk, as in production. The workers run in-process (each with
// its own NATS and Redis connections).
func TestClusterLeaderKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	dir := t.TempDir()
	began := time.Now()

	cluster, err := stack.StartNATSCluster(dir, clusterNodes)
	if err != nil {
		t.Fatalf("start nats cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nats cluster output (tails):\n%s", tailLines(cluster.Output(), 120))
		}
		if err := cluster.Stop(); err != nil {
			t.Errorf("stop nats cluster: %v", err)
		}
	})
	dns, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	rds, err := stack.StartRedis(dir + "/redis")
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
	issued := &issuanceLog{}
	pebble, err := stack.StartPebble(stack.PebbleConfig{
		HTTPPort: httpPort,
		TLSPort:  tlsPort,
		DNSAddr:  dns.Addr,
		Logger:   log.New(issued, "", 0),
	})
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

	// The test's own client, the producer and the responder use node 0
	// first; every client fails over to the other nodes.
	nc, js := clusterConnect(t, cluster, 0, "acmeq-test")
	if err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: clusterNodes}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js, sealer, store.Config{Replicas: clusterNodes})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := http01.EnsureBucketReplicas(ctx, js, clusterNodes)
	if err != nil {
		t.Fatal(err)
	}
	assertAllR3(t, ctx, js)
	// A process configured for one replica is refused by the R3 streams.
	if err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 1}); err == nil || !strings.Contains(err.Error(), "ACMEQ_REPLICAS") {
		t.Errorf("EnsureStreams(Replicas 1) on R3 streams = %v, want a replicas error", err)
	}

	resp := http01.NewResponder(kv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := resp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: resp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); resp.Stop() })

	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range clusterNodes {
		name := "cluster-worker-" + strconv.Itoa(i)
		_, wjs := clusterConnect(t, cluster, i, name)
		wst, err := store.Open(ctx, wjs, sealer, store.Config{Replicas: clusterNodes})
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
		t.Cleanup(func() { _ = rdb.Close() })
		w, err := worker.New(wjs, wst, rdb, worker.Config{
			Name:              name,
			Replicas:          clusterNodes,
			AckWait:           clusterAckWait,
			TickInterval:      500 * time.Millisecond,
			SelfCheckInterval: time.Second,
			ResyncInterval:    clusterResync,
			Scheduler:         scheduler.Config{LeaseTTL: clusterLeaseTTL},
			HTTP01Port:        httpPort,
			Resolve:           worker.ResolveTo("127.0.0.1"),
			Logger:            logger.With("worker", name),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			w.Stop(sctx)
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker warnings (tail):\n%s", tailLines(logs.String(), 60))
		}
	})

	// For the helpers shared with the other end-to-end tests.
	env := &dev.Env{Stack: &stack.Stack{Redis: rds}, Store: st}
	prod := producer.New(st, bus.New(js, "acmeq-test"))
	if err := createClusterIssuer(ctx, prod, st, pebble); err != nil {
		t.Fatal(err)
	}
	reqs := dev.DemoRequests(clusterCerts)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		names[i] = r.Name
	}
	started := time.Now()
	t.Logf("stack and workers up in %s", started.Sub(began).Round(time.Millisecond))
	var wg sync.WaitGroup
	requestErrs := make(chan error, len(reqs))
	wg.Go(func() { requestErrs <- requestRetrying(ctx, prod, reqs) })

	// A third issued: kill the node leading the work stream.
	waitIssuedCount(t, ctx, env, clusterCerts/3)
	info, err := streamInfo(ctx, js, messages.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	victim := cluster.Node(info.Cluster.Leader)
	if victim == nil {
		t.Fatalf("stream leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("killed %s, leader of %s, after %s", victim.Name, messages.WorkStream, killedAt.Sub(started).Round(time.Millisecond))

	// Two thirds issued (by the surviving nodes): bring it back.
	waitIssuedCount(t, ctx, env, 2*clusterCerts/3)
	if info, err := streamInfo(ctx, js, messages.WorkStream); err != nil || info.Cluster.Leader == victim.Name {
		t.Errorf("after the kill, %s leader = %+v (%v), want another node", messages.WorkStream, info, err)
	}
	if err := victim.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted %s %s after the kill", victim.Name, time.Since(killedAt).Round(time.Millisecond))

	wg.Wait()
	if err := <-requestErrs; err != nil {
		t.Fatal(err)
	}
	waitIssuedCount(t, ctx, env, clusterCerts)
	elapsed := time.Since(started)
	if err := victim.WaitHealthy(60 * time.Second); err != nil {
		t.Errorf("restarted node: %v", err)
	}

	// Exactly once: one request and one order per certificate, and as many
	// issuances at the CA as certificates, one per order.
	assertOncePerCertificate(t, ctx, st, names)
	orders, err := st.List(ctx, messages.KindOrder, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	perOrder := issued.perOrder()
	total := 0
	for _, n := range perOrder {
		total += n
	}
	if total != clusterCerts || len(perOrder) != clusterCerts {
		t.Errorf("Pebble issued %d certificates for %d orders, want %d for %d", total, len(perOrder), clusterCerts, clusterCerts)
	}
	for _, o := range orders {
		ord := o.(*messages.Order)
		id := ord.Status.URL[strings.LastIndexByte(ord.Status.URL, '/')+1:]
		if perOrder[id] != 1 {
			t.Errorf("order %s (%s): issued %d times at Pebble", ord.Metadata.Name, id, perOrder[id])
		}
	}
	// The certificates are real: each verifies against Pebble's root.
	root, err := pebble.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		data, err := st.GetSecret(ctx, dev.Namespace, r.Name)
		if err != nil {
			t.Errorf("secret %s: %v", r.Name, err)
			continue
		}
		if _, err := dev.VerifyChain(data[messages.SecretTLSCert], root, r.DNSNames); err != nil {
			t.Errorf("certificate %s: %v", r.Name, err)
		}
	}
	// The restarted node holds its replicas again: every stream R3 with
	// every replica current.
	eventuallyCtx(t, ctx, 30*time.Second, func() bool {
		info, err := streamInfo(ctx, js, messages.WorkStream)
		return err == nil && len(info.Cluster.Replicas) == clusterNodes-1 && replicasCurrent(info)
	})
	t.Logf("%d certificates on a %d-node cluster, %s killed and restarted: issued in %s (test %s)",
		clusterCerts, clusterNodes, victim.Name, elapsed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	_ = nc
}

// clusterConnect connects to node i first, failing over to the others,
// and closes the connection when the test ends.
func clusterConnect(t *testing.T, c *stack.NATSCluster, i int, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(i), nats.Name(name), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// assertAllR3 checks every stream of acmeq's, KV buckets included.
func assertAllR3(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	want := []string{messages.WorkStream, messages.EventStream, messages.DeadLetterStream, "KV_" + http01.Bucket, "KV_" + messages.SecretBucket}
	for _, k := range messages.ReconciledKinds {
		want = append(want, "KV_"+k.Bucket())
	}
	for _, name := range want {
		info, err := streamInfo(ctx, js, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if info.Config.Replicas != clusterNodes || info.Cluster == nil || len(info.Cluster.Replicas) != clusterNodes-1 {
			t.Errorf("stream %s: %d replicas, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
	}
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ictx, name)
	if err != nil {
		return nil, err
	}
	return s.Info(ictx)
}

func replicasCurrent(info *jetstream.StreamInfo) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

// createClusterIssuer applies dev's Issuer for pebble and waits until a
// worker has registered its account.
func createClusterIssuer(ctx context.Context, prod *producer.Client, st *store.Store, pebble *stack.Pebble) error {
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: dev.IssuerName, Namespace: dev.Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:              pebble.DirectoryURL,
			Email:               "cluster@acmeq.test",
			PrivateKeySecretRef: messages.SecretRef{Name: dev.IssuerName + "-account-key"},
			CABundle:            string(pebble.TLSCertPEM),
			Solvers:             []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}},
		}},
	}
	if _, err := prod.Apply(ctx, iss); err != nil {
		return fmt.Errorf("apply issuer: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := &messages.Issuer{}
		if err := st.Get(ctx, dev.Namespace, dev.IssuerName, got); err == nil && messages.IsReady(got.Status.Conditions) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("issuer not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requestRetrying requests every certificate, retrying one whose request
// failed (the cluster may be electing a leader): a request is idempotent.
func requestRetrying(ctx context.Context, prod *producer.Client, reqs []producer.RequestOptions) error {
	for _, r := range reqs {
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = prod.Request(rctx, r)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("request %s: %w", r.Name, err)
		}
	}
	return nil
}

// waitIssuedCount polls the Certificates until at least n are Ready; a
// Certificate that failed fails the test at once.
func waitIssuedCount(t *testing.T, ctx context.Context, env *dev.Env, n int) {
	t.Helper()
	ready := -1
	var lastErr error
	lastLog, lastChange, dumped := time.Now(), time.Now(), false
	for {
		objs, err := listRetrying(ctx, env.Store, messages.KindCertificate)
		if err == nil {
			now := 0
			for _, o := range objs {
				c := o.(*messages.Certificate)
				if messages.IsReady(c.Status.Conditions) {
					now++
				} else if c.Status.LastFailureTime != nil {
					cond := messages.GetCondition(c.Status.Conditions, messages.ConditionReady)
					t.Fatalf("certificate %s failed: %+v", c.Metadata.Name, cond)
				}
			}
			if now >= n {
				return
			}
			if now != ready {
				ready, lastChange = now, time.Now()
			}
		} else {
			lastErr = err
		}
		if time.Since(lastLog) > 5*time.Second && ready >= 0 {
			t.Logf("%d certificates ready", ready)
			lastLog = time.Now()
		}
		if !dumped && time.Since(lastChange) > 15*time.Second {
			// Say where a stall is while it lasts (the whole dump comes
			// if the deadline passes).
			t.Logf("no progress for 15s at %d ready; unfinished: %s", ready, unfinishedCounts(ctx, env.Store))
			dumped = true
		}
		select {
		case <-ctx.Done():
			dumpUnfinished(t, ctx, env)
			t.Fatalf("%d of %d certificates ready when the test's deadline passed (last list error: %v)", ready, n, lastErr)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// unfinishedCounts counts the resources of each kind that are not done.
func unfinishedCounts(ctx context.Context, st *store.Store) string {
	var parts []string
	for _, k := range []messages.Kind{messages.KindCertificate, messages.KindCertificateRequest, messages.KindOrder, messages.KindChallenge} {
		objs, err := listRetrying(ctx, st, k)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		n := 0
		for _, o := range objs {
			switch r := o.(type) {
			case *messages.Certificate:
				n += b2i(!messages.IsReady(r.Status.Conditions))
			case *messages.CertificateRequest:
				n += b2i(!messages.IsReady(r.Status.Conditions))
			case *messages.Order:
				n += b2i(!r.Status.State.Final())
			case *messages.Challenge:
				n += b2i(!r.Status.State.Final() || r.Status.Processing)
			}
		}
		parts = append(parts, fmt.Sprintf("%d %ss", n, k))
	}
	return strings.Join(parts, ", ")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// listRetrying lists a kind, with a deadline per attempt.
func listRetrying(ctx context.Context, st *store.Store, k messages.Kind) ([]messages.Object, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return st.List(lctx, k, "")
}

// assertOncePerCertificate checks one CertificateRequest (revision 1) per
// Certificate and one Order per CertificateRequest.
func assertOncePerCertificate(t *testing.T, ctx context.Context, st *store.Store, names []string) {
	t.Helper()
	crs, err := listRetrying(ctx, st, messages.KindCertificateRequest)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := listRetrying(ctx, st, messages.KindOrder)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[worker.RequestName(n, 1)] = true
	}
	for _, o := range crs {
		if name := o.GetMeta().Name; !want[name] {
			t.Errorf("unexpected CertificateRequest %s", name)
		}
	}
	perRequest := map[string]int{}
	for _, o := range orders {
		if ow := o.GetMeta().OwnerReference; ow != nil {
			perRequest[ow.Name]++
		}
	}
	if len(crs) != len(names) || len(orders) != len(names) {
		t.Errorf("%d CertificateRequests and %d Orders for %d Certificates", len(crs), len(orders), len(names))
	}
	for name := range want {
		if perRequest[name] != 1 {
			t.Errorf("CertificateRequest %s has %d Orders", name, perRequest[name])
		}
	}
}

// eventuallyCtx polls cond every 100ms until it holds, timeout passes or
// ctx ends.
func eventuallyCtx(t *testing.T, ctx context.Context, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// issuanceLog counts Pebble's "Issued certificate serial S for order O"
// log lines by order.
type issuanceLog struct {
	mu      sync.Mutex
	partial []byte
	orders  map[string]int
}

var issuedLine = regexp.MustCompile(`Issued certificate serial \S+ for order (\S+)`)

func (l *issuanceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.orders == nil {
		l.orders = map[string]int{}
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if m := issuedLine.FindSubmatch(l.partial[:i]); m != nil {
			l.orders[string(m[1])]++
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *issuanceLog) perOrder() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.orders))
	for k, v := range l.orders {
		out[k] = v
	}
	return out
}
