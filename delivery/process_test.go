package delivery

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
)

// Environment of the agent helper process (the test binary started again
// by TestMain): the agent runs in a process of its own, so a test can
// SIGKILL it or run it as another user.
const (
	envHelper = "ACMEQ_DELIVERY_TEST_AGENT" // "1" runs the helper
	envURL    = "ACMEQ_DELIVERY_TEST_NATS_URL"
	envKey    = "ACMEQ_DELIVERY_TEST_KEY" // hex
	envDir    = "ACMEQ_DELIVERY_TEST_DIR"
	envStall  = "ACMEQ_DELIVERY_TEST_STALL" // a write step to stop at
	envOnce   = "ACMEQ_DELIVERY_TEST_ONCE"
	envNames  = "ACMEQ_DELIVERY_TEST_NAMES" // comma-separated
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		os.Exit(helperAgent())
	}
	os.Exit(m.Run())
}

// helperAgent runs an agent from the environment. With envStall it prints
// "STALLED <step>" when a write reaches that step and then waits to be
// killed.
func helperAgent() int {
	if step := os.Getenv(envStall); step != "" {
		testHook = func(s string) {
			if s == step {
				fmt.Printf("STALLED %s\n", s)
				select {}
			}
		}
	}
	nc, err := nats.Connect(os.Getenv(envURL))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	key, _ := hex.DecodeString(os.Getenv(envKey))
	sealer, err := store.NewSealer(key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var names []string
	if n := os.Getenv(envNames); n != "" {
		names = strings.Split(n, ",")
	}
	a, err := New(js, sealer, Config{
		Dir:      os.Getenv(envDir),
		Names:    names,
		Once:     os.Getenv(envOnce) == "1",
		Debounce: 10 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := a.Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "RUN ERROR: %v\n", err)
		return 1
	}
	return 0
}

// helper is a running agent helper process.
type helper struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *logBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // of Wait, once done is closed
}

// startHelper starts the agent in a process of its own group, killed with
// the test. cred, if set, runs it as another user.
func (e *env) startHelper(t *testing.T, bin, dir string, extra []string, cred *syscall.Credential) *helper {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), envHelper+"=1", envURL+"="+e.nats.URL, envKey+"="+hex.EncodeToString(e.key), envDir+"="+dir)
	cmd.Env = append(cmd.Env, extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdout: bufio.NewReader(out), stderr: &logBuffer{}, done: make(chan struct{})}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() { h.kill() })
	return h
}

func (h *helper) kill() {
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
	}
}

// waitLine reads stdout until a line with prefix, bounded by timeout.
func (h *helper) waitLine(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		for {
			line, err := h.stdout.ReadString('\n')
			if strings.HasPrefix(line, prefix) {
				got <- line
				return
			}
			if err != nil {
				got <- ""
				return
			}
		}
	}()
	select {
	case l := <-got:
		if l == "" {
			t.Fatalf("agent process ended before printing %q; stderr:\n%s", prefix, h.stderr.String())
		}
	case <-time.After(timeout):
		t.Fatalf("agent process did not print %q within %s; stderr:\n%s", prefix, timeout, h.stderr.String())
	}
}

// The agent is SIGKILLed at each step of writing a renewal, then started
// again. A reader checking the files all along always finds a complete
// pair whose key matches its certificate and whose chain verifies: the old
// one until the switch, the new one after. The restarted agent finishes
// the switch and removes what the killed one left.
func TestSyncKilledMidWrite(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"partial", "files", "version", "linked"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			name := "kill-" + step
			e.putCertificate(t, "default", name, nil, name+".example.test")
			old := e.issue(t, "default", name, name+".example.test")
			if _, _, err := e.once(t, Config{Dir: dir, Names: []string{name}}); err != nil {
				t.Fatal(err)
			}
			renewed := e.issue(t, "default", name, name+".example.test", "www."+name+".example.test")

			// A reader that checks the pair until the test ends.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var readerErr error
			var reads int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					p, err := checkPair(dir, "default", name, e.ca.pool())
					if err == nil && p.serial != old && p.serial != renewed {
						err = fmt.Errorf("serial %s is neither the old nor the renewed one", p.serial)
					}
					if err != nil {
						readerErr = err
						return
					}
					reads++
				}
			}()

			h := e.startHelper(t, bin, dir, []string{envStall + "=" + step, envNames + "=" + name}, nil)
			h.waitLine(t, "STALLED "+step, 30*time.Second)
			h.kill()
			want := old
			if step == "linked" {
				want = renewed
			}
			if p := readPair(t, dir, "default", name, e.ca.pool()); p.serial != want {
				t.Errorf("after a kill at %q the files hold serial %s, want %s", step, p.serial, want)
			}

			h = e.startHelper(t, bin, dir, []string{envOnce + "=1", envNames + "=" + name}, nil)
			select {
			case <-h.done:
				if h.err != nil {
					t.Fatalf("restarted agent: %v\n%s", h.err, h.stderr.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("restarted agent did not finish")
			}
			close(stop)
			wg.Wait()
			if readerErr != nil {
				t.Fatalf("a reader found a broken pair: %v", readerErr)
			}
			if reads == 0 {
				t.Fatal("the reader never read")
			}
			p := readPair(t, dir, "default", name, e.ca.pool())
			if p.serial != renewed {
				t.Errorf("after the restart the files hold serial %s, want %s", p.serial, renewed)
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "default"))
			for _, en := range entries {
				if strings.Contains(en.Name(), ".tmp-") || strings.Contains(en.Name(), ".link-") {
					t.Errorf("left behind: %s", en.Name())
				}
			}
		})
	}
}

// A sync directory the agent cannot write: a clear error naming the
// directory and the reason, at start or at the write; nothing on disk is
// lost. As root, permission bits do not stop the agent, so it runs as
// nobody.
func TestSyncDirectoryNotWritable(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putCertificate(t, "default", "shop", nil, "shop.example.test")
	serial := e.issue(t, "default", "shop", "shop.example.test")
	bin, cred := unprivileged(t)

	run := func(dir string) (string, error) {
		h := e.startHelper(t, bin, dir, []string{envOnce + "=1"}, cred)
		select {
		case <-h.done:
			out := h.stderr.String()
			if i := strings.Index(out, "RUN ERROR: "); i >= 0 {
				t.Logf("agent as uid %d: %s", uidOf(cred), strings.TrimSpace(out[i:]))
			}
			return out, h.err
		case <-time.After(60 * time.Second):
			t.Fatal("agent did not finish")
		}
		return "", nil
	}

	// The directory itself.
	base := worldReadable(t)
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	stderr, err := run(filepath.Join(ro, "certs"))
	if err == nil || !strings.Contains(stderr, "sync directory "+filepath.Join(ro, "certs")+" cannot be created") || !strings.Contains(stderr, "permission denied") {
		t.Errorf("uncreatable dir: %v\n%s", err, stderr)
	}
	stderr, err = run(ro)
	if err == nil || !strings.Contains(stderr, "sync directory "+ro+" is not writable") || !strings.Contains(stderr, "permission denied") {
		t.Errorf("read-only dir: %v\n%s", err, stderr)
	}

	// The namespace directory, holding files written earlier: the renewal
	// cannot be written, the old files stay.
	dir := filepath.Join(base, "certs")
	if _, _, err := e.once(t, Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "default"), 0o555); err != nil {
		t.Fatal(err)
	}
	e.issue(t, "default", "shop", "shop.example.test")
	stderr, err = run(dir)
	if err == nil || !strings.Contains(stderr, "certificate default/shop") || !strings.Contains(stderr, filepath.Join(dir, "default")) || !strings.Contains(stderr, "permission denied") {
		t.Errorf("read-only namespace dir: %v\n%s", err, stderr)
	}
	if p := readPair(t, dir, "default", "shop", e.ca.pool()); p.serial != serial {
		t.Errorf("files hold %s, want the last good %s", p.serial, serial)
	}
}

// unprivileged returns a copy of the test binary that another user can
// run, and the credential to run it with when the test runs as root (nil
// otherwise: permission bits already apply).
func unprivileged(t *testing.T) (string, *syscall.Credential) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return self, nil
	}
	dir := worldReadable(t)
	bin := filepath.Join(dir, "agent.test")
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin, &syscall.Credential{Uid: 65534, Gid: 65534}
}

func uidOf(c *syscall.Credential) int {
	if c == nil {
		return os.Geteuid()
	}
	return int(c.Uid)
}

// worldReadable is a temporary directory every user can enter.
func worldReadable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
