package stack

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// child is one run of a server started as a child process (redis-server,
// named): in its own process group, killed with the parent (Pdeathsig on
// Linux), its output kept in a tail buffer for error messages.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // result of cmd.Wait, valid after done is closed
}

// startChild starts bin with args in dir. Output goes to out and, if set,
// also to extra; onExit runs after the process has exited.
func startChild(name, bin, dir string, out *tailBuffer, extra io.Writer, onExit func(), args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var w io.Writer = out
	if extra != nil {
		w = io.MultiWriter(out, extra)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = childSysProcAttr()
	// Don't let a grandchild holding the output pipe block Wait forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("stack: start %s: %w", bin, err)
	}
	p := &child{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if onExit != nil {
			onExit()
		}
		close(p.done)
	}()
	return p, nil
}

// errExitStatus0 stands for a clean exit where a server that exited too
// early is reported: wrapping Wait's nil error with %w would print
// "%!w(<nil>)".
const errExitStatus0 = constError("exit status 0")

// errNotAsked is the last error of a readiness probe that never ran (the
// server exited before the first one).
const errNotAsked = constError("not asked yet")

// exitErr is how p exited, as an error to wrap: cmd.Wait's error, or
// errExitStatus0. Valid after done is closed.
func (p *child) exitErr() error {
	if p.err == nil {
		return errExitStatus0
	}
	return p.err
}

// signal sends sig to the process group of p, unless p has already exited.
func (p *child) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stack: signal %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL if the process has not exited after
// grace, and waits for it. A stopped (SIGSTOP) process is continued first
// so it can act on SIGTERM.
func (p *child) stop(grace time.Duration) error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	_ = p.signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(grace):
		if err := p.signal(syscall.SIGKILL); err != nil {
			return err
		}
		<-p.done
	}
	return nil
}

// kill sends SIGKILL to the process group and waits for the exit.
func (p *child) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}
