package scheduler

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// dumpKeys returns every key under prefix with its serialized value, to
// show that a read changed nothing.
func dumpKeys(t *testing.T, ctx context.Context, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

func TestSnapshot(t *testing.T) {
	rdb, _ := setup(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 2})

	empty, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Backlog != 0 || len(empty.Inflight) != 0 || len(empty.Namespaces) != 0 || empty.Oldest != nil || empty.Cap != 2 {
		t.Fatalf("empty snapshot: %+v", empty)
	}
	if empty.At.IsZero() {
		t.Fatal("snapshot has no Redis time")
	}

	// Four challenges in "a" (two share a lock), two in "b"; the oldest
	// of all is a/1.
	base := time.Now().Add(-time.Hour).UnixMilli()
	items := []Item{
		{ID: "a/1", Lock: LockKey("HTTP-01", "x.test"), Score: base},
		{ID: "a/2", Lock: LockKey("HTTP-01", "x.test"), Score: base + 10},
		{ID: "a/3", Lock: LockKey("HTTP-01", "y.test"), Score: base + 20},
		{ID: "a/4", Lock: LockKey("DNS-01", "y.test"), Score: base + 30},
		{ID: "b/1", Lock: LockKey("HTTP-01", "z.test"), Score: base + 5},
		{ID: "b/2", Lock: LockKey("HTTP-01", "w.test"), Score: base + 15},
	}
	if _, err := s.Enqueue(ctx, items...); err != nil {
		t.Fatal(err)
	}
	grants, err := s.Grant(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 2 {
		t.Fatalf("granted %d, want the cap (2)", len(grants))
	}
	before := dumpKeys(t, ctx, rdb, s.cfg.Prefix)
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after := dumpKeys(t, ctx, rdb, s.cfg.Prefix); len(after) != len(before) {
		t.Fatalf("snapshot changed the keys: %d before, %d after", len(before), len(after))
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("snapshot changed %s", k)
			}
		}
	}

	if snap.Backlog != 4 {
		t.Errorf("Backlog = %d, want 4", snap.Backlog)
	}
	if len(snap.Inflight) != 2 {
		t.Fatalf("Inflight = %+v, want 2 leases", snap.Inflight)
	}
	granted := map[string]bool{}
	for _, g := range grants {
		granted[g.ID] = true
	}
	lockOf := map[string]string{}
	for _, it := range items {
		lockOf[it.ID] = it.Lock
	}
	for _, l := range snap.Inflight {
		if !granted[l.ID] {
			t.Errorf("lease %s was not granted (grants %v)", l.ID, grants)
		}
		if l.Lock != lockOf[l.ID] {
			t.Errorf("lease %s: lock %q, want %q", l.ID, l.Lock, lockOf[l.ID])
		}
		if l.Created.IsZero() || l.Created.UnixMilli() < base {
			t.Errorf("lease %s: created %v", l.ID, l.Created)
		}
		if !l.Expires.After(snap.At) || l.Expires.After(snap.At.Add(LeaseTTLDefault+time.Second)) {
			t.Errorf("lease %s expires %v, snapshot at %v", l.ID, l.Expires, snap.At)
		}
	}
	if len(snap.Locks) != 2 {
		t.Fatalf("Locks = %+v, want the 2 leased", snap.Locks)
	}
	for _, lh := range snap.Locks {
		if !granted[lh.Holder] || !lh.Leased || lockOf[lh.Holder] != lh.Lock {
			t.Errorf("lock %+v", lh)
		}
	}
	if !slices.IsSortedFunc(snap.Locks, func(a, b LockHolder) int { return strings.Compare(a.Lock, b.Lock) }) {
		t.Errorf("locks not sorted: %+v", snap.Locks)
	}

	var queued int64
	byNS := map[string]NamespaceBacklog{}
	for _, nb := range snap.Namespaces {
		queued += nb.Queued
		byNS[nb.Namespace] = nb
	}
	if queued != snap.Backlog {
		t.Errorf("namespaces hold %d, backlog %d", queued, snap.Backlog)
	}
	// Each namespace's oldest queued challenge is the oldest not granted.
	for _, ns := range []string{"a", "b"} {
		var want *Item
		for i := range items {
			it := &items[i]
			if it.Namespace() == ns && !granted[it.ID] && (want == nil || it.Score < want.Score) {
				want = it
			}
		}
		nb, ok := byNS[ns]
		switch {
		case want == nil && ok && nb.Oldest != nil:
			t.Errorf("namespace %s: oldest %+v, want none", ns, nb.Oldest)
		case want != nil && (!ok || nb.Oldest == nil || nb.Oldest.ID != want.ID || nb.Oldest.Since.UnixMilli() != want.Score):
			t.Errorf("namespace %s: %+v, oldest want %s", ns, nb, want.ID)
		}
	}
	if snap.Oldest == nil {
		t.Fatal("no oldest waiting challenge")
	}
	for _, it := range items {
		if !granted[it.ID] && it.Score < snap.Oldest.Since.UnixMilli() {
			t.Errorf("oldest is %s, but %s is older", snap.Oldest.ID, it.ID)
		}
	}
	if snap.Oldest.Wait < 59*time.Minute {
		t.Errorf("oldest waited %s, want about an hour", snap.Oldest.Wait)
	}

	// Releasing everything empties the view.
	for _, it := range items {
		if _, err := s.Release(ctx, it.ID); err != nil {
			t.Fatal(err)
		}
	}
	snap, err = s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Backlog != 0 || len(snap.Inflight) != 0 || len(snap.Locks) != 0 || snap.Oldest != nil {
		t.Fatalf("after releasing all: %+v", snap)
	}
}

// TestSnapshotUnavailable: a Redis that is gone is ErrUnavailable.
func TestSnapshotUnavailable(t *testing.T) {
	rdb, srv := setup(t)
	s := newSched(t, rdb, Config{})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Snapshot(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Snapshot with Redis stopped: %v, want ErrUnavailable", err)
	}
}
