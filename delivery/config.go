package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/acmeq/acmeq/messages"
)

// Defaults of Config.
const (
	// NamespaceDefault is the namespace synced when neither Namespace nor
	// AllNamespaces is set, as kubectl's default namespace.
	NamespaceDefault = "default"
	// DebounceDefault is how long the agent waits after a change for more
	// before it writes the batch and runs the hook once.
	DebounceDefault = time.Second
	// ExecTimeoutDefault bounds one run of the reload hook.
	ExecTimeoutDefault = 30 * time.Second
	// RetryIntervalDefault is how soon a failed write or hook is tried
	// again when nothing else changes.
	RetryIntervalDefault = 30 * time.Second
	// batchMaxDelayFactor caps a batch that keeps receiving changes: it is
	// written at most this many Debounce intervals after its first change.
	batchMaxDelayFactor = 10
	// batchMaxPending writes pending certificates early (without the hook)
	// once this many are waiting, so a first sync of a large store keeps a
	// bounded number of certificates in memory.
	batchMaxPending = 1000
)

// Config configures an Agent. cmd/acmeq fills it from flags; tests build it
// directly.
type Config struct {
	// Dir is the directory certificates are written under, as
	// Dir/<namespace>/<name>/{tls.crt,tls.key,ca.crt,tls.pem}. It is
	// created if missing. Required.
	Dir string
	// Namespace selects Certificates of one namespace (kubectl's -n).
	// Defaults to NamespaceDefault unless AllNamespaces is set.
	Namespace string
	// AllNamespaces selects Certificates of every namespace (kubectl's
	// -A). Defaults to false.
	AllNamespaces bool
	// Names selects Certificates by name within Namespace. Defaults to
	// all Certificates of the namespace.
	Names []string
	// LabelSelector selects Certificates by their labels, in Kubernetes'
	// syntax ("env=prod,tier in (edge,cdn),!canary"). Defaults to
	// everything.
	LabelSelector string
	// Exec is a shell command (run with /bin/sh -c) run once after each
	// batch of changes, e.g. "nginx -s reload". It sees ACMEQ_SYNC_DIR and
	// ACMEQ_SYNC_CHANGED (the changed certificates as namespace/name,
	// space-separated and sorted; "*" when the list would exceed 64 KiB)
	// in its environment. Defaults to none.
	Exec string
	// ExecTimeout bounds one run of Exec; a hook still running then is
	// killed with its process group and counts as failed. Defaults to
	// ExecTimeoutDefault.
	ExecTimeout time.Duration
	// Debounce is how long the agent waits after a change for further
	// changes before it writes them and runs Exec once (a batch is never
	// delayed more than ten Debounce intervals). Defaults to
	// DebounceDefault.
	Debounce time.Duration
	// RetryInterval is how soon a failed write or hook is tried again if
	// no new change comes first. Defaults to RetryIntervalDefault.
	RetryInterval time.Duration
	// Once writes everything selected, runs Exec if anything changed and
	// returns: an error if any selected certificate could not be written
	// (including one not issued yet) or the hook failed. Defaults to
	// false: Run follows the store until its context ends.
	Once bool
	// Prune removes the files of a Certificate deleted from the store or
	// no longer selected. Defaults to false: such files are kept, and the
	// agent logs that it keeps them.
	Prune bool
	// Registerer receives the agent's Prometheus metrics. Defaults to
	// none.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for the last-sync metric. Defaults to time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Namespace == "" && !c.AllNamespaces {
		c.Namespace = NamespaceDefault
	}
	if c.ExecTimeout == 0 {
		c.ExecTimeout = ExecTimeoutDefault
	}
	if c.Debounce == 0 {
		c.Debounce = DebounceDefault
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = RetryIntervalDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("delivery: invalid configuration")

// Validate checks the configuration; each error names the field (and the
// flag of `acmeq sync` that sets it).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if c.Dir == "" {
		bad("Dir (--dir) is required: the directory certificates are written under")
	}
	if c.AllNamespaces && c.Namespace != "" {
		bad("Namespace (-n) %q and AllNamespaces (-A) exclude each other", c.Namespace)
	}
	if c.Namespace != "" {
		if err := messages.ValidateObjectName("Namespace (-n)", c.Namespace); err != nil {
			bad("%v", err)
		}
	}
	if c.AllNamespaces && len(c.Names) > 0 {
		bad("Names %v cannot be combined with AllNamespaces (-A): a name selects a Certificate in one namespace", c.Names)
	}
	if c.LabelSelector != "" && len(c.Names) > 0 {
		bad("Names %v and LabelSelector (-l) exclude each other, as in kubectl", c.Names)
	}
	for _, n := range c.Names {
		if err := messages.ValidateObjectName("Names", n); err != nil {
			bad("%v", err)
		}
	}
	if c.LabelSelector != "" {
		if _, err := labels.Parse(c.LabelSelector); err != nil {
			bad("LabelSelector (-l) %q: %v", c.LabelSelector, err)
		}
	}
	if c.ExecTimeout < 0 {
		bad("ExecTimeout (--exec-timeout) must be positive, got %s", c.ExecTimeout)
	}
	if c.Debounce < 0 {
		bad("Debounce (--debounce) must be positive, got %s", c.Debounce)
	}
	if c.RetryInterval < 0 {
		bad("RetryInterval must be positive, got %s", c.RetryInterval)
	}
	return errors.Join(errs...)
}
