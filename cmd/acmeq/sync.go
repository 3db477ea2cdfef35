package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/delivery"
)

// SyncListenDefault serves the sync agent's /metrics (after the worker's
// 9402 and http01's 9403).
const SyncListenDefault = ":9404"

func newSyncCmd() *cobra.Command {
	var o delivery.Config
	var listen string
	cmd := &cobra.Command{
		Use:   "sync --dir DIR [-n NS | -A] [-l SELECTOR] [NAME...] [--exec CMD]",
		Short: "Write certificates to files on this server and keep them current",
		Long: `Run the sync agent of an edge server: it watches the store and writes the
selected certificates under DIR as DIR/<namespace>/<name>/{tls.crt,tls.key,
ca.crt,tls.pem} (tls.pem: key then chain, for HAProxy), replacing a pair as a
unit when it is renewed, and runs --exec once per batch of changes (e.g.
"nginx -s reload"). It catches up after an outage without rewriting what did
not change, keeps the last good files on any error, and serves /metrics on
--listen. It needs ACMEQ_NATS_URL and ACMEQ_SECRET_KEY, and only read access
to the Certificate and Secret buckets (deploy/nats/permissions.conf).`,
		Example: `  acmeq sync --dir /etc/acmeq/certs --exec 'nginx -s reload' shop
  acmeq sync --dir certs --once -A
  acmeq sync --dir /srv/tls -n tenant-a -l 'tier=edge'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names = args
			if err := o.Validate(); err != nil {
				return usagef(cmd, "%v", err)
			}
			return runSync(cmd.Context(), o, listen)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "dir", "", "directory the certificates are written under (required)")
	fs.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the certificates (default \"default\")")
	fs.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "certificates of every namespace")
	fs.StringVarP(&o.LabelSelector, "selector", "l", "", "label selector, in Kubernetes' syntax (env=prod,tier in (edge,cdn))")
	fs.StringVar(&o.Exec, "exec", "", "shell command run once after each batch of changes")
	fs.DurationVar(&o.ExecTimeout, "exec-timeout", delivery.ExecTimeoutDefault, "a hook running longer is killed and counts as failed")
	fs.DurationVar(&o.Debounce, "debounce", delivery.DebounceDefault, "wait this long after a change for further changes before writing")
	fs.BoolVar(&o.Once, "once", false, "write everything selected and exit (non-zero if any failed)")
	fs.BoolVar(&o.Prune, "prune", false, "remove the files of certificates deleted or no longer selected")
	fs.StringVar(&listen, "listen", SyncListenDefault, "address of /metrics (empty: none)")
	return cmd
}

func runSync(ctx context.Context, o delivery.Config, listen string) error {
	c, err := readConnEnv()
	if err != nil {
		return err
	}
	sealer, err := c.sealer()
	if err != nil {
		return err
	}
	var ln net.Listener
	if listen != "" && !o.Once {
		if ln, err = net.Listen("tcp", listen); err != nil {
			return fmt.Errorf("--listen %s: %w", listen, err)
		}
		defer ln.Close()
	}
	// An edge server may lose the store for a long time: reconnect for
	// ever, and catch up then.
	nc, err := c.NATS.Connect("acmeq-sync", nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	o.Logger = newLogger(LogFormatDefault, LogLevelDefault)
	agent, err := delivery.New(js, sealer, o)
	if err != nil {
		return err
	}
	if ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		go func() {
			if err := serveUntil(ctx, ln, mux); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.Logger.Error("metrics server", "addr", listen, "err", err)
			}
		}()
	}
	return agent.Run(ctx)
}
