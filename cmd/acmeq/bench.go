package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/acmeq/acmeq/internal/bench"
)

// runBench measures bulk issuance of acmeq against a bare ACME client, each
// on a fresh in-process Pebble, and prints the rounds, the medians, the
// ratio and acmeq's cost per certificate. It is a measurement: it exits 0
// whatever the figures are.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fs.Int("n", bench.NDefault, "certificates (of two names each) per run")
	concurrency := fs.Int("concurrency", bench.ConcurrencyDefault, "goroutines of the bare ACME client")
	workers := fs.Int("workers", bench.WorkersDefault, "acmeq workers")
	rounds := fs.Int("rounds", bench.RoundsDefault, "rounds of one baseline run and one acmeq run")
	timeout := fs.Duration("timeout", 0, "deadline of each run (default 30s + 300ms per certificate)")
	profileDir := fs.String("cpuprofile-dir", "", "write a CPU profile of each run's timed part to DIR/{baseline,acmeq}-<round>.pprof")
	hangRetries := fs.Int("hang-retries", bench.HangRetriesDefault, "times a run that finds Pebble hung is repeated on a fresh Pebble")
	if err := fs.Parse(args); err != nil {
		return exitError{code: 2}
	}
	if *n <= 0 || *concurrency <= 0 || *workers <= 0 || *rounds <= 0 || *timeout < 0 || *hangRetries < 0 {
		return exitError{code: 2, msg: "bench: -n, -concurrency, -workers and -rounds must be positive, -timeout and -hang-retries not negative"}
	}
	if *hangRetries == 0 {
		*hangRetries = -1 // bench.Options: negative means none
	}
	fmt.Fprintf(os.Stderr, "acmeq bench: %d rounds of %d certificates, baseline then acmeq, each on a fresh Pebble...\n", *rounds, *n)
	rep, err := bench.Run(ctx, bench.Options{
		N: *n, Concurrency: *concurrency, Workers: *workers, Rounds: *rounds,
		Timeout: *timeout, HangRetries: *hangRetries, CPUProfileDir: *profileDir, Progress: os.Stderr,
	})
	if rep != nil {
		fmt.Println()
		if werr := rep.WriteText(os.Stdout); werr != nil {
			return werr
		}
	}
	if err != nil {
		return fmt.Errorf("bench: interrupted: %w", err)
	}
	return nil
}
