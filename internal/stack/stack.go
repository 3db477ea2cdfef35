package stack

import (
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
)

// tlsALPNPort is the port Pebble's VA dials for TLS-ALPN-01 validation.
// Nothing in the stack serves it; it is the port cmd/pebble's sample
// configuration uses.
const tlsALPNPort = 5001

// Stack is a running set of acmeq's dependencies.
type Stack struct {
	// NATS is the embedded NATS JetStream server.
	NATS *NATS
	// Redis is the redis-server child process.
	Redis *Redis
	// Pebble is the in-process ACME CA.
	Pebble *Pebble
	// DNS is the DNS server Pebble's VA resolves names with. It answers
	// 127.0.0.1 for every name.
	DNS *DNS
	// Dir is the directory holding the state of NATS and Redis.
	Dir string

	logger *log.Logger
}

// Start starts, in order, the DNS server (resolving every name to
// 127.0.0.1), NATS with its data in dir/nats, Redis in dir/redis and Pebble,
// whose VA resolves names with the DNS server and validates HTTP-01
// challenges on httpPort. If one component fails, the ones already started
// are stopped. logger receives Pebble's logs and errors from Close; nil
// discards them.
func Start(dir string, httpPort int, logger *log.Logger) (*Stack, error) {
	return StartWithPebble(dir, httpPort, logger, PebbleConfig{})
}

// StartWithPebble is Start with Pebble's other settings (profiles, EAB,
// nonce rejects) from pc; its ports, DNS and logger are Start's.
func StartWithPebble(dir string, httpPort int, logger *log.Logger, pc PebbleConfig) (*Stack, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	s := &Stack{Dir: dir, logger: logger}
	var err error
	if s.DNS, err = StartDNS(net.IPv4(127, 0, 0, 1)); err != nil {
		return nil, err
	}
	if s.NATS, err = StartNATS(filepath.Join(dir, "nats")); err != nil {
		s.Close()
		return nil, err
	}
	if s.Redis, err = StartRedis(filepath.Join(dir, "redis")); err != nil {
		s.Close()
		return nil, err
	}
	pc.HTTPPort, pc.TLSPort, pc.DNSAddr, pc.Logger = httpPort, tlsALPNPort, s.DNS.Addr, logger
	s.Pebble, err = StartPebble(pc)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops Pebble, Redis, NATS and the DNS server, in that order,
// skipping those that were not started. A failure to stop Redis is logged.
// It is safe to call more than once.
func (s *Stack) Close() {
	if s == nil {
		return
	}
	if s.Pebble != nil {
		s.Pebble.Close()
	}
	if s.Redis != nil {
		if err := s.Redis.Stop(); err != nil && s.logger != nil {
			s.logger.Printf("stack: stop redis: %v", err)
		}
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
	}
	if s.DNS != nil {
		s.DNS.Close()
	}
}

// FreePort returns a TCP port of 127.0.0.1 that was free when it was
// checked. Another process may take it before the caller binds it.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("stack: find free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("stack: find free port: %w", err)
	}
	return port, nil
}
