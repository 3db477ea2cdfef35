package stack

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A paused server answers nothing but keeps its data and its port; resumed,
// it answers again with the same data, and the clients connected before the
// pause carry on.
func TestRedisPauseResume(t *testing.T) {
	r, err := StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.Resume()
		_ = r.Kill()
	})
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}

	if err := r.Pause(); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if err := r.Pause(); err != nil { // twice is harmless
		t.Fatalf("pause again: %v", err)
	}
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("get from a paused server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("get from a paused server took %s, want the client's timeout", d)
	}
	// A new connection is accepted by the kernel but gets no answer either.
	c2 := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c2.Close() })
	if err := c2.Ping(ctx).Err(); err == nil {
		t.Fatal("ping of a paused server succeeded")
	}

	if err := r.Resume(); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := r.Resume(); err != nil { // a running server: no-op
		t.Fatalf("resume again: %v", err)
	}
	// The data survived, and the old client reconnects (its connection
	// was dropped from the pool when the read timed out).
	var got string
	for i := 0; ; i++ {
		if got, err = c.Get(ctx, "k").Result(); err == nil || i == 10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || got != "v" {
		t.Fatalf("get after resume = %q, %v; want v", got, err)
	}
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("new client ping after resume: %v", err)
	}

	// Kill works on a paused server, and Pause/Resume of a dead one are
	// no-ops.
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Kill() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kill a paused server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kill of a paused server did not return")
	}
	if err := r.Pause(); err != nil {
		t.Fatalf("pause after kill: %v", err)
	}
	if err := r.Resume(); err != nil {
		t.Fatalf("resume after kill: %v", err)
	}
}
