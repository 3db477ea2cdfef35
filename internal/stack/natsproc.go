package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	// NATSServerModule is nats-server's Go module (its main package is the
	// module root); its version is the one acmeq's go.mod selects.
	NATSServerModule = "github.com/nats-io/nats-server/v2"
	// natsProcReadyTimeout bounds the wait for the ports file and /healthz.
	natsProcReadyTimeout = 30 * time.Second
	// natsProcStopGrace is how long Close waits after SIGTERM.
	natsProcStopGrace = 10 * time.Second
)

// BuildNATSServer builds nats-server from the module cache, at the
// version acmeq's go.mod selects, and returns the binary's path; the
// binary is cached (see GoBuild.Cache). moduleDir is acmeq's source tree;
// "" finds it from the working directory.
func BuildNATSServer(ctx context.Context, moduleDir string) (string, error) {
	return GoBuild{ModuleDir: moduleDir, Package: NATSServerModule, Cache: true}.Build(ctx)
}

// NATSProcess is nats-server running as a child process with JetStream,
// on random ports of 127.0.0.1, its CPU time apart from the caller's.
type NATSProcess struct {
	// URL is the client URL, e.g. nats://127.0.0.1:41234.
	URL string
	// MonitorURL is the HTTP monitoring endpoint, e.g.
	// http://127.0.0.1:41235 (/varz, /jsz).
	MonitorURL string

	proc *Process
}

// StartNATSProcess starts the nats-server binary bin (from
// BuildNATSServer) with JetStream storing in dir/jetstream, and waits
// until it is healthy. Its log goes to logFile ("" discards it). extra
// arguments are passed on (e.g. "--profile", port).
func StartNATSProcess(bin, dir, logFile string, extra ...string) (*NATSProcess, error) {
	portsDir := filepath.Join(dir, "ports")
	if err := os.MkdirAll(portsDir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: nats-server: %w", err)
	}
	if logFile == "" {
		logFile = os.DevNull
	}
	proc, err := StartProcess(ProcessConfig{
		Name: "nats-server", Bin: bin, Dir: dir, LogFile: logFile,
		Args: append([]string{
			"-a", "127.0.0.1", "-p", "-1", "-m", "-1",
			"-js", "-sd", filepath.Join(dir, "jetstream"),
			"--ports_file_dir", portsDir,
		}, extra...),
	})
	if err != nil {
		return nil, err
	}
	n := &NATSProcess{proc: proc}
	// The file is named after the executable: <name>_<pid>.ports.
	if err := n.waitReady(filepath.Join(portsDir, filepath.Base(bin)+"_"+strconv.Itoa(proc.PID())+".ports")); err != nil {
		_ = proc.Kill()
		return nil, err
	}
	return n, nil
}

// waitReady reads the ports file nats-server writes once it listens, then
// waits for /healthz?js-enabled-only=true to answer 200.
func (n *NATSProcess) waitReady(portsFile string) error {
	deadline := time.Now().Add(natsProcReadyTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	var lastErr error
	for {
		if n.URL == "" {
			var ports struct{ Nats, Monitoring []string }
			b, err := os.ReadFile(portsFile)
			if err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 && len(ports.Monitoring) > 0 {
				n.URL, n.MonitorURL = ports.Nats[0], ports.Monitoring[0]
			} else {
				lastErr = fmt.Errorf("no ports file %s yet", portsFile)
			}
		}
		if n.URL != "" {
			res, err := hc.Get(n.MonitorURL + "/healthz?js-enabled-only=true")
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("/healthz answered %s", res.Status)
			}
			lastErr = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stack: nats-server not ready after %s: %w\n--- nats-server output ---\n%s", natsProcReadyTimeout, lastErr, n.proc.Output())
		}
		select {
		case <-n.proc.Done():
			return n.proc.exitedError()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the process id, for measuring its CPU time.
func (n *NATSProcess) PID() int { return n.proc.PID() }

// Done is closed once the process has exited.
func (n *NATSProcess) Done() <-chan struct{} { return n.proc.Done() }

// InMsgs returns the messages the server has received from clients
// (/varz in_msgs): publishes, KV reads and writes, acks, pull requests and
// API calls.
func (n *NATSProcess) InMsgs(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.MonitorURL+"/varz", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("stack: nats-server varz: %w", err)
	}
	defer res.Body.Close()
	var v struct {
		InMsgs int64 `json:"in_msgs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("stack: nats-server varz: %w", err)
	}
	return v.InMsgs, nil
}

// Close stops the server (SIGTERM, then SIGKILL after a few seconds). It
// is safe to call more than once.
func (n *NATSProcess) Close() error {
	if n == nil || n.proc == nil {
		return nil
	}
	return n.proc.Stop(natsProcStopGrace)
}
