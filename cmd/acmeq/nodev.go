//go:build !dev

package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
)

// devTools reports that this binary lacks acmeq dev and acmeq bench: they
// link Pebble, an embedded nats-server and the test stack, which a
// production worker has no use for.
const devTools = false

// ErrNoDevTools is what acmeq dev and acmeq bench answer in a binary built
// without the dev tag.
var ErrNoDevTools = errors.New("this acmeq binary is built without the dev tools, to keep Pebble and an embedded NATS server out of production binaries")

func init() {
	extraCommands = append(extraCommands,
		func() *cobra.Command {
			return noDevCmd("dev", "Run the whole stack in one process (needs a build with -tags dev)")
		},
		func() *cobra.Command {
			return noDevCmd("bench", "Measure issuance throughput (needs a build with -tags dev)")
		},
	)
}

// noDevCmd stands in for a command of the dev build: whatever its flags,
// it says how to get the command.
func noDevCmd(name, short string) *cobra.Command {
	how := fmt.Sprintf("run it from the source tree with: go run -tags dev ./cmd/acmeq %s (or build with: go build -tags dev ./cmd/acmeq)", name)
	return &cobra.Command{
		Use:                name,
		Short:              short,
		Long:               fmt.Sprintf("acmeq %s is not in this binary: %v.\n\nTo get it, %s.", name, ErrNoDevTools, how),
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Flags are not parsed (they are the dev build's), so help
			// is answered here.
			if slices.Contains(args, "--help") || slices.Contains(args, "-h") {
				return cmd.Help()
			}
			return fmt.Errorf("%s: %w; %s", name, ErrNoDevTools, how)
		},
	}
}
