package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// Outcome is where a Certificate ended up.
type Outcome struct {
	Namespace, Name string
	// Ready is true once issued; false with Reason set when it failed.
	Ready  bool
	Reason string
	Names  []string
}

// WaitCertificates follows the Certificates named by keys (namespace,
// name) with a KV watch, no polling, until each is Ready or has failed, or
// ctx ends. progress, if set, is called after each one finishes with the
// count so far. It returns what it saw; on ctx's end the error says how
// many were still pending.
func WaitCertificates(ctx context.Context, st *store.Store, keys [][2]string, progress func(done, total int, o Outcome)) (map[[2]string]Outcome, error) {
	want := make(map[[2]string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := make(map[[2]string]Outcome, len(keys))
	if len(want) == 0 {
		return out, nil
	}
	w, err := st.KV(messages.KindCertificate).WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("producer: watch certificates: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("producer: %d of %d certificates still pending: %w", len(want)-len(out), len(want), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return out, errors.New("producer: certificate watch closed")
			}
			if e == nil {
				continue
			}
			c := &messages.Certificate{}
			if err := json.Unmarshal(e.Value(), c); err != nil {
				continue
			}
			k := [2]string{c.Metadata.Namespace, c.Metadata.Name}
			if !want[k] {
				continue
			}
			o, done := certificateOutcome(c)
			if !done {
				continue
			}
			_, seen := out[k]
			out[k] = o
			if !seen && progress != nil {
				progress(len(out), len(want), o)
			}
			if len(out) == len(want) {
				return out, nil
			}
		}
	}
}

func certificateOutcome(c *messages.Certificate) (Outcome, bool) {
	o := Outcome{Namespace: c.Metadata.Namespace, Name: c.Metadata.Name, Names: c.Spec.DNSNames}
	cond := messages.GetCondition(c.Status.Conditions, messages.ConditionReady)
	switch {
	case cond != nil && cond.Status == messages.ConditionTrue:
		o.Ready = true
		return o, true
	case c.Status.LastFailureTime != nil && cond != nil:
		o.Reason = cond.Reason + ": " + cond.Message
		return o, true
	}
	return o, false
}
