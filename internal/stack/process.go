package stack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// processOutputLimit is how many bytes of a child's output Output keeps
// when no log file is given.
const processOutputLimit = 64 << 10

// ProcessConfig configures StartProcess.
type ProcessConfig struct {
	// Name names the process in errors ("worker-0").
	Name string
	// Bin is the executable.
	Bin string
	// Args are its arguments.
	Args []string
	// Env is added to this process's environment (later entries win).
	Env []string
	// Dir is its working directory. Defaults to this process's.
	Dir string
	// LogFile, if set, receives its stdout and stderr directly (the child
	// writes the file itself: no copying in this process, whose CPU a
	// benchmark may be measuring). Otherwise the last 64 KiB are kept in
	// memory for Output.
	LogFile string
}

// Process is a child process started by StartProcess: in its own process
// group and, on Linux, killed by the kernel when this process dies.
type Process struct {
	c       *child
	logFile string
}

// StartProcess starts a child process.
func StartProcess(cfg ProcessConfig) (*Process, error) {
	cmd := exec.Command(cfg.Bin, cfg.Args...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = time.Second
	out := &tailBuffer{limit: processOutputLimit}
	var f *os.File
	if cfg.LogFile != "" {
		var err error
		if f, err = os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("stack: start %s: log: %w", cfg.Name, err)
		}
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = out, out
	}
	err := cmd.Start()
	if f != nil {
		// The child has its own descriptor now.
		_ = f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("stack: start %s (%s): %w", cfg.Name, cfg.Bin, err)
	}
	c := &child{name: cfg.Name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return &Process{c: c, logFile: cfg.LogFile}, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.c.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.c.done }

// Err is how the process exited (exec.Cmd.Wait's error); valid after Done.
func (p *Process) Err() error { return p.c.err }

// Output returns the end of the process's output: the last 64 KiB kept in
// memory, or of its log file.
func (p *Process) Output() string {
	if p.logFile == "" {
		return p.c.out.String()
	}
	return tailFile(p.logFile, processOutputLimit)
}

// Signal sends sig to the process group, unless the process has exited.
func (p *Process) Signal(sig syscall.Signal) error { return p.c.signal(sig) }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *Process) Stop(grace time.Duration) error { return p.c.stop(grace) }

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() error { return p.c.kill() }

// exitedError describes a process that exited before it was ready.
func (p *Process) exitedError() error {
	return fmt.Errorf("stack: %s exited before it was ready (%w)\n--- %s output ---\n%s", p.c.name, p.c.exitErr(), p.c.name, p.Output())
}

// tailFile returns the last limit bytes of a file, or "".
func tailFile(name string, limit int64) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-limit, 0)
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return string(b[:n])
}
