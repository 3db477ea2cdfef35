package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// Renewal by hand, as cmctl's renew: the Certificate's Issuing condition
// is set to True with reason ManuallyTriggered; the workers issue a new
// revision at once, whatever the renewal time, the failure back-off or a
// revocation say.
const (
	// ReasonManuallyTriggered is the Issuing condition's reason.
	ReasonManuallyTriggered = "ManuallyTriggered"
	// MessageManuallyTriggered is its message.
	MessageManuallyTriggered = "Certificate re-issuance manually triggered"
)

// ErrAlreadyRenewing: a renewal of the Certificate is already in progress.
var ErrAlreadyRenewing = errors.New("producer: a re-issuance is already in progress")

// Renew asks for the re-issuance of a Certificate now and resets its
// failure back-off. It fails with ErrAlreadyRenewing when a request is
// already in progress, and store.ErrNotFound when there is no such
// Certificate.
func (c *Client) Renew(ctx context.Context, ns, name string) error {
	r := ref(messages.KindCertificate, ns, name)
	var lastErr error
	for range 1 + maxRetries {
		cert := &messages.Certificate{}
		if err := c.st.Get(ctx, ns, name, cert); err != nil {
			return fmt.Errorf("producer: renew %s: %w", r, err)
		}
		cond := messages.GetCondition(cert.Status.Conditions, "Issuing")
		if cond != nil && cond.Status == messages.ConditionTrue {
			if cond.Reason != ReasonManuallyTriggered {
				return fmt.Errorf("%w: %s (%s: %s)", ErrAlreadyRenewing, r, cond.Reason, cond.Message)
			}
			// Asked for already: queue it again (a lost publish is healed;
			// a duplicate finds the request in progress and waits).
			return c.queueRenew(ctx, cert)
		}
		now := time.Now().UTC()
		messages.SetCondition(&cert.Status.Conditions, messages.Condition{Type: "Issuing", Status: messages.ConditionTrue,
			Reason: ReasonManuallyTriggered, Message: MessageManuallyTriggered}, now)
		cert.Status.FailedIssuanceAttempts = 0
		cert.Status.LastFailureTime = nil
		cert.Status.RenewRequestedTime = &now
		err := c.st.Update(ctx, cert)
		if errors.Is(err, store.ErrConflict) {
			lastErr = err
			continue
		}
		if err != nil {
			return fmt.Errorf("producer: renew %s: %w", r, err)
		}
		return c.queueRenew(ctx, cert)
	}
	return fmt.Errorf("producer: renew %s: gave up after %d retries: %w", r, maxRetries, lastErr)
}

func (c *Client) queueRenew(ctx context.Context, cert *messages.Certificate) error {
	m := cert.Metadata
	t := messages.Transition{Kind: messages.KindCertificate, Namespace: m.Namespace, Name: m.Name, Action: messages.ActionRenew}
	if err := c.bus.Publish(ctx, t, strconv.FormatUint(m.ResourceVersion, 10)); err != nil {
		return fmt.Errorf("producer: renew %s: marked for renewal but not queued (run renew again): %w", ref(messages.KindCertificate, m.Namespace, m.Name), err)
	}
	return nil
}
