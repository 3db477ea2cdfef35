//go:build dev

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/bench"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

// newBenchCmd measures bulk issuance of acmeq against a bare ACME client,
// each on a fresh in-process Pebble, and prints the rounds, the medians,
// the ratio and acmeq's cost per certificate. It is a measurement: it
// exits 0 whatever the figures are.
func newBenchCmd() *cobra.Command {
	o := bench.Options{}
	hangRetries := bench.HangRetriesDefault
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure acmeq against a bare ACME client at the CA's real limit",
		Long: `Measure bulk issuance by acmeq (worker, responder, nats-server and
redis-server as separate processes) against a bare x/crypto/acme client, side
by side in the same run, each on a fresh, unserialized Pebble process: certs/s,
client-side CPU per certificate, one certificate at a time (p50/p99), 30% nonce
rejects, and acmeq's cost per certificate. Run it from the source tree: it
builds acmeq, Pebble and nats-server. It is a measurement: it exits 0 whatever
the figures are.`,
		Example: `  acmeq bench -n 1000 --workers 2 --rounds 3
  acmeq bench -n 200 --rounds 1 --cpuprofile-dir /tmp/prof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.N <= 0 || o.Concurrency <= 0 || o.Workers <= 0 || o.Rounds <= 0 || o.Timeout < 0 || hangRetries < 0 {
				return usagef(cmd, "-n, --concurrency, --workers and --rounds must be positive, --timeout and --hang-retries not negative")
			}
			o.HangRetries = hangRetries
			if o.HangRetries == 0 {
				o.HangRetries = -1 // bench.Options: negative means none
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.Progress = stderr
			fmt.Fprintf(stderr, "acmeq bench: %d rounds of %d certificates, baseline then acmeq, each on a fresh Pebble...\n", o.Rounds, o.N)
			rep, err := bench.Run(cmd.Context(), o)
			if rep != nil {
				fmt.Fprintln(stdout)
				if werr := rep.WriteText(stdout); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("bench: interrupted: %w", err)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVarP(&o.N, "certificates", "n", bench.NDefault, "certificates (of two names each) per run")
	fs.IntVar(&o.Concurrency, "concurrency", bench.ConcurrencyDefault, "goroutines of the bare ACME client")
	fs.IntVar(&o.Workers, "workers", bench.WorkersDefault, "acmeq workers")
	fs.IntVar(&o.Rounds, "rounds", bench.RoundsDefault, "rounds: each runs both sides clean, with nonce rejects, and one at a time")
	fs.IntVar(&o.Cap, "cap", 0, "acmeq's challenge cap (default ACMEQ_MAX_CONCURRENT_CHALLENGES' default, 60)")
	fs.IntVar(&o.NonceRejectPercent, "nonce-reject", 0, "percent of nonces Pebble rejects in the nonce runs (default 30; negative skips them)")
	fs.IntVar(&o.LatencySamples, "latency-samples", 0, "certificates issued one at a time per round (default 50; negative skips)")
	fs.BoolVar(&o.NoBreakdown, "no-breakdown", false, "skip the instrumented run that counts messages and Redis calls")
	fs.DurationVar(&o.PollInterval, "poll-interval", 0, "the bare client's polling interval (default 20ms)")
	fs.StringVar(&o.AcmeqBinary, "acmeq-binary", "", "use this acmeq binary instead of building one (no worker profiles then)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "deadline of each run (default 30s + 300ms per certificate)")
	fs.StringVar(&o.CPUProfileDir, "cpuprofile-dir", "", "write a CPU profile of each run's timed part to DIR/{baseline,acmeq}-<round>.pprof")
	fs.IntVar(&hangRetries, "hang-retries", bench.HangRetriesDefault, "times a run that finds Pebble hung is repeated on a fresh Pebble")
	return cmd
}
