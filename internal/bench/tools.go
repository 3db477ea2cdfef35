package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/acmeq/acmeq/internal/stack"
)

// acmeqPackage is the main package of the acmeq binary.
const acmeqPackage = stack.ModulePath + "/cmd/acmeq"

// Environment of the acmeq processes the bench starts with profiling: the
// profile overlay (profileOverlaySource) starts a CPU profile into
// $ACMEQ_BENCH_CPUPROFILE on SIGUSR1 and writes it on SIGUSR2.
const profileEnv = "ACMEQ_BENCH_CPUPROFILE"

// profileOverlaySource is added to cmd/acmeq, for the bench's build only
// (go build -overlay; it is never in the source tree): the workers are
// separate processes, and this is how their CPU profile covers exactly
// the timed part of a run. Without the environment variable it does
// nothing, and the binary behaves as a normal build.
const profileOverlaySource = `package main

// Added by acmeq bench at build time (go build -overlay), never committed.

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func init() {
	path := os.Getenv("` + profileEnv + `")
	if path == "" {
		return
	}
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range ch {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(path + ".part"); err != nil {
					f = nil
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					f = nil
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
				os.Rename(path+".part", path)
			}
		}
	}()
}
`

// tools are the binaries of a benchmark: Pebble and nats-server from the
// module cache (cached across runs), acmeq and dnsd from this source tree
// (built once per Run).
type tools struct {
	dir                       string
	acmeq, pebble, nats, dnsd string
	// profiling: acmeq has the profile overlay (it was built here).
	profiling bool
}

// buildTools builds what o needs.
func buildTools(ctx context.Context, o *Options) (t *tools, err error) {
	mod := o.ModuleDir
	if mod == "" {
		if mod, err = stack.ModuleRoot(); err != nil {
			return nil, fmt.Errorf("bench: Pebble, nats-server and acmeq are built from source: %w", err)
		}
	}
	t = &tools{}
	if t.dir, err = os.MkdirTemp("", "acmeq-bench-bin-"); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.pebble, err = stack.BuildPebble(ctx, mod); err != nil {
		return nil, err
	}
	if t.nats, err = stack.BuildNATSServer(ctx, mod); err != nil {
		return nil, err
	}
	if t.dnsd, err = stack.BuildDNSD(ctx, mod, t.dir); err != nil {
		return nil, err
	}
	if o.AcmeqBinary != "" {
		t.acmeq = o.AcmeqBinary
		return t, nil
	}
	overlay := map[string][]byte{
		filepath.Join(mod, "cmd", "acmeq", "zz_bench_profile.go"): []byte(profileOverlaySource),
	}
	if t.acmeq, err = (stack.GoBuild{ModuleDir: mod, Package: acmeqPackage, Overlay: overlay, OutDir: t.dir}).Build(ctx); err != nil {
		return nil, err
	}
	t.profiling = true
	return t, nil
}

func (t *tools) close() {
	if t != nil && t.dir != "" {
		_ = os.RemoveAll(t.dir)
	}
}
