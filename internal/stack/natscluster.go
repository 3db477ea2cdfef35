package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// natsServerModule is the module whose main package is nats-server;
	// NATSServerBinary builds the version go.mod requires.
	natsServerModule = "github.com/nats-io/nats-server/v2"
	// natsBuildTimeout bounds `go build` of nats-server (a cold build
	// cache on 2 cores takes about a minute).
	natsBuildTimeout = 5 * time.Minute
	// natsClusterReadyTimeout bounds the wait for every node's /healthz
	// (routes up, a JetStream meta leader elected, streams current).
	natsClusterReadyTimeout = 60 * time.Second
	// natsStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	natsStopGrace = 10 * time.Second
	// natsOutputLimit is how many bytes of a node's output are kept.
	natsOutputLimit = 64 << 10
	// natsClusterName is the cluster's name in every node's configuration.
	natsClusterName = "acmeq"
)

var natsBuild struct {
	sync.Mutex
	path string
}

// NATSServerBinary returns the path of a nats-server executable of the
// version go.mod requires, building it with `go build` from the module
// cache the first time (into the user's cache directory, under
// acmeq/nats-server-<version>, so later runs reuse it). It must run inside
// the acmeq module (tests do: their working directory is their package's).
func NATSServerBinary() (string, error) {
	natsBuild.Lock()
	defer natsBuild.Unlock()
	if natsBuild.path != "" {
		return natsBuild.path, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("stack: the go command is not in PATH: it builds nats-server for the cluster tests (install Go 1.26)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsBuildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Version}}", natsServerModule).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("stack: go list -m %s (run inside the acmeq module): %w\n%s", natsServerModule, err, out)
	}
	version := strings.TrimSpace(string(out))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "acmeq")
	path := filepath.Join(dir, "nats-server-"+version)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		natsBuild.path = path
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("stack: create %s: %w", dir, err)
	}
	// Build beside the target and rename: another test binary may be
	// building or running the same file at once.
	tmp, err := os.CreateTemp(dir, ".nats-server-build-*")
	if err != nil {
		return "", fmt.Errorf("stack: build nats-server: %w", err)
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp.Name(), natsServerModule)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("stack: go build %s@%s: %w\n%s", natsServerModule, version, err, out)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("stack: build nats-server: %w", err)
	}
	natsBuild.path = path
	return path, nil
}

// NATSCluster is a JetStream cluster of nats-server child processes on
// 127.0.0.1, every node routed to every other. Nodes keep their ports and
// their JetStream store across Kill and Restart, as a server that crashed
// and came back would. Each node runs in its own process group and, on
// Linux, is killed by the kernel when the parent process dies.
type NATSCluster struct {
	// Nodes are the servers, named n0, n1, ...
	Nodes []*NATSNode
}

// NATSNode is one server of a NATSCluster.
type NATSNode struct {
	// Name is the node's server_name (n0, n1, ...), as JetStream reports
	// it in stream and consumer cluster information.
	Name string
	// URL is the node's client URL, e.g. nats://127.0.0.1:41234.
	URL string

	bin     string
	dir     string
	conf    string
	monitor string // host:port of the monitoring endpoint

	mu   sync.Mutex
	proc *child // nil when the node is not running
}

// StartNATSCluster starts n (at least 3) nats-server nodes (see
// NATSServerBinary) with JetStream file storage under dir/<name>, routed
// into one cluster, and waits until every node's /healthz answers ok: a
// JetStream meta leader is elected and every node is current. If any step
// fails, the nodes already started are killed.
func StartNATSCluster(dir string, n int) (*NATSCluster, error) {
	if n < 3 {
		return nil, fmt.Errorf("stack: a NATS JetStream cluster needs at least 3 nodes, got %d", n)
	}
	bin, err := NATSServerBinary()
	if err != nil {
		return nil, err
	}
	// Free ports are chosen before the nodes bind them (every node's
	// configuration names every route port), so another process may take
	// one meanwhile: then the node exits, and the cluster is started
	// again on other ports.
	for attempt := 1; ; attempt++ {
		c, err := startNATSCluster(bin, dir, n)
		if err == nil || !errors.Is(err, errNATSExited) || attempt == natsStartAttempts {
			return c, err
		}
	}
}

const (
	// natsStartAttempts is how many sets of ports StartNATSCluster tries.
	natsStartAttempts = 3
	// errNATSExited marks a node that exited before listening, as it does
	// when one of its ports was taken.
	errNATSExited = constError("nats-server exited")
)

func startNATSCluster(bin, dir string, n int) (_ *NATSCluster, err error) {
	type ports struct{ client, route, monitor int }
	ps := make([]ports, n)
	for i := range ps {
		for _, p := range []*int{&ps[i].client, &ps[i].route, &ps[i].monitor} {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	routes := make([]string, n)
	for i, p := range ps {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(p.route)
	}
	c := &NATSCluster{}
	defer func() {
		if err != nil {
			c.kill()
		}
	}()
	for i, p := range ps {
		name := "n" + strconv.Itoa(i)
		nodeDir, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("stack: nats cluster dir: %w", err)
		}
		// A previous attempt may have left a store behind.
		if err := os.RemoveAll(nodeDir); err != nil {
			return nil, fmt.Errorf("stack: clear nats cluster dir: %w", err)
		}
		if err := os.MkdirAll(filepath.Join(nodeDir, "jetstream"), 0o755); err != nil {
			return nil, fmt.Errorf("stack: create nats cluster dir: %w", err)
		}
		node := &NATSNode{
			Name:    name,
			URL:     "nats://127.0.0.1:" + strconv.Itoa(p.client),
			bin:     bin,
			dir:     nodeDir,
			conf:    filepath.Join(nodeDir, "nats.conf"),
			monitor: "127.0.0.1:" + strconv.Itoa(p.monitor),
		}
		conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: %q
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, name, p.client, node.monitor, filepath.Join(nodeDir, "jetstream"), natsClusterName, p.route, strings.Join(quoteAll(routes), ", "))
		if err := os.WriteFile(node.conf, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("stack: write %s: %w", node.conf, err)
		}
		c.Nodes = append(c.Nodes, node)
		if err := node.start(); err != nil {
			return nil, err
		}
	}
	for _, node := range c.Nodes {
		if err := node.WaitHealthy(natsClusterReadyTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// URLs returns the client URLs of every node, comma-separated, starting
// with node first: the form ACMEQ_NATS_URL and nats.Connect take. A client
// given this list (with nats.DontRandomize) connects to node first and
// fails over to the others.
func (c *NATSCluster) URLs(first int) string {
	urls := []string{c.Nodes[first].URL}
	for i, n := range c.Nodes {
		if i != first {
			urls = append(urls, n.URL)
		}
	}
	return strings.Join(urls, ",")
}

// Node returns the node named name, or nil.
func (c *NATSCluster) Node(name string) *NATSNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Output returns the most recent output of every node, each under a
// header naming it.
func (c *NATSCluster) Output() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", n.Name, n.URL, strings.TrimSpace(n.Output()))
	}
	return b.String()
}

// Stop stops every node (SIGTERM, then SIGKILL after 10 seconds) and
// waits for them. Stopping a stopped cluster is a no-op.
func (c *NATSCluster) Stop() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *NATSCluster) kill() {
	for _, n := range c.Nodes {
		_ = n.Kill()
	}
}

// start runs the node's server with its configuration file and waits
// until it accepts client connections.
func (n *NATSNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		select {
		case <-n.proc.done:
		default:
			return fmt.Errorf("stack: nats node %s is already running", n.Name)
		}
	}
	out := &tailBuffer{limit: natsOutputLimit}
	p, err := startChild("nats-server "+n.Name, n.bin, n.dir, out, nil, nil, "-c", n.conf)
	if err != nil {
		return err
	}
	addr := strings.TrimPrefix(n.URL, "nats://")
	deadline := time.Now().Add(natsReadyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-p.done:
			conf, _ := os.ReadFile(n.conf)
			return fmt.Errorf("stack: %w: %s before listening on %s: %w\n--- output ---\n%s\n--- %s ---\n%s", errNATSExited, n.Name, addr, p.exitErr(), strings.TrimSpace(out.String()), n.conf, conf)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("stack: nats-server %s not listening on %s after %s\n--- output ---\n%s", n.Name, addr, natsReadyTimeout, strings.TrimSpace(out.String()))
		}
	}
	n.proc = p
	return nil
}

// WaitHealthy polls the node's /healthz until it answers 200 (JetStream
// enabled, the meta leader known, every stream and consumer it hosts
// current) or timeout passes.
func (n *NATSNode) WaitHealthy(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + n.monitor + "/healthz"
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			var b [512]byte
			k, _ := resp.Body.Read(b[:])
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b[:k])))
		} else {
			last = err.Error()
		}
		if !n.Running() {
			return fmt.Errorf("stack: nats-server %s is not running (last /healthz: %s)\n--- output ---\n%s", n.Name, last, strings.TrimSpace(n.Output()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stack: nats-server %s not healthy after %s: %s\n--- output ---\n%s", n.Name, timeout, last, strings.TrimSpace(n.Output()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the node's process is running.
func (n *NATSNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return false
	}
	select {
	case <-n.proc.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the node, as a crash would (no leadership
// hand-over, no flush), and waits for it to exit. Killing a node that is
// not running is a no-op.
func (n *NATSNode) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	return n.proc.kill()
}

// Stop sends SIGTERM (a clean shutdown), then SIGKILL after 10
// seconds, and waits for the node to exit. Stopping a stopped node is a
// no-op.
func (n *NATSNode) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	return n.proc.stop(natsStopGrace)
}

// Restart starts a node that was killed or stopped again, on the same
// ports with the same JetStream store, and waits until it accepts clients.
// Wait for WaitHealthy before relying on it having caught up.
func (n *NATSNode) Restart() error {
	if n.Running() {
		return fmt.Errorf("stack: restart nats node %s: still running", n.Name)
	}
	return n.start()
}

// Output returns the most recent output of the node's current or last
// process.
func (n *NATSNode) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return ""
	}
	return n.proc.out.String()
}
