//go:build dev

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/dev"
)

func init() { extraCommands = append(extraCommands, newDevCmd) }

// devOptions are the flags of `acmeq dev`.
type devOptions struct {
	n        int
	out      string
	workers  int
	timeout  time.Duration
	verbose  bool
	dir      string
	dns01    bool
	validity time.Duration
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev [--certificates N --out DIR]",
		Short: "Run the whole stack in one process (NATS, Redis, Pebble, responder, workers)",
		Long: `Run the whole stack in one process on loopback: an embedded NATS JetStream
server, a redis-server child process, an in-process Pebble CA, the HTTP-01
responder and workers. With --certificates N it issues N demo certificates,
writes them under --out and exits (non-zero if any failed); without, it
keeps running and prints the export lines that let another terminal use
the CLI against it.`,
		Example: `  acmeq dev --certificates 20 --out certs
  acmeq dev --dns01
  acmeq dev --cert-validity 60s    # then: acmeq describe certificate NAME, its revision rises`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.n < 0 {
				return usagef(cmd, "--certificates must not be negative")
			}
			if o.workers < 1 {
				return usagef(cmd, "--workers must be at least 1")
			}
			if o.validity != 0 && o.validity < 10*time.Second {
				return usagef(cmd, "--cert-validity must be at least 10s, got %s", o.validity)
			}
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.n, "certificates", 0, "issue N demo certificates (1 to 3 names each), write them to --out and exit")
	fs.StringVar(&o.out, "out", "certs", "directory for the issued certificates")
	fs.IntVar(&o.workers, "workers", dev.WorkersDefault, "number of workers")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting for the certificates after this long")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log the workers' activity to stderr")
	fs.StringVar(&o.dir, "data", "", "data directory for NATS and Redis (default: a temporary directory)")
	fs.BoolVar(&o.dns01, "dns01", false, "also run BIND for the zone dns.test and an issuer \"dev-dns\" solving DNS-01 by RFC 2136")
	fs.DurationVar(&o.validity, "cert-validity", 0, "Pebble issues certificates valid this long (e.g. 60s, to watch renewals; default Pebble's)")
	return cmd
}

func runDev(ctx context.Context, stdout, stderr io.Writer, o devOptions) error {
	data := o.dir
	if data == "" {
		tmp, err := os.MkdirTemp("", "acmeq-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		data = tmp
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	fmt.Fprintf(stderr, "acmeq dev: starting NATS, redis-server, Pebble, the HTTP-01 responder and %d workers...\n", o.workers)
	env, err := dev.Start(ctx, dev.Options{Dir: data, Workers: o.workers, Logger: logger, DNS01: o.dns01, CertValidity: o.validity})
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Fprintf(stderr, "acmeq dev: issuer %q is Ready at %s\n", dev.IssuerName, env.Stack.Pebble.DirectoryURL)

	if o.n == 0 {
		printDevEnv(stdout, env, o.dns01)
		<-ctx.Done()
		return nil
	}

	start := time.Now()
	reqs := dev.DemoRequests(o.n)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			return fmt.Errorf("request %s: %w", r.Name, err)
		}
		names[i] = r.Name
	}
	fmt.Fprintf(stderr, "acmeq dev: published %d certificate requests, waiting...\n", len(reqs))
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	results, werr := env.WaitCertificates(wctx, dev.Namespace, names)
	took := time.Since(start)

	if err := env.WriteRoot(o.out); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(o.out, "ca.crt"), err)
	}
	sort.Strings(names)
	ok, failed := 0, 0
	fmt.Fprintf(stdout, "%-12s %-6s %s\n", "CERTIFICATE", "READY", "NAMES / REASON")
	for _, name := range names {
		r, done := results[name]
		switch {
		case !done:
			failed++
			fmt.Fprintf(stdout, "%-12s %-6s %s\n", name, "False", "still pending when the wait ended")
		case r.Ready:
			if err := env.WriteCertificate(ctx, o.out, dev.Namespace, name); err != nil {
				failed++
				fmt.Fprintf(stdout, "%-12s %-6s %v\n", name, "False", err)
				continue
			}
			ok++
			fmt.Fprintf(stdout, "%-12s %-6s %s\n", name, "True", strings.Join(r.Names, ","))
		default:
			failed++
			fmt.Fprintf(stdout, "%-12s %-6s %s\n", name, "False", r.Message)
		}
	}
	fmt.Fprintf(stdout, "\n%d issued, %d failed in %s (%.1f certificates/s); written to %s (ca.crt, <name>/tls.crt, <name>/tls.key)\n",
		ok, failed, took.Round(time.Millisecond), float64(ok)/took.Seconds(), o.out)
	if werr != nil || failed > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d of %d certificates were not issued", failed, len(names))}
	}
	return nil
}

// printDevEnv prints, as shell, how to use env from another terminal.
func printDevEnv(stdout io.Writer, env *dev.Env, dns01 bool) {
	fmt.Fprintf(stdout, "# acmeq dev is running. In another terminal:\n")
	fmt.Fprintf(stdout, "export ACMEQ_NATS_URL=%s\n", env.Stack.NATS.URL)
	fmt.Fprintf(stdout, "export ACMEQ_REDIS_URL=%s\n", env.Stack.Redis.URL())
	fmt.Fprintf(stdout, "export ACMEQ_SECRET_KEY=%s\n", env.SecretKey)
	fmt.Fprintf(stdout, "# then: acmeq request --issuer %s --name my-cert --dns my.example.test\n", dev.IssuerName)
	if dns01 {
		fmt.Fprintf(stdout, "#   or: acmeq request --issuer %s --name my-wildcard --dns '*.my.%s' --dns my.%s\n", dev.DNS01IssuerName, dev.DNS01Zone, dev.DNS01Zone)
	}
	fmt.Fprintf(stdout, "# Ctrl-C stops everything.\n")
}
