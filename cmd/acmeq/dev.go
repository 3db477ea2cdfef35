package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
)

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	n := fs.Int("certificates", 0, "issue N demo certificates (1 to 3 names each), write them to --out and exit")
	out := fs.String("out", "certs", "directory for the issued certificates")
	workers := fs.Int("workers", dev.WorkersDefault, "number of workers")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up waiting for the certificates after this long")
	verbose := fs.Bool("v", false, "log the workers' activity to stderr")
	dir := fs.String("data", "", "data directory for NATS and Redis (default: a temporary directory)")
	dns01 := fs.Bool("dns01", false, "also run BIND for the zone dns.test and an issuer \"dev-dns\" solving DNS-01 by RFC 2136")
	if err := fs.Parse(args); err != nil {
		return exitError{code: 2}
	}
	if *n < 0 {
		return exitError{code: 2, msg: "--certificates must not be negative"}
	}
	data := *dir
	if data == "" {
		tmp, err := os.MkdirTemp("", "acmeq-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		data = tmp
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	fmt.Fprintf(os.Stderr, "acmeq dev: starting NATS, redis-server, Pebble, the HTTP-01 responder and %d workers...\n", *workers)
	env, err := dev.Start(ctx, dev.Options{Dir: data, Workers: *workers, Logger: logger, DNS01: *dns01})
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Fprintf(os.Stderr, "acmeq dev: issuer %q is Ready at %s\n", dev.IssuerName, env.Stack.Pebble.DirectoryURL)

	if *n == 0 {
		fmt.Printf("# acmeq dev is running. In another terminal:\n")
		fmt.Printf("export ACMEQ_NATS_URL=%s\n", env.Stack.NATS.URL)
		fmt.Printf("export ACMEQ_REDIS_URL=%s\n", env.Stack.Redis.URL())
		fmt.Printf("export ACMEQ_SECRET_KEY=%s\n", env.SecretKey)
		fmt.Printf("# then: acmeq request --issuer %s --name my-cert --dns my.example.test\n", dev.IssuerName)
		if *dns01 {
			fmt.Printf("#   or: acmeq request --issuer %s --name my-wildcard --dns '*.my.%s' --dns my.%s\n", dev.DNS01IssuerName, dev.DNS01Zone, dev.DNS01Zone)
		}
		fmt.Printf("# Ctrl-C stops everything.\n")
		<-ctx.Done()
		return nil
	}

	start := time.Now()
	reqs := dev.DemoRequests(*n)
	names := make([]string, len(reqs))
	for i, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			return fmt.Errorf("request %s: %w", r.Name, err)
		}
		names[i] = r.Name
	}
	fmt.Fprintf(os.Stderr, "acmeq dev: published %d certificate requests, waiting...\n", len(reqs))
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, werr := env.WaitCertificates(wctx, dev.Namespace, names)
	took := time.Since(start)

	if err := env.WriteRoot(*out); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(*out, "ca.crt"), err)
	}
	sort.Strings(names)
	ok, failed := 0, 0
	fmt.Printf("%-12s %-6s %s\n", "CERTIFICATE", "READY", "NAMES / REASON")
	for _, name := range names {
		r, done := results[name]
		switch {
		case !done:
			failed++
			fmt.Printf("%-12s %-6s %s\n", name, "False", "still pending when the wait ended")
		case r.Ready:
			if err := env.WriteCertificate(ctx, *out, dev.Namespace, name); err != nil {
				failed++
				fmt.Printf("%-12s %-6s %v\n", name, "False", err)
				continue
			}
			ok++
			fmt.Printf("%-12s %-6s %s\n", name, "True", strings.Join(r.Names, ","))
		default:
			failed++
			fmt.Printf("%-12s %-6s %s\n", name, "False", r.Message)
		}
	}
	fmt.Printf("\n%d issued, %d failed in %s (%.1f certificates/s); written to %s (ca.crt, <name>/tls.crt, <name>/tls.key)\n",
		ok, failed, took.Round(time.Millisecond), float64(ok)/took.Seconds(), *out)
	if werr != nil || failed > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d of %d certificates were not issued", failed, len(names))}
	}
	return nil
}
