package delivery

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// The NATS server goes away and comes back (same port, same data): the
// agent keeps its files meanwhile, then catches up with what changed,
// rewriting only that.
func TestSyncCatchesUpAfterNATSOutage(t *testing.T) {
	t.Parallel()
	natsDir := t.TempDir()
	n, err := stack.StartNATS(natsDir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{nats: n}
	t.Cleanup(func() { e.nats.Shutdown() })
	e.connect(t)
	dir := t.TempDir()
	for _, name := range []string{"shop", "blog"} {
		e.putCertificate(t, "default", name, nil, name+".example.test")
		e.issue(t, "default", name, name+".example.test")
	}
	r := e.start(t, Config{Dir: dir})
	eventually(t, 20*time.Second, "both written", func() bool { return metric(t, r.reg, "acmeq_sync_certificates_synced_total") == 2 })
	blog := readPair(t, dir, "default", "blog", e.ca.pool())

	port := n.Server.Addr().(*net.TCPAddr).Port
	n.Shutdown()
	readPair(t, dir, "default", "shop", e.ca.pool())
	s, err := server.NewServer(&server.Options{ServerName: "acmeq-dev", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: natsDir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not come back")
	}
	e.nats = &stack.NATS{Server: s, URL: s.ClientURL()}
	restarted := time.Now()
	eventually(t, 20*time.Second, "the test's connection back", func() bool { return e.nc.IsConnected() })

	// A request sent while the restarted server recovers its streams can
	// go unanswered (seen in CI: a KV put waited out its two minutes), so
	// the renewal is put the way a worker would: again, after a timeout.
	chain, key, renewed := e.ca.issue(t, "shop.example.test")
	owner := &messages.ObjectReference{Kind: messages.KindCertificate, Namespace: "default", Name: "shop"}
	eventually(t, 60*time.Second, "the renewal stored", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := e.st.PutSecret(ctx, "default", "shop", map[string][]byte{messages.SecretTLSCert: chain, messages.SecretTLSKey: key, messages.SecretCACert: e.ca.pem}, owner)
		if err != nil {
			t.Logf("put the renewal: %v", err)
		}
		return err == nil
	})
	eventually(t, 60*time.Second, "the renewal after the outage", func() bool {
		p, err := checkPair(dir, "default", "shop", e.ca.pool())
		// The counter moves just after the rename that the file check sees.
		return err == nil && p.serial == renewed && metric(t, r.reg, "acmeq_sync_certificates_synced_total") >= 3
	})
	t.Logf("the renewal was on disk %s after the server restarted", time.Since(restarted).Round(time.Millisecond))
	// Not left to nats.go's watches, which notice the restart by missed
	// heartbeats some 20 s later.
	if !strings.Contains(r.log.String(), "watching the store again after a reconnect") {
		t.Error("the agent did not start its watches again after the reconnect")
	}
	if got := metric(t, r.reg, "acmeq_sync_certificates_synced_total"); got != 3 {
		t.Errorf("synced = %v after the outage, want 3 (the renewal only)", got)
	}
	if p := readPair(t, dir, "default", "blog", e.ca.pool()); p.version != blog.version {
		t.Error("blog was rewritten")
	}
}

// syncPermissions is what a sync agent's NATS user needs: read the
// Certificate and Secret buckets (stream info, ordered consumers for the
// watches, direct gets of Secrets) and nothing else. README's "Getting
// certificates to your servers" lists the same subjects.
var syncPermissions = &server.Permissions{
	Publish: &server.SubjectPermission{Allow: []string{
		"$JS.API.STREAM.INFO.KV_ACMEQ_CERTIFICATES",
		"$JS.API.STREAM.INFO.KV_ACMEQ_SECRETS",
		"$JS.API.CONSUMER.CREATE.KV_ACMEQ_CERTIFICATES.>",
		"$JS.API.CONSUMER.CREATE.KV_ACMEQ_SECRETS.>",
		"$JS.API.CONSUMER.DELETE.KV_ACMEQ_CERTIFICATES.*",
		"$JS.API.CONSUMER.DELETE.KV_ACMEQ_SECRETS.*",
		"$JS.API.DIRECT.GET.KV_ACMEQ_SECRETS.>",
		"$JS.FC.KV_ACMEQ_CERTIFICATES.>",
		"$JS.FC.KV_ACMEQ_SECRETS.>",
	}},
	Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
}

// namespacePermissions confine a sync agent to one namespace (-n ns): its
// consumers must filter on that namespace's keys, and its direct gets too.
func namespacePermissions(ns string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.STREAM.INFO.KV_ACMEQ_CERTIFICATES",
			"$JS.API.STREAM.INFO.KV_ACMEQ_SECRETS",
			"$JS.API.CONSUMER.CREATE.KV_ACMEQ_CERTIFICATES.*.$KV.ACMEQ_CERTIFICATES." + ns + ".*",
			"$JS.API.CONSUMER.CREATE.KV_ACMEQ_SECRETS.*.$KV.ACMEQ_SECRETS." + ns + ".*",
			"$JS.API.CONSUMER.DELETE.KV_ACMEQ_CERTIFICATES.*",
			"$JS.API.CONSUMER.DELETE.KV_ACMEQ_SECRETS.*",
			"$JS.API.DIRECT.GET.KV_ACMEQ_SECRETS.$KV.ACMEQ_SECRETS." + ns + ".*",
			"$JS.FC.KV_ACMEQ_CERTIFICATES.>",
			"$JS.FC.KV_ACMEQ_SECRETS.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// The agent works as a NATS user with only syncPermissions, in every
// selection mode, and that user can read nothing else.
func TestSyncLeastPrivilege(t *testing.T) {
	t.Parallel()
	s, err := server.NewServer(&server.Options{
		ServerName: "acmeq-perm", Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "worker", Password: "worker-pass"},
			{Username: "sync", Password: "sync-pass", Permissions: syncPermissions},
			{Username: "sync-team-a", Password: "team-a-pass", Permissions: namespacePermissions("team-a")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	e := &env{nats: &stack.NATS{Server: s, URL: "nats://worker:worker-pass@" + strings.TrimPrefix(s.ClientURL(), "nats://")}}
	e.connect(t) // as the worker: creates the buckets
	e.putCertificate(t, "default", "shop", map[string]string{"edge": "yes"}, "shop.example.test")
	e.issue(t, "default", "shop", "shop.example.test")
	e.putCertificate(t, "team-a", "api", nil, "api.example.test")
	e.issue(t, "team-a", "api", "api.example.test")

	var mu sync.Mutex
	var violationList []string
	violations := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(violationList) }
	syncNC, err := nats.Connect(s.ClientURL(), nats.UserInfo("sync", "sync-pass"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			defer mu.Unlock()
			violationList = append(violationList, err.Error())
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(syncNC.Close)
	syncJS, _ := jetstream.New(syncNC)
	agentEnv := &env{js: syncJS, sealer: e.sealer, ca: e.ca}

	for _, cfg := range []Config{
		{Names: []string{"shop"}},
		{LabelSelector: "edge=yes"},
		{AllNamespaces: true},
		{Namespace: "team-a"},
	} {
		cfg.Dir = t.TempDir()
		if _, logs, err := agentEnv.once(t, cfg); err != nil {
			t.Fatalf("agent as the sync user (%+v): %v\n%s", cfg, err, logs)
		}
	}
	// Long-running: the watch, and the Get of a Secret for a Certificate
	// that is selected after the start.
	dir := t.TempDir()
	r := agentEnv.start(t, Config{Dir: dir, AllNamespaces: true})
	eventually(t, 20*time.Second, "the first sync", func() bool { return metric(t, r.reg, "acmeq_sync_certificates_synced_total") == 2 })
	e.issue(t, "default", "later", "later.example.test") // the Secret first,
	e.putCertificate(t, "default", "later", nil, "later.example.test")
	eventually(t, 20*time.Second, "a certificate created later", func() bool {
		_, err := checkPair(dir, "default", "later", e.ca.pool())
		return err == nil
	})
	renewed := e.issue(t, "team-a", "api", "api.example.test")
	eventually(t, 20*time.Second, "a renewal", func() bool {
		p, err := checkPair(dir, "team-a", "api", e.ca.pool())
		return err == nil && p.serial == renewed
	})
	if v := violations(); len(v) > 0 {
		t.Errorf("permission violations while syncing: %v", v)
	}

	// Nothing else: other buckets, writes, the work queue. Each refusal is
	// a permission violation, so the request runs into its timeout.
	refused := func(what string, op func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := op(ctx); err == nil {
			t.Errorf("the sync user could %s", what)
		}
	}
	refused("open the Order bucket", func(ctx context.Context) error {
		_, err := store.OpenReadOnly(ctx, syncJS, e.sealer, messages.KindOrder)
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secrets, err := syncJS.KeyValue(ctx, messages.SecretBucket)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := syncJS.KeyValue(ctx, messages.KindCertificate.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	refused("write a Secret", func(ctx context.Context) error {
		_, err := secrets.Put(ctx, "default.shop", []byte("{}"))
		return err
	})
	refused("delete a Certificate", func(ctx context.Context) error { return certs.Delete(ctx, "default.shop") })
	refused("publish a transition", func(ctx context.Context) error {
		_, err := syncJS.Publish(ctx, messages.WorkSubject(messages.KindCertificate, "default", "shop"), []byte("{}"))
		return err
	})
	refused("create a bucket", func(ctx context.Context) error {
		_, err := syncJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ACMEQ_EVIL"})
		return err
	})
	refused("read the event stream", func(ctx context.Context) error {
		_, err := syncJS.OrderedConsumer(ctx, messages.EventStream, jetstream.OrderedConsumerConfig{})
		return err
	})
	// A user confined to namespace team-a syncs it, and nothing more.
	teamNC, err := nats.Connect(s.ClientURL(), nats.UserInfo("sync-team-a", "team-a-pass"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(teamNC.Close)
	teamJS, _ := jetstream.New(teamNC)
	teamEnv := &env{js: teamJS, sealer: e.sealer, ca: e.ca}
	teamDir := t.TempDir()
	if _, logs, err := teamEnv.once(t, Config{Dir: teamDir, Namespace: "team-a"}); err != nil {
		t.Fatalf("agent as sync-team-a with -n team-a: %v\n%s", err, logs)
	}
	if got := onDisk(t, teamDir); !slices.Equal(got, []string{"team-a/api"}) {
		t.Errorf("sync-team-a wrote %v", got)
	}
	for _, cfg := range []Config{{Namespace: "default"}, {AllNamespaces: true}} {
		cfg.Dir = t.TempDir()
		a, err := New(teamJS, e.sealer, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = a.Run(ctx)
		cancel()
		if err == nil {
			t.Errorf("sync-team-a synced %+v", cfg)
		}
	}

	if v := violations(); !slices.ContainsFunc(v, func(v string) bool { return strings.Contains(v, "Permissions Violation") }) {
		t.Errorf("the refused operations were not permission violations: %v", v)
	}
}
