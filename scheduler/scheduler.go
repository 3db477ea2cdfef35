// Package scheduler decides which challenges may be processed, fleet-wide,
// with the rules of cert-manager's challenge scheduler:
//
//   - at most Cap challenges are processing at once across all workers
//     (ACMEQ_MAX_CONCURRENT_CHALLENGES, 60 by default);
//   - never two at once for the same DNS name and solver type;
//   - among eligible challenges the oldest goes first within a namespace,
//     and namespaces take turns (least recently served first), so one
//     tenant's bulk backlog cannot starve another.
//
// The state lives in Redis and every decision is one atomic Lua script that
// any worker may run: there is no leader. A grant is a lease: it holds a
// slot and the (name, type) lock until it is released or its TTL passes
// without renewal, when the reaper frees both and puts the challenge back in
// the backlog. All keys share the hash tag {acmeq} so the scripts run on
// Redis Cluster.
//
// Budgets (budget.go) keep the fleet within the CA's rate limits, one
// leaky bucket per limit and key (an account's new orders, a registered
// domain's certificates, ...), all taken by a new order in one script or
// none. Their fairness rule is the scheduler's: orders waiting on a budget
// are granted as it refills, the least recently served namespace first and
// the oldest order first within it, so while two tenants wait each gets
// every other unit, whatever the size of their backlogs. A 429 pauses the
// budget for the whole fleet until the CA's Retry-After.
//
// Redis is coordination state, not the source of truth: the resources in
// JetStream KV are. If Redis loses its data, workers re-enqueue what they
// find unfinished (see worker's resync), and the guarantees hold again once
// the backlog is rebuilt.
package scheduler

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	// CapDefault is cert-manager's cap on concurrent challenges.
	CapDefault = 60
	// LeaseTTLDefault is how long a grant lives without renewal. It must
	// exceed the self-check interval, since a challenge waiting for its
	// next self-check is not renewed while it waits.
	LeaseTTLDefault = 30 * time.Second
	// ScanLimitDefault bounds how many queued challenges of a namespace
	// the grant script looks at to find one whose lock is free.
	ScanLimitDefault = 256
	// PrefixDefault is the key prefix, with the hash tag.
	PrefixDefault = "{acmeq}:"
)

// Config configures a Scheduler.
type Config struct {
	// Cap is the fleet-wide maximum of challenges processing at once.
	// Defaults to CapDefault. Zero or negative is refused by Validate.
	Cap int
	// LeaseTTL is the lifetime of a grant without renewal. Defaults to
	// LeaseTTLDefault.
	LeaseTTL time.Duration
	// ScanLimit bounds the look-ahead per namespace. Defaults to
	// ScanLimitDefault.
	ScanLimit int
	// Prefix of every key; keep a {hash tag}. Defaults to PrefixDefault.
	Prefix string
	// Audit records every enqueue, grant, release and reap, with Redis
	// server time in microseconds, in the stream <Prefix>audit (capped at
	// about 2 million entries). For tests and debugging; off by default.
	Audit bool
}

// Validate checks the configuration, naming the field at fault.
func (c Config) Validate() error {
	if c.Cap <= 0 {
		return fmt.Errorf("scheduler: Cap (ACMEQ_MAX_CONCURRENT_CHALLENGES) must be at least 1, got %d", c.Cap)
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("scheduler: LeaseTTL (ACMEQ_LEASE_TTL) must be at least 1s, got %s", c.LeaseTTL)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Cap == 0 {
		c.Cap = CapDefault
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = LeaseTTLDefault
	}
	if c.ScanLimit <= 0 {
		c.ScanLimit = ScanLimitDefault
	}
	if c.Prefix == "" {
		c.Prefix = PrefixDefault
	}
}

// Item is a challenge as the scheduler sees it.
type Item struct {
	// ID identifies the challenge: <namespace>/<name>.
	ID string
	// Lock is the mutual-exclusion key: <solver type>|<dns name>.
	Lock string
	// Score orders the backlog within a namespace; the creation time in
	// milliseconds, so the oldest goes first.
	Score int64
}

// Namespace of the item's challenge.
func (it Item) Namespace() string { ns, _, _ := strings.Cut(it.ID, "/"); return ns }

// LockKey builds the lock key of a (dns name, solver type).
func LockKey(solverType, dnsName string) string {
	return strings.ToUpper(solverType) + "|" + strings.ToLower(dnsName)
}

// ChallengeID builds an Item ID.
func ChallengeID(namespace, name string) string { return namespace + "/" + name }

// Grant is a lease on a slot and a lock.
type Grant struct {
	ID string
	// Seq is the fleet-wide grant number; it makes a scheduled message
	// unique.
	Seq int64
	// At is the Redis server time of the grant.
	At time.Time
	// Score is the item's backlog score (its creation time in ms), so
	// callers can measure how long it waited.
	Score int64
}

// Stats are cumulative counters of this process's scheduler calls.
type Stats struct {
	Grants, Releases, Reaped atomic.Int64
}

// Scheduler runs the scripts. It is safe for concurrent use.
type Scheduler struct {
	rdb   redis.UniversalClient
	cfg   Config
	Stats Stats
}

// Errors.
var (
	// ErrNotHeld: the lease is not held (reaped, released, or lost with
	// Redis' data).
	ErrNotHeld = errors.New("scheduler: lease not held")
	// ErrUnavailable wraps every failed call to Redis (unreachable,
	// timed out, loading, ...), so callers can tell "Redis is down" from
	// a scheduler decision.
	ErrUnavailable = errors.New("redis unavailable")
)

// New returns a Scheduler on rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Scheduler, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scheduler{rdb: rdb, cfg: cfg}, nil
}

// Config returns the effective configuration.
func (s *Scheduler) Config() Config { return s.cfg }

func (s *Scheduler) key(name string) string { return s.cfg.Prefix + name }

func (s *Scheduler) keys() []string {
	return []string{s.key("rr"), s.key("meta"), s.key("locks"), s.key("inflight"), s.key("seq"), s.key("audit")}
}

// AuditKey is the stream the scripts record events in when Config.Audit
// is set.
func (s *Scheduler) AuditKey() string { return s.key("audit") }

func (s *Scheduler) auditFlag() string {
	if s.cfg.Audit {
		return "1"
	}
	return "0"
}

//go:embed scripts/enqueue.lua
var enqueueSrc string

//go:embed scripts/grant.lua
var grantSrc string

//go:embed scripts/release.lua
var releaseSrc string

//go:embed scripts/renew.lua
var renewSrc string

//go:embed scripts/reap.lua
var reapSrc string

var (
	enqueueScript = redis.NewScript(enqueueSrc)
	grantScript   = redis.NewScript(grantSrc)
	releaseScript = redis.NewScript(releaseSrc)
	renewScript   = redis.NewScript(renewSrc)
	reapScript    = redis.NewScript(reapSrc)
)

// Enqueue puts challenges in the backlog. A challenge already queued or
// holding a lease is left as it is, so enqueueing is idempotent. It returns
// how many were added.
func (s *Scheduler) Enqueue(ctx context.Context, items ...Item) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2+3*len(items))
	args = append(args, s.auditFlag(), s.cfg.Prefix+"q:")
	for _, it := range items {
		if it.ID == "" || it.Lock == "" || !strings.Contains(it.ID, "/") {
			return 0, fmt.Errorf("scheduler: enqueue: malformed item %+v", it)
		}
		args = append(args, it.ID, it.Lock, it.Score)
	}
	n, err := enqueueScript.Run(ctx, s.rdb, s.keys(), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("scheduler: enqueue %d challenges: %w: %w", len(items), ErrUnavailable, err)
	}
	return n, nil
}

// Grant takes up to max eligible challenges from the backlog (oldest first
// within a namespace, namespaces in turn) while the cap allows, and leases
// each its slot and lock. The caller must then start them (publish their
// scheduled transition); one it fails to start comes back by lease expiry.
func (s *Scheduler) Grant(ctx context.Context, max int) ([]Grant, error) {
	if max <= 0 {
		max = s.cfg.Cap
	}
	res, err := grantScript.Run(ctx, s.rdb, s.keys(), s.auditFlag(),
		s.cfg.Cap, s.cfg.LeaseTTL.Milliseconds(), max, s.cfg.ScanLimit, s.cfg.Prefix+"q:").Slice()
	if err != nil {
		return nil, fmt.Errorf("scheduler: grant: %w: %w", ErrUnavailable, err)
	}
	// Reply: now_ms, then (id, seq, score) triples.
	if len(res) < 1 || (len(res)-1)%3 != 0 {
		return nil, fmt.Errorf("scheduler: grant: malformed reply of %d values", len(res))
	}
	nowMS, _ := res[0].(int64)
	at := time.UnixMilli(nowMS)
	grants := make([]Grant, 0, (len(res)-1)/3)
	for i := 1; i+2 < len(res); i += 3 {
		id, _ := res[i].(string)
		seq, _ := res[i+1].(int64)
		score, _ := res[i+2].(int64)
		grants = append(grants, Grant{ID: id, Seq: seq, At: at, Score: score})
	}
	s.Stats.Grants.Add(int64(len(grants)))
	return grants, nil
}

// Renew extends the lease of id by the lease TTL; ErrNotHeld if there is
// none.
func (s *Scheduler) Renew(ctx context.Context, id string) error {
	n, err := renewScript.Run(ctx, s.rdb, s.keys(), s.auditFlag(), id, s.cfg.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("scheduler: renew %s: %w: %w", id, ErrUnavailable, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotHeld, id)
	}
	return nil
}

// Release frees the slot and lock of id and forgets it (also from the
// backlog). Releasing what is not held is a no-op; it reports whether a
// lease was freed.
func (s *Scheduler) Release(ctx context.Context, id string) (bool, error) {
	n, err := releaseScript.Run(ctx, s.rdb, s.keys(), s.auditFlag(), id, s.cfg.Prefix+"q:").Int()
	if err != nil {
		return false, fmt.Errorf("scheduler: release %s: %w: %w", id, ErrUnavailable, err)
	}
	if n == 1 {
		s.Stats.Releases.Add(1)
	}
	return n == 1, nil
}

// Reap frees the leases that expired (a dead or stuck worker) and puts
// their challenges back in the backlog, at their old place. It returns the
// reaped IDs.
func (s *Scheduler) Reap(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	ids, err := reapScript.Run(ctx, s.rdb, s.keys(), s.auditFlag(), limit, s.cfg.Prefix+"q:").StringSlice()
	if err != nil {
		return nil, fmt.Errorf("scheduler: reap: %w: %w", ErrUnavailable, err)
	}
	s.Stats.Reaped.Add(int64(len(ids)))
	return ids, nil
}

// State of a challenge in the scheduler.
type State string

// States reported by Lookup.
const (
	StateUnknown  State = ""         // Redis has no record of it
	StateQueued   State = "queued"   // in the backlog
	StateInflight State = "inflight" // holds a lease
)

// Lookup tells whether id is queued, in flight or unknown.
func (s *Scheduler) Lookup(ctx context.Context, id string) (State, error) {
	pipe := s.rdb.Pipeline()
	inf := pipe.ZScore(ctx, s.key("inflight"), id)
	ns, _, _ := strings.Cut(id, "/")
	q := pipe.ZScore(ctx, s.cfg.Prefix+"q:"+ns, id)
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return StateUnknown, fmt.Errorf("scheduler: lookup %s: %w: %w", id, ErrUnavailable, err)
	}
	if inf.Err() == nil {
		return StateInflight, nil
	}
	if q.Err() == nil {
		return StateQueued, nil
	}
	return StateUnknown, nil
}

// LookupMany is Lookup for many challenges in one round trip (a pipeline),
// in the order of ids.
func (s *Scheduler) LookupMany(ctx context.Context, ids []string) ([]State, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	inf := make([]*redis.FloatCmd, len(ids))
	q := make([]*redis.FloatCmd, len(ids))
	for i, id := range ids {
		ns, _, _ := strings.Cut(id, "/")
		inf[i] = pipe.ZScore(ctx, s.key("inflight"), id)
		q[i] = pipe.ZScore(ctx, s.cfg.Prefix+"q:"+ns, id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("scheduler: lookup %d challenges: %w: %w", len(ids), ErrUnavailable, err)
	}
	out := make([]State, len(ids))
	for i := range ids {
		switch {
		case inf[i].Err() == nil:
			out[i] = StateInflight
		case q[i].Err() == nil:
			out[i] = StateQueued
		}
	}
	return out, nil
}

// Counts reports the backlog length and the number of leases.
func (s *Scheduler) Counts(ctx context.Context) (backlog, inflight int64, err error) {
	// One MULTI/EXEC: read apart, a release between the two reads would
	// make the backlog (meta minus inflight) come out short, even negative.
	var inf, meta *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		inf = pipe.ZCard(ctx, s.key("inflight"))
		meta = pipe.HLen(ctx, s.key("meta"))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("scheduler: counts: %w: %w", ErrUnavailable, err)
	}
	inflight, backlog = inf.Val(), meta.Val()
	return backlog - inflight, inflight, nil
}
