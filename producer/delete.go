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

// DeleteCertificate deletes a Certificate as Kubernetes does: it sets
// metadata.deletionTimestamp and queues the Certificate; a worker then
// removes its CertificateRequests, Orders, issued chains, temporary keys
// and renewal schedule, releases its Secret (which is kept) and removes
// the Certificate itself. WaitDeleted waits for that.
func (c *Client) DeleteCertificate(ctx context.Context, ns, name string) error {
	r := ref(messages.KindCertificate, ns, name)
	var lastErr error
	for range 1 + maxRetries {
		cert := &messages.Certificate{}
		if err := c.st.Get(ctx, ns, name, cert); err != nil {
			return fmt.Errorf("producer: delete %s: %w", r, err)
		}
		if cert.Metadata.DeletionTimestamp == nil {
			now := time.Now().UTC()
			cert.Metadata.DeletionTimestamp = &now
			err := c.st.Update(ctx, cert)
			if errors.Is(err, store.ErrConflict) {
				lastErr = err
				continue
			}
			if err != nil {
				return fmt.Errorf("producer: delete %s: %w", r, err)
			}
		}
		t := messages.Transition{Kind: messages.KindCertificate, Namespace: ns, Name: name, Action: messages.ActionDelete}
		if err := c.bus.Publish(ctx, t, strconv.FormatUint(cert.Metadata.ResourceVersion, 10)); err != nil {
			return fmt.Errorf("producer: delete %s: marked for deletion but not queued (delete it again): %w", r, err)
		}
		return nil
	}
	return fmt.Errorf("producer: delete %s: gave up after %d retries: %w", r, maxRetries, lastErr)
}

// WaitDeleted waits until a resource is gone from the store, or ctx ends.
func (c *Client) WaitDeleted(ctx context.Context, obj messages.Object) error {
	m := obj.GetMeta()
	for {
		ok, err := c.st.Exists(ctx, obj.GetKind(), m.Namespace, m.Name)
		if err != nil || !ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("producer: %s is still being deleted: %w", ref(obj.GetKind(), m.Namespace, m.Name), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
