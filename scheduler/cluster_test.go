package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/internal/stack"
)

// setupCluster starts a private 3-shard Redis Cluster for the test and
// returns a cluster client on it. A missing redis-server or redis-cli
// fails the test (with an install hint): it never skips.
func setupCluster(t *testing.T) (*redis.ClusterClient, *stack.RedisCluster) {
	t.Helper()
	c, err := stack.StartRedisCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatalf("start redis cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop redis cluster: %v", err)
		}
	})
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, c
}

// TestCluster runs every scheduler script through a Redis Cluster client
// with the default prefix. The scripts declare six keys and compute the
// backlog keys ({acmeq}:q:<namespace>) inside Lua; Redis Cluster allows
// that only because every key carries the hash tag {acmeq}, so all of them
// live in one slot of one node. The control cases show what happens
// without the tag.
func TestCluster(t *testing.T) {
	rdb, cluster := setupCluster(t)
	ctx := testCtx(t)
	s := newSched(t, rdb, Config{Cap: 4, Prefix: PrefixDefault, LeaseTTL: time.Second})

	// Cap and oldest first, across namespaces taking turns: two namespaces
	// enqueued out of order in one call; a third namespace arrives later.
	var items []Item
	for _, i := range []int{5, 2, 7, 0, 3, 6, 1, 4} {
		ns := []string{"team-a", "team-b"}[i%2]
		items = append(items, item(ns, fmt.Sprintf("c%d", i), "HTTP-01", fmt.Sprintf("h%d.example.com", i), int64(100+i)))
	}
	if n := mustEnqueue(t, ctx, s, items...); n != 8 {
		t.Fatalf("Enqueue added %d, want 8", n)
	}
	if n := mustEnqueue(t, ctx, s, items...); n != 0 {
		t.Fatalf("second Enqueue added %d, want 0", n)
	}
	wantCounts(t, ctx, s, 8, 0)
	gs := mustGrant(t, ctx, s, 0)
	// Turns: team-a, team-b, team-a, team-b; within each, oldest first.
	if got, want := ids(gs), []string{"team-a/c0", "team-b/c1", "team-a/c2", "team-b/c3"}; !slices.Equal(got, want) {
		t.Fatalf("Grant with cap 4 = %v, want %v", got, want)
	}
	wantCounts(t, ctx, s, 4, 4)
	if g := mustGrant(t, ctx, s, 0); len(g) != 0 {
		t.Fatalf("Grant at cap = %v, want none", ids(g))
	}
	for _, id := range []string{"team-a/c0", "team-b/c7"} {
		if st, want := mustLookup(t, ctx, s, id), map[bool]State{true: StateInflight, false: StateQueued}[id == "team-a/c0"]; st != want {
			t.Fatalf("Lookup(%s) = %q, want %q", id, st, want)
		}
	}
	if st := mustLookup(t, ctx, s, "team-c/none"); st != StateUnknown {
		t.Fatalf("Lookup(unknown) = %q", st)
	}

	// Lock exclusion: a newcomer namespace whose turn comes first waits
	// while its challenge's (type, name) is being processed elsewhere.
	late := item("team-c", "same-name", "http-01", "H0.example.com", 1)
	mustEnqueue(t, ctx, s, late)
	for _, id := range []string{"team-b/c1", "team-b/c3"} {
		if !mustRelease(t, ctx, s, id) {
			t.Fatalf("Release(%s) = false", id)
		}
	}
	gs = mustGrant(t, ctx, s, 0)
	if got, want := ids(gs), []string{"team-a/c4", "team-b/c5"}; !slices.Equal(got, want) {
		t.Fatalf("Grant = %v, want %v", got, want)
	}
	// team-c is now the least recently served, but team-a/c0 holds its lock.
	mustRelease(t, ctx, s, "team-a/c2")
	gs = mustGrant(t, ctx, s, 0)
	if got, want := ids(gs), []string{"team-a/c6"}; !slices.Equal(got, want) {
		t.Fatalf("Grant with team-a/c0's lock held = %v, want %v", got, want)
	}
	if st := mustLookup(t, ctx, s, late.ID); st != StateQueued {
		t.Fatalf("Lookup(%s) = %q, want queued", late.ID, st)
	}
	mustRelease(t, ctx, s, "team-a/c0")
	gs = mustGrant(t, ctx, s, 0)
	if got, want := ids(gs), []string{late.ID}; !slices.Equal(got, want) {
		t.Fatalf("Grant once the lock is free = %v, want %v", got, want)
	}
	wantCounts(t, ctx, s, 1, 4)

	// Renew keeps a lease; without renewal the reaper frees it and puts
	// the challenge back at its old place.
	if err := s.Renew(ctx, late.ID); err != nil {
		t.Fatalf("Renew(held): %v", err)
	}
	if err := s.Renew(ctx, "team-b/c7"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew(queued) = %v, want ErrNotHeld", err)
	}
	var reaped []string
	eventually(t, 10*time.Second, func() bool {
		r, err := s.Reap(ctx, 0)
		if err != nil {
			t.Fatalf("reap: %v", err)
		}
		reaped = append(reaped, r...)
		return len(reaped) == 4
	})
	slices.Sort(reaped)
	if want := []string{"team-a/c4", "team-a/c6", "team-b/c5", late.ID}; !slices.Equal(reaped, want) {
		t.Fatalf("reaped %v, want %v", reaped, want)
	}
	wantCounts(t, ctx, s, 5, 0)

	// Drain: every challenge once, oldest first within its namespace.
	order := map[string][]string{}
	for range 20 {
		gs := mustGrant(t, ctx, s, 1)
		if len(gs) == 0 {
			break
		}
		ns, _, _ := strings.Cut(gs[0].ID, "/")
		order[ns] = append(order[ns], gs[0].ID)
		mustRelease(t, ctx, s, gs[0].ID)
	}
	want := map[string][]string{
		"team-a": {"team-a/c4", "team-a/c6"},
		"team-b": {"team-b/c5", "team-b/c7"},
		"team-c": {late.ID},
	}
	for ns, w := range want {
		if !slices.Equal(order[ns], w) {
			t.Errorf("drain order of %s = %v, want %v", ns, order[ns], w)
		}
	}
	wantCounts(t, ctx, s, 0, 0)
	if got := s.Stats.Reaped.Load(); got != 4 {
		t.Errorf("Stats.Reaped = %d, want 4", got)
	}

	// All the scheduler's keys are in one slot, on one master.
	slot, err := rdb.ClusterKeySlot(ctx, PrefixDefault+"q:team-a").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(s.keys(), PrefixDefault+"q:team-b", PrefixDefault+"q:some-other-namespace") {
		if ks, err := rdb.ClusterKeySlot(ctx, k).Result(); err != nil || ks != slot {
			t.Errorf("slot of %s = %d, %v; want %d", k, ks, err, slot)
		}
	}
	holders := 0
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.DBSize(ctx).Result()
		if n > 0 {
			holders++
		}
		return err
	})
	if err != nil || holders != 1 {
		t.Errorf("%d masters hold scheduler keys (%v), want exactly 1", holders, err)
	}
	if len(cluster.Addrs) != 3 {
		t.Errorf("cluster of %d nodes", len(cluster.Addrs))
	}

	// Controls. Without a hash tag the declared keys span slots: refused.
	untagged, err := New(rdb, Config{Prefix: "acmeq-untagged:"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = untagged.Enqueue(ctx, item("ns", "x", "HTTP-01", "x.example.com", 1))
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("Enqueue with an untagged prefix = %v, want a CROSSSLOT error", err)
	}
	t.Logf("control, untagged prefix: %v", err)
	// A key computed inside Lua that hashes to a slot of another node is
	// refused too: this is what the {acmeq} tag of the backlog keys
	// avoids.
	home, err := rdb.MasterForKey(ctx, PrefixDefault+"rr")
	if err != nil {
		t.Fatal(err)
	}
	qprefix := ""
	for i := 0; qprefix == "" && i < 100; i++ {
		p := fmt.Sprintf("acmeq-untagged-%d:q:", i)
		other, err := rdb.MasterForKey(ctx, p+"ns")
		if err != nil {
			t.Fatal(err)
		}
		if other.Options().Addr != home.Options().Addr {
			qprefix = p
		}
	}
	err = enqueueScript.Run(ctx, rdb, s.keys(), "0", qprefix, "ns/x", "HTTP-01|x.example.com", 1).Err()
	if err == nil || !strings.Contains(err.Error(), "non local key") {
		t.Errorf("enqueue script with backlog key %sns on another node = %v, want a non local key error", qprefix, err)
	}
	t.Logf("control, untagged backlog key computed in Lua: %v", err)
}
