package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

// State is a certificate's state in the fleet view, derived from its
// status: exactly one per certificate.
type State string

// The states, in the order the view lists them.
const (
	// StateReady: Ready is True and no issuance is in progress.
	StateReady State = "ready"
	// StateIssuing: the first issuance is in progress (Issuing True, no
	// certificate in the Secret yet).
	StateIssuing State = "issuing"
	// StateRenewing: a new certificate is being issued to replace the one
	// in the Secret (Issuing True).
	StateRenewing State = "renewing"
	// StateFailing: the last issuance failed (failedIssuanceAttempts > 0);
	// the next waits for its back-off, or is under way.
	StateFailing State = "failing"
	// StateNotReady: Ready is not True and nothing is in progress: expired,
	// revoked, blocked (a Secret owned by another certificate), or not yet
	// reconciled.
	StateNotReady State = "notready"
)

// States lists every State.
var States = []State{StateReady, StateIssuing, StateRenewing, StateFailing, StateNotReady}

// FilterExpiring is the state filter that selects certificates whose
// notAfter is within Config.ExpiringWithin, whatever their state.
const FilterExpiring = "expiring"

// Sort orders of the certificate list.
const (
	SortName   = "name"   // by namespace, then name
	SortExpiry = "expiry" // soonest notAfter first; none last
)

// entry is what the index keeps of one Certificate: the fields the list,
// the filters and the metrics need, with repeated strings interned. An
// entry is never modified once built (a change replaces it), so readers
// may use one without a lock.
type entry struct {
	namespace, name        string
	issuerName, issuerKind string
	dnsNames               []string
	labels                 []string // k1, v1, k2, v2 ... sorted by key
	ready                  messages.ConditionStatus
	readyReason, readyMsg  string
	issuingReason          string
	notAfter, renewal      int64 // Unix seconds; 0 when unset
	lastFailure, created   int64
	failed                 int32
	revision               int32
	state                  State
}

// Has implements labels.Labels.
func (e *entry) Has(k string) bool { _, ok := e.Lookup(k); return ok }

// Get implements labels.Labels.
func (e *entry) Get(k string) string { v, _ := e.Lookup(k); return v }

// Lookup implements labels.Labels.
func (e *entry) Lookup(k string) (string, bool) {
	for i := 0; i+1 < len(e.labels); i += 2 {
		if e.labels[i] == k {
			return e.labels[i+1], true
		}
	}
	return "", false
}

var _ labels.Labels = (*entry)(nil)

// interner shares equal strings (namespaces, issuers, reasons, the same
// messages on thousands of certificates) up to a bound, so strings never
// seen again (a deleted certificate's unique message) cannot pile up
// without limit.
type interner struct {
	m map[string]string
}

const internMax = 1 << 16

func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) >= internMax {
		return s
	}
	s = strings.Clone(s)
	in.m[s] = s
	return s
}

func unix(t *time.Time) int64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return t.Unix()
}

// classify derives the State from a certificate's status.
func classify(st *messages.CertificateStatus) State {
	if st.FailedIssuanceAttempts > 0 {
		return StateFailing
	}
	if c := messages.GetCondition(st.Conditions, worker.ConditionIssuing); c != nil && c.Status == messages.ConditionTrue {
		if st.NotAfter != nil {
			return StateRenewing
		}
		return StateIssuing
	}
	if messages.IsReady(st.Conditions) {
		return StateReady
	}
	return StateNotReady
}

// newEntry builds the entry of c, interning through in.
func newEntry(c *messages.Certificate, in *interner) *entry {
	m, st := &c.Metadata, &c.Status
	e := &entry{
		namespace:   in.get(m.Namespace),
		name:        strings.Clone(m.Name),
		issuerName:  in.get(c.Spec.IssuerRef.Name),
		issuerKind:  in.get(cmp.Or(c.Spec.IssuerRef.Kind, string(messages.KindIssuer))),
		notAfter:    unix(st.NotAfter),
		renewal:     unix(st.RenewalTime),
		lastFailure: unix(st.LastFailureTime),
		created:     m.CreationTimestamp.Unix(),
		failed:      int32(min(st.FailedIssuanceAttempts, 1<<30)),
		revision:    int32(min(st.Revision, 1<<30)),
		state:       classify(st),
	}
	if len(c.Spec.DNSNames) > 0 {
		e.dnsNames = make([]string, len(c.Spec.DNSNames))
		for i, n := range c.Spec.DNSNames {
			e.dnsNames[i] = strings.Clone(n)
		}
	}
	if len(m.Labels) > 0 {
		keys := make([]string, 0, len(m.Labels))
		for k := range m.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		e.labels = make([]string, 0, 2*len(keys))
		for _, k := range keys {
			e.labels = append(e.labels, in.get(k), in.get(m.Labels[k]))
		}
	}
	if r := messages.GetCondition(st.Conditions, messages.ConditionReady); r != nil {
		e.ready = messages.ConditionStatus(in.get(string(r.Status)))
		e.readyReason = in.get(r.Reason)
		e.readyMsg = in.get(r.Message)
	}
	if c := messages.GetCondition(st.Conditions, worker.ConditionIssuing); c != nil {
		e.issuingReason = in.get(c.Reason + ": " + c.Message)
	}
	return e
}

// index is the in-memory view of every Certificate, fed by a KV watch on
// the Certificate bucket, so that neither a page nor a scrape lists the
// bucket.
type index struct {
	mu     sync.RWMutex
	byKey  map[string]*entry
	keys   []string // sorted; nil when an add or delete made it stale
	synced bool
	// version counts changes; changed is closed (and replaced) at each.
	version uint64
	changed chan struct{}
	in      interner
}

func newIndex() *index {
	return &index{byKey: map[string]*entry{}, changed: make(chan struct{}), in: interner{m: map[string]string{}}}
}

// put adds or replaces an entry. Only the watcher calls it (the interner
// is not shared).
func (ix *index) put(key string, c *messages.Certificate) {
	e := newEntry(c, &ix.in)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.byKey[key]; !ok {
		ix.keys = nil
	}
	ix.byKey[key] = e
	ix.bumpLocked()
}

func (ix *index) remove(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.byKey[key]; !ok {
		return
	}
	delete(ix.byKey, key)
	ix.keys = nil
	ix.bumpLocked()
}

func (ix *index) bumpLocked() {
	ix.version++
	close(ix.changed)
	ix.changed = make(chan struct{})
}

// setSynced marks the end of the watch's initial values; keys not seen in
// them (deleted while the watch was down) are dropped.
func (ix *index) setSynced(seen map[string]bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if seen != nil {
		for k := range ix.byKey {
			if !seen[k] {
				delete(ix.byKey, k)
				ix.keys = nil
			}
		}
	}
	ix.synced = true
	ix.bumpLocked()
}

// status returns the number of certificates, whether the initial values
// have been read, the version and a channel closed at the next change.
func (ix *index) status() (n int, synced bool, version uint64, changed <-chan struct{}) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byKey), ix.synced, ix.version, ix.changed
}

// all returns every entry, sorted by namespace and name.
func (ix *index) all() []*entry {
	ix.mu.RLock()
	if ix.keys == nil {
		ix.mu.RUnlock()
		ix.mu.Lock()
		if ix.keys == nil {
			keys := make([]string, 0, len(ix.byKey))
			for k := range ix.byKey {
				keys = append(keys, k)
			}
			// Keys are <namespace>.<name> and neither has a dot, so
			// sorting keys sorts by namespace, then name.
			slices.Sort(keys)
			ix.keys = keys
		}
		ix.mu.Unlock()
		ix.mu.RLock()
	}
	defer ix.mu.RUnlock()
	out := make([]*entry, 0, len(ix.keys))
	for _, k := range ix.keys {
		if e := ix.byKey[k]; e != nil {
			out = append(out, e)
		}
	}
	return out
}

// get returns the entry of ns/name, or nil.
func (ix *index) get(ns, name string) *entry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.byKey[messages.Key(ns, name)]
}

// watch feeds the index from the bucket until ctx ends. The first pass
// ends with the initial values (synced); a watcher that stops (a long
// NATS outage) is started again after a pause, and its initial values
// replace what the index held.
func (ix *index) watch(ctx context.Context, kv jetstream.KeyValue, onErr func(error)) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := ix.watchOnce(ctx, kv)
		if ctx.Err() != nil {
			return
		}
		onErr(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

var errWatchStopped = errors.New("ui: certificate watch stopped")

func (ix *index) watchOnce(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	seen := map[string]bool{}
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errWatchStopped
		}
		if e == nil {
			ix.setSynced(seen)
			seen = nil
			continue
		}
		if seen != nil {
			seen[e.Key()] = true
		}
		if e.Operation() != jetstream.KeyValuePut {
			ix.remove(e.Key())
			continue
		}
		c := &messages.Certificate{}
		if err := json.Unmarshal(e.Value(), c); err != nil {
			// Not a certificate we can read: it is not shown rather than
			// shown wrong.
			ix.remove(e.Key())
			continue
		}
		ix.put(e.Key(), c)
	}
}

// query selects certificates for a page.
type query struct {
	namespace string
	selector  labels.Selector // nil selects all
	state     string          // "", a State or FilterExpiring
	search    string          // lower case; "" matches all
	sort      string
	page, per int // page counts from 1
}

// result is one page of certificates and the counts of the fleet that
// matches the query's filters but its state.
type result struct {
	rows     []*entry
	total    int // matching the whole query
	counts   map[State]int
	expiring int
	all      int // matching all but the state filter
	pages    int
}

// expiringAt is the notAfter (Unix seconds) before which a certificate is
// expiring.
func (e *entry) expiring(limit int64) bool { return e.notAfter != 0 && e.notAfter < limit }

func (e *entry) matchSearch(q string) bool {
	if q == "" {
		return true
	}
	if strings.Contains(e.name, q) {
		return true
	}
	for _, n := range e.dnsNames {
		if strings.Contains(strings.ToLower(n), q) {
			return true
		}
	}
	return false
}

// run evaluates q over entries (sorted by name) at now.
func (q query) run(entries []*entry, now time.Time, expiringWithin time.Duration) result {
	limit := now.Add(expiringWithin).Unix()
	res := result{counts: map[State]int{}}
	var matched []*entry
	for _, e := range entries {
		if q.namespace != "" && e.namespace != q.namespace {
			continue
		}
		if q.selector != nil && !q.selector.Matches(e) {
			continue
		}
		if !e.matchSearch(q.search) {
			continue
		}
		res.all++
		res.counts[e.state]++
		exp := e.expiring(limit)
		if exp {
			res.expiring++
		}
		switch q.state {
		case "":
		case FilterExpiring:
			if !exp {
				continue
			}
		default:
			if string(e.state) != q.state {
				continue
			}
		}
		matched = append(matched, e)
	}
	if q.sort == SortExpiry {
		slices.SortStableFunc(matched, func(a, b *entry) int {
			switch {
			case a.notAfter == b.notAfter:
				return 0
			case a.notAfter == 0:
				return 1
			case b.notAfter == 0:
				return -1
			}
			return cmp.Compare(a.notAfter, b.notAfter)
		})
	}
	res.total = len(matched)
	res.pages = max(1, (res.total+q.per-1)/q.per)
	from := min((q.page-1)*q.per, res.total)
	to := min(from+q.per, res.total)
	res.rows = matched[from:to]
	return res
}
