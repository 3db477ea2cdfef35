package stack

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	// PebbleModule is Pebble's Go module; its version is the one acmeq's
	// go.mod selects.
	PebbleModule = "github.com/letsencrypt/pebble/v2"
	// pebbleCmd is the main package of the Pebble binary.
	pebbleCmd = PebbleModule + "/cmd/pebble"
	// pebbleStoreFile is the file the lock-order fix patches.
	pebbleStoreFile = "db/memorystore.go"
	// pebbleStartAttempts is how many ports StartPebbleProcess tries.
	pebbleStartAttempts = 5
	// pebbleReadyTimeout bounds the wait for the directory to answer.
	pebbleReadyTimeout = 15 * time.Second
	// pebbleStopGrace is how long Close waits after SIGTERM.
	pebbleStopGrace = 5 * time.Second
)

// ErrPebblePatch: Pebble's db/memorystore.go is not the text the lock-order
// fix expects (another Pebble version): the fix must be redone for it,
// not skipped.
var ErrPebblePatch = errors.New("stack: pebble: FindValidAuthorization is not what the lock-order fix expects (did Pebble's version change?)")

// The head of Pebble v2.10.1's MemoryStore.FindValidAuthorization, which
// holds the store's read lock while it takes each authorization's lock.
// The validator holds an authorization's lock while it waits for the
// store's write lock, and Go's RWMutex queues new readers behind a
// waiting writer: with ~60 concurrent orders Pebble stops answering.
const pebbleFindValidAuthzOld = `func (m *MemoryStore) FindValidAuthorization(accountID string, identifier acme.Identifier) *core.Authorization {
	m.RLock()
	defer m.RUnlock()
	for _, authz := range m.authorizationsByID {
`

// The fix: copy the authorization pointers under the store's read lock,
// release it, then take each authorization's lock. The loop body is
// unchanged.
const pebbleFindValidAuthzNew = `func (m *MemoryStore) FindValidAuthorization(accountID string, identifier acme.Identifier) *core.Authorization {
	// Patched by acmeq (stack.PatchPebbleStore): no authorization lock is
	// taken while the store's lock is held.
	m.RLock()
	authzs := make([]*core.Authorization, 0, len(m.authorizationsByID))
	for _, authz := range m.authorizationsByID {
		authzs = append(authzs, authz)
	}
	m.RUnlock()
	for _, authz := range authzs {
`

// PatchPebbleStore returns Pebble's db/memorystore.go with the lock-order
// fix of FindValidAuthorization applied. It fails with ErrPebblePatch
// unless the original text occurs exactly once.
func PatchPebbleStore(src []byte) ([]byte, error) {
	if n := bytes.Count(src, []byte(pebbleFindValidAuthzOld)); n != 1 {
		return nil, fmt.Errorf("%w: the expected head of the function occurs %d times in %s", ErrPebblePatch, n, pebbleStoreFile)
	}
	return bytes.Replace(src, []byte(pebbleFindValidAuthzOld), []byte(pebbleFindValidAuthzNew), 1), nil
}

// BuildPebble builds Pebble's cmd/pebble from the module cache, at the
// version acmeq's go.mod selects, with PatchPebbleStore applied through
// `go build -overlay` on a temporary copy of the module (the go command
// refuses overlays inside the module cache; the cache is not touched and
// no Pebble code is kept in acmeq), and returns the binary's path. The binary is cached
// per patched source (see GoBuild.Cache): only the first call builds.
// moduleDir is acmeq's source tree; "" finds it from the working
// directory.
func BuildPebble(ctx context.Context, moduleDir string) (string, error) {
	dir, err := ModuleDir(ctx, moduleDir, PebbleModule)
	if err != nil {
		return "", err
	}
	orig := filepath.Join(dir, filepath.FromSlash(pebbleStoreFile))
	src, err := os.ReadFile(orig)
	if err != nil {
		return "", fmt.Errorf("stack: pebble: %w", err)
	}
	patched, err := PatchPebbleStore(src)
	if err != nil {
		return "", fmt.Errorf("%w (%s)", err, orig)
	}
	// The go command refuses to overlay a file in the module cache: the
	// module is built from a copy, the patch overlaid on the copy.
	return GoBuild{
		ModuleDir: moduleDir, Package: pebbleCmd, Cache: true,
		Replace: []Replacement{{Module: PebbleModule, Dir: dir, Overlay: map[string][]byte{pebbleStoreFile: patched}}},
	}.Build(ctx)
}

// PebbleProcess is Pebble running as a child process (the binary of
// BuildPebble), serving its ACME API and management API over HTTPS on
// 127.0.0.1. Its handlers run concurrently (nothing serializes them): the
// lock-order fix removes the deadlock. Its CPU time is its own, apart from
// the caller's.
type PebbleProcess struct {
	// DirectoryURL is the ACME directory, e.g. https://127.0.0.1:41234/dir.
	DirectoryURL string
	// ManagementURL is the base URL of the management API (roots at
	// /roots/0).
	ManagementURL string
	// TLSCertPEM is the certificate of both listeners; clients must trust
	// it.
	TLSCertPEM []byte

	proc *Process
	dir  string
}

// StartPebbleProcess starts the Pebble binary bin (from BuildPebble) with
// an in-memory database, ECDSA keys, one intermediate and cfg's profiles,
// EAB keys and Retry-After values, and waits until its directory answers.
// It runs with PEBBLE_VA_NOSLEEP=1, PEBBLE_AUTHZREUSE=0 and
// PEBBLE_WFE_NONCEREJECT=cfg.NonceRejectPercent (as StartPebble), and
// resolves names with cfg.DNSAddr. cfg.Logger and cfg.Unserialized are not
// used: the process writes its log (one line per request) to logFile
// ("" discards it), and is never serialized. Its configuration, TLS key
// and log live in dir, which must exist.
func StartPebbleProcess(bin, dir string, cfg PebbleConfig, logFile string) (*PebbleProcess, error) {
	cert, certPEM, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("stack: pebble: marshal tls key: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "pebble-tls.crt"), filepath.Join(dir, "pebble-tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("stack: pebble: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("stack: pebble: %w", err)
	}
	if logFile == "" {
		logFile = os.DevNull
	}
	hc := pebbleProbeClient(certPEM)
	var lastErr error
	for range pebbleStartAttempts {
		acmePort, err := FreePort()
		if err != nil {
			return nil, err
		}
		mgmtPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		acmeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(acmePort))
		mgmtAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort))
		conf := filepath.Join(dir, "pebble-config.json")
		if err := writePebbleConfig(conf, cfg, acmeAddr, mgmtAddr, certFile, keyFile); err != nil {
			return nil, err
		}
		args := []string{"-config", conf}
		if cfg.DNSAddr != "" {
			args = append(args, "-dnsserver", cfg.DNSAddr)
		}
		proc, err := StartProcess(ProcessConfig{
			Name: "pebble", Bin: bin, Args: args, Dir: dir, LogFile: logFile,
			Env: []string{
				"PEBBLE_VA_NOSLEEP=1",
				"PEBBLE_AUTHZREUSE=0",
				"PEBBLE_WFE_NONCEREJECT=" + strconv.Itoa(cfg.NonceRejectPercent),
				"PEBBLE_CHAIN_LENGTH=" + strconv.Itoa(pebbleChainLength),
			},
		})
		if err != nil {
			return nil, err
		}
		p := &PebbleProcess{
			DirectoryURL:  "https://" + acmeAddr + "/dir",
			ManagementURL: "https://" + mgmtAddr,
			TLSCertPEM:    certPEM,
			proc:          proc,
			dir:           dir,
		}
		if lastErr = p.waitReady(hc); lastErr == nil {
			return p, nil
		}
		_ = proc.Kill()
		// A port taken in the meantime makes Pebble exit: try others.
	}
	return nil, lastErr
}

// pebbleConfigFile is cmd/pebble's configuration file.
type pebbleConfigFile struct {
	Pebble struct {
		ListenAddress                  string
		ManagementListenAddress        string
		HTTPPort                       int
		TLSPort                        int
		Certificate                    string
		PrivateKey                     string
		ExternalAccountBindingRequired bool
		ExternalAccountMACKeys         map[string]string `json:",omitempty"`
		CAAIdentities                  []string
		KeyAlgorithm                   string
		Profiles                       map[string]pebbleProfileFile
		RetryAfter                     struct{ Authz, Order int }
	} `json:"pebble"`
}

type pebbleProfileFile struct {
	Description    string
	ValidityPeriod uint64
}

func writePebbleConfig(name string, cfg PebbleConfig, acmeAddr, mgmtAddr, certFile, keyFile string) error {
	var c pebbleConfigFile
	c.Pebble.ListenAddress = acmeAddr
	c.Pebble.ManagementListenAddress = mgmtAddr
	c.Pebble.HTTPPort = cfg.HTTPPort
	c.Pebble.TLSPort = cfg.TLSPort
	c.Pebble.Certificate = certFile
	c.Pebble.PrivateKey = keyFile
	c.Pebble.ExternalAccountBindingRequired = cfg.RequireEAB
	c.Pebble.ExternalAccountMACKeys = cfg.EABKeys
	c.Pebble.CAAIdentities = []string{pebbleCAAIdentity}
	c.Pebble.KeyAlgorithm = pebbleKeyAlg
	c.Pebble.Profiles = map[string]pebbleProfileFile{"default": {Description: "The default profile"}}
	if len(cfg.Profiles) > 0 {
		c.Pebble.Profiles = map[string]pebbleProfileFile{}
		for name, p := range cfg.Profiles {
			c.Pebble.Profiles[name] = pebbleProfileFile{Description: p.Description, ValidityPeriod: uint64(p.Validity / time.Second)}
		}
	}
	c.Pebble.RetryAfter.Authz = cfg.AuthzRetryAfter
	c.Pebble.RetryAfter.Order = cfg.OrderRetryAfter
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("stack: pebble config: %w", err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return fmt.Errorf("stack: pebble config: %w", err)
	}
	return nil
}

// pebbleProbeClient is an HTTP client that trusts certPEM only.
func pebbleProbeClient(certPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig.RootCAs = pool
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// waitReady polls the directory until it answers 200, the process exits or
// pebbleReadyTimeout passes.
func (p *PebbleProcess) waitReady(hc *http.Client) error {
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(pebbleReadyTimeout)
	var lastErr error
	for {
		res, err := hc.Get(p.DirectoryURL)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("directory answered %s", res.Status)
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("stack: pebble at %s not ready after %s: %w\n--- pebble output ---\n%s", p.DirectoryURL, pebbleReadyTimeout, lastErr, p.proc.Output())
		}
		select {
		case <-p.proc.Done():
			return p.proc.exitedError()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the process id, for measuring its CPU time.
func (p *PebbleProcess) PID() int { return p.proc.PID() }

// Done is closed once the process has exited.
func (p *PebbleProcess) Done() <-chan struct{} { return p.proc.Done() }

// Output returns the end of Pebble's log.
func (p *PebbleProcess) Output() string { return p.proc.Output() }

// RootPEM fetches the root certificate Pebble issues from (management
// API /roots/0).
func (p *PebbleProcess) RootPEM() ([]byte, error) {
	hc := pebbleProbeClient(p.TLSCertPEM)
	defer hc.CloseIdleConnections()
	res, err := hc.Get(p.ManagementURL + "/roots/0")
	if err != nil {
		return nil, fmt.Errorf("stack: pebble root: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("stack: pebble root: %s: %w", res.Status, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stack: pebble root: %s", res.Status)
	}
	return b, nil
}

// Close stops Pebble (SIGTERM, then SIGKILL after a few seconds). It is
// safe to call more than once.
func (p *PebbleProcess) Close() error {
	if p == nil || p.proc == nil {
		return nil
	}
	return p.proc.Stop(pebbleStopGrace)
}
