package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// redisBinary is the executable StartRedis looks up in PATH.
	redisBinary = "redis-server"
	// redisStartAttempts is how many ports StartRedis tries before giving up.
	redisStartAttempts = 5
	// redisReadyTimeout bounds how long one start waits for PONG.
	redisReadyTimeout = 10 * time.Second
	// redisStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	redisStopGrace = 5 * time.Second
	// redisOutputLimit is how many bytes of the child's output are kept.
	redisOutputLimit = 64 << 10
)

// Redis is a redis-server child process listening on 127.0.0.1 without
// persistence. It runs in its own process group and, on Linux, is killed by
// the kernel when the parent process dies.
type Redis struct {
	// Addr is the host:port the server listens on, e.g. 127.0.0.1:6379.
	Addr string

	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *redisProc // nil when no process is running
}

// redisProc is one run of redis-server.
type redisProc = child

// StartRedis starts redis-server (found in PATH) with its working directory
// dir, listening on a free port of 127.0.0.1 with RDB snapshots and the AOF
// disabled, and waits until it answers PING. dir is created if needed.
func StartRedis(dir string) (*Redis, error) {
	bin, err := exec.LookPath(redisBinary)
	if err != nil {
		return nil, errors.New("stack: redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: create redis dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stack: redis dir: %w", err)
	}
	r := &Redis{bin: bin, dir: abs}

	var lastErr error
	for range redisStartAttempts {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		proc, err := r.spawn(port)
		if err == nil {
			r.port = port
			r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			r.proc = proc
			return r, nil
		}
		lastErr = err
		if !errors.Is(err, errRedisExited) {
			// Not a lost race for the port: trying another one won't help.
			break
		}
	}
	return nil, lastErr
}

// errRedisExited marks a start that failed because the child exited, which
// is how redis-server reports a port that was taken in the meantime.
const errRedisExited = constError("redis-server exited")

// constError is an error that can be declared as a constant.
type constError string

// Error returns the message.
func (e constError) Error() string { return string(e) }

// URL returns the redis URL of database 0, e.g. redis://127.0.0.1:6379/0.
func (r *Redis) URL() string {
	return "redis://" + r.Addr + "/0"
}

// Output returns the most recent output (stdout and stderr) of the current
// or last redis-server process.
func (r *Redis) Output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return ""
	}
	return r.proc.out.String()
}

// Stop sends SIGTERM to the server, sends SIGKILL if it has not exited after
// 5 seconds, and waits for it. Stopping a stopped server is a no-op.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	return r.proc.stop(redisStopGrace)
}

// Kill sends SIGKILL to the server's process group and waits for the server
// to exit. Killing a stopped server is a no-op.
func (r *Redis) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killLocked()
}

// Restart kills the server and starts a new, empty one on the same port, as
// if Redis had crashed and come back without its data. It returns once the
// new server answers PING.
func (r *Redis) Restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.killLocked(); err != nil {
		return err
	}
	// Nothing should have been written, but make sure the new server cannot
	// load a previous dataset.
	for _, name := range []string{"dump.rdb", "appendonly.aof", "appendonlydir"} {
		if err := os.RemoveAll(filepath.Join(r.dir, name)); err != nil {
			return fmt.Errorf("stack: restart redis: clear data: %w", err)
		}
	}
	var lastErr error
	for range redisStartAttempts {
		proc, err := r.spawn(r.port)
		if err == nil {
			r.proc = proc
			return nil
		}
		lastErr = err
		if !errors.Is(err, errRedisExited) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("stack: restart redis on %s: %w", r.Addr, lastErr)
}

// Pause freezes the server with SIGSTOP, sent to its process group: it
// keeps its data and its port, the kernel still accepts connections, but
// nothing is answered until Resume, as with a Redis host that is
// unreachable for a while. Pausing a server that is not running is a no-op.
//
// Resume a paused server before Stop: a frozen process cannot act on
// Stop's SIGTERM, so Stop would wait its whole grace period and then kill
// it. Kill and Restart work on a paused server.
func (r *Redis) Pause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	return r.proc.signal(syscall.SIGSTOP)
}

// Resume lets a server frozen by Pause run again (SIGCONT to its process
// group), with the data it had. Resuming a server that is running or not
// running at all is a no-op.
func (r *Redis) Resume() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	return r.proc.signal(syscall.SIGCONT)
}

// killLocked kills the current process, if any, and waits for it. r.mu must
// be held.
func (r *Redis) killLocked() error {
	p := r.proc
	if p == nil {
		return nil
	}
	return p.kill()
}

// spawn starts redis-server on port and waits until it answers PING.
func (r *Redis) spawn(port int) (*redisProc, error) {
	return spawnRedisServer(r.bin, r.dir, port)
}

// spawnRedisServer starts redis-server on port of 127.0.0.1 without
// persistence, in dir, with extra arguments, and waits until it answers
// PING.
func spawnRedisServer(bin, dir string, port int, extra ...string) (*redisProc, error) {
	out := &tailBuffer{limit: redisOutputLimit}
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}, extra...)
	p, err := startChild("redis-server", bin, dir, out, nil, nil, args...)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitRedisPing(addr, p.done); err != nil {
		_ = p.kill()
		return nil, fmt.Errorf("stack: redis-server on %s: %w\n--- redis-server output ---\n%s",
			addr, err, strings.TrimSpace(out.String()))
	}
	return p, nil
}

// waitRedisPing polls addr with PING until it answers PONG, the process
// exits (done is closed) or redisReadyTimeout passes.
func waitRedisPing(addr string, done <-chan struct{}) error {
	client := redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialerRetries:   1,
		DialTimeout:     time.Second,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		PoolSize:        1,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	defer client.Close()

	deadline := time.Now().Add(redisReadyTimeout)
	var lastErr error = errNotAsked
	for {
		select {
		case <-done:
			return fmt.Errorf("%w before answering PING (last error: %w)", errRedisExited, lastErr)
		default:
		}
		// Check that the port accepts connections before using go-redis, whose
		// pool logs every failed dial through its process-wide logger.
		var conn net.Conn
		if conn, lastErr = net.DialTimeout("tcp", addr, time.Second); lastErr == nil {
			_ = conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			lastErr = client.Ping(ctx).Err()
			cancel()
		}
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING after %s: %w", redisReadyTimeout, lastErr)
		}
		select {
		case <-done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tailBuffer is an io.Writer, safe for concurrent use, that keeps the last
// limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

// Write appends p, dropping the oldest bytes beyond the limit.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the bytes currently kept.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
