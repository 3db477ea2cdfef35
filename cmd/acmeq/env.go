package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/store"
)

// connEnv is what every command needs to reach the stack.
type connEnv struct {
	NATSURL   string `env:"ACMEQ_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	SecretKey string `env:"ACMEQ_SECRET_KEY"`
}

// workerEnv configures `acmeq worker`.
type workerEnv struct {
	// Conn is a named field: caarlos0/env cannot set an unexported embedded one.
	Conn              connEnv
	RedisURL          string        `env:"ACMEQ_REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	Name              string        `env:"ACMEQ_WORKER_NAME"`
	MaxConcurrent     int           `env:"ACMEQ_MAX_CONCURRENT_CHALLENGES" envDefault:"60"`
	LeaseTTL          time.Duration `env:"ACMEQ_LEASE_TTL" envDefault:"30s"`
	SelfCheckInterval time.Duration `env:"ACMEQ_SELF_CHECK_INTERVAL" envDefault:"10s"`
	ChallengeTimeout  time.Duration `env:"ACMEQ_CHALLENGE_TIMEOUT" envDefault:"1h"`
	Concurrency       int           `env:"ACMEQ_CONCURRENCY" envDefault:"16"`
	AckWait           time.Duration `env:"ACMEQ_ACK_WAIT" envDefault:"10s"`
	TickInterval      time.Duration `env:"ACMEQ_TICK_INTERVAL" envDefault:"2s"`
	ResyncInterval    time.Duration `env:"ACMEQ_RESYNC_INTERVAL" envDefault:"5m"`
	SchedulerAudit    bool          `env:"ACMEQ_SCHEDULER_AUDIT"`
	FailureBackoff    time.Duration `env:"ACMEQ_FAILURE_BACKOFF" envDefault:"1h"`
	HTTP01Port        int           `env:"ACMEQ_HTTP01_SELF_CHECK_PORT" envDefault:"80"`
	HTTP01ResolveTo   string        `env:"ACMEQ_HTTP01_SELF_CHECK_ADDRESS"`
	ListenAddr        string        `env:"ACMEQ_LISTEN" envDefault:":9402"`
	LogFormat         string        `env:"ACMEQ_LOG_FORMAT" envDefault:"json"`
	LogLevel          string        `env:"ACMEQ_LOG_LEVEL" envDefault:"info"`
}

// http01Env configures `acmeq http01`.
type http01Env struct {
	NATSURL     string `env:"ACMEQ_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	ListenAddr  string `env:"ACMEQ_HTTP01_LISTEN" envDefault:":80"`
	MetricsAddr string `env:"ACMEQ_HTTP01_METRICS_LISTEN" envDefault:":9403"`
	LogFormat   string `env:"ACMEQ_LOG_FORMAT" envDefault:"json"`
	LogLevel    string `env:"ACMEQ_LOG_LEVEL" envDefault:"info"`
}

func parseEnv[T any]() (T, error) {
	var v T
	if err := env.Parse(&v); err != nil {
		return v, fmt.Errorf("configuration: %w", err)
	}
	return v, nil
}

func (c connEnv) sealer() (*store.Sealer, error) {
	if c.SecretKey == "" {
		return nil, fmt.Errorf("configuration: ACMEQ_SECRET_KEY is required: 32 random bytes, base64 or hex (openssl rand -base64 32); private keys and certificates are sealed with it")
	}
	key, err := store.ParseSecretKey(c.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("configuration: ACMEQ_SECRET_KEY: %w", err)
	}
	return store.NewSealer(key)
}

func connectNATS(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s (ACMEQ_NATS_URL): %w", url, err)
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
	nc, js, err := connectNATS(c.NATSURL, name)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, st, nil
}

func connectRedis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("configuration: ACMEQ_REDIS_URL %q: %w", url, err)
	}
	return redis.NewClient(opt), nil
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("configuration: ACMEQ_LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("configuration: ACMEQ_LOG_FORMAT %q: want json or text", format)
}
