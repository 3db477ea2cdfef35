package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/messages"
)

// EventsOptions selects events to read.
type EventsOptions struct {
	// Filter is a subject filter, e.g. messages.EventFilter(kind, ns, name).
	// Defaults to all events.
	Filter string
	// Since reads events recorded after this time; zero reads all kept.
	Since time.Time
}

// ReadEvents returns the events stored so far that match o, oldest first,
// using an ordered consumer that is deleted when it returns.
func ReadEvents(ctx context.Context, js jetstream.JetStream, o EventsOptions) ([]messages.Event, error) {
	var out []messages.Event
	err := FollowEvents(ctx, js, o, false, func(e messages.Event) { out = append(out, e) })
	return out, err
}

// FollowEvents calls fn for each event matching o, oldest first. If follow
// is false it returns once it has caught up; otherwise it goes on until ctx
// ends (then it returns nil).
func FollowEvents(ctx context.Context, js jetstream.JetStream, o EventsOptions, follow bool, fn func(messages.Event)) error {
	filter := o.Filter
	if filter == "" {
		filter = messages.EventSubjectPrefix + ".>"
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !o.Since.IsZero() {
		t := o.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	cons, done, err := OrderedEventConsumer(ctx, js, cfg)
	if err != nil {
		return fmt.Errorf("bus: read events %s: %w", filter, err)
	}
	defer done()
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("bus: read events %s: %w", filter, err)
	}
	pending := info.NumPending
	if !follow && pending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("bus: read events %s: %w", filter, err)
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	var seen uint64
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bus: read events %s: %w", filter, err)
		}
		var ev messages.Event
		if json.Unmarshal(msg.Data(), &ev) == nil {
			fn(ev)
		}
		seen++
		if !follow {
			md, err := msg.Metadata()
			if err != nil || md.NumPending == 0 || seen >= pending {
				return nil
			}
		}
	}
}

// EventReaderInactiveThreshold is how long the server keeps an event
// reader's consumer that nobody reads any more (a reader that died before
// deleting it). nats.go's default for ordered consumers is 5 minutes, and
// nats-server allows 1,000 consumers per stream: a fleet view or a script
// reading events a few times a second would reach that limit, and every
// event read would be refused ("maximum consumers limit reached").
const EventReaderInactiveThreshold = 10 * time.Second

// OrderedEventConsumer creates an ordered consumer on the event stream for
// one reader, and returns the function that deletes it when the reader is
// done (best effort: one left behind goes after
// EventReaderInactiveThreshold).
func OrderedEventConsumer(ctx context.Context, js jetstream.JetStream, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, func(), error) {
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = EventReaderInactiveThreshold
	}
	cons, err := js.OrderedConsumer(ctx, messages.EventStream, cfg)
	if err != nil {
		return nil, nil, err
	}
	done := func() {
		info := cons.CachedInfo()
		if info == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, messages.EventStream, info.Name)
	}
	return cons, done, nil
}
