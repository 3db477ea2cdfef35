package stack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// redisCLIBinary is the executable StartRedisCluster creates the
	// cluster with.
	redisCLIBinary = "redis-cli"
	// clusterBusOffset is how far above its port a node's cluster bus
	// listens (Redis' fixed default).
	clusterBusOffset = 10000
	// clusterCreateTimeout bounds `redis-cli --cluster create`.
	clusterCreateTimeout = time.Minute
	// clusterReadyTimeout bounds the wait for cluster_state:ok everywhere.
	clusterReadyTimeout = 30 * time.Second
	// clusterMinShards is the least number of masters Redis Cluster
	// accepts.
	clusterMinShards = 3
)

// RedisCluster is a Redis Cluster of redis-server child processes on
// 127.0.0.1, one master per shard, no replicas and no persistence. Each
// node runs in its own process group and, on Linux, is killed by the
// kernel when the parent process dies.
type RedisCluster struct {
	// Addrs are the nodes' host:port, one per shard.
	Addrs []string

	nodes []*redisProc
}

// StartRedisCluster starts shards (at least 3) redis-server nodes with
// cluster mode enabled, each with its working directory under dir
// (node-0, node-1, ...), joins them with `redis-cli --cluster create`
// (the 16384 slots split between them, no replicas) and waits until every
// node reports cluster_state:ok. redis-server and redis-cli are looked up
// in PATH; on Debian and Ubuntu they come with the redis-server and
// redis-tools packages. If any step fails, the nodes already started are
// killed.
func StartRedisCluster(dir string, shards int) (_ *RedisCluster, err error) {
	if shards < clusterMinShards {
		return nil, fmt.Errorf("stack: a Redis Cluster needs at least %d shards, got %d", clusterMinShards, shards)
	}
	server, err := exec.LookPath(redisBinary)
	if err != nil {
		return nil, errors.New("stack: redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)")
	}
	cli, err := exec.LookPath(redisCLIBinary)
	if err != nil {
		return nil, errors.New("stack: redis-cli not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-tools)")
	}
	c := &RedisCluster{}
	defer func() {
		if err != nil {
			c.kill()
		}
	}()
	for i := range shards {
		nodeDir, err := filepath.Abs(filepath.Join(dir, "node-"+strconv.Itoa(i)))
		if err != nil {
			return nil, fmt.Errorf("stack: redis cluster dir: %w", err)
		}
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return nil, fmt.Errorf("stack: create redis cluster dir: %w", err)
		}
		addr, proc, err := startClusterNode(server, nodeDir)
		if err != nil {
			return nil, err
		}
		c.Addrs = append(c.Addrs, addr)
		c.nodes = append(c.nodes, proc)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("stack: %s %s: %w\n--- output ---\n%s", cli, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	if err := c.waitReady(); err != nil {
		return nil, err
	}
	return c, nil
}

// startClusterNode starts one cluster-enabled redis-server in dir on a
// free port whose cluster bus port (port+10000) is free too, retrying
// with other ports when the server exits because one was taken.
func startClusterNode(bin, dir string) (string, *redisProc, error) {
	var lastErr error
	for range redisStartAttempts {
		port, err := freeClusterPort()
		if err != nil {
			return "", nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		proc, err := spawnClusterNode(bin, dir, port,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
		)
		if err == nil {
			return addr, proc, nil
		}
		lastErr = err
		if !errors.Is(err, errRedisExited) {
			break
		}
		// A previous attempt may have left its cluster configuration.
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	return "", nil, lastErr
}

// freeClusterPort returns a port of 127.0.0.1 that, with its cluster bus
// port, was free when checked.
func freeClusterPort() (int, error) {
	const lo, hi = 20000, 65535 - clusterBusOffset
	var lastErr error
	for range 100 {
		port := lo + rand.IntN(hi-lo)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
		_ = a.Close()
		if err != nil {
			lastErr = err
			continue
		}
		_ = b.Close()
		return port, nil
	}
	return 0, fmt.Errorf("stack: find a free port pair for a redis cluster node: %w", lastErr)
}

// spawnClusterNode starts one cluster node (see spawnRedisServer).
func spawnClusterNode(bin, dir string, port int, extra ...string) (*redisProc, error) {
	return spawnRedisServer(bin, dir, port, extra...)
}

// waitReady polls CLUSTER INFO on every node until each says
// cluster_state:ok with all slots assigned and every node known.
func (c *RedisCluster) waitReady() error {
	deadline := time.Now().Add(clusterReadyTimeout)
	want := []string{
		"cluster_state:ok",
		"cluster_slots_assigned:16384",
		"cluster_known_nodes:" + strconv.Itoa(len(c.Addrs)),
	}
	for _, addr := range c.Addrs {
		client := redis.NewClient(&redis.Options{
			Addr:            addr,
			Protocol:        2,
			DisableIdentity: true,
			MaxRetries:      -1,
			PoolSize:        1,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		})
		var info string
		var err error
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err = client.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && clusterInfoHas(info, want) {
				break
			}
			if time.Now().After(deadline) {
				_ = client.Close()
				if err != nil {
					return fmt.Errorf("stack: redis cluster node %s not ready after %s: %w", addr, clusterReadyTimeout, err)
				}
				return fmt.Errorf("stack: redis cluster node %s not ready after %s:\n%s", addr, clusterReadyTimeout, strings.TrimSpace(info))
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = client.Close()
	}
	return nil
}

func clusterInfoHas(info string, want []string) bool {
	lines := map[string]bool{}
	for _, l := range strings.Split(info, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, w := range want {
		if !lines[w] {
			return false
		}
	}
	return true
}

// Output returns the most recent output of every node, each under a
// header naming its address.
func (c *RedisCluster) Output() string {
	var b strings.Builder
	for i, p := range c.nodes {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", c.Addrs[i], strings.TrimSpace(p.out.String()))
	}
	return b.String()
}

// Stop sends SIGTERM to every node, SIGKILL to those still running 5
// seconds later, and waits for them all. Stopping a stopped cluster is a
// no-op.
func (c *RedisCluster) Stop() error {
	var errs []error
	for _, p := range c.nodes {
		if err := p.signal(syscall.SIGTERM); err != nil {
			errs = append(errs, err)
		}
	}
	timer := time.NewTimer(redisStopGrace)
	defer timer.Stop()
	expired := false
	for _, p := range c.nodes {
		if !expired {
			select {
			case <-p.done:
				continue
			case <-timer.C:
				expired = true
			}
		}
		if err := p.signal(syscall.SIGKILL); err != nil {
			errs = append(errs, err)
		}
		<-p.done
	}
	return errors.Join(errs...)
}

// kill sends SIGKILL to every node and waits for them.
func (c *RedisCluster) kill() {
	for _, p := range c.nodes {
		_ = p.signal(syscall.SIGKILL)
	}
	for _, p := range c.nodes {
		<-p.done
	}
}
