package main

import (
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/ui"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// uiEnv configures `acmeq ui` from the environment; the rest are flags.
// Credentials come only from the environment, never from flags (which
// other users of the machine can read in the process list).
type uiEnv struct {
	NATS          connect.NATSConfig
	Redis         connect.RedisConfig
	MaxConcurrent int    `env:"ACMEQ_MAX_CONCURRENT_CHALLENGES"`
	Token         string `env:"ACMEQ_UI_TOKEN"`
	BasicAuth     string `env:"ACMEQ_UI_BASIC_AUTH"`
	LogFormat     string `env:"ACMEQ_LOG_FORMAT"`
	LogLevel      string `env:"ACMEQ_LOG_LEVEL"`
}

func defaultUIEnv() uiEnv {
	return uiEnv{
		NATS:          defaultConnEnv().NATS,
		Redis:         connect.RedisConfig{URL: RedisURLDefault, ConnectTimeout: connect.RedisConnectTimeoutDefault},
		MaxConcurrent: scheduler.CapDefault,
		LogFormat:     LogFormatDefault,
		LogLevel:      LogLevelDefault,
	}
}

func (e uiEnv) validate(v *validation) {
	v.natsURLs("ACMEQ_NATS_URL", e.NATS.URL)
	v.connect(e.NATS.Validate())
	v.connect(e.Redis.Validate())
	v.atLeast("ACMEQ_MAX_CONCURRENT_CHALLENGES", e.MaxConcurrent, 1)
	v.logging(e.LogFormat, e.LogLevel)
}

type uiOptions struct {
	cfg ui.Config
}

func newUICmd() *cobra.Command {
	o := &uiOptions{}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the fleet web view and its Prometheus metrics",
		Long: `Serve a read-only web view of the whole fleet: certificates (filter, search,
live updates), describe with the request → order → challenge tree, issuers,
the scheduler and live events, and /metrics with cert-manager's certificate
metrics and the fleet's. It reads JetStream (ACMEQ_NATS_URL) and, for the
scheduler page, Redis (ACMEQ_REDIS_URL, ACMEQ_MAX_CONCURRENT_CHALLENGES).

It listens on loopback by default. On any other address it needs
credentials, from the environment only: ACMEQ_UI_TOKEN (a bearer token of
at least 16 characters) and/or ACMEQ_UI_BASIC_AUTH (user:password).`,
		Example: `  acmeq ui                                     # http://127.0.0.1:9404/
  ACMEQ_UI_TOKEN=$(openssl rand -hex 16) acmeq ui --listen :9404 --tls-cert tls.crt --tls-key tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUI(cmd, o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.cfg.Listen, "listen", ui.ListenDefault, "address to serve on; beyond loopback ACMEQ_UI_TOKEN or ACMEQ_UI_BASIC_AUTH is required")
	fs.DurationVar(&o.cfg.ExpiringWithin, "expiring-within", ui.ExpiringWithinDefault, "a certificate this close to its expiry counts as expiring (e.g. 336h, 14 days)")
	fs.IntVar(&o.cfg.PageSize, "page-size", ui.PageSizeDefault, fmt.Sprintf("certificates per page (the per parameter asks for up to %d)", ui.PageSizeMax))
	fs.StringVar(&o.cfg.TLSCertFile, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
	fs.StringVar(&o.cfg.TLSKeyFile, "tls-key", "", "the PEM private key of --tls-cert")
	return cmd
}

func runUI(cmd *cobra.Command, o *uiOptions) error {
	ctx := cmd.Context()
	e := defaultUIEnv()
	if err := readEnv(&e, environ()); err != nil {
		return err
	}
	cfg := o.cfg
	cfg.Token, cfg.BasicAuth = e.Token, e.BasicAuth
	if cfg.PageSize < 1 || cfg.PageSize > ui.PageSizeMax {
		return usagef(cmd, "--page-size must be from 1 to %d, got %d", ui.PageSizeMax, cfg.PageSize)
	}
	if cfg.ExpiringWithin <= 0 {
		return usagef(cmd, "--expiring-within must be a positive duration, got %s", cfg.ExpiringWithin)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return usagef(cmd, "--tls-cert and --tls-key go together")
	}
	if err := cfg.Validate(); err != nil {
		if errors.Is(err, ui.ErrCredentialsRequired) {
			return fmt.Errorf("configuration: %w: set ACMEQ_UI_TOKEN (at least 16 characters) or ACMEQ_UI_BASIC_AUTH (user:password)", err)
		}
		return fmt.Errorf("configuration: %w", err)
	}
	cfg.Logger = newLogger(e.LogFormat, e.LogLevel)
	// Bind first: a taken port is a start-up error.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("configuration: --listen %q: %w", cfg.Listen, err)
	}
	nc, js, err := connectNATS(e.NATS, "acmeq-ui")
	if err != nil {
		ln.Close()
		return err
	}
	defer nc.Close()
	st, err := store.OpenReadOnly(ctx, js, nil, messages.ReconciledKinds...)
	if err != nil {
		ln.Close()
		return err
	}
	rdb, err := e.Redis.Client()
	if err != nil {
		ln.Close()
		return err
	}
	defer rdb.Close()
	sched, err := scheduler.New(rdb, scheduler.Config{Cap: e.MaxConcurrent})
	if err != nil {
		ln.Close()
		return err
	}
	srv, err := ui.New(js, st, sched, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	return srv.Serve(ctx, ln)
}
