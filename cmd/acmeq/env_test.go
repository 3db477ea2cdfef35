package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

const testSecretKey = "0000000000000000000000000000000000000000000000000000000000000000"

// TestEnvDefaults: with nothing set but the key, the worker gets the
// worker's and scheduler's named defaults.
func TestEnvDefaults(t *testing.T) {
	e := defaultWorkerEnv()
	if err := readEnv(&e, map[string]string{"ACMEQ_SECRET_KEY": testSecretKey}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	want := worker.Config{
		Concurrency: worker.ConcurrencyDefault, AckWait: worker.AckWaitDefault, TickInterval: worker.TickIntervalDefault,
		SelfCheckInterval: worker.SelfCheckIntervalDefault, ChallengeTimeout: worker.ChallengeTimeoutDefault,
		ResyncInterval: worker.ResyncIntervalDefault, FailureBackoff: worker.FailureBackoffDefault, FailureBackoffMax: worker.FailureBackoffMaxDefault, ARICheckMax: worker.ARICheckMaxDefault, MaxPanics: worker.MaxPanicsDefault, HTTP01Port: worker.HTTP01PortDefault,
		PollInitial: worker.PollInitialDefault, PollMax: worker.PollMaxDefault,
		ClusterResourceNamespace: worker.ClusterResourceNamespaceDefault,
		Scheduler:                scheduler.Config{Cap: scheduler.CapDefault, LeaseTTL: scheduler.LeaseTTLDefault},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config = %+v\nwant     %+v", cfg, want)
	}
	if e.Conn.NATS.URL != nats.DefaultURL || e.ListenAddr != ListenDefault || e.LogFormat != "json" || e.LogLevel != "info" || e.Redis.URL != RedisURLDefault {
		t.Errorf("defaults = %+v", e)
	}
	// Empty is unset: the default stays.
	e = defaultWorkerEnv()
	if err := readEnv(&e, map[string]string{"ACMEQ_SECRET_KEY": testSecretKey, "ACMEQ_LEASE_TTL": "", "ACMEQ_ACK_WAIT": "90s"}); err != nil || e.LeaseTTL != scheduler.LeaseTTLDefault || e.AckWait != 90*time.Second {
		t.Errorf("LEASE_TTL empty, ACK_WAIT 90s: %v, %s, %s", err, e.LeaseTTL, e.AckWait)
	}
}

// TestEnvValidation: each malformed variable is an error that names it
// (never the Go field), with its rule; values are truncated and passwords
// and keys never echoed.
func TestEnvValidation(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"ACMEQ_SECRET_KEY": ""}, []string{"ACMEQ_SECRET_KEY is required"}},
		{map[string]string{"ACMEQ_SECRET_KEY": "hunter2"}, []string{"ACMEQ_SECRET_KEY is invalid: store: secret key must be 32 bytes"}},
		{map[string]string{"ACMEQ_NATS_URL": "http://nats:4222"}, []string{`ACMEQ_NATS_URL "http://nats:4222": scheme must be nats, tls, ws or wss`}},
		{map[string]string{"ACMEQ_NATS_URL": "nats://a:4222,nats://b:99999"}, []string{`ACMEQ_NATS_URL "nats://b:99999": port must be from 1 to 65535`}},
		{map[string]string{"ACMEQ_NATS_URL": "nats://user:secret@:4222"}, []string{`ACMEQ_NATS_URL "nats://user:xxxxx@:4222" has no host`}},
		{map[string]string{"ACMEQ_NATS_URL": "nats://a b"}, []string{`ACMEQ_NATS_URL "nats://a b" is not a URL`}},
		{map[string]string{"ACMEQ_NATS_URL": " , "}, []string{`ACMEQ_NATS_URL "" has no host`}},
		{map[string]string{"ACMEQ_REDIS_URL": "http://:pw@redis:6379"}, []string{`ACMEQ_REDIS_URL is invalid: scheme "http": want redis, rediss, redis+sentinel`}},
		{map[string]string{"ACMEQ_REDIS_URL": "redis://x/abc"}, []string{`ACMEQ_REDIS_URL is invalid: redis: invalid database number`}},
		{map[string]string{"ACMEQ_WORKER_NAME": "a\nb"}, []string{"ACMEQ_WORKER_NAME must be at most 128 printable characters"}},
		{map[string]string{"ACMEQ_WORKER_NAME": long}, []string{"ACMEQ_WORKER_NAME must be at most 128"}},
		{map[string]string{"ACMEQ_MAX_CONCURRENT_CHALLENGES": "0"}, []string{"ACMEQ_MAX_CONCURRENT_CHALLENGES must be at least 1, got 0"}},
		{map[string]string{"ACMEQ_MAX_CONCURRENT_CHALLENGES": "lots"}, []string{`ACMEQ_MAX_CONCURRENT_CHALLENGES "lots" is not a valid whole number`}},
		{map[string]string{"ACMEQ_CONCURRENCY": "-3"}, []string{"ACMEQ_CONCURRENCY must be at least 1, got -3"}},
		{map[string]string{"ACMEQ_LEASE_TTL": "-1m"}, []string{"ACMEQ_LEASE_TTL must be a positive duration"}},
		{map[string]string{"ACMEQ_LEASE_TTL": "5s"}, []string{"ACMEQ_LEASE_TTL (5s) must exceed ACMEQ_SELF_CHECK_INTERVAL (10s)"}},
		{map[string]string{"ACMEQ_LEASE_TTL": "2"}, []string{`ACMEQ_LEASE_TTL "2" is not a valid duration`}},
		{map[string]string{"ACMEQ_SELF_CHECK_INTERVAL": "0s"}, []string{"ACMEQ_SELF_CHECK_INTERVAL must be a positive duration"}},
		{map[string]string{"ACMEQ_CHALLENGE_TIMEOUT": "0s"}, []string{"ACMEQ_CHALLENGE_TIMEOUT must be a positive duration"}},
		{map[string]string{"ACMEQ_ACK_WAIT": "500ms"}, []string{"ACMEQ_ACK_WAIT must be at least 1s, got 500ms"}},
		{map[string]string{"ACMEQ_TICK_INTERVAL": "-2s"}, []string{"ACMEQ_TICK_INTERVAL must be a positive duration"}},
		{map[string]string{"ACMEQ_RESYNC_INTERVAL": "0s"}, []string{"ACMEQ_RESYNC_INTERVAL must be a positive duration"}},
		{map[string]string{"ACMEQ_FAILURE_BACKOFF": "0s"}, []string{"ACMEQ_FAILURE_BACKOFF must be a positive duration"}},
		{map[string]string{"ACMEQ_FAILURE_BACKOFF": "2h", "ACMEQ_FAILURE_BACKOFF_MAX": "1h"}, []string{"ACMEQ_FAILURE_BACKOFF_MAX (1h0m0s) must not be below ACMEQ_FAILURE_BACKOFF (2h0m0s)"}},
		{map[string]string{"ACMEQ_POLL_INITIAL": "3s", "ACMEQ_POLL_MAX": "1s"}, []string{"ACMEQ_POLL_MAX (1s) must not be below ACMEQ_POLL_INITIAL (3s)"}},
		{map[string]string{"ACMEQ_POLL_INITIAL": "0s"}, []string{"ACMEQ_POLL_INITIAL must be a positive duration"}},
		{map[string]string{"ACMEQ_MAX_PANICS": "0"}, []string{"ACMEQ_MAX_PANICS must be at least 1"}},
		{map[string]string{"ACMEQ_DNS01_RECURSIVE_NAMESERVERS": "10.0.0.53:53,dns.example:53"}, []string{`ACMEQ_DNS01_RECURSIVE_NAMESERVERS "dns.example:53" must be an IP address and port`}},
		{map[string]string{"ACMEQ_DNS01_RECURSIVE_NAMESERVERS": "10.0.0.53"}, []string{`ACMEQ_DNS01_RECURSIVE_NAMESERVERS "10.0.0.53" must be an IP address and port`}},
		{map[string]string{"ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY": "true"}, []string{"ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY needs ACMEQ_DNS01_RECURSIVE_NAMESERVERS"}},
		{map[string]string{"ACMEQ_CLUSTER_RESOURCE_NAMESPACE": "Cert_Manager"}, []string{`ACMEQ_CLUSTER_RESOURCE_NAMESPACE "Cert_Manager" must be a namespace name`}},
		{map[string]string{"ACMEQ_SCHEDULER_AUDIT": "maybe"}, []string{`ACMEQ_SCHEDULER_AUDIT "maybe" is not a valid boolean`}},
		{map[string]string{"ACMEQ_HTTP01_SELF_CHECK_PORT": "0"}, []string{"ACMEQ_HTTP01_SELF_CHECK_PORT must be a port number from 1 to 65535, got 0"}},
		{map[string]string{"ACMEQ_HTTP01_SELF_CHECK_PORT": "70000"}, []string{"ACMEQ_HTTP01_SELF_CHECK_PORT must be a port number from 1 to 65535, got 70000"}},
		{map[string]string{"ACMEQ_HTTP01_SELF_CHECK_ADDRESS": "10.0.0.1:80"}, []string{`ACMEQ_HTTP01_SELF_CHECK_ADDRESS "10.0.0.1:80" must be an IP address or a host name`}},
		{map[string]string{"ACMEQ_LISTEN": "9402"}, []string{`ACMEQ_LISTEN "9402" is not a listen address (HOST:PORT or :PORT): missing port in address`}},
		{map[string]string{"ACMEQ_LISTEN": ":http"}, []string{`ACMEQ_LISTEN ":http": port must be a number from 0 to 65535`}},
		{map[string]string{"ACMEQ_LISTEN": "bad_host!:9402"}, []string{`ACMEQ_LISTEN "bad_host!:9402": host must be an IP address or a host name`}},
		{map[string]string{"ACMEQ_LISTEN": long + ":1"}, []string{`ACMEQ_LISTEN "` + long[:80] + `...": host must be`}},
		{map[string]string{"ACMEQ_LOG_FORMAT": "xml"}, []string{`ACMEQ_LOG_FORMAT "xml": want json or text`}},
		{map[string]string{"ACMEQ_LOG_LEVEL": "loud"}, []string{`ACMEQ_LOG_LEVEL "loud": want debug, info, warn or error`}},
		// Several at once, parse errors included: all are reported.
		{map[string]string{"ACMEQ_LEASE_TTL": "abc", "ACMEQ_ACK_WAIT": "0s", "ACMEQ_LISTEN": "x"}, []string{
			`ACMEQ_LEASE_TTL "abc" is not a valid duration`, "ACMEQ_ACK_WAIT must be at least 1s", `ACMEQ_LISTEN "x" is not a listen address`}},
	} {
		environ := map[string]string{"ACMEQ_SECRET_KEY": testSecretKey}
		for k, v := range tc.env {
			environ[k] = v
		}
		e := defaultWorkerEnv()
		err := readEnv(&e, environ)
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		msg := err.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, "configuration: "+w) {
				t.Errorf("%v: error %q lacks %q", tc.env, msg, w)
			}
		}
		for _, leak := range []string{"secret@", ":pw@", "hunter2", long} {
			if strings.Contains(msg, leak) {
				t.Errorf("%v: error echoes %q: %s", tc.env, leak, msg)
			}
		}
		for field := range envKeys(reflect.TypeOf(workerEnv{})) {
			if field == "URL" {
				continue // also a word: "... is not a URL"
			}
			if regexp.MustCompile(`\b` + field + `\b`).MatchString(msg) {
				t.Errorf("%v: error names the Go field %s: %s", tc.env, field, msg)
			}
		}
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ACMEQ_HTTP01_LISTEN": "80"}, `ACMEQ_HTTP01_LISTEN "80" is not a listen address`},
		{map[string]string{"ACMEQ_HTTP01_METRICS_LISTEN": ":99999"}, `ACMEQ_HTTP01_METRICS_LISTEN ":99999": port must be a number from 0 to 65535`},
		{map[string]string{"ACMEQ_HTTP01_LISTEN": ":8080", "ACMEQ_HTTP01_METRICS_LISTEN": ":8080"}, `ACMEQ_HTTP01_METRICS_LISTEN ":8080" is also ACMEQ_HTTP01_LISTEN`},
		{map[string]string{"ACMEQ_NATS_URL": "redis://x"}, `ACMEQ_NATS_URL "redis://x": scheme must be`},
		{map[string]string{"ACMEQ_LOG_FORMAT": "yaml"}, `ACMEQ_LOG_FORMAT "yaml"`},
	} {
		e := defaultHTTP01Env()
		if err := readEnv(&e, tc.env); err == nil || !strings.Contains(err.Error(), "configuration: "+tc.want) {
			t.Errorf("http01 %v: %v, want %q", tc.env, err, tc.want)
		}
	}
	// Valid odd values pass.
	e := defaultWorkerEnv()
	if err := readEnv(&e, map[string]string{"ACMEQ_SECRET_KEY": testSecretKey, "ACMEQ_NATS_URL": "127.0.0.1:4222, tls://n2.example:4443,wss://n3",
		"ACMEQ_REDIS_URL": "rediss://:pw@redis.example:6380/2", "ACMEQ_LISTEN": "[::1]:0", "ACMEQ_HTTP01_SELF_CHECK_ADDRESS": "ingress.internal",
		"ACMEQ_LOG_LEVEL": "DEBUG", "ACMEQ_LOG_FORMAT": "text", "ACMEQ_SCHEDULER_AUDIT": "true"}); err != nil {
		t.Errorf("valid values refused: %v", err)
	}
}

// TestReadmeConfigurationTable: README's configuration table lists
// exactly the variables acmeq reads, with the defaults it uses, so the
// documentation cannot drift from the code.
func TestReadmeConfigurationTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Configuration\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	documented := map[string]string{} // variable -> default cell
	row := regexp.MustCompile("^\\| `(ACMEQ_[A-Z0-9_]+)` \\|[^|]*\\| ([^|]*) \\|")
	for _, l := range strings.Split(section, "\n") {
		if m := row.FindStringSubmatch(l); m != nil {
			if _, dup := documented[m[1]]; dup {
				t.Errorf("README lists %s twice", m[1])
			}
			documented[m[1]] = strings.TrimSpace(m[2])
		}
	}
	// What the env structs read, with their defaults.
	defaults := map[string]reflect.Value{}
	for _, cfg := range []any{ptr(defaultWorkerEnv()), ptr(defaultHTTP01Env()), ptr(defaultConnEnv()), ptr(defaultUIEnv())} {
		params, err := env.GetFieldParams(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fields := fieldValues(reflect.ValueOf(cfg).Elem())
		for _, p := range params {
			v := fields[p.Key]
			if old, seen := defaults[p.Key]; seen && !reflect.DeepEqual(old.Interface(), v.Interface()) {
				t.Errorf("%s has two defaults: %v and %v", p.Key, old, v)
			}
			defaults[p.Key] = v
		}
	}
	var read []string
	for k := range defaults {
		read = append(read, k)
	}
	var listed []string
	for k := range documented {
		listed = append(listed, k)
	}
	slices.Sort(read)
	slices.Sort(listed)
	if !slices.Equal(read, listed) {
		t.Fatalf("README's configuration table lists\n%q\nacmeq reads\n%q", listed, read)
	}
	for key, v := range defaults {
		cell := documented[key]
		lit, isLiteral := strings.CutPrefix(cell, "`")
		lit = strings.TrimSuffix(lit, "`")
		if !isLiteral {
			if !v.IsZero() {
				t.Errorf("%s: README's default is %q, acmeq's is %v", key, cell, v)
			}
			continue
		}
		var same bool
		switch x := v.Interface().(type) {
		case time.Duration:
			d, err := time.ParseDuration(lit)
			same = err == nil && d == x
		case int:
			n, err := strconv.Atoi(lit)
			same = err == nil && n == x
		case bool:
			b, err := strconv.ParseBool(lit)
			same = err == nil && b == x
		case string:
			same = lit == x
		}
		if !same {
			t.Errorf("%s: README's default is %s, acmeq's is %v", key, cell, v)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// fieldValues maps the variables of a struct's env tags to the fields'
// values (nested structs included).
func fieldValues(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Type.Kind() == reflect.Struct {
			for k, fv := range fieldValues(v.Field(i)) {
				out[k] = fv
			}
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			out[key] = v.Field(i)
		}
	}
	return out
}

// TestReadyz: /readyz of a worker answers ok while NATS and Redis
// answer, and says that Redis is unreachable when it is not.
func TestReadyz(t *testing.T) {
	t.Parallel()
	ns, err := stack.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	rs, err := stack.StartRedis(t.TempDir())
	if err != nil {
		t.Fatalf("start redis-server (install it: apt-get install redis-server): %v", err)
	}
	t.Cleanup(func() { _ = rs.Stop() })
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	opt, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	srv := httptest.NewServer(healthMux(nc, rdb, prometheus.NewRegistry()))
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz with NATS and Redis up = %d %q", code, body)
	}
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "redis: ") || strings.Contains(body, "nats") {
		t.Errorf("/readyz with Redis down = %d %q, want 503 naming redis only", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz with Redis down = %d %q (the process runs)", code, body)
	}
	t.Logf("/readyz with Redis down: %d %s", code, body)
}
