package stack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisCluster(t *testing.T) {
	c, err := StartRedisCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatalf("start redis cluster: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	if len(c.Addrs) != 3 {
		t.Fatalf("Addrs = %v, want 3", c.Addrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, DisableIdentity: true})
	defer rdb.Close()
	// Keys without a common hash tag spread over the three masters.
	for i := range 300 {
		if err := rdb.Set(ctx, fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the cluster client: %v", err)
		}
	}
	var perNode []int64
	seen := map[string]bool{}
	for _, addr := range c.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("CLUSTER INFO on %s = %q, %v", addr, info, err)
		}
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			t.Errorf("DBSIZE on %s: %v", addr, err)
		}
		perNode = append(perNode, n)
		id, err := node.ClusterMyID(ctx).Result()
		if err != nil {
			t.Errorf("CLUSTER MYID on %s: %v", addr, err)
		}
		seen[id] = true
		_ = node.Close()
	}
	total := int64(0)
	for i, n := range perNode {
		if n == 0 {
			t.Errorf("node %s holds no key: the slots are not split (%v)", c.Addrs[i], perNode)
		}
		total += n
	}
	if total != 300 || len(seen) != 3 {
		t.Errorf("%d keys on %d distinct nodes, want 300 on 3", total, len(seen))
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	for i, p := range c.nodes {
		select {
		case <-p.done:
		default:
			t.Errorf("node %s still running after Stop", c.Addrs[i])
		}
		if conn, err := net.DialTimeout("tcp", c.Addrs[i], time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("node %s still accepts connections after Stop", c.Addrs[i])
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestStartRedisClusterTooFewShards(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2} {
		if c, err := StartRedisCluster(t.TempDir(), n); err == nil || !strings.Contains(err.Error(), "at least 3 shards") {
			if c != nil {
				_ = c.Stop()
			}
			t.Errorf("StartRedisCluster(%d) = %v, want an error asking for 3 shards", n, err)
		}
	}
}

func TestStartRedisClusterMissingBinaries(t *testing.T) {
	server, err := exec.LookPath(redisBinary)
	if err != nil {
		t.Fatalf("redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)")
	}
	// redis-server present, redis-cli missing: nothing is started.
	bin := t.TempDir()
	if err := os.Symlink(server, filepath.Join(bin, redisBinary)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	const wantCLI = "stack: redis-cli not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-tools)"
	if _, err := StartRedisCluster(t.TempDir(), 3); err == nil || err.Error() != wantCLI {
		t.Errorf("err = %v, want %q", err, wantCLI)
	}

	t.Setenv("PATH", t.TempDir())
	const wantServer = "stack: redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)"
	if _, err := StartRedisCluster(t.TempDir(), 3); err == nil || err.Error() != wantServer {
		t.Errorf("err = %v, want %q", err, wantServer)
	}
}
