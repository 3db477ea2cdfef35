// Package bus is acmeq's use of JetStream streams: it creates the work,
// event and dead-letter streams, publishes transitions with a Nats-Msg-Id
// so replays are deduplicated, records events and keeps dead letters.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/messages"
)

// Defaults of Config.
const (
	// EventMaxAgeDefault is how long events are kept.
	EventMaxAgeDefault = 7 * 24 * time.Hour
	// DuplicateWindowDefault is how long a Nats-Msg-Id deduplicates.
	DuplicateWindowDefault = 10 * time.Minute
	// DeadLetterMaxAgeDefault is how long dead letters are kept.
	DeadLetterMaxAgeDefault = 30 * 24 * time.Hour
)

// ErrReplicasMismatch is returned, wrapped, by EnsureStreams when an
// existing stream has another number of replicas than Config.Replicas.
var ErrReplicasMismatch = errors.New("bus: an existing stream has other replicas than ACMEQ_REPLICAS")

// Config configures the streams.
type Config struct {
	// Replicas of each stream. A stream EnsureStreams creates gets this
	// many; use 3 on a cluster. An existing stream with another count is
	// never changed (one worker started with a wrong value must not scale
	// the fleet's streams down): EnsureStreams fails with an error wrapping
	// ErrReplicasMismatch that names the stream, both counts and the
	// command that changes it. Zero creates streams with 1 replica and
	// accepts any existing count (the CLI). Defaults to 0.
	Replicas int
	// EventMaxAge bounds the event stream. Defaults to EventMaxAgeDefault.
	EventMaxAge time.Duration
	// DuplicateWindow of the work stream. Defaults to DuplicateWindowDefault.
	DuplicateWindow time.Duration
}

func (c *Config) defaults() {
	if c.EventMaxAge <= 0 {
		c.EventMaxAge = EventMaxAgeDefault
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DuplicateWindowDefault
	}
}

// Bus publishes onto acmeq's streams.
type Bus struct {
	js       jetstream.JetStream
	reporter string
	now      func() time.Time
}

// EnsureStreams creates or updates the streams (idempotent: every worker
// calls it on start). Settings other than the replica count are brought
// to acmeq's; see Config.Replicas for replicas.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	cfg.defaults()
	create := max(cfg.Replicas, 1)
	streams := []jetstream.StreamConfig{{
		Name:        messages.WorkStream,
		Description: "acmeq transitions: one subject per resource, consumed by the workers",
		// Only subjects a consumer reads, and the schedule subjects: a
		// publish anywhere else is refused, never stored unread.
		Subjects:   messages.WorkSubjects(),
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: cfg.DuplicateWindow,
		Replicas:   create,
		Storage:    jetstream.FileStorage,
		// Renewals, ARI checks and back-offs are message schedules
		// (ADR-51): one pending schedule per Certificate, durable.
		AllowMsgSchedules: true,
	}, {
		Name:        messages.EventStream,
		Description: "acmeq events (acmeq events -f, acmeq describe)",
		Subjects:    []string{messages.EventSubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.EventMaxAge,
		Replicas:    create,
		Storage:     jetstream.FileStorage,
	}, {
		Name:        messages.DeadLetterStream,
		Description: "acmeq poison messages, kept with their payload",
		Subjects:    []string{messages.DeadLetterSubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      DeadLetterMaxAgeDefault,
		Replicas:    create,
		Storage:     jetstream.FileStorage,
	}}
	for _, sc := range streams {
		if err := ensureStream(ctx, js, sc, cfg.Replicas); err != nil {
			return err
		}
	}
	return nil
}

// ensureStream creates sc, or brings an existing stream to sc keeping its
// replica count, which must be replicas unless replicas is 0.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, replicas int) error {
	// Two rounds: a stream created by another worker between our lookup
	// and our create is looked up again.
	for range 2 {
		cur, err := js.Stream(ctx, sc.Name)
		if err == nil {
			have := cur.CachedInfo().Config
			if err := CheckReplicas(sc.Name, have.Replicas, replicas); err != nil {
				return err
			}
			sc.Replicas = have.Replicas
			// Update only what differs: every worker runs this at start,
			// and concurrent updates of a stream race inside nats-server
			// with the consumers being created (seen with the race
			// detector).
			if streamMatches(have, sc) {
				return nil
			}
			if _, err := js.UpdateStream(ctx, sc); err != nil {
				return fmt.Errorf("bus: update stream %s: %w", sc.Name, err)
			}
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bus: look up stream %s: %w", sc.Name, err)
		}
		// Workers starting together all get here: a create with the
		// same config succeeds for each, without an update.
		_, err = js.CreateStream(ctx, sc)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("bus: create stream %s with %d replicas%s: %w", sc.Name, sc.Replicas, ReplicasHint(sc.Replicas), err)
		}
	}
	return fmt.Errorf("bus: stream %s: created and deleted again while starting", sc.Name)
}

// ReplicasError reports an existing stream (a KV bucket is the stream
// KV_<bucket>) whose replica count is not the one configured. It matches
// ErrReplicasMismatch with errors.Is.
type ReplicasError struct {
	// Stream is the stream's name, e.g. ACMEQ_WORK or KV_ACMEQ_ORDERS.
	Stream string
	// Existing is the stream's replica count; Wanted the configured one.
	Existing, Wanted int
}

// Error names the stream, both counts and the two ways out.
func (e *ReplicasError) Error() string {
	return fmt.Sprintf("bus: stream %s has %d replicas, ACMEQ_REPLICAS asks for %d; acmeq never changes the replicas of an existing stream: "+
		"set ACMEQ_REPLICAS=%d, or change the stream with `nats stream edit %s --replicas %d`",
		e.Stream, e.Existing, e.Wanted, e.Existing, e.Stream, e.Wanted)
}

// Is makes errors.Is(err, ErrReplicasMismatch) true.
func (e *ReplicasError) Is(target error) bool { return target == ErrReplicasMismatch }

// CheckReplicas returns nil if want is 0 (accept any count) or equals
// have, and a *ReplicasError otherwise. store and http01 use it for their
// buckets.
func CheckReplicas(stream string, have, want int) error {
	if want == 0 || have == want {
		return nil
	}
	return &ReplicasError{Stream: stream, Existing: have, Wanted: want}
}

// ReplicasHint explains a failure to create a stream or bucket with n
// replicas: the cluster has fewer JetStream servers than that, or none.
// It is empty for n of 1.
func ReplicasHint(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (ACMEQ_REPLICAS=%d needs a JetStream cluster of at least %d servers)", n, n)
}

// streamMatches reports whether cur already has the settings acmeq sets.
// A duplicate window acmeq leaves unset is the server's default (2 min),
// not a difference.
func streamMatches(cur, want jetstream.StreamConfig) bool {
	return slices.Equal(cur.Subjects, want.Subjects) && cur.Retention == want.Retention &&
		cur.MaxAge == want.MaxAge && (want.Duplicates == 0 || cur.Duplicates == want.Duplicates) && cur.Replicas == want.Replicas &&
		cur.AllowMsgSchedules == want.AllowMsgSchedules
}

// New returns a Bus; reporter names this process in events.
func New(js jetstream.JetStream, reporter string) *Bus {
	return &Bus{js: js, reporter: reporter, now: time.Now}
}

// JetStream returns the underlying context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Publish sends a transition. generation distinguishes causes that share an
// action (e.g. the resourceVersion that prompted it); the same (transition,
// generation) published twice within the duplicate window is stored once.
func (b *Bus) Publish(ctx context.Context, t messages.Transition, generation string) error {
	t.Version = messages.MessageVersion
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("bus: encode transition for %s %s/%s: %w", t.Kind, t.Namespace, t.Name, err)
	}
	if _, err := b.js.Publish(ctx, t.Subject(), data, jetstream.WithMsgID(t.MsgID(generation))); err != nil {
		return fmt.Errorf("bus: publish %s for %s %s/%s: %w", t.Action, t.Kind, t.Namespace, t.Name, err)
	}
	return nil
}

// Record publishes an event about obj. Events are best-effort for the
// caller's control flow but their errors are returned so callers can log.
func (b *Bus) Record(ctx context.Context, obj messages.Object, typ messages.EventType, reason, message string) error {
	m := obj.GetMeta()
	now := b.now().UTC()
	ev := messages.Event{
		Type:           typ,
		Reason:         reason,
		Message:        message,
		InvolvedObject: messages.ObjectReference{Kind: obj.GetKind(), Namespace: m.Namespace, Name: m.Name},
		Source:         messages.EventSource,
		Reporter:       b.reporter,
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("bus: encode event: %w", err)
	}
	// Core publish: events need no ack round trip on the hot path; the
	// stream captures them all the same.
	if err := b.conn().Publish(messages.EventSubject(obj.GetKind(), m.Namespace, m.Name), data); err != nil {
		return fmt.Errorf("bus: record event %s for %s %s/%s: %w", reason, obj.GetKind(), m.Namespace, m.Name, err)
	}
	return nil
}

func (b *Bus) conn() *nats.Conn { return b.js.Conn() }

// Dead-letter headers: what a poison message was, why it was refused, and
// whether its payload was cut to fit.
const (
	HeaderOriginalSubject = "Acmeq-Original-Subject"
	HeaderReason          = "Acmeq-Reason"
	HeaderReporter        = "Acmeq-Reporter"
	// HeaderOriginalSize is the payload's size in bytes before it was
	// truncated; set only on truncated dead letters.
	HeaderOriginalSize = "Acmeq-Original-Size"
	// HeaderTruncated is "true" on a dead letter whose payload was cut to
	// fit the server's max_payload.
	HeaderTruncated = "Acmeq-Truncated"
)

// maxHeaderValue bounds a header value we copy from a message (a subject or
// a reason can be long and carry anything).
const maxHeaderValue = 1024

// DeadLetter keeps a poison message with its payload, subject and reason.
// A payload too large to fit the server's max_payload with the headers is
// stored truncated, with its original size in Acmeq-Original-Size: a dead
// letter is always stored, never refused for its size.
func (b *Bus) DeadLetter(ctx context.Context, kind messages.Kind, subject string, payload []byte, reason string) error {
	msg := &nats.Msg{
		Subject: messages.DeadLetterSubject(kind),
		Data:    payload,
		Header:  nats.Header{},
	}
	msg.Header.Set(HeaderOriginalSubject, truncateHeader(subject))
	msg.Header.Set(HeaderReason, truncateHeader(reason))
	msg.Header.Set(HeaderReporter, truncateHeader(b.reporter))
	limit := int(b.conn().MaxPayload())
	if limit <= 0 {
		limit = 1 << 20
	}
	// Headers, the subject and the two headers added below, with room to
	// spare: what is left is for the payload.
	room := limit - headerSize(msg.Header) - len(msg.Subject) - 256
	if len(payload) > room {
		msg.Header.Set(HeaderOriginalSize, strconv.Itoa(len(payload)))
		msg.Header.Set(HeaderTruncated, "true")
		msg.Data = payload[:max(room, 0)]
	}
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("bus: dead letter for %s: %w", truncateHeader(subject), err)
	}
	return nil
}

func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// truncateHeader keeps a header value printable on one line and bounded.
func truncateHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxHeaderValue {
		s = s[:maxHeaderValue] + "..."
	}
	return s
}

// Schedule asks the server to publish t at (or as soon after) at, as a
// JetStream message schedule on the resource's schedule subject. There is
// one pending schedule per resource: a new one replaces the previous. A
// time in the past fires at once.
func (b *Bus) Schedule(ctx context.Context, t messages.Transition, at time.Time) error {
	t.Version = messages.MessageVersion
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("bus: encode transition for %s %s/%s: %w", t.Kind, t.Namespace, t.Name, err)
	}
	subject := messages.ScheduleSubject(t.Kind, t.Namespace, t.Name)
	if _, err := b.js.Publish(ctx, subject, data, jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(t.Subject())); err != nil {
		return fmt.Errorf("bus: schedule %s for %s %s/%s at %s: %w", t.Action, t.Kind, t.Namespace, t.Name, at.UTC().Format(time.RFC3339), err)
	}
	return nil
}
