package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MessageVersion is the version of Transition messages. A worker refuses
// other versions as poison (event + dead letter) instead of guessing.
const MessageVersion = 1

// Transition asks a worker to reconcile one resource. Reconcilers are level
// based: the message names the resource and why it was sent; the handler
// reads the resource and does whatever its status calls for, so a message
// delivered twice does no side effect twice.
type Transition struct {
	// Version is MessageVersion.
	Version int `json:"v"`
	// Kind, Namespace and Name identify the resource. Namespace is empty
	// for a ClusterIssuer (and only for it).
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Action says why the message was sent (see the Action constants); it
	// is informational and used in Nats-Msg-Id so distinct causes are not
	// deduplicated away.
	Action Action `json:"action"`
	// Cause is an optional detail, e.g. the challenge whose completion woke
	// an order.
	Cause string `json:"cause,omitempty"`
}

// Action is why a Transition was sent.
type Action string

// Actions.
const (
	ActionApply     Action = "apply"     // a user created or changed the resource
	ActionCreated   Action = "created"   // a worker created the resource
	ActionScheduled Action = "scheduled" // the scheduler granted a challenge a slot
	ActionChild     Action = "child"     // a resource this one waits for changed
	ActionResync    Action = "resync"    // the periodic resync found it unfinished
	ActionRetry     Action = "retry"     // a user asked for a retry (delete order)
	ActionRenew     Action = "renew"     // a user asked for a renewal (acmeq renew)
	ActionTimer     Action = "timer"     // a scheduled wake-up fired (renewal, ARI check, back-off, expiry)
	ActionRevoke    Action = "revoke"    // a user asked to revoke the current certificate; Cause is "<serial>/<reason>"
	ActionDelete    Action = "delete"    // a user deleted the resource (metadata.deletionTimestamp): remove what belongs to it
)

// ErrMalformed marks a message that can never be processed.
var ErrMalformed = errors.New("messages: malformed message")

// Subject is where the transition is published.
func (t Transition) Subject() string { return WorkSubject(t.Kind, t.Namespace, t.Name) }

// MsgID is the Nats-Msg-Id that deduplicates replays of the same cause.
func (t Transition) MsgID(generation string) string {
	id := t.Kind.Token() + "/" + t.Namespace + "/" + t.Name + "/" + string(t.Action)
	if t.Cause != "" {
		id += "/" + t.Cause
	}
	if generation != "" {
		id += "/" + generation
	}
	return id
}

// DecodeTransition parses and checks a transition; errors wrap ErrMalformed.
func DecodeTransition(data []byte) (Transition, error) {
	var t Transition
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if t.Version != MessageVersion {
		return t, fmt.Errorf("%w: unsupported version v=%d (this worker speaks v=%d)", ErrMalformed, t.Version, MessageVersion)
	}
	if _, ok := New(t.Kind); !ok || t.Kind == KindSecret {
		return t, fmt.Errorf("%w: unknown kind %q", ErrMalformed, t.Kind)
	}
	if IsClusterScoped(t.Kind) {
		if t.Namespace != "" {
			return t, fmt.Errorf("%w: namespace %q: a %s has no namespace", ErrMalformed, truncateValue(t.Namespace), t.Kind)
		}
	} else if err := ValidateObjectName("namespace", t.Namespace); err != nil {
		return t, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := ValidateObjectName("name", t.Name); err != nil {
		return t, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !slices.Contains(Actions, t.Action) {
		return t, fmt.Errorf("%w: unknown action %q", ErrMalformed, truncateValue(string(t.Action)))
	}
	if len(t.Cause) > MaxCauseLength || strings.ContainsFunc(t.Cause, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return t, fmt.Errorf("%w: cause %q: at most %d printable characters", ErrMalformed, truncateValue(t.Cause), MaxCauseLength)
	}
	return t, nil
}

// Actions lists every Action a worker accepts.
var Actions = []Action{ActionApply, ActionCreated, ActionScheduled, ActionChild, ActionResync, ActionRetry, ActionRenew, ActionTimer, ActionRevoke, ActionDelete}

// MaxCauseLength bounds a transition's cause (a resource name, or a serial
// and a reason).
const MaxCauseLength = 512

func truncateValue(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
