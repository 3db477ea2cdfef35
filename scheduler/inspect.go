package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Read-only views of the scheduler's state, for the fleet view and its
// metrics. Nothing here writes to Redis or runs a script: a Snapshot is a
// few reads (two round trips) that any number of readers can make while
// the workers schedule.

// Snapshot is the scheduler's state at one Redis time.
type Snapshot struct {
	// At is Redis' clock when the snapshot was read (scheduler time comes
	// from Redis, never from the reader's clock).
	At time.Time
	// Cap is the cap of this Scheduler's configuration: the workers'
	// ACMEQ_MAX_CONCURRENT_CHALLENGES, when the reader is configured as
	// they are (the cap is an argument of the grant script, not stored in
	// Redis).
	Cap int
	// Backlog is the number of challenges waiting for a slot, fleet-wide.
	Backlog int64
	// Inflight lists the challenges holding a lease, soonest expiry first.
	Inflight []Lease
	// Namespaces lists the namespaces in the round-robin ring with their
	// backlog, the next to be served first.
	Namespaces []NamespaceBacklog
	// Locks lists the held (solver type, dns name) locks, by lock key.
	Locks []LockHolder
	// Oldest is the challenge that has waited longest in any backlog, nil
	// when every backlog is empty.
	Oldest *Waiting
}

// Lease is a challenge holding a slot and its lock.
type Lease struct {
	// ID is <namespace>/<name> of the challenge.
	ID string
	// Lock is its "<TYPE>|<dns name>" lock key (empty if its metadata is
	// gone: the reaper or a release is about to clean up).
	Lock string
	// Expires is when the lease expires unless renewed.
	Expires time.Time
	// Created is the challenge's backlog score (its creation time).
	Created time.Time
}

// NamespaceBacklog is one namespace of the round-robin ring.
type NamespaceBacklog struct {
	Namespace string
	// Queued challenges of the namespace.
	Queued int64
	// Oldest is the oldest queued challenge of the namespace, nil if none.
	Oldest *Waiting
}

// LockHolder is one held lock.
type LockHolder struct {
	// Lock is "<TYPE>|<dns name>".
	Lock string
	// Holder is the challenge ID holding it.
	Holder string
	// Leased reports whether Holder holds a lease; a lock without one is
	// left by a lease that expired and is freed by the next reap.
	Leased bool
}

// Waiting is a challenge waiting in a backlog.
type Waiting struct {
	ID string
	// Since is the challenge's creation time (its backlog score).
	Since time.Time
	// Wait is how long it has waited at the snapshot's time.
	Wait time.Duration
}

// Namespace of the lease's challenge.
func (l Lease) Namespace() string { ns, _, _ := strings.Cut(l.ID, "/"); return ns }

// Snapshot reads the scheduler's state: the ring, the leases and locks in
// one transaction, then each ring namespace's backlog length and oldest
// challenge in one pipeline. Its cost is O(namespaces + leases + locks),
// never O(backlog). The two reads are not atomic with each other: a
// challenge granted between them can be missing from both the backlog and
// the leases; the fleet view refreshes, so that is only a moment's blur.
func (s *Scheduler) Snapshot(ctx context.Context) (Snapshot, error) {
	var (
		timeCmd  *redis.TimeCmd
		ringCmd  *redis.StringSliceCmd
		infCmd   *redis.ZSliceCmd
		locksCmd *redis.MapStringStringCmd
		metaLen  *redis.IntCmd
	)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		timeCmd = p.Time(ctx)
		ringCmd = p.ZRange(ctx, s.key("rr"), 0, -1)
		infCmd = p.ZRangeWithScores(ctx, s.key("inflight"), 0, -1)
		locksCmd = p.HGetAll(ctx, s.key("locks"))
		metaLen = p.HLen(ctx, s.key("meta"))
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("scheduler: snapshot: %w: %w", ErrUnavailable, err)
	}
	snap := Snapshot{At: timeCmd.Val(), Cap: s.cfg.Cap}
	leased := map[string]bool{}
	ids := make([]string, 0, len(infCmd.Val()))
	for _, z := range infCmd.Val() {
		id, _ := z.Member.(string)
		leased[id] = true
		ids = append(ids, id)
		snap.Inflight = append(snap.Inflight, Lease{ID: id, Expires: time.UnixMilli(int64(z.Score))})
	}
	snap.Backlog = max(metaLen.Val()-int64(len(ids)), 0)
	for lock, holder := range locksCmd.Val() {
		snap.Locks = append(snap.Locks, LockHolder{Lock: lock, Holder: holder, Leased: leased[holder]})
	}
	slices.SortFunc(snap.Locks, func(a, b LockHolder) int { return strings.Compare(a.Lock, b.Lock) })

	// Second round trip: the leases' metadata, and each namespace's
	// backlog.
	ring := ringCmd.Val()
	if len(ids) == 0 && len(ring) == 0 {
		return snap, nil
	}
	pipe := s.rdb.Pipeline()
	var metas *redis.SliceCmd
	if len(ids) > 0 {
		metas = pipe.HMGet(ctx, s.key("meta"), ids...)
	}
	cards := make([]*redis.IntCmd, len(ring))
	heads := make([]*redis.ZSliceCmd, len(ring))
	for i, ns := range ring {
		q := s.cfg.Prefix + "q:" + ns
		cards[i] = pipe.ZCard(ctx, q)
		heads[i] = pipe.ZRangeWithScores(ctx, q, 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return Snapshot{}, fmt.Errorf("scheduler: snapshot: %w: %w", ErrUnavailable, err)
	}
	if metas != nil {
		for i, v := range metas.Val() {
			m, _ := v.(string)
			score, lock, ok := strings.Cut(m, "|")
			if !ok {
				continue
			}
			snap.Inflight[i].Lock = lock
			if ms, err := strconv.ParseInt(score, 10, 64); err == nil {
				snap.Inflight[i].Created = time.UnixMilli(ms)
			}
		}
	}
	for i, ns := range ring {
		nb := NamespaceBacklog{Namespace: ns, Queued: cards[i].Val()}
		if h := heads[i].Val(); len(h) > 0 {
			id, _ := h[0].Member.(string)
			since := time.UnixMilli(int64(h[0].Score))
			nb.Oldest = &Waiting{ID: id, Since: since, Wait: max(snap.At.Sub(since), 0)}
			if snap.Oldest == nil || since.Before(snap.Oldest.Since) {
				w := *nb.Oldest
				snap.Oldest = &w
			}
		}
		snap.Namespaces = append(snap.Namespaces, nb)
	}
	return snap, nil
}
