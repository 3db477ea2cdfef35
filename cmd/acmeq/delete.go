package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// deleteWaitDefault bounds how long `delete order` waits for the new
// Order to appear.
const deleteWaitDefault = 10 * time.Second

// runDelete is `acmeq delete order NAME` (retry: a new ACME order) and
// `acmeq delete certificate NAME` (stop managing it).
func runDelete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: acmeq delete order|certificate NAME [-n NS]")
		fs.PrintDefaults()
	}
	var ns string
	namespaceFlags(fs, &ns)
	wait := fs.Duration("wait", deleteWaitDefault, "delete order: how long to wait for the new Order (0: do not wait)")
	if err := fs.Parse(reorderArgs(fs, args)); err != nil {
		return exitError{code: 2}
	}
	kind, name, err := kindAndName(fs.Args(), true)
	if err != nil {
		return exitError{code: 2, msg: "delete: " + err.Error()}
	}
	if kind != messages.KindOrder && kind != messages.KindCertificate {
		return exitError{code: 2, msg: fmt.Sprintf("delete: %s cannot be deleted: acmeq deletes orders (to retry) and certificates (to stop managing them)", plural(kind))}
	}
	nc, js, st, err := openReadStore(ctx, "acmeq-delete")
	if err != nil {
		return err
	}
	defer nc.Close()
	if kind == messages.KindCertificate {
		return deleteCertificate(ctx, os.Stdout, os.Stderr, st, ns, name)
	}
	return deleteOrder(ctx, os.Stdout, os.Stderr, st, bus.New(js, "acmeq-cli"), ns, name, *wait)
}

// deleteOrder retries an order as cert-manager users do, by deleting it.
//
// It deletes the Order's Challenges (so the new order's start fresh) and
// the Order, and sends its CertificateRequest a transition: the request's
// reconciler finds no Order under the name it derives from the request's
// spec and creates one with the same name, which is a new ACME order.
// A request that is already Ready or failed creates nothing; that is
// printed instead.
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
	if err := st.Delete(ctx, messages.KindOrder, ns, name); err != nil {
		return err
	}
	fmt.Fprintf(out, "order.acme.cert-manager.io %q deleted\n", name)

	owner := order.Metadata.OwnerReference
	if owner == nil || owner.Kind != messages.KindCertificateRequest {
		fmt.Fprintf(out, "Order %q has no owning CertificateRequest: no new Order will be created\n", name)
		return nil
	}
	cr := &messages.CertificateRequest{}
	err = st.Get(ctx, ns, owner.Name, cr)
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
		fmt.Fprintf(out, "CertificateRequest %q has failed: it will not create a new Order\n", owner.Name)
		return nil
	}
	retry := messages.Transition{Kind: messages.KindCertificateRequest, Namespace: ns, Name: owner.Name, Action: messages.ActionRetry, Cause: name}
	if err := b.Publish(ctx, retry, strconv.FormatUint(order.Metadata.ResourceVersion, 10)); err != nil {
		return err
	}
	fmt.Fprintf(out, "CertificateRequest %q will create a new Order %q (a new ACME order)\n", owner.Name, name)
	if w == nil {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			fmt.Fprintf(errOut, "acmeq: the new Order %q has not appeared within %s; a worker creates it when it handles CertificateRequest %q\n", name, wait, owner.Name)
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

// deleteCertificate stops managing a Certificate: it is deleted; its
// Secret is kept (as cert-manager keeps it), and its CertificateRequests
// and Orders remain for history.
func deleteCertificate(ctx context.Context, out, errOut io.Writer, st *store.Store, ns, name string) error {
	cert := &messages.Certificate{}
	if err := st.Get(ctx, ns, name, cert); err != nil {
		return notFound(errOut, messages.KindCertificate, name, err)
	}
	if err := st.Delete(ctx, messages.KindCertificate, ns, name); err != nil {
		return err
	}
	secret := cert.Spec.SecretName
	if secret == "" {
		secret = name
	}
	fmt.Fprintf(out, "certificate.cert-manager.io %q deleted\n", name)
	fmt.Fprintf(out, "acmeq no longer manages it: its Secret %q is kept, and its CertificateRequests and Orders remain for history\n", secret)
	return nil
}
