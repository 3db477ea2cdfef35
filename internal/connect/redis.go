package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisConfig.
const (
	// RedisURLDefault is a local redis-server, database 0.
	RedisURLDefault = "redis://127.0.0.1:6379/0"
	// RedisConnectTimeoutDefault bounds each dial and the first PING.
	RedisConnectTimeoutDefault = 5 * time.Second
)

// RedisConfig configures the Redis connection of the scheduler. The URL
// chooses the topology:
//
//	redis://[user:password@]host:port[/db]       one server (go-redis URL options in the query)
//	rediss://...                                 the same over TLS
//	redis+sentinel://[user:password@]h1:26379,h2:26379,h3:26379/master[/db]
//	rediss+sentinel://...                        Sentinel, TLS to Sentinels and Redis
//	redis+cluster://[user:password@]h1:6379,h2:6379[,...]
//	rediss+cluster://...                         Redis Cluster (the scheduler's keys share a hash tag)
//
// Sentinel can also be set with SentinelMaster and SentinelAddrs instead
// of a URL. User and password in the URL and Username/Password are the
// Redis servers' (an ACL user, or the default user with requirepass);
// SentinelUsername/SentinelPassword are the Sentinels' own.
type RedisConfig struct {
	// URL of Redis, see above. Defaults to RedisURLDefault.
	URL string `env:"ACMEQ_REDIS_URL"`
	// Username is the Redis ACL user. Defaults to none (the default user).
	Username string `env:"ACMEQ_REDIS_USERNAME"`
	// Password of Username, or requirepass. Defaults to none.
	Password string `env:"ACMEQ_REDIS_PASSWORD"`
	// TLSCA is the path of a PEM file of the CA(s) that sign the servers'
	// certificates. Needs a rediss URL. Defaults to the system's roots.
	TLSCA string `env:"ACMEQ_REDIS_TLS_CA"`
	// TLSCert and TLSKey are the paths of a PEM client certificate and key,
	// for servers that verify clients (tls-auth-clients). Defaults to none.
	TLSCert string `env:"ACMEQ_REDIS_TLS_CERT"`
	TLSKey  string `env:"ACMEQ_REDIS_TLS_KEY"`
	// TLSServerName overrides the name checked in the servers'
	// certificates. Defaults to the host dialled.
	TLSServerName string `env:"ACMEQ_REDIS_TLS_SERVER_NAME"`
	// SentinelMaster is the name Sentinel monitors the master under; with
	// SentinelAddrs, it replaces the URL. Defaults to none.
	SentinelMaster string `env:"ACMEQ_REDIS_SENTINEL_MASTER"`
	// SentinelAddrs are the Sentinels' host:port. Defaults to none.
	SentinelAddrs []string `env:"ACMEQ_REDIS_SENTINEL_ADDRS" envSeparator:","`
	// SentinelUsername and SentinelPassword authenticate with the
	// Sentinels (their own requirepass or ACL user). Defaults to none.
	SentinelUsername string `env:"ACMEQ_REDIS_SENTINEL_USERNAME"`
	SentinelPassword string `env:"ACMEQ_REDIS_SENTINEL_PASSWORD"`
	// ConnectTimeout bounds each dial and the PING that Client sends.
	// Defaults to RedisConnectTimeoutDefault.
	ConnectTimeout time.Duration `env:"ACMEQ_REDIS_CONNECT_TIMEOUT"`
}

// topology is what the URL or the Sentinel variables selected.
type topology int

const (
	single topology = iota
	sentinel
	cluster
)

// redisTarget is a parsed RedisConfig.
type redisTarget struct {
	topo       topology
	tls        bool
	addrs      []string
	master     string
	db         int
	user, pass string
	single     *redis.Options // topo single: go-redis's parse of the URL
}

func (c RedisConfig) withDefaults() RedisConfig {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = RedisConnectTimeoutDefault
	}
	return c
}

func (c RedisConfig) tlsFiles() tlsFiles {
	return tlsFiles{ca: c.TLSCA, cert: c.TLSCert, key: c.TLSKey, serverName: c.TLSServerName,
		vars: [4]string{"ACMEQ_REDIS_TLS_CA", "ACMEQ_REDIS_TLS_CERT", "ACMEQ_REDIS_TLS_KEY", "ACMEQ_REDIS_TLS_SERVER_NAME"}}
}

// credVar names the variables holding the Redis servers' credentials.
func (t redisTarget) credVar(c RedisConfig) string {
	if c.Username != "" || c.Password != "" {
		return "ACMEQ_REDIS_USERNAME/ACMEQ_REDIS_PASSWORD"
	}
	return "ACMEQ_REDIS_URL"
}

// parse checks the configuration and works out the topology.
func (c RedisConfig) parse() (redisTarget, error) {
	var t redisTarget
	explicit := c.SentinelMaster != "" || len(c.SentinelAddrs) > 0
	switch {
	case explicit && c.URL != "":
		return t, configErr("ACMEQ_REDIS_URL", "set either a URL or ACMEQ_REDIS_SENTINEL_MASTER and ACMEQ_REDIS_SENTINEL_ADDRS, not both")
	case explicit:
		var err error
		if t, err = c.sentinelTarget(); err != nil {
			return t, err
		}
	default:
		raw := c.URL
		if raw == "" {
			raw = RedisURLDefault
		}
		var err error
		if t, err = parseRedisURL(raw); err != nil {
			return t, err
		}
	}
	if err := c.setCredentials(&t); err != nil {
		return t, err
	}
	if c.tlsFiles().set() && !t.tls {
		return t, configErr("ACMEQ_REDIS_URL", "TLS files are set (ACMEQ_REDIS_TLS_*) but the URL asks for no TLS: use rediss://, rediss+sentinel:// or rediss+cluster://")
	}
	if t.tls {
		if _, err := c.tlsFiles().config(); err != nil {
			return t, err
		}
	}
	return t, nil
}

// sentinelTarget is the Sentinel topology set by ACMEQ_REDIS_SENTINEL_MASTER
// and ACMEQ_REDIS_SENTINEL_ADDRS.
func (c RedisConfig) sentinelTarget() (redisTarget, error) {
	if c.SentinelMaster == "" || len(c.SentinelAddrs) == 0 {
		return redisTarget{}, configErr("ACMEQ_REDIS_SENTINEL_MASTER/ACMEQ_REDIS_SENTINEL_ADDRS", "set both")
	}
	t := redisTarget{topo: sentinel, master: c.SentinelMaster, tls: c.tlsFiles().set()}
	for _, a := range c.SentinelAddrs {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return t, configErr("ACMEQ_REDIS_SENTINEL_ADDRS", "%q: want host:port: %w", a, err)
		}
		t.addrs = append(t.addrs, a)
	}
	return t, nil
}

// setCredentials puts ACMEQ_REDIS_USERNAME and ACMEQ_REDIS_PASSWORD into t,
// whose URL must then hold none.
func (c RedisConfig) setCredentials(t *redisTarget) error {
	if (t.user != "" || t.pass != "") && (c.Username != "" || c.Password != "") {
		return configErr("ACMEQ_REDIS_URL", "holds credentials and ACMEQ_REDIS_USERNAME/ACMEQ_REDIS_PASSWORD are set too: use one")
	}
	if c.Username != "" && c.Password == "" {
		return configErr("ACMEQ_REDIS_PASSWORD", "required with ACMEQ_REDIS_USERNAME")
	}
	if c.Username != "" || c.Password != "" {
		t.user, t.pass = c.Username, c.Password
	}
	return nil
}

func parseRedisURL(raw string) (redisTarget, error) {
	var t redisTarget
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return t, configErr("ACMEQ_REDIS_URL", "%q is not a URL: want redis://host:port/db (or rediss://, redis+sentinel://, redis+cluster://)", raw)
	}
	base, topo, _ := strings.Cut(scheme, "+")
	switch base {
	case "redis":
	case "rediss":
		t.tls = true
	default:
		return t, configErr("ACMEQ_REDIS_URL", "scheme %q: want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}
	switch topo {
	case "":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return t, &ConfigError{Var: "ACMEQ_REDIS_URL", Err: err}
		}
		t.topo, t.single, t.user, t.pass = single, opt, opt.Username, opt.Password
		t.addrs = []string{opt.Addr}
		return t, nil
	case "sentinel":
		t.topo = sentinel
	case "cluster":
		t.topo = cluster
	default:
		return t, configErr("ACMEQ_REDIS_URL", "scheme %q: want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}
	// The host part lists several host:port, which net/url refuses:
	// split it by hand.
	hosts, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		ui, err := url.Parse("redis://" + hosts[:at+1] + "x")
		if err != nil {
			return t, configErr("ACMEQ_REDIS_URL", "user information: %w", err)
		}
		t.user = ui.User.Username()
		t.pass, _ = ui.User.Password()
		hosts = hosts[at+1:]
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return t, configErr("ACMEQ_REDIS_URL", "%q: want host:port: %w", h, err)
		}
		t.addrs = append(t.addrs, h)
	}
	err := t.setPath(scheme, path)
	return t, err
}

// setPath reads the path of a Sentinel or Cluster URL of scheme: the
// master and database of a Sentinel URL; a Cluster URL has none.
func (t *redisTarget) setPath(scheme, path string) error {
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	switch {
	case t.topo == cluster && len(segs) > 0:
		return configErr("ACMEQ_REDIS_URL", "a Redis Cluster URL has no path (Cluster has database 0 only), got %q", path)
	case t.topo == sentinel && (len(segs) == 0 || len(segs) > 2):
		return configErr("ACMEQ_REDIS_URL", "want %s://host:port,.../MASTER[/DB], got path %q", scheme, path)
	case t.topo == sentinel:
		t.master = segs[0]
		if len(segs) == 2 {
			db, err := strconv.Atoi(segs[1])
			if err != nil || db < 0 {
				return configErr("ACMEQ_REDIS_URL", "database %q is not a number", segs[1])
			}
			t.db = db
		}
	}
	return nil
}

// Validate checks the configuration without connecting.
func (c RedisConfig) Validate() error {
	_, err := c.parse()
	return err
}

// Client validates the configuration, builds the client for its topology
// and sends one PING, bounded by ConnectTimeout, so that a wrong password,
// a CA that does not verify or an unknown Sentinel master is a start-up
// error (a *ConfigError naming the variables), not the first scheduler
// call failing. The caller closes the client.
func (c RedisConfig) Client() (redis.UniversalClient, error) {
	c = c.withDefaults()
	t, err := c.parse()
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if t.tls {
		if tc, err = c.tlsFiles().config(); err != nil {
			return nil, err
		}
	}
	var rdb redis.UniversalClient
	switch t.topo {
	case single:
		opt := *t.single
		opt.Username, opt.Password = t.user, t.pass
		opt.DialTimeout = c.ConnectTimeout
		if tc != nil {
			if tc.ServerName == "" && opt.TLSConfig != nil {
				tc.ServerName = opt.TLSConfig.ServerName
			}
			opt.TLSConfig = tc
		}
		rdb = redis.NewClient(&opt)
	case sentinel:
		opt := &redis.FailoverOptions{
			MasterName:       t.master,
			SentinelAddrs:    t.addrs,
			SentinelUsername: c.SentinelUsername,
			SentinelPassword: c.SentinelPassword,
			Username:         t.user,
			Password:         t.pass,
			DB:               t.db,
			DialTimeout:      c.ConnectTimeout,
		}
		if tc != nil {
			opt.TLSConfig = tc
		}
		rdb = redis.NewFailoverClient(opt)
	case cluster:
		opt := &redis.ClusterOptions{
			Addrs:       t.addrs,
			Username:    t.user,
			Password:    t.pass,
			DialTimeout: c.ConnectTimeout,
		}
		if tc != nil {
			opt.TLSConfig = tc
		}
		rdb = redis.NewClusterClient(opt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.ConnectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, c.explain(t, err)
	}
	return rdb, nil
}

// explain turns a failed PING into an error naming what to fix.
func (c RedisConfig) explain(t redisTarget, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"),
		strings.Contains(msg, "invalid username-password pair"):
		// Redis says so only in its reply text: go-redis has no error
		// value for it.
		return configErr(t.credVar(c), "Redis refused the credentials: %w", err)
	case strings.Contains(msg, "NOPERM"):
		return configErr(t.credVar(c), "the Redis user may not run PING: %w", err)
	}
	if v := verifyError(err, c.tlsFiles()); v != nil {
		return v
	}
	where := "ACMEQ_REDIS_URL"
	if t.topo == sentinel {
		if c.URL == "" {
			where = "ACMEQ_REDIS_SENTINEL_MASTER/ACMEQ_REDIS_SENTINEL_ADDRS"
		}
		if strings.Contains(msg, "sentinel") || errors.Is(err, context.DeadlineExceeded) {
			return configErr(where, "no Sentinel of %s knows a master named %q, or none answers: %w", strings.Join(t.addrs, ","), t.master, err)
		}
	}
	return fmt.Errorf("connect: connect to Redis at %s (%s): %w", strings.Join(t.addrs, ","), where, err)
}
