package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/acmeclient"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// revokeWaitDefault bounds how long `acmeq revoke` waits for the workers
// to record the revocation.
const revokeWaitDefault = 30 * time.Second

// revokeOptions are the flags of `acmeq revoke`.
type revokeOptions struct {
	namespace string
	reason    string
	wait      time.Duration
}

func newRevokeCmd() *cobra.Command {
	var o revokeOptions
	cmd := &cobra.Command{
		Use:   "revoke certificate NAME [--reason keyCompromise|superseded|cessationOfOperation|...]",
		Short: "Revoke the current certificate of a Certificate at its CA",
		Long: `Revoke the certificate a Certificate's Secret holds now, at the CA, signed
with the issuer's ACME account key (RFC 8555 §7.6), for an RFC 5280 reason:
` + strings.Join(acmeclient.RevocationReasons, ", ") + `.
The Certificate records it (status.revocation, Ready False with reason
Revoked, a Revoked event) and is not renewed or re-issued until
"acmeq renew". The Secret keeps the revoked certificate until then.`,
		Example: `  acmeq revoke certificate shop --reason keyCompromise
  acmeq revoke certificate shop -n tenant-a --reason cessationOfOperation`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef(cmd, "want: revoke certificate NAME")
			}
			if k, err := messages.ParseKind(args[0]); err != nil || k != messages.KindCertificate {
				return usagef(cmd, "only certificates are revoked, not %q", truncate(args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := acmeclient.ParseRevocationReason(o.reason); err != nil {
				return usagef(cmd, "--reason %q is not an RFC 5280 reason: want one of %s", truncate(o.reason), strings.Join(acmeclient.RevocationReasons, ", "))
			}
			if o.wait < 0 {
				return usagef(cmd, "--wait must not be negative")
			}
			if o.namespace == "" {
				o.namespace = producer.DefaultNamespace
			}
			return runRevoke(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, args[1])
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.namespace, "namespace", "n", "", "namespace of the certificate (default \"default\")")
	fs.StringVar(&o.reason, "reason", "unspecified", "RFC 5280 revocation reason")
	fs.DurationVar(&o.wait, "wait", revokeWaitDefault, "wait this long for the CA to confirm (0: do not wait)")
	return cmd
}

func runRevoke(ctx context.Context, out, errOut io.Writer, o revokeOptions, name string) error {
	p, st, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	serial, err := revokeAndWait(ctx, p, st, o.namespace, name, o.reason, o.wait)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(errOut, messages.KindCertificate, name, err)
	}
	if err != nil {
		return err
	}
	if o.wait == 0 {
		fmt.Fprintf(out, "Revocation of certificate %s of %s/%s queued\n", serial, o.namespace, name)
		return nil
	}
	fmt.Fprintf(out, "Certificate %s of %s/%s revoked (%s)\n", serial, o.namespace, name, o.reason)
	return nil
}

// revokeAndWait asks for the revocation and waits up to wait for the
// Certificate to record it; a Revoked Warning event (the CA refused) ends
// the wait with its message.
func revokeAndWait(ctx context.Context, p *producer.Client, st *store.Store, ns, name, reason string, wait time.Duration) (string, error) {
	serial, err := p.Revoke(ctx, ns, name, reason)
	if err != nil || wait == 0 {
		return serial, err
	}
	deadline := time.Now().Add(wait)
	for {
		c := &messages.Certificate{}
		if err := st.Get(ctx, ns, name, c); err != nil {
			return serial, err
		}
		if rv := c.Status.Revocation; rv != nil && rv.SerialNumber == serial {
			return serial, nil
		}
		if time.Now().After(deadline) {
			return serial, fmt.Errorf("certificate %s of %s/%s: the revocation was queued but not confirmed within %s; see acmeq describe certificate %s -n %s", serial, ns, name, wait, name, ns)
		}
		select {
		case <-ctx.Done():
			return serial, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
