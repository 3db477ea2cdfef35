package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrHook is wrapped by the error of a reload hook that failed, timed out
// or could not start.
var ErrHook = errors.New("delivery: reload hook failed")

// hookOutputLimit is how much of a hook's output an error quotes.
const hookOutputLimit = 4 << 10

// runHook runs command with /bin/sh -c in its own process group, bounded by
// timeout: when it expires (or ctx ends) the whole group is killed, so a
// hook that started a child which hangs cannot hold the agent.
func runHook(ctx context.Context, command string, timeout time.Duration, env []string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	out := &tail{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that keeps the output pipe open must not hold Wait.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(out.String())
	if msg != "" {
		msg = "; output: " + msg
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %q did not finish within %s (killed)%s", ErrHook, command, timeout, msg)
	}
	return fmt.Errorf("%w: %q after %s: %w%s", ErrHook, command, time.Since(start).Round(time.Millisecond), err, msg)
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}
