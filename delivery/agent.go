package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// Errors of a selected certificate that could not be written; Run in Once
// mode returns them joined, each naming the certificate.
var (
	// ErrNotFound: a Certificate named in Config.Names is not in the store.
	ErrNotFound = errors.New("delivery: certificate not found")
	// ErrNotIssued: a selected Certificate has no Secret yet.
	ErrNotIssued = errors.New("delivery: certificate not issued yet")
)

// Agent writes the selected certificates under Config.Dir and keeps them
// up to date with the store. It reads only the Certificate and Secret
// buckets (watches and gets), never writes to NATS, and creates nothing
// there.
type Agent struct {
	js     jetstream.JetStream
	sealer *store.Sealer
	cfg    Config
	sel    labels.Selector
	m      *metrics
	w      writer
	log    *slog.Logger

	// State of one Run, owned by its goroutine.
	st      *store.Store
	certs   map[string]*certState      // selected Certificates by key
	owners  map[string]map[string]bool // Secret key -> names of the Certificates using it
	pending map[string]*change         // Certificate key -> what to do at the next flush
	failing map[string]error           // Certificate key -> why its files are not current
	expiry  map[string]time.Time       // Certificate key -> notAfter of its files on disk
	changed map[string]bool            // "ns/name" changed on disk since the hook last succeeded
	hookErr error                      // the last hook run failed
	ready   bool                       // the Secret watch has delivered its initial values
	batch   time.Time                  // first change of the pending batch
	written int                        // certificates written by this Run
}

// certState is a selected Certificate.
type certState struct{ ns, name, secret string }

// change is pending work for one Certificate: write the Secret entry,
// remove the files (prune), or wait for the Secret (entry nil).
type change struct {
	entry  jetstream.KeyValueEntry
	remove bool
}

// New returns an Agent reading through js and opening Secrets with sealer
// (ACMEQ_SECRET_KEY). It validates cfg and registers the metrics; it does
// no I/O until Run.
func New(js jetstream.JetStream, sealer *store.Sealer, cfg Config) (*Agent, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sealer == nil {
		return nil, fmt.Errorf("%w: a sealer (ACMEQ_SECRET_KEY) is required to open the Secrets", ErrConfig)
	}
	sel := labels.Everything()
	if cfg.LabelSelector != "" {
		var err error
		if sel, err = labels.Parse(cfg.LabelSelector); err != nil {
			return nil, fmt.Errorf("%w: LabelSelector (-l): %w", ErrConfig, err)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Agent{js: js, sealer: sealer, cfg: cfg, sel: sel, m: m, w: writer{dir: cfg.Dir}, log: cfg.Logger}, nil
}

// Run writes every selected certificate, runs the hook if anything
// changed, and then (unless Config.Once) follows the store, writing each
// change in debounced batches, until ctx ends; then it returns nil. It
// returns an error at once if Dir cannot be written or the buckets cannot
// be read, and if the store's watch ends (the NATS connection was closed
// for good). A NATS outage the connection recovers from is caught up
// without rewriting unchanged files.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.w.probe(); err != nil {
		return err
	}
	st, err := store.OpenReadOnly(ctx, a.js, a.sealer, messages.KindCertificate, messages.KindSecret)
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	a.st = st
	a.certs = map[string]*certState{}
	a.owners = map[string]map[string]bool{}
	a.pending = map[string]*change{}
	a.failing = map[string]error{}
	a.expiry = map[string]time.Time{}
	a.changed = map[string]bool{}
	a.ready = false

	certW, secW, err := a.startWatches(ctx)
	if err != nil {
		return err
	}
	defer func() { certW.Stop(); secW.Stop() }()
	a.ready = true
	missing := a.afterInitial()
	errs := a.flush(ctx)
	a.log.Info("initial sync done", "dir", a.cfg.Dir, "certificates", len(a.certs), "written", a.written, "failing", len(a.failing))
	if a.cfg.Once {
		return errors.Join(append(missing, errs...)...)
	}

	// nats.go's ordered watches notice a restarted server only by missed
	// heartbeats, ~20 s later: on a reconnect the agent starts them again
	// at once. Their initial values rewrite nothing that did not change.
	var reconnected chan nats.Status
	if nc := a.js.Conn(); nc != nil {
		reconnected = nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(reconnected)
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	a.rearm(timer)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			c, s, err := a.startWatches(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("could not watch again after a reconnect; the current watches recover by themselves", "err", err)
				break
			}
			certW.Stop()
			secW.Stop()
			certW, secW = c, s
			a.log.Info("watching the store again after a reconnect")
		case e, ok := <-certW.Updates():
			if !ok {
				return a.watchEnded(ctx, messages.KindCertificate)
			}
			if e != nil {
				a.applyCertificate(ctx, e)
			}
		case e, ok := <-secW.Updates():
			if !ok {
				return a.watchEnded(ctx, messages.KindSecret)
			}
			if e != nil {
				a.applySecret(ctx, e)
			}
		case <-timer.C:
			a.batch = time.Time{}
			a.flush(ctx)
			a.rearm(timer)
			continue
		}
		if len(a.pending) >= batchMaxPending {
			// A burst (a first sync of a large store, a mass renewal):
			// write what is pending now to bound memory; the hook runs
			// once at the end of the batch.
			a.writePending()
		}
		a.schedule(timer)
	}
}

// startWatches watches the Certificates, then the Secrets, applying each
// watch's initial values: once the Certificates are known, the Secrets'
// initial values are matched against them as they arrive, and Secrets no
// selected Certificate uses are dropped at once. On error nothing is left
// watching.
func (a *Agent) startWatches(ctx context.Context) (certW, secW jetstream.KeyWatcher, err error) {
	certW, err = a.watch(ctx, messages.KindCertificate, a.certKeys())
	if err != nil {
		return nil, nil, err
	}
	if err := a.initial(ctx, certW, messages.KindCertificate, a.applyCertificate); err != nil {
		certW.Stop()
		return nil, nil, err
	}
	secW, err = a.watch(ctx, messages.KindSecret, a.namespaceKeys())
	if err != nil {
		certW.Stop()
		return nil, nil, err
	}
	if err := a.initial(ctx, secW, messages.KindSecret, a.applySecret); err != nil {
		certW.Stop()
		secW.Stop()
		return nil, nil, err
	}
	return certW, secW, nil
}

func (a *Agent) watchEnded(ctx context.Context, k messages.Kind) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("delivery: the watch of bucket %s ended (NATS connection closed); the files on disk are kept", k.Bucket())
}

// watch starts a KV watch of kind's bucket on keys (all keys if none).
// Deletes are delivered: a deleted Certificate is reported (and pruned
// with Prune).
func (a *Agent) watch(ctx context.Context, k messages.Kind, keys []string) (jetstream.KeyWatcher, error) {
	w, err := a.st.KV(k).WatchFiltered(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("delivery: watch bucket %s: %w", k.Bucket(), err)
	}
	return w, nil
}

// initial applies a watch's initial values, up to its nil marker.
func (a *Agent) initial(ctx context.Context, w jetstream.KeyWatcher, k messages.Kind, apply func(context.Context, jetstream.KeyValueEntry)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return a.watchEnded(ctx, k)
			}
			if e == nil {
				return nil
			}
			apply(ctx, e)
			if len(a.pending) >= batchMaxPending {
				a.writePending()
			}
		}
	}
}

// certKeys are the Certificate keys to watch: the names given, or the
// namespace, or everything.
func (a *Agent) certKeys() []string {
	if len(a.cfg.Names) > 0 {
		keys := make([]string, len(a.cfg.Names))
		for i, n := range a.cfg.Names {
			keys[i] = messages.Key(a.cfg.Namespace, n)
		}
		return keys
	}
	return a.namespaceKeys()
}

func (a *Agent) namespaceKeys() []string {
	if a.cfg.AllNamespaces {
		return nil
	}
	return []string{messages.Key(a.cfg.Namespace, "*")}
}

// selects reports whether the agent is given this Certificate.
func (a *Agent) selects(c *messages.Certificate) bool {
	m := c.Metadata
	if !a.cfg.AllNamespaces && m.Namespace != a.cfg.Namespace {
		return false
	}
	if len(a.cfg.Names) > 0 && !slices.Contains(a.cfg.Names, m.Name) {
		return false
	}
	return a.sel.Matches(labels.Set(m.Labels))
}

func secretOf(c *messages.Certificate) string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return c.Metadata.Name
}

func ref(key string) string { return strings.Replace(key, ".", "/", 1) }

// applyCertificate records a Certificate put or delete.
func (a *Agent) applyCertificate(ctx context.Context, e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if a.certs[key] != nil {
			a.deselect(key, "was deleted from the store")
		}
		return
	}
	c := &messages.Certificate{}
	if err := store.DecodeEntry(e, c); err != nil {
		a.log.Warn("skipping a Certificate that does not decode", "certificate", ref(key), "err", err)
		return
	}
	old := a.certs[key]
	if !a.selects(c) {
		if old != nil {
			a.deselect(key, "is no longer selected (its labels changed)")
		}
		return
	}
	secret := secretOf(c)
	if old != nil && old.secret == secret {
		// A status update: the files follow the Secret, not the status.
		return
	}
	ns, name := c.Metadata.Namespace, c.Metadata.Name
	if old != nil {
		delete(a.owners[messages.Key(ns, old.secret)], name)
	}
	a.certs[key] = &certState{ns: ns, name: name, secret: secret}
	sk := messages.Key(ns, secret)
	if a.owners[sk] == nil {
		a.owners[sk] = map[string]bool{}
	}
	a.owners[sk][name] = true
	if !a.ready {
		// The Secret watch's initial values will bring the Secret.
		return
	}
	// A Certificate selected now (new, relabelled, or given another
	// secretName) whose Secret may already exist: read it once. Later
	// changes come through the watch.
	se, err := a.st.KV(messages.KindSecret).Get(ctx, sk)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		a.pending[key] = &change{}
	case err != nil:
		// The watch brings the Secret's next change; until then the
		// certificate is reported failing.
		a.fail(key, fmt.Errorf("delivery: certificate %s: read Secret %s/%s: %w", ref(key), ns, secret, err))
	default:
		a.setPending(key, se)
	}
}

// applySecret records a Secret put or delete for the Certificates using it.
func (a *Agent) applySecret(_ context.Context, e jetstream.KeyValueEntry) {
	users := a.owners[e.Key()]
	if len(users) == 0 {
		return
	}
	ns, secret, _ := messages.SplitKey(e.Key())
	for name := range users {
		key := messages.Key(ns, name)
		if e.Operation() != jetstream.KeyValuePut {
			a.log.Warn("the Secret of a certificate was deleted from the store; keeping its files", "certificate", ref(key), "secret", ns+"/"+secret, "dir", filepath.Join(a.cfg.Dir, ns, name))
			continue
		}
		a.setPending(key, e)
	}
}

// setPending queues a Secret entry for a Certificate, unless a newer one is
// queued already (a Get and the watch can both bring one).
func (a *Agent) setPending(key string, e jetstream.KeyValueEntry) {
	if p := a.pending[key]; p != nil && p.entry != nil && p.entry.Revision() > e.Revision() {
		return
	}
	a.pending[key] = &change{entry: e}
}

// deselect forgets a Certificate that was deleted or is no longer
// selected: its files stay, unless Prune.
func (a *Agent) deselect(key, why string) {
	c := a.certs[key]
	delete(a.certs, key)
	delete(a.owners[messages.Key(c.ns, c.secret)], c.name)
	delete(a.failing, key)
	delete(a.expiry, key)
	delete(a.pending, key)
	dir := filepath.Join(a.cfg.Dir, c.ns, c.name)
	if a.cfg.Prune {
		a.log.Info("certificate "+why+"; removing its files (prune)", "certificate", ref(key), "dir", dir)
		a.pending[key] = &change{remove: true}
		return
	}
	a.log.Info("certificate "+why+"; keeping its files (--prune would remove them)", "certificate", ref(key), "dir", dir)
}

// afterInitial handles what the initial values leave: named Certificates
// that do not exist, selected ones without a Secret, and (with Prune)
// files of Certificates no longer selected. It returns the errors Once
// reports for names not found.
func (a *Agent) afterInitial() []error {
	var errs []error
	for _, n := range a.cfg.Names {
		key := messages.Key(a.cfg.Namespace, n)
		if a.certs[key] != nil {
			continue
		}
		err := fmt.Errorf("%w: %s/%s is not in the store (bucket %s)", ErrNotFound, a.cfg.Namespace, n, messages.KindCertificate.Bucket())
		if a.cfg.Once {
			errs = append(errs, err)
			continue
		}
		a.log.Warn("a certificate given by name is not in the store; waiting for it to be created", "certificate", a.cfg.Namespace+"/"+n, "err", err)
	}
	for key := range a.certs {
		if a.pending[key] == nil {
			a.pending[key] = &change{}
		}
	}
	if a.cfg.Prune {
		a.pruneUnselected()
	}
	return errs
}

// pruneUnselected queues the removal of files on disk, in the namespaces
// the agent syncs, of Certificates it is not given (any more).
func (a *Agent) pruneUnselected() {
	namespaces := []string{a.cfg.Namespace}
	if a.cfg.AllNamespaces {
		namespaces = nil
		entries, _ := os.ReadDir(a.cfg.Dir)
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				namespaces = append(namespaces, e.Name())
			}
		}
	}
	for _, ns := range namespaces {
		names, err := a.w.managed(ns)
		if err != nil {
			a.log.Warn("cannot list files to prune", "namespace", ns, "err", err)
			continue
		}
		for _, n := range names {
			key := messages.Key(ns, n)
			if a.certs[key] == nil {
				a.log.Info("certificate is not in the store or not selected; removing its files (prune)", "certificate", ns+"/"+n)
				a.pending[key] = &change{remove: true}
			}
		}
	}
}

func (a *Agent) fail(key string, err error) {
	a.failing[key] = err
	a.log.Error("certificate not written; its last good files are kept", "certificate", ref(key), "err", err)
}

// writePending carries out the pending changes. A failed write stays
// pending (retried at the next flush); everything else is done.
func (a *Agent) writePending() []error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(a.pending)) {
		p := a.pending[key]
		ns, name, _ := messages.SplitKey(key)
		r := ns + "/" + name
		switch {
		case p.remove:
			removed, err := a.w.remove(ns, name)
			if err != nil {
				a.m.writeErrors.Inc()
				a.fail(key, err)
				errs = append(errs, err)
				continue
			}
			delete(a.failing, key)
			if removed {
				a.changed[r] = true
			}
		case p.entry == nil:
			c := a.certs[key]
			if c == nil {
				break
			}
			err := fmt.Errorf("%w: %s has no Secret %s/%s yet", ErrNotIssued, r, c.ns, c.secret)
			if a.cfg.Once {
				a.failing[key] = err
				errs = append(errs, err)
			}
			a.log.Info("certificate not issued yet; waiting for its Secret", "certificate", r, "secret", c.ns+"/"+c.secret)
		default:
			if err := a.writeEntry(key, p.entry); err != nil {
				errs = append(errs, err)
				a.fail(key, err)
				if !contentError(err) {
					// The disk, not the content: try again later.
					a.m.writeErrors.Inc()
					continue
				}
				// Bad content stays bad: wait for the Secret's next
				// version.
			}
		}
		delete(a.pending, key)
	}
	return errs
}

// contentError reports whether err is about the Secret's content (which
// retrying cannot fix) rather than about the disk.
func contentError(err error) bool {
	return errors.Is(err, ErrBadCertificate) || errors.Is(err, ErrBadKey) || errors.Is(err, ErrKeyMismatch) || errors.Is(err, errOpen)
}

// errOpen marks a Secret that does not open with the agent's key.
var errOpen = errors.New("cannot open the sealed data (is ACMEQ_SECRET_KEY the workers' key?)")

// writeEntry opens a Secret entry, checks it and writes it for key.
func (a *Agent) writeEntry(key string, e jetstream.KeyValueEntry) error {
	ns, name, _ := messages.SplitKey(key)
	_, data, err := a.st.OpenSecretEntry(e)
	if err != nil {
		return fmt.Errorf("delivery: certificate %s/%s: Secret %s: %w: %w", ns, name, ref(e.Key()), errOpen, err)
	}
	b, err := newBundle(data)
	if err != nil {
		return fmt.Errorf("delivery: certificate %s/%s: Secret %s (revision %d): %w", ns, name, ref(e.Key()), e.Revision(), err)
	}
	changed, err := a.w.write(ns, name, b)
	if err != nil {
		return fmt.Errorf("delivery: certificate %s/%s: %w", ns, name, err)
	}
	delete(a.failing, key)
	a.expiry[key] = b.notAfter()
	if changed {
		a.written++
		a.m.synced.Inc()
		a.changed[ns+"/"+name] = true
		a.log.Info("wrote certificate", "certificate", ns+"/"+name, "serial", serialHex(b.leaf), "dnsNames", b.leaf.DNSNames, "notAfter", b.leaf.NotAfter.UTC(), "dir", filepath.Join(a.cfg.Dir, ns, name))
	}
	return nil
}

// flush writes what is pending, updates the metrics of what is on disk,
// then runs the hook once if anything changed (or its last run failed):
// whoever the hook tells already sees the files in the metrics.
func (a *Agent) flush(ctx context.Context) []error {
	errs := a.writePending()
	a.m.held.Set(float64(len(a.expiry)))
	a.m.failing.Set(float64(len(a.failing)))
	soonest := time.Time{}
	for _, t := range a.expiry {
		if soonest.IsZero() || t.Before(soonest) {
			soonest = t
		}
	}
	if soonest.IsZero() {
		a.m.soonest.Set(0)
	} else {
		a.m.soonest.Set(float64(soonest.Unix()))
	}
	if a.cfg.Exec != "" && (len(a.changed) > 0 || a.hookErr != nil) {
		a.m.hookRuns.Inc()
		changed := slices.Sorted(maps.Keys(a.changed))
		list := strings.Join(changed, " ")
		if len(list) > maxChangedEnv {
			// More than an environment variable can hold (Linux caps one
			// at 128 KiB): the hook is told that many changed.
			list = "*"
		}
		env := []string{"ACMEQ_SYNC_DIR=" + a.cfg.Dir, "ACMEQ_SYNC_CHANGED=" + list}
		err := runHook(ctx, a.cfg.Exec, a.cfg.ExecTimeout, env)
		if err != nil {
			a.m.hookFailures.Inc()
			a.log.Error("reload hook failed; it runs again at the next change or retry", "changed", len(changed), "err", err)
			errs = append(errs, err)
		} else {
			a.log.Info("reload hook ran", "command", a.cfg.Exec, "changed", logList(changed))
			clear(a.changed)
		}
		a.hookErr = err
	} else if a.cfg.Exec == "" {
		clear(a.changed)
	}
	if len(a.failing) == 0 && len(a.pending) == 0 && a.hookErr == nil {
		a.m.lastSync.Set(float64(a.cfg.Now().Unix()))
	}
	return errs
}

// maxChangedEnv bounds ACMEQ_SYNC_CHANGED; a longer list is passed as "*".
const maxChangedEnv = 64 << 10

// logList shortens a long list of certificates for a log line.
func logList(l []string) any {
	if len(l) > 20 {
		return fmt.Sprintf("%s ... (%d certificates)", strings.Join(l[:20], " "), len(l))
	}
	return l
}

// schedule arms the batch timer after a change: Debounce after the last
// change, at most ten Debounce intervals after the first.
func (a *Agent) schedule(timer *time.Timer) {
	if len(a.pending) == 0 && len(a.changed) == 0 {
		return
	}
	now := time.Now()
	if a.batch.IsZero() {
		a.batch = now
	}
	at := now.Add(a.cfg.Debounce)
	if limit := a.batch.Add(batchMaxDelayFactor * a.cfg.Debounce); at.After(limit) {
		at = limit
	}
	timer.Reset(time.Until(at))
}

// rearm sets the retry timer after a flush that left failed writes or a
// failed hook.
func (a *Agent) rearm(timer *time.Timer) {
	if len(a.pending) > 0 || a.hookErr != nil {
		timer.Reset(a.cfg.RetryInterval)
	}
}
