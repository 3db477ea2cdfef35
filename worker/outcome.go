package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
)

// outcomeKind says what a handler wants done with its message.
type outcomeKind int

const (
	outcomeDone   outcomeKind = iota // Ack
	outcomeRetry                     // NakWithDelay(delay)
	outcomePoison                    // Term + Warning event + dead letter
)

// Outcome is a handler's verdict on its message; report maps it to the
// queue in one place.
type Outcome struct {
	kind   outcomeKind
	delay  time.Duration
	reason string
}

// Done acknowledges the message.
func Done() Outcome { return Outcome{kind: outcomeDone} }

// RetryAfter redelivers the message after d: a wait is a delayed message,
// never a sleeping goroutine.
func RetryAfter(d time.Duration) Outcome { return Outcome{kind: outcomeRetry, delay: d} }

// Poison terminates the message; it is kept as a dead letter.
func Poison(reason string) Outcome { return Outcome{kind: outcomePoison, reason: reason} }

// backoff for transient errors, by delivery count: 200ms, 400ms, ... 30s.
func backoff(delivered uint64) time.Duration {
	d := 200 * time.Millisecond
	for i := uint64(1); i < delivered && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// errorOutcome maps a handler error to an outcome: a lost CAS race is
// retried at once; anything else with backoff.
func errorOutcome(err error, delivered uint64) Outcome {
	if errors.Is(err, store.ErrConflict) {
		return RetryAfter(0)
	}
	return RetryAfter(backoff(delivered))
}

// isShutdown reports an error caused by our own shutdown: the message goes
// back at once and does not count as a failure.
func isShutdown(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || err == nil)
}

func nak(msg jetstream.Msg, d time.Duration) error {
	if d <= 0 {
		return msg.Nak()
	}
	return msg.NakWithDelay(d)
}
