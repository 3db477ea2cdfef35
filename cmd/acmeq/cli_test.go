package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// runCLI runs the command line in-process and returns its exit status and
// outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// commandPaths lists every command of the tree, as argument lists.
func commandPaths(cmd *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, c := range cmd.Commands() {
		if c.Hidden {
			continue
		}
		p := append(slices.Clone(prefix), c.Name())
		out = append(out, p)
		out = append(out, commandPaths(c, p)...)
	}
	return out
}

// noStart makes the commands that start something fail at once if they
// are started: a help that started them exits 1, not 0.
func noStart(t *testing.T) {
	t.Setenv("ACMEQ_SECRET_KEY", "")
	t.Setenv("ACMEQ_HTTP01_LISTEN", "not an address")
	t.Setenv("ACMEQ_NATS_URL", "http://not-nats")
}

// TestHelp: --help and -h print the command's help on standard output
// and exit 0 without running it, for every command (worker and http01
// included: they used to start).
func TestHelp(t *testing.T) {
	noStart(t)
	root := newRootCmd()
	root.InitDefaultCompletionCmd()
	paths := append([][]string{{}}, commandPaths(root, nil)...)
	if len(paths) < 15 {
		t.Fatalf("only %d commands found: %q", len(paths), paths)
	}
	for _, p := range paths {
		for _, flag := range []string{"--help", "-h"} {
			args := append(slices.Clone(p), flag)
			code, out, errOut := runCLI(t, args...)
			usage := strings.TrimSpace("acmeq " + strings.Join(p, " "))
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage:\n  "+usage) {
				t.Errorf("acmeq %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, errOut, out)
			}
		}
	}
	if code, out, _ := runCLI(t, "help", "get"); code != 0 || !strings.Contains(out, "acmeq get KIND [NAME]") {
		t.Errorf("acmeq help get: exit %d:\n%s", code, out)
	}
}

// TestUsageErrors: unknown commands and flags, missing or extra
// arguments, bad flag values exit 2 with a message and a pointer to the
// help; the commands that work without a server exit 0.
func TestUsageErrors(t *testing.T) {
	noStart(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in standard error (or standard output for code 0)
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `acmeq: unknown command "frobnicate" for "acmeq"` + "\n" + "See 'acmeq --help' for usage."},
		{[]string{"gett"}, 2, "Did you mean this?\n\tget"},
		{[]string{"get", "--bogus"}, 2, "acmeq: unknown flag: --bogus\nSee 'acmeq get --help' for usage."},
		{[]string{"get", "-x"}, 2, "unknown shorthand flag: 'x' in -x"},
		{[]string{"worker", "--bogus"}, 2, "unknown flag: --bogus\nSee 'acmeq worker --help'"},
		{[]string{"worker", "extra"}, 2, `unknown command "extra" for "acmeq worker"`},
		{[]string{"http01", "extra"}, 2, `unknown command "extra" for "acmeq http01"`},
		{[]string{"get"}, 2, "you must specify the type of resource"},
		{[]string{"renew"}, 2, "name a certificate, or select them with --all or -l"},
		{[]string{"renew", "shop", "--all"}, 2, "names cannot be combined with --all or -l"},
		{[]string{"renew", "--all", "-l", "a in (b"}, 2, `-l "a in (b"`},
		{[]string{"renew", "order", "x"}, 2, "only certificates are renewed, not orders"},
		{[]string{"revoke", "shop"}, 2, "want: revoke certificate NAME"},
		{[]string{"revoke", "order", "x"}, 2, `only certificates are revoked, not "order"`},
		{[]string{"revoke", "certificate", "shop", "--reason", "bored"}, 2, `--reason "bored" is not an RFC 5280 reason: want one of unspecified, keyCompromise`},
		{[]string{"sync"}, 2, "Dir"},
		{[]string{"sync", "--dir", "d", "-A", "shop"}, 2, "-A"},
		{[]string{"get", "pods"}, 2, `unknown kind "pods"`},
		{[]string{"get", "orders", "-o", "xml"}, 2, `unable to match a printer suitable for the output format "xml"`},
		{[]string{"get", "orders", "-o", "jsonpath="}, 2, "template format specified but no template given"},
		{[]string{"get", "orders", "-o", "jsonpath={.a"}, 2, "error parsing jsonpath {.a"},
		{[]string{"get", "order", "x", "-A"}, 2, "cannot be retrieved by name across all namespaces"},
		{[]string{"get", "secrets", "-w", "-o", "json"}, 2, "get secrets -w prints the table only"},
		{[]string{"get", "--namespace"}, 2, "flag needs an argument: --namespace"},
		{[]string{"describe", "secret", "x"}, 2, "secrets are shown by acmeq get secret NAME only"},
		{[]string{"describe", "order", "Bad.Name"}, 2, "name"},
		{[]string{"events", "--since", "-1m"}, 2, "--since must not be negative"},
		{[]string{"events", "--since", "soon"}, 2, `invalid argument "soon" for "--since"`},
		{[]string{"events", "-o", "yaml"}, 2, `output format "yaml" is not supported`},
		{[]string{"events", "--types", "Error"}, 2, `--types "Error": want Normal or Warning`},
		{[]string{"events", "--reason", ",Issued"}, 2, "--reason must not be empty"},
		{[]string{"delete", "challenge", "x"}, 2, "challenges cannot be deleted"},
		{[]string{"delete", "order"}, 2, "a order name is required"},
		{[]string{"delete", "order", "x", "--wait", "-1s"}, 2, "--wait must not be negative"},
		{[]string{"create"}, 2, "you must specify the type of resource to create: secret"},
		{[]string{"create", "configmap", "x"}, 2, `acmeq creates secrets only, not "configmap"`},
		{[]string{"create", "secret"}, 2, "exactly one NAME is required"},
		{[]string{"create", "secret", "x"}, 2, "at least one --from-literal or --from-file is required"},
		{[]string{"create", "secret", "x", "--from-literal", "novalue"}, 2, `--from-literal "novalue": want KEY=VALUE`},
		{[]string{"apply"}, 2, "-f is required"},
		{[]string{"apply", "-f", "x.yaml", "extra"}, 2, `unknown command "extra" for "acmeq apply"`},
		{[]string{"apply", "-f", "x.yaml", "--parallel", "0"}, 2, "--parallel must be at least 1"},
		{[]string{"apply", "-f", "x.yaml", "-parallel=0"}, 2, "--parallel must be at least 1"}, // Go-style single dash
		{[]string{"apply", "-f", "does-not-exist.yaml"}, 1, `acmeq: the path "does-not-exist.yaml" does not exist`},
		{[]string{"request", "extra"}, 2, `unknown command "extra" for "acmeq request"`},
		{[]string{"version", "extra"}, 2, `unknown command "extra" for "acmeq version"`},
		{[]string{"completion", "tcsh"}, 2, `unknown command "tcsh" for "acmeq completion"`},
		{[]string{"completion"}, 2, "a subcommand is required"},
		{[]string{"version"}, 0, "acmeq "},
		{[]string{"--version"}, 0, "acmeq "},
		{[]string{"completion", "bash"}, 0, "bash completion V2 for acmeq"},
		{[]string{"completion", "zsh"}, 0, "#compdef acmeq"},
		{[]string{"completion", "fish"}, 0, "fish completion for acmeq"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		got := errOut
		if tc.code == 0 {
			got = out
		}
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("acmeq %s: exit %d (want %d), stdout %q, stderr %q; want %q", strings.Join(tc.args, " "), code, tc.code, truncate(out), errOut, tc.want)
		}
	}
}

// TestEmptyApply: input without a resource is kubectl's "no objects
// passed to apply", exit 1, before any connection is made (the NATS URL
// of noStart would fail).
func TestEmptyApply(t *testing.T) {
	noStart(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("---\n# nothing\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("kind: Issuer"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"apply", "-f", empty}, {"apply", "-f", dir}, {"apply", "-f", t.TempDir()}} {
		code, out, errOut := runCLI(t, args...)
		if code != 1 || out != "" || !strings.HasSuffix(errOut, "error: no objects passed to apply\n") {
			t.Errorf("acmeq %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// TestApplyInputs: -f DIR reads the .yaml, .yml, .json and .jsonl files
// of the directory in name order (subdirectories with -R), as kubectl.
func TestApplyInputs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.json", "c.YML", "d.jsonl", "e.txt", "sub/f.yaml", "sub/g.md"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i], _ = filepath.Rel(dir, p)
		}
		return out
	}
	got, err := applyInputs([]string{dir}, false)
	if want := []string{"a.json", "b.yaml", "c.YML", "d.jsonl"}; err != nil || !slices.Equal(rel(got), want) {
		t.Errorf("apply -f DIR reads %q (%v), want %q", rel(got), err, want)
	}
	got, err = applyInputs([]string{dir}, true)
	if want := []string{"a.json", "b.yaml", "c.YML", "d.jsonl", "sub/f.yaml"}; err != nil || !slices.Equal(rel(got), want) {
		t.Errorf("apply -f DIR -R reads %q (%v), want %q", rel(got), err, want)
	}
	got, err = applyInputs([]string{"-", filepath.Join(dir, "e.txt")}, false)
	if err != nil || len(got) != 2 || got[0] != "-" {
		t.Errorf("apply -f - -f FILE reads %q (%v): a named file is read whatever its extension", got, err)
	}
}

// TestGoStyleFlags: single-dash long flags, as the Go flag package took
// them, keep working; shorthands and what follows "--" are untouched.
func TestGoStyleFlags(t *testing.T) {
	root := newRootCmd()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"apply", "-f", "x", "-parallel=8", "-wait", "-q"}, []string{"apply", "-f", "x", "--parallel=8", "--wait", "-q"}},
		{[]string{"get", "-ojson", "orders", "-ndev", "-A"}, []string{"get", "-ojson", "orders", "-ndev", "-A"}},
		{[]string{"events", "-since", "10m", "--", "-since"}, []string{"events", "--since", "10m", "--", "-since"}},
		{[]string{"delete", "order", "x", "-wait", "0s", "-help"}, []string{"delete", "order", "x", "--wait", "0s", "--help"}},
		{[]string{"get", "-bogus"}, []string{"get", "-bogus"}},
	} {
		if got := goStyleFlags(root, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("goStyleFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestBindFailure: a listen address that is taken is a start-up error
// naming its variable; nothing else starts (no NATS is reachable here, and
// the error is the bind, not the connection).
func TestBindFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	free := "127.0.0.1:0"
	t.Setenv("ACMEQ_NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("ACMEQ_SECRET_KEY", "0000000000000000000000000000000000000000000000000000000000000000")
	for _, tc := range []struct {
		cmd  string
		env  map[string]string
		want string
	}{
		{"worker", map[string]string{"ACMEQ_LISTEN": taken}, `configuration: ACMEQ_LISTEN "` + taken + `": listen tcp ` + taken},
		{"http01", map[string]string{"ACMEQ_HTTP01_LISTEN": taken, "ACMEQ_HTTP01_METRICS_LISTEN": free}, `configuration: ACMEQ_HTTP01_LISTEN "` + taken + `": listen tcp`},
		{"http01", map[string]string{"ACMEQ_HTTP01_LISTEN": free, "ACMEQ_HTTP01_METRICS_LISTEN": taken}, `configuration: ACMEQ_HTTP01_METRICS_LISTEN "` + taken + `": listen tcp`},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		code, _, errOut := runCLI(t, tc.cmd)
		if code != 1 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "address already in use") {
			t.Errorf("acmeq %s with %v: exit %d, stderr %q; want %q", tc.cmd, tc.env, code, errOut, tc.want)
		}
	}
}

// TestProductionBinaryHasNoTestStack: without the dev tag, acmeq links
// neither Pebble nor an embedded nats-server (nor the packages that start
// them); with it, it does (so the check cannot pass by looking at the
// wrong thing).
func TestProductionBinaryHasNoTestStack(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list acmeq's dependencies: %v", err)
	}
	deps := func(tags ...string) []string {
		args := append([]string{"list"}, tags...)
		out, err := exec.Command(goBin, append(args, "-deps", ".")...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	forbidden := func(pkg string) bool {
		return strings.HasPrefix(pkg, "github.com/letsencrypt/pebble") ||
			pkg == "github.com/nats-io/nats-server/v2/server" ||
			slices.Contains([]string{"internal/dev", "internal/bench", "internal/stack"}, strings.TrimPrefix(pkg, "github.com/acmeq/acmeq/"))
	}
	prod := deps()
	if !slices.Contains(prod, "github.com/acmeq/acmeq/worker") {
		t.Fatalf("go list -deps lists no worker package: %q", prod)
	}
	for _, p := range prod {
		if forbidden(p) {
			t.Errorf("the production binary links %s", p)
		}
	}
	dev := deps("-tags", "dev")
	for _, want := range []string{"github.com/letsencrypt/pebble/v2/wfe", "github.com/nats-io/nats-server/v2/server", "github.com/acmeq/acmeq/internal/dev"} {
		if !slices.Contains(dev, want) {
			t.Errorf("go list -tags dev -deps does not list %s", want)
		}
	}
}
