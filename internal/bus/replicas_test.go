package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// An existing stream with other replicas is reported with its name and
// both counts, and left as it is; zero accepts it.
func TestEnsureStreamsReplicasMismatch(t *testing.T) {
	js := stacktest.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Errorf("Replicas 0 on R1 streams: %v", err)
	}
	err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 3})
	if !errors.Is(err, bus.ErrReplicasMismatch) {
		t.Fatalf("Replicas 3 on R1 streams: %v, want ErrReplicasMismatch", err)
	}
	var re *bus.ReplicasError
	if !errors.As(err, &re) || re.Stream != messages.WorkStream || re.Existing != 1 || re.Wanted != 3 {
		t.Errorf("error %#v, want stream %s, existing 1, wanted 3", re, messages.WorkStream)
	}
	for _, want := range []string{messages.WorkStream, "ACMEQ_REPLICAS", "nats stream edit ACMEQ_WORK --replicas 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	s, err := js.Stream(ctx, messages.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 1 {
		t.Errorf("stream replicas changed to %d", r)
	}
}

// Three replicas on a server that is not clustered is a prompt error that
// names ACMEQ_REPLICAS, not a hang.
func TestEnsureStreamsReplicasUnplaceable(t *testing.T) {
	js := stacktest.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 3})
	if err == nil {
		t.Fatal("R3 streams on a single server: no error")
	}
	if ctx.Err() != nil {
		t.Fatalf("EnsureStreams ran into the test's deadline: %v", err)
	}
	for _, want := range []string{"ACMEQ_REPLICAS=3", messages.WorkStream} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// A second EnsureStreams sends no update: workers starting together must
// not update streams (nats-server races them with consumer creation), and
// a producer allowed only to read the configuration must get through.
func TestEnsureStreamsSecondCallUpdatesNothing(t *testing.T) {
	js := stacktest.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	// JetStream API requests are plain messages: a subscriber sees them.
	updates, err := js.Conn().SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []bus.Config{{Replicas: 1}, {}} {
		if err := bus.EnsureStreams(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := updates.Pending(); n != 0 {
		msg, _ := updates.NextMsg(time.Second)
		t.Errorf("%d stream updates, want none (first: %s %s)", n, msg.Subject, msg.Data)
	}
}
