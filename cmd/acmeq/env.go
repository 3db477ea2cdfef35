package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

// Defaults of the variables that configure what cmd/acmeq itself does
// (where it listens, how it logs, which Redis it dials). The worker's and
// the scheduler's defaults are their packages' named constants.
const (
	// RedisURLDefault is a Redis on this machine.
	RedisURLDefault = "redis://127.0.0.1:6379/0"
	// ListenDefault serves a worker's /metrics, /healthz and /readyz
	// (cert-manager's metrics port).
	ListenDefault = ":9402"
	// HTTP01ListenDefault is where the responder answers the CA.
	HTTP01ListenDefault = ":80"
	// HTTP01MetricsListenDefault serves the responder's /metrics, /healthz
	// and /readyz.
	HTTP01MetricsListenDefault = ":9403"
	// LogFormatDefault is JSON, for log collectors.
	LogFormatDefault = "json"
	// LogLevelDefault is info.
	LogLevelDefault = "info"
	// workerNameMax bounds ACMEQ_WORKER_NAME: it is in every event a
	// worker records.
	workerNameMax = 128
)

// connEnv is what every command needs to reach the stack.
type connEnv struct {
	// NATS is where and how to connect: URL, credentials, TLS
	// (internal/connect documents each variable and its default).
	NATS connect.NATSConfig
	// SecretKey seals private keys and certificates: 32 bytes, base64 or
	// hex. Required by commands that open or write Secrets.
	SecretKey string `env:"ACMEQ_SECRET_KEY"`
	// Replicas of the streams and buckets a command creates when they are
	// missing, and checks when they exist. Defaults to 1.
	Replicas int `env:"ACMEQ_REPLICAS"`
}

func defaultConnEnv() connEnv {
	return connEnv{NATS: connect.NATSConfig{URL: connect.NATSURLDefault, ConnectTimeout: connect.NATSConnectTimeoutDefault}, Replicas: 1}
}

func (c connEnv) validate(v *validation) {
	v.natsURLs("ACMEQ_NATS_URL", c.NATS.URL)
	v.connect(c.NATS.Validate())
	if c.Replicas < 1 || c.Replicas > 5 {
		v.add("ACMEQ_REPLICAS", "must be 1 to 5 (JetStream's limit), got %d", c.Replicas)
	}
	if c.SecretKey != "" {
		if _, err := store.ParseSecretKey(c.SecretKey); err != nil {
			// Never echo the key.
			v.add("ACMEQ_SECRET_KEY", "is invalid: %v", err)
		}
	}
}

// workerEnv configures `acmeq worker`. Its defaults are the worker's and
// the scheduler's named constants (defaultWorkerEnv).
type workerEnv struct {
	// Conn is a named field: caarlos0/env cannot set an unexported embedded one.
	Conn               connEnv
	Redis              connect.RedisConfig
	Name               string        `env:"ACMEQ_WORKER_NAME"`
	MaxConcurrent      int           `env:"ACMEQ_MAX_CONCURRENT_CHALLENGES"`
	LeaseTTL           time.Duration `env:"ACMEQ_LEASE_TTL"`
	SelfCheckInterval  time.Duration `env:"ACMEQ_SELF_CHECK_INTERVAL"`
	ChallengeTimeout   time.Duration `env:"ACMEQ_CHALLENGE_TIMEOUT"`
	Concurrency        int           `env:"ACMEQ_CONCURRENCY"`
	AckWait            time.Duration `env:"ACMEQ_ACK_WAIT"`
	TickInterval       time.Duration `env:"ACMEQ_TICK_INTERVAL"`
	ResyncInterval     time.Duration `env:"ACMEQ_RESYNC_INTERVAL"`
	SchedulerAudit     bool          `env:"ACMEQ_SCHEDULER_AUDIT"`
	FailureBackoff     time.Duration `env:"ACMEQ_FAILURE_BACKOFF"`
	FailureBackoffMax  time.Duration `env:"ACMEQ_FAILURE_BACKOFF_MAX"`
	PollInitial        time.Duration `env:"ACMEQ_POLL_INITIAL"`
	PollMax            time.Duration `env:"ACMEQ_POLL_MAX"`
	ARICheckMax        time.Duration `env:"ACMEQ_ARI_CHECK_MAX"`
	MaxPanics          int           `env:"ACMEQ_MAX_PANICS"`
	HTTP01Port         int           `env:"ACMEQ_HTTP01_SELF_CHECK_PORT"`
	HTTP01ResolveTo    string        `env:"ACMEQ_HTTP01_SELF_CHECK_ADDRESS"`
	DNS01Recursive     []string      `env:"ACMEQ_DNS01_RECURSIVE_NAMESERVERS"`
	DNS01RecursiveOnly bool          `env:"ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY"`
	ListenAddr         string        `env:"ACMEQ_LISTEN"`
	LogFormat          string        `env:"ACMEQ_LOG_FORMAT"`
	LogLevel           string        `env:"ACMEQ_LOG_LEVEL"`
	// ClusterResourceNS is where ClusterIssuers' Secrets are
	// (worker.Config.ClusterResourceNamespace).
	ClusterResourceNS string `env:"ACMEQ_CLUSTER_RESOURCE_NAMESPACE"`
}

// defaultWorkerEnv is workerEnv before the environment is read: a
// variable that is unset or empty keeps the value here.
func defaultWorkerEnv() workerEnv {
	return workerEnv{
		Conn:              defaultConnEnv(),
		Redis:             connect.RedisConfig{URL: RedisURLDefault, ConnectTimeout: connect.RedisConnectTimeoutDefault},
		MaxConcurrent:     scheduler.CapDefault,
		LeaseTTL:          scheduler.LeaseTTLDefault,
		SelfCheckInterval: worker.SelfCheckIntervalDefault,
		ChallengeTimeout:  worker.ChallengeTimeoutDefault,
		Concurrency:       worker.ConcurrencyDefault,
		AckWait:           worker.AckWaitDefault,
		TickInterval:      worker.TickIntervalDefault,
		ResyncInterval:    worker.ResyncIntervalDefault,
		FailureBackoff:    worker.FailureBackoffDefault,
		FailureBackoffMax: worker.FailureBackoffMaxDefault,
		PollInitial:       worker.PollInitialDefault,
		PollMax:           worker.PollMaxDefault,
		ARICheckMax:       worker.ARICheckMaxDefault,
		MaxPanics:         worker.MaxPanicsDefault,
		HTTP01Port:        worker.HTTP01PortDefault,
		ClusterResourceNS: worker.ClusterResourceNamespaceDefault,
		ListenAddr:        ListenDefault,
		LogFormat:         LogFormatDefault,
		LogLevel:          LogLevelDefault,
	}
}

func (e workerEnv) validate(v *validation) {
	e.Conn.validate(v)
	if e.Conn.SecretKey == "" {
		v.add("ACMEQ_SECRET_KEY", "is required: 32 random bytes, base64 or hex (openssl rand -base64 32); private keys and certificates are sealed with it")
	}
	v.connect(e.Redis.Validate())
	if utf8.RuneCountInString(e.Name) > workerNameMax || strings.IndexFunc(e.Name, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		v.add("ACMEQ_WORKER_NAME", "must be at most %d printable characters", workerNameMax)
	}
	v.atLeast("ACMEQ_MAX_CONCURRENT_CHALLENGES", e.MaxConcurrent, 1)
	v.atLeast("ACMEQ_CONCURRENCY", e.Concurrency, 1)
	v.positive("ACMEQ_LEASE_TTL", e.LeaseTTL)
	v.positive("ACMEQ_SELF_CHECK_INTERVAL", e.SelfCheckInterval)
	v.positive("ACMEQ_CHALLENGE_TIMEOUT", e.ChallengeTimeout)
	v.positive("ACMEQ_TICK_INTERVAL", e.TickInterval)
	v.positive("ACMEQ_RESYNC_INTERVAL", e.ResyncInterval)
	v.positive("ACMEQ_FAILURE_BACKOFF", e.FailureBackoff)
	v.positive("ACMEQ_FAILURE_BACKOFF_MAX", e.FailureBackoffMax)
	if e.FailureBackoff > 0 && e.FailureBackoffMax > 0 && e.FailureBackoffMax < e.FailureBackoff {
		v.add("ACMEQ_FAILURE_BACKOFF_MAX", "(%s) must not be below ACMEQ_FAILURE_BACKOFF (%s)", e.FailureBackoffMax, e.FailureBackoff)
	}
	v.positive("ACMEQ_ARI_CHECK_MAX", e.ARICheckMax)
	v.positive("ACMEQ_POLL_INITIAL", e.PollInitial)
	v.positive("ACMEQ_POLL_MAX", e.PollMax)
	if e.PollInitial > 0 && e.PollMax > 0 && e.PollMax < e.PollInitial {
		v.add("ACMEQ_POLL_MAX", "(%s) must not be below ACMEQ_POLL_INITIAL (%s)", e.PollMax, e.PollInitial)
	}
	v.atLeast("ACMEQ_MAX_PANICS", e.MaxPanics, 1)
	if e.AckWait < time.Second {
		v.add("ACMEQ_ACK_WAIT", "must be at least 1s, got %s", e.AckWait)
	}
	if e.SelfCheckInterval > 0 && e.LeaseTTL > 0 && e.SelfCheckInterval >= e.LeaseTTL {
		v.add("ACMEQ_LEASE_TTL", "(%s) must exceed ACMEQ_SELF_CHECK_INTERVAL (%s): a challenge waiting for its next self-check is not renewed", e.LeaseTTL, e.SelfCheckInterval)
	}
	e.validateSelfCheck(v)
	v.listenAddr("ACMEQ_LISTEN", e.ListenAddr)
	v.logging(e.LogFormat, e.LogLevel)
}

// validateSelfCheck checks where the HTTP-01 and DNS-01 self-checks ask.
func (e workerEnv) validateSelfCheck(v *validation) {
	if e.HTTP01Port < 1 || e.HTTP01Port > 65535 {
		v.add("ACMEQ_HTTP01_SELF_CHECK_PORT", "must be a port number from 1 to 65535, got %d", e.HTTP01Port)
	}
	if a := e.HTTP01ResolveTo; a != "" && net.ParseIP(a) == nil && !isHostName(a) {
		v.add("ACMEQ_HTTP01_SELF_CHECK_ADDRESS", "%q must be an IP address or a host name, without a port", truncate(a))
	}
	for _, ns := range e.DNS01Recursive {
		if host, port, err := net.SplitHostPort(ns); err != nil || net.ParseIP(host) == nil || !validPortString(port) {
			v.add("ACMEQ_DNS01_RECURSIVE_NAMESERVERS", "%q must be an IP address and port, e.g. 10.0.0.53:53 (a comma-separated list)", truncate(ns))
		}
	}
	if messages.ValidateObjectName("ACMEQ_CLUSTER_RESOURCE_NAMESPACE", e.ClusterResourceNS) != nil {
		v.add("ACMEQ_CLUSTER_RESOURCE_NAMESPACE", "%q must be a namespace name: lower case alphanumeric characters or '-', starting and ending with an alphanumeric character", truncate(e.ClusterResourceNS))
	}
	if e.DNS01RecursiveOnly && len(e.DNS01Recursive) == 0 {
		v.add("ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY", "needs ACMEQ_DNS01_RECURSIVE_NAMESERVERS: asking only the recursive nameservers of /etc/resolv.conf is rarely meant")
	}
}

// validPortString reports whether s is a port number from 1 to 65535.
func validPortString(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// http01Env configures `acmeq http01`.
type http01Env struct {
	NATS        connect.NATSConfig
	Replicas    int    `env:"ACMEQ_REPLICAS"`
	ListenAddr  string `env:"ACMEQ_HTTP01_LISTEN"`
	MetricsAddr string `env:"ACMEQ_HTTP01_METRICS_LISTEN"`
	LogFormat   string `env:"ACMEQ_LOG_FORMAT"`
	LogLevel    string `env:"ACMEQ_LOG_LEVEL"`
}

func defaultHTTP01Env() http01Env {
	return http01Env{
		NATS:        defaultConnEnv().NATS,
		Replicas:    1,
		ListenAddr:  HTTP01ListenDefault,
		MetricsAddr: HTTP01MetricsListenDefault,
		LogFormat:   LogFormatDefault,
		LogLevel:    LogLevelDefault,
	}
}

func (e http01Env) validate(v *validation) {
	v.natsURLs("ACMEQ_NATS_URL", e.NATS.URL)
	v.connect(e.NATS.Validate())
	if e.Replicas < 1 || e.Replicas > 5 {
		v.add("ACMEQ_REPLICAS", "must be 1 to 5 (JetStream's limit), got %d", e.Replicas)
	}
	v.listenAddr("ACMEQ_HTTP01_LISTEN", e.ListenAddr)
	v.listenAddr("ACMEQ_HTTP01_METRICS_LISTEN", e.MetricsAddr)
	if e.ListenAddr == e.MetricsAddr {
		v.add("ACMEQ_HTTP01_METRICS_LISTEN", "%q is also ACMEQ_HTTP01_LISTEN: they need different ports", e.MetricsAddr)
	}
	v.logging(e.LogFormat, e.LogLevel)
}

// envStruct is a configuration read from the environment.
type envStruct interface {
	validate(v *validation)
}

// environ is the process environment as caarlos0/env reads it; tests pass
// their own map to readEnv instead.
func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, val, ok := strings.Cut(kv, "="); ok {
			m[k] = val
		}
	}
	return m
}

// readEnv reads cfg's variables from environ over the defaults already in
// cfg (a variable unset or empty keeps its default), then validates them.
// Every error names the variable; all problems are reported at once.
func readEnv[T envStruct](cfg *T, environ map[string]string) error {
	err := env.ParseWithOptions(cfg, env.Options{Environment: environ})
	v := &validation{}
	if err != nil {
		keys := envKeys(reflect.TypeOf(*cfg))
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			agg.Errors = []error{err}
		}
		for _, e := range agg.Errors {
			var pe env.ParseError
			if errors.As(e, &pe) && keys[pe.Name] != "" {
				key := keys[pe.Name]
				v.add(key, "%q is not a valid %s: %v", truncate(environ[key]), typeName(pe.Type), pe.Err)
				continue
			}
			v.errs = append(v.errs, fmt.Errorf("configuration: %w", e))
		}
	}
	// A variable that did not parse kept its default: the rest are still
	// checked, so every problem is reported at once.
	(*cfg).validate(v)
	return v.err()
}

// envKeys maps the Go field names of t (and of its nested structs) to
// their variables: caarlos0/env's errors name the field.
func envKeys(t reflect.Type) map[string]string {
	out := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			for k, v := range envKeys(f.Type) {
				out[k] = v
			}
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			out[f.Name] = key
		}
	}
	return out
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration (e.g. 90s, 2m, 1h)"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	case t.Kind() == reflect.Int:
		return "whole number"
	}
	return t.String()
}

// validation collects configuration problems, each naming its variable.
type validation struct{ errs []error }

func (v *validation) add(key, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("configuration: %s %s", key, fmt.Sprintf(format, a...)))
}

func (v *validation) err() error { return errors.Join(v.errs...) }

func (v *validation) atLeast(key string, n, min int) {
	if n < min {
		v.add(key, "must be at least %d, got %d", min, n)
	}
}

func (v *validation) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be a positive duration (e.g. 90s, 2m, 1h), got %s", d)
	}
}

// natsURLs checks a comma-separated list of NATS URLs as nats.go reads
// it: nats://, tls://, ws:// or wss:// (nats:// when no scheme is given),
// a host, and a port from 1 to 65535 when one is given.
func (v *validation) natsURLs(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.add(key, "must not be empty")
		return
	}
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		full := raw
		if !strings.Contains(raw, "://") {
			full = "nats://" + raw
		}
		u, err := url.Parse(full)
		switch {
		case err != nil:
			v.add(key, "%q is not a URL: %v", redact(raw), errors.Unwrap(err))
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			v.add(key, "%q: scheme must be nats, tls, ws or wss", redact(raw))
		case u.Hostname() == "":
			v.add(key, "%q has no host", redact(raw))
		case u.Port() != "" && !validPort(u.Port(), 1):
			v.add(key, "%q: port must be from 1 to 65535", redact(raw))
		}
	}
}

// connect records the configuration errors of internal/connect, each under
// the variable it names.
func (v *validation) connect(err error) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ce *connect.ConfigError
		if errors.As(e, &ce) {
			v.add(ce.Var, "is invalid: %v", ce.Err)
			continue
		}
		v.errs = append(v.errs, fmt.Errorf("configuration: %w", e))
	}
}

// listenAddr checks a listen address: [HOST]:PORT with a numeric port
// from 0 to 65535 (0 picks a free one).
func (v *validation) listenAddr(key, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		v.add(key, "%q is not a listen address (HOST:PORT or :PORT): %v", truncate(s), err)
		return
	}
	if !validPort(port, 0) {
		v.add(key, "%q: port must be a number from 0 to 65535", truncate(s))
		return
	}
	if host != "" && net.ParseIP(host) == nil && !isHostName(host) {
		v.add(key, "%q: host must be an IP address or a host name", truncate(s))
	}
}

func (v *validation) logging(format, level string) {
	if format != "json" && format != "text" {
		v.add("ACMEQ_LOG_FORMAT", "%q: want json or text", truncate(format))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		v.add("ACMEQ_LOG_LEVEL", "%q: want debug, info, warn or error", truncate(level))
	}
}

func validPort(s string, min int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= min && n <= 65535
}

// isHostName reports whether s is a DNS host name (letters, digits,
// hyphens and dots; labels of at most 63 characters).
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
	}
	return true
}

// truncate shortens a value echoed in an error.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// redact hides the password of a URL echoed in an error.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return truncate(u.Redacted())
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return truncate("xxxxx" + s[i:])
	}
	return truncate(s)
}

func (c connEnv) sealer() (*store.Sealer, error) {
	if c.SecretKey == "" {
		return nil, errors.New("configuration: ACMEQ_SECRET_KEY is required: 32 random bytes, base64 or hex (openssl rand -base64 32); private keys and certificates are sealed with it")
	}
	key, err := store.ParseSecretKey(c.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("configuration: ACMEQ_SECRET_KEY is invalid: %w", err)
	}
	return store.NewSealer(key)
}

func connectNATS(c connect.NATSConfig, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := c.Connect(name, nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// openStore connects and opens the resource store.
func openStore(ctx context.Context, c connEnv, name string) (*nats.Conn, jetstream.JetStream, *store.Store, error) {
	sealer, err := c.sealer()
	if err != nil {
		return nil, nil, nil, err
	}
	nc, js, err := connectNATS(c.NATS, name)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.Open(ctx, js, sealer, store.Config{Replicas: c.Replicas})
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, st, nil
}

// readConnEnv reads what the CLI commands need from the environment.
func readConnEnv() (connEnv, error) {
	c := defaultConnEnv()
	return c, readEnv(&c, environ())
}

// newLogger returns the logger ACMEQ_LOG_FORMAT and ACMEQ_LOG_LEVEL ask
// for (checked by readEnv).
func newLogger(format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
