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
		Use:     "bench",
		Short:   "Measure issuance throughput against a bare ACME client, each on a fresh Pebble",
		Example: `  acmeq bench -n 200 --rounds 3`,
		Args:    cobra.NoArgs,
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
	fs.IntVar(&o.Rounds, "rounds", bench.RoundsDefault, "rounds of one baseline run and one acmeq run")
	fs.DurationVar(&o.Timeout, "timeout", 0, "deadline of each run (default 30s + 300ms per certificate)")
	fs.StringVar(&o.CPUProfileDir, "cpuprofile-dir", "", "write a CPU profile of each run's timed part to DIR/{baseline,acmeq}-<round>.pprof")
	fs.IntVar(&hangRetries, "hang-retries", bench.HangRetriesDefault, "times a run that finds Pebble hung is repeated on a fresh Pebble")
	return cmd
}
