package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// Event readers leave no consumer behind: nats-server allows 1,000
// consumers per stream, and ordered consumers otherwise linger for 5
// minutes, so a fleet view or a test polling events several times a
// second was refused every read ("maximum consumers limit reached") after
// a few minutes. Here 1,100 reads in a row, some finding nothing, then the
// stream has no consumer.
func TestReadEventsLeavesNoConsumer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := stacktest.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bus.New(js, "events-test")
	c := &messages.Certificate{TypeMeta: messages.TypeMeta{Kind: messages.KindCertificate}, Metadata: messages.ObjectMeta{Namespace: "default", Name: "shop"}}
	for i := range 3 {
		if err := b.Record(ctx, c, messages.EventNormal, "Issuing", "event "+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	some := messages.EventFilter(messages.KindCertificate, "default", "shop")
	none := messages.EventFilter(messages.KindCertificate, "default", "nothing")
	for i := range 1100 {
		filter := some
		if i%2 == 1 {
			filter = none
		}
		evs, err := bus.ReadEvents(ctx, js, bus.EventsOptions{Filter: filter})
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if filter == some && len(evs) != 3 {
			// Core publishes: the stream stores them a moment later.
			if i > 100 {
				t.Fatalf("read %d: %d events, want 3", i, len(evs))
			}
		}
	}
	s, err := js.Stream(ctx, messages.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s after the reads, want 0", info.State.Consumers, messages.EventStream)
	}
}
