package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// backoff for the n-th consecutive failure (from 1): 200ms, 400ms, ...
// capped at 30s.
func backoff(n uint64) time.Duration {
	return doubling(200*time.Millisecond, 30*time.Second, n)
}

// doubling returns first, doubled n-1 times, capped at limit.
func doubling(first, limit time.Duration, n uint64) time.Duration {
	d := first
	for i := uint64(1); i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
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
