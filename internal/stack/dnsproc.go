package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// dnsdPackage is the main package of the DNS server process.
const dnsdPackage = ModulePath + "/internal/stack/dnsd"

// dnsProcReadyTimeout bounds the wait for dnsd's address.
const dnsProcReadyTimeout = 10 * time.Second

// BuildDNSD builds internal/stack/dnsd into outDir ("" makes a temporary
// directory, which the caller removes) and returns the binary's path.
// moduleDir is acmeq's source tree; "" finds it from the working
// directory.
func BuildDNSD(ctx context.Context, moduleDir, outDir string) (string, error) {
	return GoBuild{ModuleDir: moduleDir, Package: dnsdPackage, OutDir: outDir}.Build(ctx)
}

// DNSProcess is the DNS server of StartDNS (every A query answered with
// 127.0.0.1, no AAAA) running as a child process, its CPU time apart from
// the caller's.
type DNSProcess struct {
	// Addr is the host:port it listens on, UDP and TCP.
	Addr string

	proc *Process
}

// StartDNSProcess starts bin (from BuildDNSD), keeping its address file
// in dir, and waits until it listens.
func StartDNSProcess(bin, dir string) (*DNSProcess, error) {
	addrFile := filepath.Join(dir, "dnsd.addr")
	_ = os.Remove(addrFile)
	proc, err := StartProcess(ProcessConfig{Name: "dnsd", Bin: bin, Dir: dir, Args: []string{"-addr-file", addrFile}})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(dnsProcReadyTimeout)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return &DNSProcess{Addr: string(b), proc: proc}, nil
		}
		if time.Now().After(deadline) {
			_ = proc.Kill()
			return nil, fmt.Errorf("stack: dnsd wrote no address within %s\n--- dnsd output ---\n%s", dnsProcReadyTimeout, proc.Output())
		}
		select {
		case <-proc.Done():
			return nil, proc.exitedError()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// PID is the process id, for measuring its CPU time.
func (d *DNSProcess) PID() int { return d.proc.PID() }

// Close stops the server. It is safe to call more than once.
func (d *DNSProcess) Close() error {
	if d == nil || d.proc == nil {
		return nil
	}
	return d.proc.Stop(5 * time.Second)
}
