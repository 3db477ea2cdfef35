package connect_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/scheduler"
)

func redisClient(t *testing.T, c connect.RedisConfig) (redis.UniversalClient, error) {
	t.Helper()
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	rdb, err := bounded(t, badInputLimit, c.Client)
	if err == nil {
		t.Cleanup(func() { _ = rdb.Close() })
	}
	return rdb, err
}

// schedules checks that rdb works for acmeq's scheduler: a challenge is
// enqueued and granted (the Lua scripts, the hash-tagged keys, TIME).
func schedules(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := scheduler.New(rdb, scheduler.Config{Cap: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := scheduler.ChallengeID("default", "c-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if _, err := s.Enqueue(ctx, scheduler.Item{ID: id, Lock: scheduler.LockKey("http-01", "a.example"), Score: time.Now().UnixMilli()}); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	grants, err := s.Grant(ctx, 0)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if len(grants) != 1 || grants[0].ID != id {
		t.Fatalf("grants %+v, want %s", grants, id)
	}
}

// The scheduler's Redis over TLS with a custom CA, as an ACL user that may
// touch only acmeq's keys and no dangerous command.
func TestRedisTLSAndACL(t *testing.T) {
	ca := newCA(t, "redis")
	cert, key := ca.issue(t, "redis-server")
	port := freePort(t)
	startRedisServer(t, port,
		"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca.CertPEM,
		"--tls-auth-clients", "no",
		"--user", "default", "off",
		"--user", "acmeq", "on", ">s3cret", "~{acmeq}:*", "&*", "+@all", "-@dangerous",
	)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", port)

	rdb, err := redisClient(t, connect.RedisConfig{URL: url, TLSCA: ca.CertPEM, Username: "acmeq", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	schedules(t, rdb)
	// The ACL holds: another key is refused.
	if err := rdb.Set(context.Background(), "other", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("SET outside {acmeq}: %v, want NOPERM", err)
	}
	// Credentials in the URL.
	if _, err := redisClient(t, connect.RedisConfig{URL: fmt.Sprintf("rediss://acmeq:s3cret@127.0.0.1:%d/0", port), TLSCA: ca.CertPEM}); err != nil {
		t.Errorf("credentials in the URL: %v", err)
	}

	_, err = redisClient(t, connect.RedisConfig{URL: url, TLSCA: ca.CertPEM, Username: "acmeq", Password: "wrong"})
	wantConfigError(t, err, "ACMEQ_REDIS_USERNAME/ACMEQ_REDIS_PASSWORD", "refused the credentials")
	_, err = redisClient(t, connect.RedisConfig{URL: fmt.Sprintf("rediss://acmeq:wrong@127.0.0.1:%d/0", port), TLSCA: ca.CertPEM})
	wantConfigError(t, err, "ACMEQ_REDIS_URL", "refused the credentials")
	_, err = redisClient(t, connect.RedisConfig{URL: url, TLSCA: ca.CertPEM})
	wantConfigError(t, err, "ACMEQ_REDIS_URL", "refused the credentials")

	other := newCA(t, "other")
	_, err = redisClient(t, connect.RedisConfig{URL: url, TLSCA: other.CertPEM, Username: "acmeq", Password: "s3cret"})
	wantConfigError(t, err, "ACMEQ_REDIS_TLS_CA", "does not verify against "+other.CertPEM)
	_, err = redisClient(t, connect.RedisConfig{URL: url, Username: "acmeq", Password: "s3cret"})
	wantConfigError(t, err, "ACMEQ_REDIS_TLS_CA", "system's roots")
	_, err = redisClient(t, connect.RedisConfig{URL: url, TLSCA: filepath.Join(t.TempDir(), "none.pem")})
	wantConfigError(t, err, "ACMEQ_REDIS_TLS_CA")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing CA file: %v does not wrap fs.ErrNotExist", err)
	}
	// Plain redis:// against the TLS port: an error within the timeout.
	if _, err := redisClient(t, connect.RedisConfig{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Username: "acmeq", Password: "s3cret"}); err == nil {
		t.Error("plain connection to a TLS port succeeded")
	}
}

func TestRedisMutualTLS(t *testing.T) {
	ca := newCA(t, "redis")
	cert, key := ca.issue(t, "redis-server")
	clientCert, clientKey := ca.issue(t, "worker")
	port := freePort(t)
	startRedisServer(t, port,
		"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca.CertPEM,
		"--tls-auth-clients", "yes",
	)
	url := fmt.Sprintf("rediss://127.0.0.1:%d", port)
	rdb, err := redisClient(t, connect.RedisConfig{URL: url, TLSCA: ca.CertPEM, TLSCert: clientCert, TLSKey: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	schedules(t, rdb)
	if _, err := redisClient(t, connect.RedisConfig{URL: url, TLSCA: ca.CertPEM}); err == nil {
		t.Error("connected without a client certificate")
	}
}

// Sentinel: a master with a password and a `redis-server --sentinel`
// watching it, by URL and by the explicit variables.
func TestRedisSentinel(t *testing.T) {
	master := freePort(t)
	startRedisServer(t, master, "--port", strconv.Itoa(master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", "s3cret")
	sport := freePort(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor acmeq 127.0.0.1 %d 1\nsentinel auth-pass acmeq s3cret\n", sport, master)), 0o600); err != nil {
		t.Fatal(err)
	}
	startRedisServer(t, sport, conf, "--sentinel")
	saddr := "127.0.0.1:" + strconv.Itoa(sport)

	rdb, err := redisClient(t, connect.RedisConfig{URL: "redis+sentinel://" + saddr + "/acmeq/0", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	schedules(t, rdb)
	// The client talks to the master the Sentinel names.
	direct := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(master), Password: "s3cret"})
	defer direct.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "{acmeq}:probe", "via-sentinel", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := direct.Get(ctx, "{acmeq}:probe").Result(); err != nil || v != "via-sentinel" {
		t.Errorf("master has %q, %v", v, err)
	}

	if _, err := redisClient(t, connect.RedisConfig{SentinelMaster: "acmeq", SentinelAddrs: []string{saddr}, Password: "s3cret"}); err != nil {
		t.Errorf("explicit Sentinel variables: %v", err)
	}
	_, err = redisClient(t, connect.RedisConfig{URL: "redis+sentinel://" + saddr + "/nosuch", Password: "s3cret"})
	wantConfigError(t, err, "ACMEQ_REDIS_URL", `master named "nosuch"`)
	_, err = redisClient(t, connect.RedisConfig{SentinelMaster: "nosuch", SentinelAddrs: []string{saddr}, Password: "s3cret"})
	wantConfigError(t, err, "ACMEQ_REDIS_SENTINEL_MASTER")
	_, err = redisClient(t, connect.RedisConfig{URL: "redis+sentinel://" + saddr + "/acmeq", Password: "wrong"})
	wantConfigError(t, err, "ACMEQ_REDIS_USERNAME/ACMEQ_REDIS_PASSWORD", "refused the credentials")
}

func TestRedisCluster(t *testing.T) {
	c, err := stack.StartRedisCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	rdb, err := redisClient(t, connect.RedisConfig{URL: "redis+cluster://" + strings.Join(c.Addrs, ",")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Errorf("client is a %T, want a *redis.ClusterClient", rdb)
	}
	schedules(t, rdb)
}

func TestRedisConfigValidate(t *testing.T) {
	ca := newCA(t, "x")
	for _, tc := range []struct {
		name string
		cfg  connect.RedisConfig
		v    string
	}{
		{"bad scheme", connect.RedisConfig{URL: "http://127.0.0.1:6379"}, "ACMEQ_REDIS_URL"},
		{"not a URL", connect.RedisConfig{URL: "127.0.0.1:6379"}, "ACMEQ_REDIS_URL"},
		{"TLS files without rediss", connect.RedisConfig{URL: "redis://127.0.0.1:6379", TLSCA: ca.CertPEM}, "ACMEQ_REDIS_URL"},
		{"URL and Sentinel variables", connect.RedisConfig{URL: "redis://127.0.0.1:6379", SentinelMaster: "m", SentinelAddrs: []string{"127.0.0.1:26379"}}, "ACMEQ_REDIS_URL"},
		{"Sentinel master without addresses", connect.RedisConfig{SentinelMaster: "m"}, "ACMEQ_REDIS_SENTINEL_MASTER/ACMEQ_REDIS_SENTINEL_ADDRS"},
		{"Sentinel address without port", connect.RedisConfig{SentinelMaster: "m", SentinelAddrs: []string{"host"}}, "ACMEQ_REDIS_SENTINEL_ADDRS"},
		{"Sentinel URL without master", connect.RedisConfig{URL: "redis+sentinel://127.0.0.1:26379"}, "ACMEQ_REDIS_URL"},
		{"Sentinel URL with a bad database", connect.RedisConfig{URL: "redis+sentinel://127.0.0.1:26379/m/x"}, "ACMEQ_REDIS_URL"},
		{"Cluster URL with a path", connect.RedisConfig{URL: "redis+cluster://127.0.0.1:7000/1"}, "ACMEQ_REDIS_URL"},
		{"credentials twice", connect.RedisConfig{URL: "redis://u:p@127.0.0.1:6379", Password: "p"}, "ACMEQ_REDIS_URL"},
		{"username without password", connect.RedisConfig{Username: "u"}, "ACMEQ_REDIS_PASSWORD"},
		{"unknown URL option", connect.RedisConfig{URL: "redis://127.0.0.1:6379?nosuch=1"}, "ACMEQ_REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantConfigError(t, tc.cfg.Validate(), tc.v)
		})
	}
	for _, ok := range []connect.RedisConfig{
		{},
		{URL: "rediss://h:6380/2?dial_timeout=3s", TLSCA: ca.CertPEM},
		{URL: "redis+sentinel://user:pw@h1:26379,h2:26379,h3:26379/mymaster/1"},
		{URL: "rediss+cluster://h1:7000,h2:7000"},
		{SentinelMaster: "m", SentinelAddrs: []string{"h1:26379", " h2:26379"}},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}
