package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/messages"
)

// ErrNotIssued: the Certificate has no certificate to revoke yet.
var ErrNotIssued = errors.New("producer: the certificate was never issued")

// Revoke asks the workers to revoke the certificate a Certificate's Secret
// holds now, at its CA, for an RFC 5280 reason (keyCompromise, superseded,
// cessationOfOperation, ...; "" is unspecified). It returns the serial
// number (hexadecimal) it asked to revoke; the Certificate's
// status.revocation and a Revoked event say when it is done. A revoked
// certificate is not renewed until `acmeq renew`.
func (c *Client) Revoke(ctx context.Context, ns, name, reason string) (string, error) {
	r := ref(messages.KindCertificate, ns, name)
	if _, err := acmeclient.ParseRevocationReason(reason); err != nil {
		return "", fmt.Errorf("producer: revoke %s: --reason: %w", r, err)
	}
	cert := &messages.Certificate{}
	if err := c.st.Get(ctx, ns, name, cert); err != nil {
		return "", fmt.Errorf("producer: revoke %s: %w", r, err)
	}
	serial := cert.Status.SerialNumber
	if serial == "" {
		return "", fmt.Errorf("%w: %s has no certificate in its Secret to revoke", ErrNotIssued, r)
	}
	t := messages.Transition{Kind: messages.KindCertificate, Namespace: ns, Name: name, Action: messages.ActionRevoke, Cause: serial + "/" + reason}
	if err := c.bus.Publish(ctx, t, ""); err != nil {
		return "", fmt.Errorf("producer: revoke %s: %w", r, err)
	}
	return serial, nil
}
