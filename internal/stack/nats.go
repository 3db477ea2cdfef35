package stack

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsReadyTimeout bounds how long StartNATS waits for the server to accept
// client connections.
const natsReadyTimeout = 10 * time.Second

// NATS is an embedded NATS server with JetStream enabled, listening on a
// random port of 127.0.0.1.
type NATS struct {
	// Server is the embedded server.
	Server *server.Server
	// URL is the client URL, e.g. nats://127.0.0.1:41234.
	URL string
}

// StartNATS starts an embedded NATS server with JetStream enabled that keeps
// its JetStream data in dir. The server listens on 127.0.0.1 on a random
// port, does not install signal handlers and does not log.
func StartNATS(dir string) (*NATS, error) {
	opts := &server.Options{
		ServerName: "acmeq-dev",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("stack: create nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(natsReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("stack: nats server not ready for connections after %s", natsReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("stack: nats server started without jetstream (store dir %q)", dir)
	}
	return &NATS{Server: s, URL: s.ClientURL()}, nil
}

// Shutdown stops the server and waits until it has shut down completely.
// It is safe to call more than once.
func (n *NATS) Shutdown() {
	if n == nil || n.Server == nil {
		return
	}
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}
