package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/solvers/dns01"
)

// Defaults of Config. cmd/acmeq reads its environment defaults from these.
const (
	// SelfCheckIntervalDefault is cert-manager's fixed self-check retry.
	SelfCheckIntervalDefault = 10 * time.Second
	// ChallengeTimeoutDefault fails a challenge processing for longer.
	ChallengeTimeoutDefault = time.Hour
	// ConcurrencyDefault is how many messages of each kind one worker
	// handles at once.
	ConcurrencyDefault = 16
	// AckWaitDefault is how long JetStream waits for an ack before
	// redelivering to another worker: a killed worker's messages come
	// back after this. Busy handlers extend it at every step.
	AckWaitDefault = 10 * time.Second
	// ResyncIntervalDefault is how often one worker of the fleet compares
	// the unfinished challenges with the scheduler and re-queues what
	// Redis lost.
	ResyncIntervalDefault = 5 * time.Minute
	// TickIntervalDefault is how often each worker reaps expired leases
	// and runs the grant script, besides the grants a release triggers.
	TickIntervalDefault = 2 * time.Second
	// PollInitialDefault is the first wait before polling a CA that is
	// validating or issuing and gave no Retry-After; each further poll
	// waits twice as long. Pebble, step-ca and Boulder on a LAN decide in
	// milliseconds; against Let's Encrypt, which takes seconds, starting
	// this low costs one or two more polls per wait (doubling), and a
	// Retry-After from the CA replaces it.
	PollInitialDefault = 20 * time.Millisecond
	// PollMaxDefault caps the delay between polls of a CA that is
	// validating or issuing and gave no Retry-After.
	PollMaxDefault = 2 * time.Second
	// FailureBackoffDefault is cert-manager's back-off after the first
	// failed issuance; it doubles with every further failure.
	FailureBackoffDefault = time.Hour
	// FailureBackoffMaxDefault caps the back-off (cert-manager's 32h).
	FailureBackoffMaxDefault = 32 * time.Hour
	// HTTP01PortDefault is the port HTTP-01 self-checks dial.
	HTTP01PortDefault = 80
	// MaxPanicsDefault is how many panics of a handler on one message a
	// worker tolerates before the message is dead-lettered.
	MaxPanicsDefault = 3
	// ARIRetryDefault is how soon a renewal window that could not be
	// fetched is asked again (and the default re-check when the CA sends
	// no Retry-After).
	ARIRetryDefault = 6 * time.Hour
	// ClusterResourceNamespaceDefault is the namespace of the Secrets of
	// ClusterIssuers (ACME account keys, EAB keys, DNS-01 credentials), as
	// cert-manager's --cluster-resource-namespace (whose default is the
	// namespace cert-manager runs in).
	ClusterResourceNamespaceDefault = "acmeq"
	// ARICheckMaxDefault bounds the wait between two checks of a
	// certificate's renewal window, whatever Retry-After the CA sends.
	ARICheckMaxDefault = 24 * time.Hour
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
	// StepTimeout bounds a handler between two steps that made progress;
	// past it the handler is cancelled and its message redelivered with
	// back-off. It must be below AckWait, so a message held by a stuck
	// handler is never handed to a second worker meanwhile. Defaults to
	// four fifths of AckWait.
	StepTimeout time.Duration
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
	// PollInitial is the wait before the first poll of the CA, doubling
	// with each further poll up to PollMax. Defaults to
	// PollInitialDefault.
	PollInitial time.Duration
	// PollMax caps the delay between polls of the CA. Defaults to
	// PollMaxDefault.
	PollMax time.Duration
	// FailureBackoff is the wait after a first failed issuance before the
	// next attempt; it doubles with each consecutive failure up to
	// FailureBackoffMax. Defaults to FailureBackoffDefault (1h).
	FailureBackoff time.Duration
	// FailureBackoffMax caps FailureBackoff. Defaults to
	// FailureBackoffMaxDefault (32h).
	FailureBackoffMax time.Duration
	// ARIRetry is how soon a renewal window that could not be fetched is
	// asked again. Defaults to ARIRetryDefault.
	ARIRetry time.Duration
	// ARICheckMax bounds the wait between two checks of a renewal window,
	// whatever the CA's Retry-After. Defaults to ARICheckMaxDefault.
	ARICheckMax time.Duration
	// MaxPanics of a handler on one message before it is dead-lettered.
	// Defaults to MaxPanicsDefault.
	MaxPanics int
	// HTTP01Port is the port HTTP-01 self-checks dial. Defaults to 80.
	HTTP01Port int
	// ClusterResourceNamespace is where the Secrets of every ClusterIssuer
	// are (ACMEQ_CLUSTER_RESOURCE_NAMESPACE), as cert-manager's
	// --cluster-resource-namespace: its ACME account key (created there),
	// its External Account Binding key and its solvers' credentials.
	// Every worker of a fleet must have the same one. Defaults to
	// ClusterResourceNamespaceDefault.
	ClusterResourceNamespace string
	// Replicas of the streams and buckets (ACMEQ_REPLICAS): those Start
	// creates get this many, and an existing one with another count is a
	// start-up error (bus.ErrReplicasMismatch), never changed. Use 3 on a
	// cluster. Defaults to 1.
	Replicas int
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
	// Now is the clock for timestamps and renewal decisions. Defaults to
	// time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = defaultName()
	}
	setDefault(&c.Concurrency, ConcurrencyDefault)
	setDefault(&c.AckWait, AckWaitDefault)
	if c.StepTimeout == 0 {
		c.StepTimeout = c.AckWait * 4 / 5
	}
	setDefault(&c.SelfCheckInterval, SelfCheckIntervalDefault)
	setDefault(&c.ChallengeTimeout, ChallengeTimeoutDefault)
	setDefault(&c.ResyncInterval, ResyncIntervalDefault)
	setDefault(&c.TickInterval, TickIntervalDefault)
	setDefault(&c.PollInitial, PollInitialDefault)
	setDefault(&c.PollMax, PollMaxDefault)
	setDefault(&c.FailureBackoff, FailureBackoffDefault)
	setDefault(&c.FailureBackoffMax, FailureBackoffMaxDefault)
	setDefault(&c.ARIRetry, ARIRetryDefault)
	setDefault(&c.ARICheckMax, ARICheckMaxDefault)
	setDefault(&c.MaxPanics, MaxPanicsDefault)
	setDefault(&c.HTTP01Port, HTTP01PortDefault)
	if c.ClusterResourceNamespace == "" {
		c.ClusterResourceNamespace = ClusterResourceNamespaceDefault
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
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
	if c.Scheduler.LeaseTTL == 0 {
		c.Scheduler.LeaseTTL = scheduler.LeaseTTLDefault
	}
}

// setDefault sets *v to def when it is zero (unset).
func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate checks the configuration after defaults, cross-field rules
// included. Each error names the field and the environment variable that
// sets it.
func (c Config) Validate() error {
	var errs []error
	positive := func(d time.Duration, field, env string) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("worker: %s (%s) must be positive, got %s", field, env, d))
		}
	}
	positive(c.AckWait, "AckWait", "ACMEQ_ACK_WAIT")
	positive(c.SelfCheckInterval, "SelfCheckInterval", "ACMEQ_SELF_CHECK_INTERVAL")
	positive(c.ChallengeTimeout, "ChallengeTimeout", "ACMEQ_CHALLENGE_TIMEOUT")
	positive(c.ResyncInterval, "ResyncInterval", "ACMEQ_RESYNC_INTERVAL")
	positive(c.TickInterval, "TickInterval", "ACMEQ_TICK_INTERVAL")
	positive(c.FailureBackoff, "FailureBackoff", "ACMEQ_FAILURE_BACKOFF")
	positive(c.PollInitial, "PollInitial", "ACMEQ_POLL_INITIAL")
	if c.PollMax < c.PollInitial {
		errs = append(errs, fmt.Errorf("worker: PollMax (ACMEQ_POLL_MAX, %s) must not be below PollInitial (ACMEQ_POLL_INITIAL, %s)", c.PollMax, c.PollInitial))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("worker: Concurrency (ACMEQ_CONCURRENCY) must be at least 1, got %d", c.Concurrency))
	}
	if c.AckWait > 0 && c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("worker: AckWait (ACMEQ_ACK_WAIT) must be at least 1s, got %s", c.AckWait))
	}
	if c.StepTimeout <= 0 || c.StepTimeout >= c.AckWait {
		errs = append(errs, fmt.Errorf("worker: StepTimeout (%s) must be positive and below AckWait (ACMEQ_ACK_WAIT, %s): a stuck handler must give its message up before JetStream hands it to another worker", c.StepTimeout, c.AckWait))
	}
	if c.FailureBackoffMax < c.FailureBackoff {
		errs = append(errs, fmt.Errorf("worker: FailureBackoffMax (ACMEQ_FAILURE_BACKOFF_MAX, %s) must not be below FailureBackoff (ACMEQ_FAILURE_BACKOFF, %s)", c.FailureBackoffMax, c.FailureBackoff))
	}
	if c.HTTP01Port < 1 || c.HTTP01Port > 65535 {
		errs = append(errs, fmt.Errorf("worker: HTTP01Port (ACMEQ_HTTP01_SELF_CHECK_PORT) must be a port number (1-65535), got %d", c.HTTP01Port))
	}
	if c.Scheduler.Cap <= 0 {
		errs = append(errs, fmt.Errorf("worker: Scheduler.Cap (ACMEQ_MAX_CONCURRENT_CHALLENGES) must be at least 1, got %d", c.Scheduler.Cap))
	} else if err := c.Scheduler.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("worker: %w", err))
	}
	if c.Scheduler.LeaseTTL <= c.SelfCheckInterval {
		errs = append(errs, fmt.Errorf("worker: Scheduler.LeaseTTL (ACMEQ_LEASE_TTL, %s) must exceed SelfCheckInterval (ACMEQ_SELF_CHECK_INTERVAL, %s): a challenge waiting for its next self-check does not renew its lease", c.Scheduler.LeaseTTL, c.SelfCheckInterval))
	}
	if err := messages.ValidateObjectName("ClusterResourceNamespace", c.ClusterResourceNamespace); err != nil {
		errs = append(errs, fmt.Errorf("worker: %w (ACMEQ_CLUSTER_RESOURCE_NAMESPACE)", err))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("worker: Replicas (ACMEQ_REPLICAS) must be 1 to 5 (JetStream's limit), got %d", c.Replicas))
	}
	if p := c.Scheduler.Prefix; p != "" && !hasHashTag(p) {
		errs = append(errs, fmt.Errorf("worker: Scheduler.Prefix %q must contain a Redis Cluster hash tag such as {acmeq}: the scheduler's scripts touch several keys at once", p))
	}
	return errors.Join(errs...)
}

// hasHashTag reports whether a key prefix has a non-empty {hash tag}.
func hasHashTag(p string) bool {
	i := strings.IndexByte(p, '{')
	return i >= 0 && strings.IndexByte(p[i+1:], '}') > 0
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
