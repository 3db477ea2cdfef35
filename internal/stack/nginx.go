package stack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// nginxBinary is the executable StartNginx looks up in PATH.
	nginxBinary = "nginx"
	// nginxStartAttempts is how many ports StartNginx tries before giving
	// up.
	nginxStartAttempts = 5
	// nginxReadyTimeout bounds how long one start waits for the port.
	nginxReadyTimeout = 10 * time.Second
	// nginxStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	nginxStopGrace = 5 * time.Second
	// nginxOutputLimit is how many bytes of nginx's output are kept.
	nginxOutputLimit = 64 << 10
	// nginxConfFile is the configuration file inside the prefix.
	nginxConfFile = "nginx.conf"
)

// nginxFallbackPath is where nginx is looked for when it is not in PATH:
// Debian installs it in /usr/sbin. A variable so that tests can simulate a
// missing binary.
var nginxFallbackPath = "/usr/sbin/nginx"

// errNginxNotFound is returned when neither PATH nor nginxFallbackPath has
// nginx.
var errNginxNotFound = errors.New("stack: nginx not found in PATH: install it (Debian/Ubuntu: apt-get install -y nginx-light, or nginx)")

// Nginx is an nginx child process (master and one worker, in the
// foreground) serving HTTPS on a free port of 127.0.0.1 with one
// certificate and key given as file paths, as an edge server configured
// for the files `acmeq sync` writes. Every request is answered "ok".
//
// It runs in its own process group and, on Linux, is killed by the kernel
// when the parent process dies.
type Nginx struct {
	// Addr is the host:port nginx listens on with TLS.
	Addr string
	// Prefix is nginx's prefix directory (-p): its configuration, logs,
	// pid file and temporary files.
	Prefix string
	// Conf is the configuration file (-c).
	Conf string

	bin string

	mu   sync.Mutex
	proc *child
}

// StartNginx starts nginx with prefix dir (created if needed) serving TLS
// with certFile and keyFile, which must exist (nginx refuses to start
// otherwise), on a free port of 127.0.0.1, and waits until the port
// accepts connections.
func StartNginx(dir, certFile, keyFile string) (*Nginx, error) {
	bin, err := findNginx()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stack: nginx prefix: %w", err)
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("stack: create nginx prefix: %w", err)
		}
	}
	n := &Nginx{Prefix: abs, Conf: filepath.Join(abs, nginxConfFile), bin: bin}
	var lastErr error
	for range nginxStartAttempts {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.Conf, []byte(nginxConf(port, certFile, keyFile)), 0o644); err != nil {
			return nil, fmt.Errorf("stack: write nginx.conf: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		proc, err := n.spawn(addr)
		if err == nil {
			n.Addr = addr
			n.proc = proc
			return n, nil
		}
		lastErr = err
		if !errors.Is(err, errNginxPortTaken) {
			break
		}
	}
	return nil, lastErr
}

// errNginxPortTaken marks a start that failed because the port was taken
// after it was found free.
const errNginxPortTaken = constError("nginx could not listen on its port")

// nginxConf is the configuration: everything nginx writes stays in the
// prefix (relative paths are relative to it), so no root-only default
// path (/var/lib/nginx, /run/nginx.pid) is touched.
func nginxConf(port int, certFile, keyFile string) string {
	user := ""
	if os.Geteuid() == 0 {
		// As root nginx would switch its workers to "nobody", which may
		// have no group of that name here; the test's files are root's.
		user = "user root;\n"
	}
	return fmt.Sprintf(`# written by internal/stack for a test
%sdaemon off;
master_process on;
worker_processes 1;
pid logs/nginx.pid;
lock_file logs/nginx.lock;
error_log logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:%d ssl;
        server_name _;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location / { return 200 "ok\n"; }
    }
}
`, user, port, nginxQuote(certFile), nginxQuote(keyFile))
}

// nginxQuote quotes a path for nginx.conf.
func nginxQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// spawn starts nginx and waits until addr accepts connections.
func (n *Nginx) spawn(addr string) (*child, error) {
	out := &tailBuffer{limit: nginxOutputLimit}
	proc, err := startChild("nginx", n.bin, n.Prefix, out, nil, nil, n.args()...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(nginxReadyTimeout)
	for {
		select {
		case <-proc.done:
			log := out.String() + n.errorLog()
			if strings.Contains(log, "Address already in use") {
				return nil, fmt.Errorf("%w: %s", errNginxPortTaken, lastLines(log, 5))
			}
			return nil, fmt.Errorf("stack: nginx exited at start (%w):\n%s", proc.exitErr(), lastLines(log, 20))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return proc, nil
		}
		if time.Now().After(deadline) {
			_ = proc.kill()
			return nil, fmt.Errorf("stack: nginx not listening on %s after %s:\n%s", addr, nginxReadyTimeout, lastLines(out.String()+n.errorLog(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// args are the command-line arguments selecting the prefix and
// configuration.
func (n *Nginx) args(extra ...string) []string {
	return append([]string{"-p", n.Prefix + "/", "-c", n.Conf}, extra...)
}

// ReloadCommand is the shell command that makes this nginx reload its
// configuration and certificates (nginx -p PREFIX -c CONF -s reload), as
// a reload hook runs it.
func (n *Nginx) ReloadCommand() string {
	parts := append([]string{n.bin}, n.args("-s", "reload")...)
	for i, p := range parts {
		parts[i] = shellQuote(p)
	}
	return strings.Join(parts, " ")
}

// Reload runs ReloadCommand's command.
func (n *Nginx) Reload() error {
	out, err := exec.Command(n.bin, n.args("-s", "reload")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stack: nginx -s reload: %w: %s", err, out)
	}
	return nil
}

// Output returns the recent output of the nginx process and its error log.
func (n *Nginx) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := ""
	if n.proc != nil {
		s = n.proc.out.String()
	}
	return s + n.errorLog()
}

func (n *Nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Prefix, "logs", "error.log"))
	if len(b) > nginxOutputLimit {
		b = b[len(b)-nginxOutputLimit:]
	}
	return string(b)
}

// Stop sends SIGTERM (nginx's fast shutdown) to the process group, then
// SIGKILL after a grace period, and waits. It is safe to call more than
// once.
func (n *Nginx) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	err := n.proc.stop(nginxStopGrace)
	n.proc = nil
	return err
}

// findNginx returns the path of the nginx executable.
func findNginx() (string, error) {
	if p, err := exec.LookPath(nginxBinary); err == nil {
		return p, nil
	}
	if fi, err := os.Stat(nginxFallbackPath); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return nginxFallbackPath, nil
	}
	return "", errNginxNotFound
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("/._-+=:,@", r)
	}) == -1 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
