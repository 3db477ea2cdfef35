package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// pdnsBinary is the executable StartPDNS looks up in PATH (and then in
	// /usr/sbin, where Debian installs it).
	pdnsBinary = "pdns_server"
	// sqlite3Binary creates the database from the backend's schema.
	sqlite3Binary = "sqlite3"
	// pdnsStartAttempts is how many port pairs StartPDNS tries.
	pdnsStartAttempts = 5
	// pdnsReadyTimeout bounds how long one start waits for the DNS port
	// and the API to answer.
	pdnsReadyTimeout = 15 * time.Second
	// pdnsStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	pdnsStopGrace = 5 * time.Second
	// pdnsOutputLimit is how many bytes of pdns_server's log are kept.
	pdnsOutputLimit = 64 << 10
	// pdnsAPITimeout bounds one call of the PDNS helper methods.
	pdnsAPITimeout = 10 * time.Second
	// PDNSServerName is the server id of the API's URLs, as lego's pdns
	// provider expects by default.
	PDNSServerName = "localhost"
)

// pdnsFallbackDir is where pdns_server is looked for when it is not in
// PATH; pdnsSchemaPaths are where Debian's pdns-backend-sqlite3 puts its
// schema. Variables so that tests can simulate a missing package.
var (
	pdnsFallbackDir = "/usr/sbin"
	pdnsSchemaPaths = []string{
		"/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
		"/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
	}
)

// errPDNSNotFound is returned when pdns_server, its sqlite3 backend or the
// sqlite3 tool is missing.
var errPDNSNotFound = errors.New("stack: pdns: install PowerDNS Authoritative with its sqlite3 backend (Debian/Ubuntu: apt-get install -y pdns-server pdns-backend-sqlite3 sqlite3)")

// PDNS is a PowerDNS Authoritative server (pdns_server) child process with
// the gsqlite3 backend, answering DNS on 127.0.0.1 (UDP and TCP, one port)
// and serving its REST API (with an API key) on another port of
// 127.0.0.1. It starts with no zone: create them with CreateZone, through
// the API. It sends no NOTIFY and resolves names only through itself, so
// it never talks to anything but loopback.
//
// It runs in its own process group and, on Linux, is killed by the kernel
// when the parent process dies.
type PDNS struct {
	// Addr is the host:port of the DNS service, UDP and TCP.
	Addr string
	// APIURL is the base URL of the web server, e.g.
	// "http://127.0.0.1:8081" (the API is under /api/v1).
	APIURL string
	// APIKey is the key the API requires in X-API-Key.
	APIKey string
	// Dir holds pdns.conf and the sqlite3 database.
	Dir string

	bin string
	mu  sync.Mutex
	p   *child
}

// StartPDNS starts pdns_server with its configuration and database in dir
// (created if needed), on free ports of 127.0.0.1, and waits until its DNS
// port and its API answer. A missing pdns_server, sqlite3 backend or
// sqlite3 tool fails with how to install them.
func StartPDNS(dir string) (*PDNS, error) {
	bin, err := exec.LookPath(pdnsBinary)
	if err != nil {
		p := filepath.Join(pdnsFallbackDir, pdnsBinary)
		if fi, serr := os.Stat(p); serr != nil || fi.IsDir() {
			return nil, errPDNSNotFound
		}
		bin = p
	}
	sqlite, err := exec.LookPath(sqlite3Binary)
	if err != nil {
		return nil, errPDNSNotFound
	}
	schema := ""
	for _, p := range pdnsSchemaPaths {
		if _, err := os.Stat(p); err == nil {
			schema = p
			break
		}
	}
	if schema == "" {
		return nil, errPDNSNotFound
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: pdns: create dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stack: pdns: %w", err)
	}
	db := filepath.Join(abs, "pdns.sqlite3")
	_ = os.Remove(db)
	sqlText, err := os.ReadFile(schema)
	if err != nil {
		return nil, fmt.Errorf("stack: pdns: read schema: %w", err)
	}
	cmd := exec.Command(sqlite, db)
	cmd.Stdin = bytes.NewReader(sqlText)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("stack: pdns: create database with %s: %w: %s", schema, err, out)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	d := &PDNS{APIKey: hex.EncodeToString(key), Dir: abs, bin: bin}

	var lastErr error
	for range pdnsStartAttempts {
		dnsPort, err := freeUDPAndTCPPort()
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("stack: pdns: find free port: %w", err)
		}
		webPort := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if err := d.spawn(db, dnsPort, webPort); err != nil {
			lastErr = err
			continue
		}
		return d, nil
	}
	return nil, lastErr
}

// spawn writes pdns.conf for the ports, starts pdns_server and waits until
// it answers.
func (d *PDNS) spawn(db string, dnsPort, webPort int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	conf := fmt.Sprintf(`# Written by acmeq's internal/stack.StartPDNS.
launch=gsqlite3
gsqlite3-database=%s
local-address=127.0.0.1
local-port=%d
api=yes
api-key=%s
webserver=yes
webserver-address=127.0.0.1
webserver-port=%d
webserver-allow-from=127.0.0.0/8
socket-dir=%s
guardian=no
daemon=no
disable-syslog=yes
log-timestamp=no
loglevel=4
# No caches: tests read their own writes at once.
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
# No NOTIFY to anyone, and names (of NS records) resolved only here.
primary=no
only-notify=
resolver=%s
`, db, dnsPort, d.APIKey, webPort, d.Dir, addr)
	if err := os.WriteFile(filepath.Join(d.Dir, "pdns.conf"), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("stack: pdns: write pdns.conf: %w", err)
	}
	out := &tailBuffer{limit: pdnsOutputLimit}
	p, err := startChild("pdns_server", d.bin, d.Dir, out, nil, nil, "--config-dir="+d.Dir)
	if err != nil {
		return err
	}
	d.Addr = addr
	d.APIURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(webPort))
	deadline := time.Now().Add(pdnsReadyTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("stack: pdns_server exited before answering (%w):\n%s", p.exitErr(), lastLines(out.String(), 30))
		default:
		}
		if d.ping() == nil {
			d.mu.Lock()
			d.p = p
			d.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("stack: pdns_server on %s not ready after %s:\n%s", addr, pdnsReadyTimeout, lastLines(out.String(), 30))
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping returns nil when both the DNS port (over UDP and TCP) and the API
// answer.
func (d *PDNS) ping() error {
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("ping.invalid.", dns.TypeSOA)
		c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
		if _, _, err := c.Exchange(m, d.Addr); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return d.api(ctx, http.MethodGet, "", nil, http.StatusOK)
}

// api calls the REST API below /api/v1/servers/localhost and checks the
// status.
func (d *PDNS) api(ctx context.Context, method, path string, body any, want int) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.APIURL+"/api/v1/servers/"+PDNSServerName+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", d.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return fmt.Errorf("stack: pdns: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// CreateZone creates zone (e.g. "pdns.test") through the API, as kind
// Master (lego's pdns provider asks the API to NOTIFY after each change,
// which only primary and secondary zones accept), with an NS record
// ns.<zone> and that name's A record 127.0.0.1.
func (d *PDNS) CreateZone(zone string) error {
	z := strings.ToLower(dns.Fqdn(zone))
	ctx, cancel := context.WithTimeout(context.Background(), pdnsAPITimeout)
	defer cancel()
	type record struct {
		Content  string `json:"content"`
		Disabled bool   `json:"disabled"`
	}
	type rrset struct {
		Name       string   `json:"name"`
		Type       string   `json:"type"`
		TTL        int      `json:"ttl"`
		ChangeType string   `json:"changetype"`
		Records    []record `json:"records"`
	}
	body := map[string]any{
		"name":        z,
		"kind":        "Master",
		"nameservers": []string{"ns." + z},
		"rrsets": []rrset{{Name: "ns." + z, Type: "A", TTL: 60, ChangeType: "REPLACE",
			Records: []record{{Content: "127.0.0.1"}}}},
	}
	return d.api(ctx, http.MethodPost, "/zones", body, http.StatusCreated)
}

// DeleteZone deletes zone through the API.
func (d *PDNS) DeleteZone(zone string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pdnsAPITimeout)
	defer cancel()
	return d.api(ctx, http.MethodDelete, "/zones/"+strings.ToLower(dns.Fqdn(zone)), nil, http.StatusNoContent)
}

// Output returns the most recent log output of pdns_server.
func (d *PDNS) Output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil {
		return ""
	}
	return d.p.out.String()
}

// Stop sends SIGTERM, then SIGKILL after a grace period, and waits for the
// process. Stopping a stopped server is a no-op.
func (d *PDNS) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil {
		return nil
	}
	err := d.p.stop(pdnsStopGrace)
	d.p = nil
	return err
}
