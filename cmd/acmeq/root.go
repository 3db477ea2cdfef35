package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// usageError is a command called the wrong way: an unknown command or
// flag, a missing or extra argument, a bad flag value. It exits 2 with a
// pointer to the command's help.
type usageError struct {
	cmd string // the command's path, "acmeq get"
	msg string
}

func (e usageError) Error() string { return e.msg }

// usagef returns a usageError of cmd.
func usagef(cmd *cobra.Command, format string, a ...any) error {
	return usageError{cmd: cmd.CommandPath(), msg: fmt.Sprintf(format, a...)}
}

// exitError carries an exit code; its message (if any) is printed after
// "acmeq: ". Commands that print kubectl's own error lines print them
// and return an exitError without a message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// extraCommands are added by files built with or without the dev tag
// (dev and bench, or their stand-ins).
var extraCommands []func() *cobra.Command

const rootLong = `acmeq: cert-manager's ACME machinery on a message queue.

Workers and the HTTP-01 responder are configured by ACMEQ_* environment
variables (see README.md, "Configuration"); the other commands need only
ACMEQ_NATS_URL, and ACMEQ_SECRET_KEY where they write or open Secrets.`

// newRootCmd builds the command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "acmeq",
		Short:         "cert-manager's ACME machinery on a message queue",
		Long:          rootLong,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Runnable, so that an unknown command reaches Args (exit 2)
		// instead of cobra's help (exit 0).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			return unknownCommand(cmd, args[0])
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return exitError{code: 2}
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{cmd: cmd.CommandPath(), msg: err.Error()}
	})
	root.AddGroup(
		&cobra.Group{ID: "run", Title: "Running acmeq:"},
		&cobra.Group{ID: "resources", Title: "Resources (kubectl habits):"},
	)
	root.AddCommand(newWorkerCmd(), newHTTP01Cmd(), newUICmd())
	for _, f := range extraCommands {
		root.AddCommand(f())
	}
	root.AddCommand(newSyncCmd())
	root.AddCommand(newApplyCmd(), newRequestCmd(), newGetCmd(), newDescribeCmd(), newEventsCmd(), newCreateCmd(), newDeleteCmd(),
		newRenewCmd(), newRevokeCmd(), newVersionCmd())
	for _, c := range root.Commands() {
		switch c.Name() {
		case "worker", "http01", "sync", "dev", "bench":
			c.GroupID = "run"
		case "version":
		default:
			c.GroupID = "resources"
		}
	}
	return root
}

// unknownCommand is cobra's message for an unknown command, with its
// suggestions, as a usage error.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return usagef(cmd, "%s", msg)
}

// run executes the command line args and returns the exit status: 0, 1
// for a failure, 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(goStyleFlags(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.InitDefaultCompletionCmd()
	usageErrors(root)
	err := root.ExecuteContext(ctx)
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "acmeq: %s\nSee '%s --help' for usage.\n", ue.msg, ue.cmd)
		return 2
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(stderr, "acmeq:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "acmeq:", err)
	return 1
}

// usageErrors makes the argument checks of every command (cobra's own
// among them, such as completion's) usage errors, and a command that only
// groups others (completion) answers a missing or unknown subcommand with
// one, where cobra would print its help and exit 0.
func usageErrors(cmd *cobra.Command) {
	if !cmd.Runnable() && cmd.HasSubCommands() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				c.SetOut(c.ErrOrStderr())
				_ = c.Usage()
				return usagef(c, "a subcommand is required")
			}
			return unknownCommand(c, args[0])
		}
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return usagef(c, "%v", err)
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageErrors(c)
	}
}

// goStyleFlags keeps the Go flag package's single-dash long flags working
// (`acmeq bench -rounds 3`, `acmeq apply -f x -parallel=8`), as acmeq's
// commands took them before cobra: a single-dash argument that names a
// long flag of the command is given its second dash. Shorthands are left
// alone (-n, -ojson, -A), and so is everything after "--".
func goStyleFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	cmd.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && (cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil) {
			out[i] = "-" + a
		}
	}
	return out
}

// versionString is the module version, the commit and dirty flag, the Go
// version and platform, and whether the dev tools are in this binary.
func versionString() string {
	v, rev, dirty := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	tools := "without dev tools (build with -tags dev for acmeq dev and acmeq bench)"
	if devTools {
		tools = "with dev tools (acmeq dev, acmeq bench)"
	}
	s := "acmeq " + v
	if rev != "" {
		s += " (commit " + rev + dirty + ")"
	}
	return fmt.Sprintf("%s %s %s/%s, %s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH, tools)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of acmeq",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}
