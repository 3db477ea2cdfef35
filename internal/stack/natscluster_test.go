package stack

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A 3-node cluster places an R3 stream on every node; killing the stream
// leader's node elects another leader that keeps every message and takes
// new ones; the restarted node catches up and reports healthy again.
func TestNATSCluster(t *testing.T) {
	c, err := StartNATSCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatalf("start nats cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", c.Output())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	nc, err := nats.Connect(c.URLs(0), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	if err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Name != natsClusterName || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info = %+v, want leader and 2 replicas in cluster %q", info.Cluster, natsClusterName)
	}
	for i := range 50 {
		if _, err := js.Publish(ctx, fmt.Sprintf("r3.%d", i), []byte("x")); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}

	leader := c.Node(info.Cluster.Leader)
	if leader == nil {
		t.Fatalf("leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if leader.Running() {
		t.Fatal("killed node still running")
	}
	// A new leader on another node takes publishes; the first attempts
	// may fail while the election runs.
	var newLeader string
	for i := 50; i < 100; i++ {
		var perr error
		for attempt := 0; attempt < 100; attempt++ {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, perr = js.Publish(pctx, fmt.Sprintf("r3.%d", i), []byte("x"), jetstream.WithMsgID(fmt.Sprint(i)))
			pcancel()
			if perr == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if perr != nil {
			t.Fatalf("publish %d after the leader was killed: %v", i, perr)
		}
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newLeader = info.Cluster.Leader
	if newLeader == "" || newLeader == leader.Name {
		t.Fatalf("leader after killing %s = %q", leader.Name, newLeader)
	}
	if info.State.Msgs != 100 {
		t.Errorf("stream holds %d messages, want 100", info.State.Msgs)
	}

	if err := leader.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := leader.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The restarted node is a current replica again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err = s.Info(ctx)
		if err == nil && allCurrent(info, 2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not current 30s after the restart: %+v, %v", info.Cluster, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allCurrent(info *jetstream.StreamInfo, want int) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != want {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

func TestNATSClusterNeedsThreeNodes(t *testing.T) {
	_, err := StartNATSCluster(t.TempDir(), 1)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("StartNATSCluster(1) = %v, want an error", err)
	}
}
