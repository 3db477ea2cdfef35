package worker

import (
	"context"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net"
	"time"

	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// Defaults of Config.
const (
	// SelfCheckIntervalDefault is cert-manager's fixed self-check retry.
	SelfCheckIntervalDefault = 10 * time.Second
	// ChallengeTimeoutDefault fails a challenge processing for longer.
	ChallengeTimeoutDefault = time.Hour
	// ConcurrencyDefault is how many messages of each kind one worker
	// handles at once.
	ConcurrencyDefault = 16
	// AckWaitDefault is how long JetStream waits for an ack before
	// redelivering to another worker (a crashed worker's messages).
	AckWaitDefault = 60 * time.Second
	// ResyncIntervalDefault is how often one worker of the fleet compares
	// the resources with the scheduler and re-queues what was lost.
	ResyncIntervalDefault = 5 * time.Minute
	// TickIntervalDefault is how often each worker reaps expired leases
	// and runs the grant script, besides the grants a release triggers.
	TickIntervalDefault = 2 * time.Second
	// PollMaxDefault caps the delay between polls of a CA that is
	// validating or issuing and gave no Retry-After.
	PollMaxDefault = 2 * time.Second
	// FailedRetryDefault is cert-manager's back-off before a failed
	// issuance is tried again with a new CertificateRequest.
	FailedRetryDefault = time.Hour
	// HTTP01PortDefault is the port HTTP-01 self-checks dial.
	HTTP01PortDefault = 80
)

// Config configures a Worker. The environment is read in cmd/acmeq; tests
// build this struct directly.
type Config struct {
	// Name identifies this worker in events and logs. Defaults to the host
	// name and pid.
	Name string
	// Concurrency per kind. Defaults to ConcurrencyDefault.
	Concurrency int
	// AckWait of the consumers. Defaults to AckWaitDefault.
	AckWait time.Duration
	// SelfCheckInterval between failed self-checks. Defaults to
	// SelfCheckIntervalDefault (cert-manager's 10 s).
	SelfCheckInterval time.Duration
	// ChallengeTimeout fails a challenge processing for longer and frees
	// its slot. Defaults to ChallengeTimeoutDefault.
	ChallengeTimeout time.Duration
	// ResyncInterval of the fleet-wide resync. Defaults to
	// ResyncIntervalDefault.
	ResyncInterval time.Duration
	// TickInterval of the reap-and-grant loop. Defaults to
	// TickIntervalDefault.
	TickInterval time.Duration
	// PollMax caps the delay between polls of the CA. Defaults to
	// PollMaxDefault.
	PollMax time.Duration
	// FailedRetry is how long a failed Certificate waits before a new
	// request is made (found by the resync). Defaults to FailedRetryDefault.
	FailedRetry time.Duration
	// HTTP01Port is the port HTTP-01 self-checks dial. Defaults to 80.
	HTTP01Port int
	// Resolve maps a DNS name to the address self-checks dial; nil uses the
	// system resolver. Tests and `acmeq dev` point names at 127.0.0.1.
	Resolve func(ctx context.Context, host string) (string, error)
	// DNS01SelfCheck configures the DNS-01 self-check and lookups: the
	// recursive nameservers (ACMEQ_DNS01_RECURSIVE_NAMESERVERS) and whether
	// to ask only them (ACMEQ_DNS01_RECURSIVE_NAMESERVERS_ONLY). Defaults
	// to dns01.SelfCheckConfig's defaults (the nameservers of
	// /etc/resolv.conf, then the zone's authoritative nameservers).
	DNS01SelfCheck dns01.SelfCheckConfig
	// Scheduler configures the challenge scheduler.
	Scheduler scheduler.Config
	// Registerer receives the worker's Prometheus metrics; nil registers
	// nowhere (several in-process workers, tests).
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for timestamps. Defaults to time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = defaultName()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if c.AckWait <= 0 {
		c.AckWait = AckWaitDefault
	}
	if c.SelfCheckInterval <= 0 {
		c.SelfCheckInterval = SelfCheckIntervalDefault
	}
	if c.ChallengeTimeout <= 0 {
		c.ChallengeTimeout = ChallengeTimeoutDefault
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = ResyncIntervalDefault
	}
	if c.TickInterval <= 0 {
		c.TickInterval = TickIntervalDefault
	}
	if c.PollMax <= 0 {
		c.PollMax = PollMaxDefault
	}
	if c.FailedRetry <= 0 {
		c.FailedRetry = FailedRetryDefault
	}
	if c.HTTP01Port <= 0 {
		c.HTTP01Port = HTTP01PortDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Scheduler.Cap == 0 {
		c.Scheduler.Cap = scheduler.CapDefault
	}
}

// Validate checks the configuration after defaults.
func (c Config) Validate() error {
	if c.Scheduler.Cap <= 0 {
		return fmt.Errorf("worker: Scheduler.Cap (ACMEQ_MAX_CONCURRENT_CHALLENGES) must be at least 1, got %d", c.Scheduler.Cap)
	}
	if c.HTTP01Port > 65535 {
		return fmt.Errorf("worker: HTTP01Port (ACMEQ_HTTP01_PORT) must be a port number, got %d", c.HTTP01Port)
	}
	return nil
}

// ResolveTo returns a Resolve function that answers every name with ip.
func ResolveTo(ip string) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) { return ip, nil }
}

func systemResolve(ctx context.Context, host string) (string, error) {
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}
