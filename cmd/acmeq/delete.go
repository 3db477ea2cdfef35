package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// deleteWaitDefault bounds how long `delete order` waits for the new
// Order to appear.
const deleteWaitDefault = 10 * time.Second

// deleteOptions are the flags of `acmeq delete`.
type deleteOptions struct {
	namespace        string
	wait             time.Duration
	force            bool
	deleteAccountKey bool
	revoke           bool
	reason           string
}

func newDeleteCmd() *cobra.Command {
	var o deleteOptions
	cmd := &cobra.Command{
		Use:   "delete order|certificate|issuer|clusterissuer NAME",
		Short: "Retry an order, stop managing a certificate, or remove an issuer",
		Long: `Delete a resource, with cert-manager's meaning:

  order NAME        retries the order: its Challenges and the Order go, and
                    its CertificateRequest creates a new ACME order under
                    the same name, also when the request had failed.
  certificate NAME  stops managing the certificate: its Secret is kept (and
                    adopted by a Certificate of the same name applied
                    again); its CertificateRequests, Orders and renewal
                    schedule go. --revoke first revokes its current
                    certificate at the CA (--reason, default
                    cessationOfOperation).
  issuer NAME       removes the Issuer. Refused while Certificates in its
                    namespace refer to it (they would wait for it for
                    ever), unless --force. Its ACME account key Secret is
                    kept, so applying the Issuer again reuses the same ACME
                    account; --delete-account-key deletes it too (only if
                    this Issuer created it).
  clusterissuer NAME
                    removes the ClusterIssuer. Refused while Certificates
                    of any namespace refer to it, unless --force. Its ACME
                    account key Secret (in the workers' cluster resource
                    namespace) is kept.`,
		Example: `  acmeq delete order example-com-1-944887539
  acmeq delete certificate shop -n tenant-a
  acmeq delete issuer letsencrypt-staging --delete-account-key`,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []string{"order", "certificate", "issuer", "clusterissuer"}, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args, true, false)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			switch kind {
			case messages.KindOrder, messages.KindCertificate, messages.KindIssuer, messages.KindClusterIssuer:
			default:
				return usagef(cmd, "%s cannot be deleted: acmeq deletes orders (to retry), certificates (to stop managing them), issuers and clusterissuers", plural(kind))
			}
			if o.wait < 0 {
				return usagef(cmd, "--wait must not be negative")
			}
			return runDelete(cmd, kind, name, o)
		},
	}
	fs := cmd.Flags()
	namespaceFlag(fs, &o.namespace)
	fs.DurationVar(&o.wait, "wait", deleteWaitDefault, "delete order: how long to wait for the new Order; delete certificate: for a worker to remove it (0: do not wait)")
	fs.BoolVar(&o.force, "force", false, "delete issuer: even while Certificates refer to it")
	fs.BoolVar(&o.deleteAccountKey, "delete-account-key", false, "delete issuer: also delete the ACME account key Secret it created")
	fs.BoolVar(&o.revoke, "revoke", false, "delete certificate: first revoke its current certificate at the CA")
	fs.StringVar(&o.reason, "reason", "cessationOfOperation", "delete certificate --revoke: the RFC 5280 revocation reason")
	return cmd
}

// runDelete deletes a resource of kind (checked by the command) as the
// command's help says.
func runDelete(cmd *cobra.Command, kind messages.Kind, name string, o deleteOptions) error {
	c, err := readConnEnv()
	if err != nil {
		return err
	}
	ctx, out, errOut := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	nc, js, st, err := openReadStore(ctx, c, "acmeq-delete")
	if err != nil {
		return err
	}
	defer nc.Close()
	switch kind {
	case messages.KindCertificate:
		if o.revoke {
			p := producer.New(st, bus.New(js, "acmeq-cli"))
			if _, err := revokeAndWait(ctx, p, st, o.namespace, name, o.reason, max(o.wait, revokeWaitDefault)); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return notFound(errOut, messages.KindCertificate, name, err)
				}
				return fmt.Errorf("not deleted: %w", err)
			}
		}
		return deleteCertificate(ctx, out, errOut, st, js, o.namespace, name, o.wait)
	case messages.KindIssuer:
		return deleteIssuer(ctx, out, errOut, st, o.namespace, name, o.force, o.deleteAccountKey)
	case messages.KindClusterIssuer:
		return deleteClusterIssuer(ctx, out, errOut, st, name, o.force, o.deleteAccountKey)
	}
	return deleteOrder(ctx, out, errOut, st, bus.New(js, "acmeq-cli"), o.namespace, name, o.wait)
}

// firstFew lists up to five names, and how many more there are.
func firstFew(names []string) string {
	const most = 5
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

// deleteOrder retries an order as cert-manager users do, by deleting it.
//
// It deletes the Order's Challenges (so the new order's start fresh) and
// the Order, and sends its CertificateRequest a transition: the request's
// reconciler finds no Order under the name it derives from the request's
// spec and creates one with the same name, which is a new ACME order.
// A request that had failed (because this order failed) is made pending
// again first (reopenRequest): the worker treats a failed request as
// final. A request that is already Ready creates nothing; that is printed
// instead.
//
// The new Order's own transition is published here too, once the Order
// appears (within wait): the request publishes one when it creates the
// Order, but with the same Nats-Msg-Id as for the Order it replaces, so
// within the work stream's duplicate window the stream would drop it.
func deleteOrder(ctx context.Context, out, errOut io.Writer, st *store.Store, b *bus.Bus, ns, name string, wait time.Duration) error {
	order := &messages.Order{}
	if err := st.Get(ctx, ns, name, order); err != nil {
		return notFound(errOut, messages.KindOrder, name, err)
	}
	var w jetstream.KeyWatcher
	if wait > 0 {
		// Watch before deleting, so the recreation cannot be missed.
		var err error
		w, err = st.KV(messages.KindOrder).Watch(ctx, messages.Key(ns, name), jetstream.UpdatesOnly())
		if err != nil {
			return fmt.Errorf("delete: watch order %s: %w", name, err)
		}
		defer func() { _ = w.Stop() }()
	}
	if err := deleteOrderAndChallenges(ctx, st, ns, name); err != nil {
		return err
	}
	fmt.Fprintf(out, "order.acme.cert-manager.io %q deleted\n", name)

	owner := order.Metadata.OwnerReference
	if owner == nil || owner.Kind != messages.KindCertificateRequest {
		fmt.Fprintf(out, "Order %q has no owning CertificateRequest: no new Order will be created\n", name)
		return nil
	}
	cr := &messages.CertificateRequest{}
	err := st.Get(ctx, ns, owner.Name, cr)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Fprintf(out, "CertificateRequest %q no longer exists: no new Order will be created\n", owner.Name)
		return nil
	case err != nil:
		return err
	case messages.IsReady(cr.Status.Conditions):
		fmt.Fprintf(out, "CertificateRequest %q is already Ready: it will not create a new Order\n", owner.Name)
		return nil
	case cr.Status.FailureTime != nil:
		// A failed request is final for the worker; deleting its Order
		// is the user asking for a retry, so it is made pending again.
		if err := reopenRequest(ctx, st, cr, name); err != nil {
			return err
		}
		fmt.Fprintf(out, "CertificateRequest %q had failed: it is pending again\n", owner.Name)
	}
	retry := messages.Transition{Kind: messages.KindCertificateRequest, Namespace: ns, Name: owner.Name, Action: messages.ActionRetry, Cause: name}
	if err := b.Publish(ctx, retry, strconv.FormatUint(order.Metadata.ResourceVersion, 10)); err != nil {
		return err
	}
	fmt.Fprintf(out, "CertificateRequest %q will create a new Order %q (a new ACME order)\n", owner.Name, name)
	if w == nil {
		return nil
	}
	return awaitNewOrder(ctx, errOut, w, b, ns, name, owner.Name, wait)
}

// deleteOrderAndChallenges deletes Order ns/name and the Challenges it
// owns, Challenges first.
func deleteOrderAndChallenges(ctx context.Context, st *store.Store, ns, name string) error {
	chs, err := st.List(ctx, messages.KindChallenge, ns)
	if err != nil {
		return err
	}
	for _, ch := range chs {
		m := ch.GetMeta()
		if o := m.OwnerReference; o != nil && o.Kind == messages.KindOrder && o.Name == name {
			if err := st.Delete(ctx, messages.KindChallenge, ns, m.Name); err != nil {
				return err
			}
		}
	}
	return st.Delete(ctx, messages.KindOrder, ns, name)
}

// awaitNewOrder waits up to wait, on w, for the Order ns/name that
// CertificateRequest crName creates again, and publishes a retry of the
// new Order at its revision.
func awaitNewOrder(ctx context.Context, errOut io.Writer, w jetstream.KeyWatcher, b *bus.Bus, ns, name, crName string, wait time.Duration) error {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			fmt.Fprintf(errOut, "acmeq: the new Order %q has not appeared within %s; a worker creates it when it handles CertificateRequest %q\n", name, wait, crName)
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			t := messages.Transition{Kind: messages.KindOrder, Namespace: ns, Name: name, Action: messages.ActionRetry}
			return b.Publish(ctx, t, strconv.FormatUint(e.Revision(), 10))
		}
	}
}

// reopenRequest makes a failed CertificateRequest pending again, so its
// reconciler creates a new Order: its failure time is cleared and its
// Ready condition says why. The write is a compare-and-set: if a worker
// changed the request meanwhile, the retry is refused rather than mixed
// with what the worker did.
func reopenRequest(ctx context.Context, st *store.Store, cr *messages.CertificateRequest, order string) error {
	cr.Status.FailureTime = nil
	messages.SetCondition(&cr.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionFalse,
		Reason: messages.ReasonPending, Message: fmt.Sprintf("Retrying: Order %q was deleted", order)}, time.Now().UTC())
	if err := st.Update(ctx, cr); err != nil {
		return fmt.Errorf("delete: make CertificateRequest %q pending again: %w", cr.Metadata.Name, err)
	}
	return nil
}

// deleteIssuer removes an Issuer. It is refused while Certificates of its
// namespace refer to it, unless force. The ACME account key Secret is
// kept unless deleteAccountKey (and then only when this Issuer created
// it), so applying the Issuer again reuses the account, as with
// cert-manager, where deleting an Issuer leaves its Secret.
func deleteIssuer(ctx context.Context, out, errOut io.Writer, st *store.Store, ns, name string, force, deleteAccountKey bool) error {
	iss := &messages.Issuer{}
	if err := st.Get(ctx, ns, name, iss); err != nil {
		return notFound(errOut, messages.KindIssuer, name, err)
	}
	certs, err := st.List(ctx, messages.KindCertificate, ns)
	if err != nil {
		return err
	}
	var users []string
	for _, o := range certs {
		// A ClusterIssuer of the same name is another resource.
		if r := o.(*messages.Certificate).Spec.IssuerRef; r.IssuerKind() == messages.KindIssuer && r.Name == name {
			users = append(users, o.GetMeta().Name)
		}
	}
	if len(users) > 0 && !force {
		return exitError{code: 1, msg: fmt.Sprintf("delete: issuer %q is referred to by %d Certificate(s) in namespace %q (%s): delete them first, or use --force (they then wait for an issuer of that name)",
			name, len(users), ns, firstFew(users))}
	}
	if err := st.Delete(ctx, messages.KindIssuer, ns, name); err != nil {
		return err
	}
	fmt.Fprintf(out, "issuer.cert-manager.io %q deleted\n", name)
	if len(users) > 0 {
		fmt.Fprintf(out, "%d Certificate(s) refer to it and wait until an Issuer %q exists again\n", len(users), name)
	}
	keyName := ""
	if iss.Spec.ACME != nil {
		keyName = iss.Spec.ACME.PrivateKeySecretRef.Name
	}
	if keyName == "" {
		return nil
	}
	if !deleteAccountKey {
		fmt.Fprintf(out, "its ACME account key Secret %q is kept (--delete-account-key deletes it)\n", keyName)
		return nil
	}
	sec := &messages.Secret{}
	err = st.Get(ctx, ns, keyName, sec)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Fprintf(out, "its ACME account key Secret %q does not exist\n", keyName)
		return nil
	case err != nil:
		return err
	}
	if o := sec.Metadata.OwnerReference; o == nil || o.Kind != messages.KindIssuer || o.Name != name {
		fmt.Fprintf(out, "Secret %q is kept: it was not created by issuer %q\n", keyName, name)
		return nil
	}
	if err := st.Delete(ctx, messages.KindSecret, ns, keyName); err != nil {
		return err
	}
	fmt.Fprintf(out, "secret %q deleted (the ACME account key)\n", keyName)
	return nil
}

// deleteCertificate stops managing a Certificate: it is deleted; its
// Secret is kept (as cert-manager keeps it), and its CertificateRequests
// and Orders remain for history.
func deleteCertificate(ctx context.Context, out, errOut io.Writer, st *store.Store, js jetstream.JetStream, ns, name string, wait time.Duration) error {
	cert := &messages.Certificate{}
	if err := st.Get(ctx, ns, name, cert); err != nil {
		return notFound(errOut, messages.KindCertificate, name, err)
	}
	p := producer.New(st, bus.New(js, "acmeq-cli"))
	if err := p.DeleteCertificate(ctx, ns, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFound(errOut, messages.KindCertificate, name, err)
		}
		return err
	}
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := p.WaitDeleted(wctx, cert); err != nil {
			return fmt.Errorf("%w (a worker removes it: is one running?)", err)
		}
	}
	fmt.Fprintf(out, "certificate.cert-manager.io %q deleted\n", name)
	fmt.Fprintf(out, "acmeq no longer manages it: its Secret %q is kept; its CertificateRequests, Orders and renewal schedule are removed\n", cert.Spec.SecretName)
	return nil
}
